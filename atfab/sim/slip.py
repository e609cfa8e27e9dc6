"""SLIP framing as the ESP ROM loader and esptool use it.

Frames are delimited by 0xC0; inside a frame 0xC0 is sent as 0xDB 0xDC and 0xDB as 0xDB 0xDD.
:func:`encode` makes one frame; :class:`SlipDecoder` turns a byte stream (fed in arbitrary
pieces) back into frames.
"""

from __future__ import annotations

END = 0xC0
ESC = 0xDB
ESC_END = 0xDC
ESC_ESC = 0xDD

_END = b"\xc0"


class SlipError(ValueError):
    """A frame held an escape byte followed by something other than 0xDC/0xDD."""


def escape(data: bytes) -> bytes:
    """Escape ``data`` for the inside of a frame (no delimiters)."""
    return data.replace(b"\xdb", b"\xdb\xdd").replace(b"\xc0", b"\xdb\xdc")


def unescape(data: bytes) -> bytes:
    """Undo :func:`escape`; raises :class:`SlipError` on an invalid escape sequence."""
    if b"\xdb" not in data:
        return data
    if _bad_escape(data):
        raise SlipError("invalid SLIP escape")
    # Every 0xDB of a valid frame starts an escape, so the two non-overlapping passes are exact.
    return data.replace(b"\xdb\xdc", b"\xc0").replace(b"\xdb\xdd", b"\xdb")


def _bad_escape(data: bytes) -> bool:
    i = data.find(b"\xdb")
    while i != -1:
        if i + 1 >= len(data) or data[i + 1] not in (ESC_END, ESC_ESC):
            return True
        i = data.find(b"\xdb", i + 2)
    return False


def encode(data: bytes) -> bytes:
    """One SLIP frame holding ``data``, delimiters included."""
    return _END + escape(data) + _END


class SlipDecoder:
    """Incremental decoder: :meth:`feed` bytes, get back the frames completed so far.

    Bytes outside frames are counted in :attr:`noise` and dropped, the way the ROM ignores
    line noise between packets. Empty frames (two delimiters in a row) are skipped.
    A frame with an invalid escape is returned as ``None`` so the caller can answer it.
    """

    def __init__(self) -> None:
        self._buf = bytearray()
        self._in_frame = False
        self.noise = 0

    def reset(self) -> None:
        """Forget a partial frame."""
        self._buf.clear()
        self._in_frame = False

    def feed(self, data: bytes) -> list[bytes | None]:
        """Consume ``data``; return the frames it completed (``None`` = malformed frame)."""
        frames: list[bytes | None] = []
        pos = 0
        n = len(data)
        while pos < n:
            if not self._in_frame:
                start = data.find(_END, pos)
                if start == -1:
                    self.noise += n - pos
                    return frames
                self.noise += start - pos
                self._in_frame = True
                pos = start + 1
                continue
            end = data.find(_END, pos)
            if end == -1:
                self._buf += data[pos:]
                return frames
            self._buf += data[pos:end]
            pos = end + 1
            raw = bytes(self._buf)
            self._buf.clear()
            if not raw:
                # Back-to-back delimiters: treat the second one as the start of a frame.
                continue
            self._in_frame = False
            try:
                frames.append(unescape(raw))
            except SlipError:
                frames.append(None)
        return frames


__all__ = ["encode", "escape", "unescape", "SlipDecoder", "SlipError"]
