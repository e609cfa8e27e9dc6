"""One TLS slot's certificate and key in the per-item PKI partitions of G1/G2 firmware, over ``AT+SYSFLASH``.

On ESP32 AT v1.x and ESP-AT v2.x-v3.0.0.0 a slot ``client.<i>`` is item ``i`` of the 0xF1F1 image
at the start of partition ``client_cert`` and item ``i`` of the one in ``client_key`` (reference
§10.2; :mod:`atfab.image.legacy_pki`). The firmware parses the image from offset 0 and never reads
past its header's length. ``AT+SYSFLASH`` erases whole 4 KB sectors and programs without erasing
(ground truth §5), so rewriting an item means: erase the sectors the image covers, write the new
image, read it back. Between that erase and that write the partition holds nothing.

For the certificate that is harmless: it is public, and the journal keeps the partition's old
image (``cert_image``) and the new certificate, so a cut there is repaired from the journal. The
key partition is rewritten through a **staged copy** in its own last sector(s), which the firmware
never reads:

1. erase the staging sectors, write the new key image there, read it back (the new key is now on
   the unit, durable, and nowhere else but the process's memory);
2. erase the head sectors, write the same image at offset 0, read it back;
3. erase the staging sectors (no stray copy of a private key is left behind).

A cut in step 2 leaves a broken head and a whole staged image: :meth:`PartitionSlotIo.repair`
copies it back, on the unit, before the journal policy (:func:`atfab.rotation.journal.resume`)
classifies what the unit holds. Repair only ever writes an image the journal vouches for (the
staged key's public key is the journalled old or new one; the journalled old certificate image),
and only over a head that holds no readable item; a unit holding anything else readable is left
to the policy (ERROR, never guessed).
"""

from __future__ import annotations

import base64
from typing import Any

from ..core.errors import InputError
from ..link.at.client import AtClient
from ..link.at.helpers import DEFAULT_CHUNK
from ..link.at.partition_head import PKI, PartitionHead, ReadbackMismatch
from ..image.legacy_pki import decode_pki, item_type, replace_item
from .device import (
    PairState, Secret, SlotMissing, SlotPlace, check_pair_readback, key_fingerprint, leaf_certificate, pair_state,
    reread_pair, reread_readback,
)
from ..pki.keys import cert_sha256


def _b64(data: bytes | None) -> str | None:
    return base64.b64encode(data).decode("ascii") if data is not None else None


def _unb64(text: Any) -> bytes | None:
    try:
        return base64.b64decode(text, validate=True) if isinstance(text, str) else None
    except ValueError:
        return None


class PartitionSlotIo:
    """Reads and writes one slot's items of the PKI partitions through ``client`` (one port).

    ``place.cert_ns`` / ``place.key_ns`` are the partition names, ``place.index`` the item id.
    Same interface as :class:`atfab.rotation.device.SlotIo`.
    """

    def __init__(self, client: AtClient, place: SlotPlace) -> None:
        self.client = client
        self.place = place
        self.sector = client.firmware.sysflash_sector
        self.item_rule = client.firmware.pki_item_types
        self._sizes: dict[str, int] | None = None
        self._heads: dict[str, bytes | None] = {}       # the last image read/written at offset 0
        self._planned: dict[str, bytes] = {}             # dry-run repairs: what the head would hold

    @staticmethod
    def longest_write(firmware: Any) -> int:
        """The longest AT+SYSFLASH write payload this store sends (one chunk of the write helper)."""
        return DEFAULT_CHUNK

    @staticmethod
    def check_layout(profile: Any, places: list[SlotPlace], *, file: Any = None) -> None:
        """Before any unit is touched: the module profile's at_customize table has each slot's
        partitions, and every key partition a sector to stage the new key in beside the image."""
        sector = profile.firmware.sysflash_sector
        for place in places:
            for part in (place.cert_ns, place.key_ns):
                if profile.at_customize.find(part) is None:
                    raise InputError(f"module {profile.name} has no {part} partition for slot {place.slot}",
                                     file=file, field=f"pki.slot {place.slot}")
            size = profile.at_customize.find(place.key_ns).size
            if size < 2 * sector:
                raise InputError(f"module {profile.name}'s {place.key_ns} partition is {size} bytes: no free "
                                 f"{sector}-byte sector beside the key image to stage the new key in, and "
                                 "rewriting it in place would leave the unit without a key if cut between erase "
                                 "and write (not rotated)", file=file, field=f"pki.slot {place.slot}")

    @staticmethod
    def cert_file_problem(profile: Any, places: list[SlotPlace], length: int) -> str | None:
        """The certificate file is one item (4-byte header, padded to 4) of an image (8-byte header)
        that must fit each slot's certificate partition (other items of it are checked per unit)."""
        need = 8 + 4 + length + (-length % 4)
        for place in places:
            part = profile.at_customize.find(place.cert_ns)
            if part is not None and need > part.size:
                return (f"{length} bytes: as an item of {place.cert_ns} it needs {need} bytes, the partition "
                        f"holds {part.size}")
        return None

    # -- partitions -------------------------------------------------------------------------------
    def _size(self, part: str) -> int:
        if self._sizes is None:
            self._sizes = {e.name: e.size for e in self.client.sysflash_partitions()}
        if part not in self._sizes:
            raise SlotMissing(f"slot {self.place.slot}: the unit's at_customize table has no {part} partition")
        return self._sizes[part]

    def _ph(self, part: str) -> PartitionHead:
        return PartitionHead(self.client, part, self._size(part), PKI, self.sector)

    def _image_at(self, part: str, offset: int) -> bytes | None:
        """The 0xF1F1 image at ``offset`` of ``part`` (None: no magic, or longer than the room)."""
        return self._ph(part).image_at(offset)

    def _head(self, part: str) -> bytes | None:
        image = self._planned[part] if part in self._planned else self._image_at(part, 0)
        self._heads[part] = image
        return image

    def _item_of(self, image: bytes | None, part: str) -> bytes | None:
        if image is None:
            return None
        try:
            items = decode_pki(image, source=part)
        except InputError:
            return None
        return items[self.place.index].data if self.place.index < len(items) else None

    def _erase(self, part: str, offset: int, length: int) -> None:
        self._ph(part).erase(offset, length)

    def _program(self, part: str, offset: int, image: bytes, *, covers: int) -> None:
        """Erase the sectors of ``max(len(image), covers)`` bytes at ``offset``, write ``image``, read it back."""
        self._ph(part).program(offset, image, covers=covers)

    def _stage_offset(self, part: str, old_len: int, new_len: int) -> int | None:
        """Where the staged copy of a ``new_len`` image goes (the partition's last sectors), None: no room."""
        return self._ph(part).stage_offset(old_len, new_len)

    # -- reads ----------------------------------------------------------------------------------
    def _read(self, kind: str) -> bytes:
        part = self.place.cert_ns if kind == "cert" else self.place.key_ns
        data = self._item_of(self._head(part), part)
        if data is None:
            raise SlotMissing(f"slot {self.place.slot}: {part} holds no item {self.place.index}")
        return data

    def read_cert(self) -> bytes:
        """Item ``index`` of the certificate partition (SlotMissing when there is none)."""
        return self._read("cert")

    def read_key(self) -> Secret:
        """Item ``index`` of the key partition, in memory only (SlotMissing when there is none)."""
        return Secret(self._read("key"))

    def read_pair(self, *, with_key: bool = True) -> tuple[PairState, bytes | None, Secret | None]:
        """What the slot holds: its state, the certificate bytes and (``with_key``) the key. A slot that
        does not read as a whole pair is read once more: different answers are link noise
        (ReadDisagrees, an ERROR), the same answer is what the unit holds (:func:`reread_pair`)."""
        first = self._read_pair(with_key)
        if first[0].problem is None:
            return first

        def again() -> tuple[PairState, bytes | None, Secret | None]:
            self._heads.clear()
            return self._read_pair(with_key)

        return reread_pair(self.client, self.place.slot, first, again)

    def _read_pair(self, with_key: bool) -> tuple[PairState, bytes | None, Secret | None]:
        try:
            cert = self.read_cert()
        except SlotMissing:
            cert = None
        key = None
        if with_key:
            try:
                key = self.read_key()
            except SlotMissing:
                key = None
        return pair_state(cert, key, key_read=with_key), cert, key

    # -- writes ---------------------------------------------------------------------------------
    def _new_image(self, part: str, content: bytes, base: bytes | None) -> bytes:
        if base is None:
            if self.place.index != 0:
                raise SlotMissing(f"slot {self.place.slot}: {part} holds no image to put item {self.place.index} in")
            return replace_item(b"", 0, content, type_=item_type(part, self.item_rule), source=part)
        return replace_item(base, self.place.index, content, source=part)

    def write_key(self, key: Secret) -> None:
        """The key partition with item ``index`` replaced, through the staged copy (module docstring)."""
        part = self.place.key_ns
        old = self._heads[part] if part in self._heads else self._head(part)
        image = self._new_image(part, key.reveal(), old)
        if self._stage_offset(part, len(old or b""), len(image)) is None:
            raise SlotMissing(f"slot {self.place.slot}: no room in {part} to stage the new key image")
        self._ph(part).rewrite(old, image, staged=True)
        self._heads[part] = image

    def write_cert(self, data: bytes) -> None:
        """The certificate partition with item ``index`` replaced: erase its sectors, write, read back."""
        part = self.place.cert_ns
        old = self._heads[part] if part in self._heads else self._head(part)
        image = self._new_image(part, bytes(data), old if self._item_of(old, part) is not None else None)
        if len(image) > self._size(part):
            raise SlotMissing(f"slot {self.place.slot}: a {len(image)}-byte image does not fit {part}")
        self._program(part, 0, image, covers=len(old or b""))
        self._heads[part] = image

    def check_readback(self, cert: bytes, key: Secret | None = None, *,
                       read_key: bool = True) -> tuple[list[str], PairState]:
        """Read the items back: the mismatches (empty when all is well) and the slot's state. Read
        twice when they differ: see :meth:`read_pair` (different answers are link noise)."""
        first = self._check_readback(cert, key, read_key=read_key)
        if not first[0]:
            return first

        def again() -> tuple[list[str], PairState]:
            self._heads.clear()
            return self._check_readback(cert, key, read_key=read_key)

        return reread_readback(self.client, self.place.slot, first, again)

    def _check_readback(self, cert: bytes, key: Secret | None, *, read_key: bool) -> tuple[list[str], PairState]:
        return check_pair_readback(self, cert, key, read_key=read_key)

    # -- the journal ------------------------------------------------------------------------------
    def prepare(self, new_file: bytes, new_key: Secret | None, *, file: Any = None,
                field: str | None = None) -> dict[str, Any]:
        """Before the journal: check the new items fit (InputError otherwise) and say what the journal
        must keep to repair a cut (the certificate partition's current image, the staging offset)."""
        p = self.place
        cert_old = self._heads[p.cert_ns] if p.cert_ns in self._heads else self._head(p.cert_ns)
        cert_new = self._new_image(p.cert_ns, new_file, cert_old)
        if len(cert_new) > self._size(p.cert_ns):
            raise InputError(f"the new certificate image ({len(cert_new)} bytes) does not fit the unit's "
                             f"{p.cert_ns} partition ({self._size(p.cert_ns)} bytes)", file=file, field=field)
        extra: dict[str, Any] = {"store": "partition", "cert_image": _b64(cert_old)}
        if new_key is not None:
            key_old = self._heads[p.key_ns] if p.key_ns in self._heads else self._head(p.key_ns)
            key_new = self._new_image(p.key_ns, new_key.reveal(), key_old)
            stage = self._stage_offset(p.key_ns, len(key_old or b""), len(key_new))
            if stage is None:
                raise InputError(f"the unit's {p.key_ns} partition ({self._size(p.key_ns)} bytes) has no free "
                                 f"{self.sector}-byte sector beside the key image ({len(key_new)} bytes) to stage "
                                 "the new key: rotating it in place would leave the unit without a key if cut "
                                 "between erase and write", file=file, field=field)
            extra["key_stage"] = stage
        return extra

    def _put_back(self, part: str, image: bytes, covers: int, dry_run: bool) -> None:
        """Write ``image`` at the head of ``part`` (erasing ``covers`` bytes); a dry run only reads it
        from now on as if it were there, so the policy classifies what the repair would leave."""
        if dry_run:
            self._planned[part] = image
        else:
            self._program(part, 0, image, covers=covers)
        self._heads[part] = image

    def repair(self, rot: Any, extra: dict[str, Any], *, dry_run: bool = False) -> list[str]:
        """Put back a partition head that a cut left without a readable item (module docstring):
        the staged key image when its key is the journalled old or new one, the journalled old
        certificate image. Returns what was (or, ``dry_run``, would be) done; erases a staged copy
        left behind."""
        notes: list[str] = []
        p = self.place
        stage = extra.get("key_stage")
        if isinstance(stage, int) and 0 < stage < self._size(p.key_ns):
            journalled = {rot.old_key_fp, rot.new_key_fp} - {None}
            staged = self._image_at(p.key_ns, stage)
            staged_item = self._item_of(staged, p.key_ns)
            head = self._head(p.key_ns)
            head_key = key_fingerprint(Secret(self._item_of(head, p.key_ns) or b""))
            staged_key = key_fingerprint(Secret(staged_item)) if staged_item else None
            if head_key is None and staged is not None and staged_key in journalled:
                verb = "would copy" if dry_run else "copied"
                notes.append(f"{p.key_ns} held no readable key: {verb} back the staged image at {stage}")
                self._put_back(p.key_ns, staged, stage, dry_run)
                head_key = staged_key
            if head_key in journalled and not self._ph(p.key_ns).stage_blank(stage):
                notes.append(f"{'would erase' if dry_run else 'erased'} the staging sectors of {p.key_ns}")
                if not dry_run:
                    self._erase(p.key_ns, stage, self._size(p.key_ns) - stage)
        old_image = _unb64(extra.get("cert_image"))
        head = self._head(p.cert_ns)
        cert = leaf_certificate(self._item_of(head, p.cert_ns) or b"")
        if cert is None and old_image is not None:
            old_cert = leaf_certificate(self._item_of(old_image, p.cert_ns) or b"")
            if old_cert is not None and cert_sha256(old_cert) == rot.old_cert_fp:
                verb = "would write" if dry_run else "wrote"
                notes.append(f"{p.cert_ns} held no readable certificate: {verb} back its journalled image")
                self._put_back(p.cert_ns, old_image, self._size(p.cert_ns), dry_run)
        return notes


__all__ = ["PartitionSlotIo", "ReadbackMismatch"]
