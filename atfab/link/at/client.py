"""AT client over a pyserial port: framing, echo, URCs, prompts, raw reads, typed errors, transcript.

One :class:`AtClient` owns one port. :meth:`AtClient.exchange` sends one command and parses the
reply with :class:`~atfab.link.at.framing.ReplyParser`; the typed helpers (``gmr()``,
``sysmfg_read()`` …, in :mod:`atfab.link.at.helpers`) build on it. Every exchange is kept in
:attr:`AtClient.transcript` with private-key payloads redacted.
"""

from __future__ import annotations

import hashlib
import re
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import serial

from ...core.errors import DeviceError, InputError
from ...core.firmware import FirmwareProfile, firmware_for
from .errors import AtBusy, AtError, AtResponseError, AtTimeout, LinkLost, ModuleRestarted
from .framing import Reply, ReplyParser, command_name, info_prefixes, raw_kind
from .helpers import AtCommands

MAX_COMMAND = 256  # bytes, including the CR LF terminator is not counted (§1.1)


#: Seconds :meth:`AtClient.settle` waits for its first probe before it takes the module for one still
#: reading a write's payload (the query's reply is a few dozen bytes).
SETTLE_PROBE_S = 1.0


def is_sensitive_name(name: str) -> bool:
    """Default redaction rule: a namespace, key or partition whose name contains ``_key``."""
    return "_key" in name.lower()


def summarize(data: bytes, *, redacted: bool = False) -> str:
    """``<N bytes sha256=…>`` (or ``<redacted N bytes sha256=…>``) for a binary payload."""
    digest = hashlib.sha256(data).hexdigest()
    return f"<{'redacted ' if redacted else ''}{len(data)} bytes sha256={digest}>"


def _has_private_key(data: bytes | str) -> bool:
    return (b"PRIVATE KEY" in data) if isinstance(data, bytes) else ("PRIVATE KEY" in data)


@dataclass(frozen=True)
class TranscriptEntry:
    """One line of the transcript: wall-clock ``time``, ``direction`` "tx"/"rx", ``kind``, ``text``."""

    time: float
    direction: str
    kind: str
    text: str

    def to_json(self) -> dict[str, Any]:
        return {"time": self.time, "direction": self.direction, "kind": self.kind, "text": self.text}


#: Queries :meth:`AtClient.resync` sends to find where the module's replies stand (the first that
#: differs from the command that timed out): every firmware generation answers them with one line.
SYNC_PROBES = ("AT+UART_CUR?", "AT+SYSLOG?", "AT+CWMODE?", "AT+CIPMUX?")


class AtClient(AtCommands):
    """AT client over ``port`` (anything with ``read``/``write``/``in_waiting``/``timeout``).

    ``timeout`` is the default per-command reply timeout (raw transfers get extra time for their
    bytes at the port's baud); ``busy_retries``/``busy_delay`` bound how often the typed helpers
    resend a command answered with ``busy p...``; ``boot_retries`` how often any command is resent
    when the module booted before answering it (the boot dropped it); ``redact(name)`` decides which namespaces,
    keys and partitions have their payloads redacted in the transcript.
    """

    def __init__(self, port: Any, *, firmware: FirmwareProfile | None = None,
                 redact: Callable[[str], bool] = is_sensitive_name, timeout: float = 3.0,
                 busy_retries: int = 3, busy_delay: float = 0.2, boot_retries: int = 1, poll: float = 0.05,
                 max_transcript: int = 50_000, max_urcs: int = 1000, max_raw: int = 1 << 20) -> None:
        self.port = port
        self.firmware = firmware or firmware_for("esp32c2")
        self.redact = redact
        self.timeout = timeout
        self.busy_retries = busy_retries
        self.busy_delay = busy_delay
        self.boot_retries = boot_retries
        self.poll = poll
        self.max_raw = max_raw
        self.transcript: list[TranscriptEntry] = []
        self.max_transcript = max_transcript
        self.urcs: deque[str] = deque(maxlen=max_urcs)
        self.echo: bool = self.firmware.echo_default
        self._buf = bytearray()
        #: The command whose reply may still be on its way (timed out, unframable, link lost), else None.
        self._resync: str | None = None

    # -- transcript ---------------------------------------------------------------------------------
    def _log(self, direction: str, kind: str, text: str) -> None:
        if len(self.transcript) >= self.max_transcript:
            return
        if _has_private_key(text):
            text = summarize(text.encode("utf-8", "replace"), redacted=True)
        self.transcript.append(TranscriptEntry(time.time(), direction, kind, text))

    def note(self, text: str) -> None:
        """Add a free-text note to the transcript (e.g. a step name)."""
        self._log("note", "note", text)

    def sensitive(self, command: str) -> bool:
        """True when a quoted name in ``command`` is redacted (its payloads never get logged)."""
        return any(self.redact(name) for name in re.findall(r'"((?:[^"\\]|\\.)*)"', command))

    def _log_events(self, parser: ReplyParser, sensitive: bool) -> None:
        for ev in parser.events:
            if ev.kind == "raw" and ev.raw is not None:
                item = ev.raw
                hide = sensitive or _has_private_key(item.data) or any(self.redact(f) for f in item.fields[:2]
                                                                      if item.kind == "sysmfg")
                self._log("rx", "raw", item.header + summarize(item.data, redacted=hide))
            else:
                self._log("rx", ev.kind, ev.text)
        parser.events.clear()

    # -- port I/O -------------------------------------------------------------------------------------
    def _read(self, need: int, command: str | None) -> bytes:
        try:
            if self.port.timeout != self.poll:
                self.port.timeout = self.poll
            n = max(need, self.port.in_waiting or 0)
            return self.port.read(n)
        except (serial.SerialException, OSError) as exc:
            raise LinkLost(str(exc) or type(exc).__name__, command=command) from exc

    def _write(self, data: bytes, command: str) -> None:
        try:
            self.port.write(data)
            flush = getattr(self.port, "flush", None)
            if flush is not None:
                flush()
        except serial.SerialTimeoutException as exc:
            raise AtTimeout(command, b"", 0.0, waiting_for="write completion") from exc
        except (serial.SerialException, OSError) as exc:
            raise LinkLost(str(exc) or type(exc).__name__, command=command) from exc

    def _pending(self) -> int:
        try:
            return int(self.port.in_waiting or 0)
        except (serial.SerialException, OSError) as exc:
            raise LinkLost(str(exc) or type(exc).__name__) from exc

    def drain(self) -> list[str]:
        """Read what already arrived (no waiting) and queue its complete lines as URCs."""
        while self._pending():
            chunk = self._read(0, None)
            if not chunk:
                break
            self._buf += chunk
        new: list[str] = []
        while True:
            nl = self._buf.find(b"\n")
            if nl < 0:
                break
            text = bytes(self._buf[:nl]).rstrip(b"\r").decode("utf-8", "replace")
            del self._buf[: nl + 1]
            if text.strip():
                new.append(text)
                self.urcs.append(text)
                self._log("rx", "urc", text)
        return new

    def resync(self, quiet: float = 0.2, max_wait: float = 3.0, *, after: str | None = None) -> bytes:
        """Get back in step after a reply went missing (a timeout): returns the bytes discarded.

        Input is discarded until the port has been quiet for ``quiet`` seconds; then a probe query
        (:data:`SYNC_PROBES`, one that differs from ``after``, the command that timed out) is sent
        until the module answers it. The module answers commands in order, so whatever arrives
        before the probe's own information line (a late reply to ``after``, an ``OK`` with no
        line, ``busy p...``) is stale and dropped; the next command starts clean. A module that
        does not answer within ``max_wait`` (booting, in download mode) is left to the next
        command's own timeout.
        """
        dropped = bytearray(self._buf)
        self._buf.clear()
        dropped += self._discard_until_quiet(quiet, max_wait)
        self._resync = None
        probe = next(p for p in self._sync_probes() if after is None or command_name(p) != command_name(after))
        dropped += self._probe(probe, max_wait, min(quiet, 0.05))[1]
        if dropped:
            self._log("rx", "note", f"resync discarded {len(dropped)} bytes")
        return bytes(dropped)

    def settle(self, max_payload: int, *, wait: float | None = None, end_pending: bool = True) -> bool:
        """Before a contact's first command: make sure the module reads commands. True when it had to.

        A module that stays silent to a probe query may still be reading the payload of a write an
        earlier contact began (``>`` sent, then the host died): a cut link does not end it, the core
        keeps reading its UART (ground truth §5, §6), and would take this contact's commands as
        data. Up to ``max_payload`` 0xFF bytes and CR LF end such a write (programming 0xFF leaves
        NOR flash as it is; the rest is one over-long line, answered ERROR); then the probe must be
        answered. :class:`AtTimeout` when it still is not, or at once without ``end_pending`` (a
        read-only contact must not complete a write). ``wait``: seconds for each answer (default: the first
        probe :data:`SETTLE_PROBE_S` - a module at its prompt answers a short query at once - then the reply
        timeout).
        """
        first = min(self.timeout, SETTLE_PROBE_S) if wait is None else wait
        wait = self.timeout if wait is None else wait
        probe = self._sync_probes()[0]
        answered, seen = self._probe(probe, first, 0.0)   # a prompt module: nothing follows its reply
        if answered:
            return False
        if not end_pending:
            raise AtTimeout(probe, seen, first, waiting_for="reply (the module may still be reading an earlier "
                                                           "write's payload; a contact that may write ends it)")
        self._log("note", "note", f"the module does not answer {probe}: it may still read an earlier write's payload; "
                                  f"sending {max_payload} 0xFF bytes and CR LF to end it")
        self._write(b"\xff" * max_payload + b"\r\n", probe)
        wait_more = wait + self.transfer_time(max_payload)
        self._discard_until_quiet(0.1, wait_more)
        answered, seen = self._probe(probe, wait_more, 0.05)
        if not answered:
            raise AtTimeout(probe, seen, wait_more, waiting_for="reply (after ending a pending write payload)")
        return True

    def _sync_probes(self) -> tuple[str, ...]:
        """:data:`SYNC_PROBES` the firmware answers (ESP8266 NONOS AT 0.21 has no UART or SYSLOG query)."""
        usable = tuple(p for p in SYNC_PROBES if self.firmware.has_command(command_name(p), "query"))
        return usable if len(usable) >= 2 else SYNC_PROBES

    def _discard_until_quiet(self, quiet: float, max_wait: float) -> bytes:
        start = last = time.monotonic()
        dropped = bytearray()
        while time.monotonic() - start < max_wait:
            chunk = self._read(0, None) if self._pending() else b""
            if chunk:
                dropped += chunk
                last = time.monotonic()
            elif time.monotonic() - last >= quiet:
                break
            else:
                time.sleep(min(0.01, quiet))
        return bytes(dropped)

    def _probe(self, probe: str, max_wait: float, quiet: float) -> tuple[bool, bytes]:
        """Send ``probe`` until its information line and final ``OK`` arrive: whether they did, and
        the bytes before them.

        It is sent again only when the module refused it (``busy p...``) or booted meanwhile
        (``ready``): a probe that is merely slow is waited for, so no second answer trails behind.
        """
        prefix = info_prefixes(probe)[0].encode()
        deadline = time.monotonic() + max_wait
        stale, buf = bytearray(), bytearray()
        send, seen_info = True, False
        while time.monotonic() < deadline:
            if send:
                self._log("tx", "command", probe)
                self._write(probe.encode() + b"\r\n", probe)
                send, seen_info = False, False
            nl = buf.find(b"\n")
            if nl < 0:
                buf += self._read(1, probe)
                continue
            line = bytes(buf[:nl + 1])
            del buf[:nl + 1]
            text = line.strip()
            if seen_info and text == b"OK":
                self._log("rx", "final", "OK")
                self._buf[:0] = buf
                return True, bytes(stale) + self._discard_until_quiet(quiet, max_wait)
            if text.startswith(prefix):
                seen_info = True
                self._log("rx", "info", text.decode("utf-8", "replace"))
                continue
            stale += line
            if text == b"ready":          # booted meanwhile: the probe was dropped
                send = True
            elif text.startswith(b"busy p"):   # refused: the module is still at an earlier command
                send = True
                time.sleep(self.busy_delay)
        self._log("note", "note", f"resync: no answer to {probe} within {max_wait:.1f} s")
        return False, bytes(stale + buf)

    def _hides(self, parser: ReplyParser, seen: bytes | bytearray, sensitive: bool) -> bool:
        """Whether bytes seen during ``parser``'s reply must not appear in an error."""
        if sensitive or _has_private_key(bytes(seen)):
            return True
        items = list(parser.raws) + ([parser.in_raw()] if parser.in_raw() is not None else [])
        return any(self.redact(f) for item in items if item.kind == "sysmfg" for f in item.fields[:2])

    def _run(self, parser: ReplyParser, timeout: float, *, sensitive: bool) -> None:
        start = time.monotonic()
        seen = bytearray()
        extended = False
        try:
            if self._buf:
                data = bytes(self._buf)
                self._buf.clear()
                seen += data
                parser.feed(data)
                self._log_events(parser, sensitive)
            while not parser.done:
                item = parser.in_raw()
                if item is not None and not extended:   # header known: allow for its payload
                    extended = True
                    timeout += self.transfer_time(min(int(item.fields[-1]), self.max_raw))
                elapsed = time.monotonic() - start
                if elapsed >= timeout:
                    self._resync = parser.command
                    hide = self._hides(parser, seen, sensitive)
                    raise AtTimeout(parser.command, bytes(seen), elapsed, redacted=bool(hide),
                                    waiting_for="prompt" if parser.prompt else "reply")
                data = self._read(parser.need(), parser.command)
                if data:
                    seen += data
                    parser.feed(data)
                    self._log_events(parser, sensitive)
        except AtError as exc:
            self._log_events(parser, sensitive)
            if isinstance(exc, AtResponseError):
                self._resync = parser.command   # the rest of a reply we could not frame is still coming
            raise
        except LinkLost:
            self._resync = parser.command
            raise
        finally:
            self._buf[:0] = parser.take_rest()
            self.urcs.extend(parser.urcs)

    # -- exchanges -------------------------------------------------------------------------------------
    def _send_command(self, command: str) -> None:
        if "\r" in command or "\n" in command:
            raise InputError("an AT command cannot contain CR or LF", field="command")
        data = command.encode("utf-8")
        if len(data) > MAX_COMMAND:
            raise InputError(f"AT command is {len(data)} bytes, the firmware accepts {MAX_COMMAND}", field="command")
        if self._resync is not None:
            self.resync(after=self._resync)
        self.drain()
        self._log("tx", "command", command)
        self._write(data + b"\r\n", command)

    def exchange(self, command: str, *, timeout: float | None = None, info: tuple[str, ...] | None = None,
                 raw: str | None | bool = True, prompt: bool = False, raw_length: int | None = None) -> Reply:
        """Send ``command`` and parse its reply (``prompt=True``: until the ``>`` data prompt).

        ``raw=True`` reads raw payloads when the command is a SYSFLASH/SYSMFG read.
        A command lost because the module booted meanwhile (``ready`` before any reply) is sent
        again, up to ``boot_retries`` times. Raises :class:`AtError`/:class:`AtBusy` for an error
        reply, :class:`ModuleRestarted`, :class:`AtTimeout`, :class:`LinkLost`.
        """
        command = command.strip()
        kind = raw_kind(command) if raw is True else (raw or None)
        attempt = 0
        while True:
            self._send_command(command)
            try:
                return self._reply(command, timeout=timeout, info=info, raw=kind, prompt=prompt,
                                   raw_length=raw_length)
            except ModuleRestarted as exc:
                # the module booted while the command was on its way: the firmware dropped it
                self.echo = self.firmware.echo_default
                if exc.lines or attempt >= self.boot_retries:
                    raise
                attempt += 1
                self._log("note", "note", f"module restarted before replying: resend {attempt}/{self.boot_retries}")

    def _reply(self, command: str, *, timeout: float | None = None, info: tuple[str, ...] | None = None,
               raw: str | None = None, prompt: bool = False, echo: bool = True,
               finals: tuple[str, ...] = (), raw_length: int | None = None) -> Reply:
        parser = ReplyParser(command, info=info if info is not None else info_prefixes(command), raw=raw,
                             prompt=prompt, echo=echo, busy_text=self.firmware.busy_text,
                             trailer=self.firmware.raw_read_trailer, finals=finals, raw_length=raw_length)
        self._run(parser, self.timeout if timeout is None else timeout, sensitive=self.sensitive(command))
        return Reply(command, parser.lines, parser.raws, list(parser.urcs), parser.result, parser.ok_before_prompt)

    def send_payload(self, command: str, data: bytes, *, timeout: float | None = None) -> Reply:
        """After a ``>`` prompt: send ``data`` raw (paced in UART-RX-buffer pieces) and read the result."""
        hide = self.sensitive(command) or _has_private_key(data)
        self._log("tx", "payload", summarize(data, redacted=hide))
        piece = max(1, self.firmware.uart_rx_buffer)
        for i in range(0, len(data), piece):
            self._write(data[i:i + piece], command)
        wait = (self.timeout if timeout is None else timeout) + self.transfer_time(len(data))
        return self._reply(command, timeout=wait, echo=False)

    def command(self, command: str, *, timeout: float | None = None) -> list[str]:
        """Send one command; its information lines (raw payloads shown as text or a summary)."""
        reply = self.exchange(command, timeout=timeout)
        return self.display_lines(reply)

    def display_lines(self, reply: Reply) -> list[str]:
        """Information lines of ``reply`` with raw payloads as printable text or a (redacted) summary."""
        out = list(reply.lines)
        sensitive = self.sensitive(reply.command)
        for item in reply.raws:
            hide = sensitive or _has_private_key(item.data) or (
                item.kind == "sysmfg" and any(self.redact(f) for f in item.fields[:2]))
            text = None
            if not hide:
                try:
                    text = item.data.decode("utf-8")
                except UnicodeDecodeError:
                    text = None
                if text is not None and any(ord(c) < 32 and c not in "\t\r\n" for c in text):
                    text = None
            out.append(item.header + (text if text is not None else summarize(item.data, redacted=hide)))
        return out

    def transfer_time(self, nbytes: int) -> float:
        """Seconds ``nbytes`` take at the port's baud (8N1), doubled as a margin."""
        baud = getattr(self.port, "baudrate", None) or 115200
        return 2.0 * nbytes * 10 / baud

    def call(self, command: str, *, timeout: float | None = None, info: tuple[str, ...] | None = None,
             raw: str | None | bool = True, raw_length: int | None = None) -> Reply:
        """:meth:`exchange` with up to ``busy_retries`` resends after ``busy p...``."""
        return self._retry_busy(lambda: self.exchange(command, timeout=timeout, info=info, raw=raw,
                                                      raw_length=raw_length))

    def _retry_busy(self, fn: Callable[[], Any]) -> Any:
        attempt = 0
        while True:
            try:
                return fn()
            except AtBusy:
                if attempt >= self.busy_retries:
                    raise
                attempt += 1
                self._log("note", "note", f"busy: retry {attempt}/{self.busy_retries}")
                time.sleep(self.busy_delay)

    def write_with_prompt(self, command: str, data: bytes, *, timeout: float | None = None) -> Reply:
        """``command`` → wait for ``>`` (an ``OK`` before it is fine) → ``data`` → final ``OK``.

        Busy answers before the prompt are retried like :meth:`call`.
        """
        def attempt() -> Reply:
            self.exchange(command, timeout=timeout, raw=None, prompt=True)
            return self.send_payload(command, data, timeout=timeout)
        return self._retry_busy(attempt)

    def set_host_baud(self, baud: int) -> None:
        """Switch only the host side of the port to ``baud`` (finding a unit whose rate is not known).
        What arrived before, and any reply still owed, were at the old rate: forgotten, so the next
        command starts without a resync."""
        try:
            self.port.baudrate = baud
            self.port.reset_input_buffer()
        except (ValueError, OSError) as exc:
            raise DeviceError(f"cannot switch the host port to {baud} baud: {exc}") from exc
        self._buf.clear()
        self._resync = None
        self._log("note", "note", f"host port now at {baud} baud")

    def wait_ready(self, timeout: float = 5.0) -> None:
        """Wait for ``ready`` after a reset/power-on; echo is then back at the firmware default."""
        self._reply("<ready>", timeout=timeout, info=(), echo=False, finals=("ready",))
        self.echo = self.firmware.echo_default

    def close(self) -> None:
        """Close the port (idempotent)."""
        try:
            self.port.close()
        except (serial.SerialException, OSError):
            pass

    def __enter__(self) -> "AtClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


__all__ = ["AtClient", "Reply", "TranscriptEntry", "AtError", "AtBusy", "AtResponseError", "AtTimeout",
           "LinkLost", "ModuleRestarted", "is_sensitive_name", "summarize"]
