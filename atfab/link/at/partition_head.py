"""The image at the start of one at_customize partition, read and rewritten over ``AT+SYSFLASH`` (G1/G2).

The legacy per-item partitions (PKI 0xF1F1, ``ble_data`` 0x2795; reference §10) hold one image at
offset 0 whose header gives its length; the firmware never reads past it. ``AT+SYSFLASH`` erases
whole 4 KB sectors and programs without erasing (ground truth §5), so a rewrite erases the sectors
the old and the new image cover, writes, and reads back. Between that erase and that write the
partition holds nothing; :meth:`PartitionHead.rewrite` with ``staged`` first writes (and reads back)
the new image in the partition's last sector(s), where a cut leaves a whole copy that
:meth:`PartitionHead.staged_image` finds on the next contact, then erases it once the head holds it.
Who may trust a staged copy is the caller's decision (rotation: the journal; customize: the user's
files).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ...image import legacy_ble, legacy_pki
from .errors import AtError
from .reread import reread

#: (header bytes, image length from the header or None when the magic is missing) of an image kind.
ImageKind = tuple[int, Callable[[bytes], int | None]]


def _pki_length(head: bytes) -> int | None:
    return legacy_pki.image_length(head) if legacy_pki.looks_like_pki(head) else None


def _ble_length(head: bytes) -> int | None:
    return legacy_ble.image_length(head) if legacy_ble.looks_like_ble_data(head) else None


PKI: ImageKind = (8, _pki_length)
BLE: ImageKind = (4, _ble_length)


class ReadbackMismatch(AtError):
    """A partition read back after a write holds other bytes than were written (the unit is bad)."""


def sectors(length: int, sector: int) -> int:
    """``length`` rounded up to whole sectors."""
    return -(-length // sector) * sector


class PartitionHead:
    """Partition ``name`` (``size`` bytes) of the module behind ``client``, holding images of ``kind``."""

    def __init__(self, client: Any, name: str, size: int, kind: ImageKind, sector: int = 4096) -> None:
        self.client, self.name, self.size, self.kind, self.sector = client, name, size, kind, sector

    def image_at(self, offset: int) -> bytes | None:
        """The image at ``offset`` (None: no magic there, or longer than the rest of the partition)."""
        header, length_of = self.kind
        head = self.client.sysflash_read(self.name, offset, header)
        length = length_of(head)
        if length is None or offset + length > self.size:
            return None
        return head + (self.client.sysflash_read(self.name, offset + header, length - header) if length > header
                       else b"")

    def stage_offset(self, old_len: int, new_len: int) -> int | None:
        """Where a staged copy of a ``new_len`` image goes (the last sectors), None when it would
        overlap the old or the new image at the head."""
        stage = self.size - sectors(new_len, self.sector)
        if stage <= 0 or max(old_len, new_len) > stage:
            return None
        return stage

    def erase(self, offset: int, length: int) -> None:
        if length:
            self.client.sysflash_erase(self.name, offset, length)

    def program(self, offset: int, image: bytes, *, covers: int) -> None:
        """Erase the sectors of ``max(len(image), covers)`` bytes at ``offset``, write ``image``, read it
        back (:class:`ReadbackMismatch` when it differs)."""
        self.erase(offset, min(sectors(max(len(image), covers), self.sector), self.size - offset))
        self.client.sysflash_write(self.name, offset, image)
        self.check(offset, image)

    def check(self, offset: int, image: bytes) -> None:
        """``image`` is at ``offset``: read back, and once more when it differs. Link noise (the second
        read matches, or the two differ from each other) is not the unit's fault: the first is noted,
        the second raises :class:`~atfab.link.at.reread.ReadDisagrees`; only the same other bytes twice are
        :class:`ReadbackMismatch` (the unit stored them)."""
        command = f'AT+SYSFLASH=2,"{self.name}",{offset},{len(image)}'
        got = self.client.sysflash_read(self.name, offset, len(image))
        if got == image:
            return
        got = reread(command, got, lambda: self.client.sysflash_read(self.name, offset, len(image)),
                     holds=lambda b: b == image, same=bytes, note=self.client.note)
        if got != image:
            raise ReadbackMismatch(command, message=f"{self.name} read back at {offset} differs from the "
                                                    f"{len(image)} bytes written (twice the same)")

    def rewrite(self, old: bytes | None, new: bytes, *, staged: bool) -> None:
        """Put ``new`` at the head (``old``: what it holds now). ``staged``: through a staged copy,
        which must fit (:meth:`stage_offset`; ValueError otherwise) and is erased at the end."""
        if not staged:
            self.program(0, new, covers=len(old or b""))
            return
        stage = self.stage_offset(len(old or b""), len(new))
        if stage is None:
            raise ValueError(f"no room in {self.name} to stage a {len(new)}-byte image")
        self.program(stage, new, covers=self.size - stage)
        self.program(0, new, covers=len(old or b""))
        self.erase(stage, self.size - stage)

    def staged_image(self, stage: int) -> bytes | None:
        """The whole image a cut rewrite left at ``stage`` (None: none)."""
        return self.image_at(stage) if 0 < stage < self.size else None

    def find_staged(self) -> tuple[int, bytes] | None:
        """A staged copy left by a cut :meth:`rewrite`: a whole image that starts where
        :meth:`stage_offset` puts one of its length (the last sectors). None when there is none."""
        for stage in range(self.size - self.sector, 0, -self.sector):
            image = self.image_at(stage)
            if image is not None and stage == self.size - sectors(len(image), self.sector):
                return stage, image
        return None

    def stage_blank(self, stage: int) -> bool:
        header = self.kind[0]
        return self.client.sysflash_read(self.name, stage, header) == b"\xff" * header


__all__ = ["PartitionHead", "ReadbackMismatch", "PKI", "BLE", "ImageKind", "sectors"]
