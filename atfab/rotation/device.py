"""AT access to the certificate and key of one TLS slot of a unit, for :mod:`atfab.station.fleet`.

A slot (``client.0``) is two mfg_nvs blobs: the certificate file (leaf, then intermediates)
and the private key (PEM). :class:`SlotIo` reads and writes them with ``AT+SYSMFG`` (type 8,
``>`` prompt, exact lengths) and describes what the unit holds as a :class:`PairState`:
fingerprints only. Private key bytes read from a unit live in a :class:`Secret` (in memory,
never shown by ``repr``), held just long enough to put the old key back on a failed rotation.
The AT client redacts the payloads of ``*_key*`` namespaces in its transcript.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
from typing import Any, Callable, Protocol

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from ..core.errors import DeviceError
from ..link.at.client import AtClient
from ..link.at.errors import AtBusy, AtError, AtResponseError
from ..link.at.limits import check_sysmfg_length, sysmfg_length_problem
from ..link.at.reread import reread
from ..pki.keys import cert_sha256, spki_sha256
from ..pki.slots import UNIT

BLOB = 8
#: Where :meth:`SlotIo.write_key` stages a key: an mfg_nvs namespace no firmware opens (names hold
#: ``_key``, so the AT transcript redacts them).
STAGE_NS, STAGE_KEY = "atfab_key", "stage_key"


class Secret:
    """Private key bytes held in memory only; ``repr``/``str`` never show them."""

    __slots__ = ("_data",)

    def __init__(self, data: bytes) -> None:
        self._data = bytes(data)

    def reveal(self) -> bytes:
        """The bytes, to write them to the unit (nothing else)."""
        return self._data

    def __len__(self) -> int:
        return len(self._data)

    def __repr__(self) -> str:
        return f"<secret {len(self._data)} bytes>"

    __str__ = __repr__


class SlotMissing(DeviceError):
    """The unit has no certificate or key item where the recipe says the slot lives."""


@dataclass(frozen=True)
class SlotPlace:
    """Where one slot's certificate and key live in mfg_nvs."""

    slot: str
    index: int
    cert_ns: str
    cert_key: str
    key_ns: str
    key_key: str


def slot_places(plan: Any) -> dict[str, SlotPlace]:
    """``{"client.0": SlotPlace}`` for every slot of a :class:`atfab.pki.slots.SlotPlan` holding
    the unit identity (certificate and key)."""

    found: dict[tuple[str, int], dict[str, tuple[str, str]]] = {}
    for loc in plan.locations():
        if loc.source == UNIT and loc.kind in ("cert", "key"):
            found.setdefault((loc.family, loc.index), {})[loc.kind] = (loc.namespace, loc.key)
    out = {}
    for (family, index), items in found.items():
        if "cert" in items and "key" in items:
            name = f"{family}.{index}"
            out[name] = SlotPlace(name, index, *items["cert"], *items["key"])
    return out


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def leaf_certificate(data: bytes) -> x509.Certificate | None:
    """The first certificate of a PEM file (or a DER certificate); None when there is none."""
    try:
        if b"-----BEGIN" in data:
            certs = x509.load_pem_x509_certificates(bytes(data))
            cert = certs[0] if certs else None
        else:
            cert = x509.load_der_x509_certificate(bytes(data))
        if cert is not None:
            cert.public_key()        # parsed lazily: a damaged key field fails only here
        return cert
    except Exception:  # noqa: BLE001 - any damage means "no readable certificate"
        return None


def key_fingerprint(secret: Secret | None) -> str | None:
    """SHA-256 of the public half (SubjectPublicKeyInfo) of a PEM/DER private key; None if unreadable."""
    if secret is None:
        return None
    data = secret.reveal()
    try:
        if b"-----BEGIN" in data:
            key = serialization.load_pem_private_key(data, password=None)
        else:
            key = serialization.load_der_private_key(data, password=None)
        return spki_sha256(key)
    except Exception:  # noqa: BLE001 - any unreadable or unsupported key is "unknown"
        return None


@dataclass(frozen=True)
class PairState:
    """What a unit holds in one slot, as fingerprints (SHA-256 hex).

    ``cert_fp`` is the leaf certificate's DER fingerprint, ``cert_spki`` its public key's,
    ``key_fp`` the public key of the private key item (None: not read or unreadable),
    ``file_sha256`` the SHA-256 of the certificate item's bytes.
    """

    cert_fp: str | None
    cert_spki: str | None
    key_fp: str | None
    file_sha256: str | None
    key_read: bool = False
    problem: str | None = None

    @property
    def matched(self) -> bool:
        """True when the key item is the private key of the certificate."""
        return self.cert_spki is not None and self.cert_spki == self.key_fp

    def to_json(self) -> dict[str, Any]:
        return {"cert_sha256": self.cert_fp, "cert_spki_sha256": self.cert_spki, "key_spki_sha256": self.key_fp,
                "key_matches_cert": self.matched if self.key_read else None, "problem": self.problem}


def pair_state(cert_file: bytes | None, key: Secret | None, *, key_read: bool) -> PairState:
    """Fingerprints of a certificate file and a private key (either may be missing)."""
    problems = []
    cert = leaf_certificate(cert_file) if cert_file else None
    if cert_file is None:
        problems.append("no certificate item")
    elif cert is None:
        problems.append("certificate item does not hold a certificate")
    key_fp = key_fingerprint(key)
    if key_read and key is None:
        problems.append("no key item")
    elif key_read and key_fp is None:
        problems.append("key item does not hold a readable key (PEM or DER)")
    state = PairState(cert_sha256(cert) if cert else None, spki_sha256(cert) if cert else None, key_fp,
                      sha256_hex(cert_file) if cert_file else None, key_read)
    if key_read and cert is not None and key_fp is not None and not state.matched:
        problems.append("key does not match the certificate")
    return replace(state, problem="; ".join(problems) or None)


def reread_pair(client: Any, slot: str, first: tuple[PairState, bytes | None, Secret | None],
                read: Callable[[], tuple[PairState, bytes | None, Secret | None]]
                ) -> tuple[PairState, bytes | None, Secret | None]:
    """A slot that did not read as a whole pair, read once more under the one re-read rule
    (:func:`atfab.link.at.reread.reread`): the same state twice is the unit's, a whole pair the
    second time is taken (noted), anything else is link noise (ReadDisagrees, ERROR)."""
    return reread(f"slot {slot}: read", first, read, holds=lambda r: r[0].problem is None,
                  same=lambda r: r[0], note=client.note)


def reread_readback(client: Any, slot: str, first: tuple[list[str], PairState],
                    read: Callable[[], tuple[list[str], PairState]]) -> tuple[list[str], PairState]:
    """A read-back with mismatches, read once more under the one re-read rule: the same mismatches
    twice are the unit's (the caller rolls back: FAIL), a clean second read-back is taken (noted),
    different answers are link noise (ReadDisagrees: ERROR, the rotation left pending)."""
    return reread(f"slot {slot}: read-back", first, read, holds=lambda r: not r[0], note=client.note)


class SlotStore(Protocol):
    """One slot's certificate and key on a unit, as rotation uses them: :class:`SlotIo` (mfg_nvs blobs,
    AT+SYSMFG) or :class:`atfab.rotation.partition_io.PartitionSlotIo` (per-item PKI partitions,
    AT+SYSFLASH); :func:`atfab.rotation.stores.open_slot` picks one from the firmware profile."""

    place: SlotPlace

    def read_cert(self) -> bytes: ...
    def read_key(self) -> Secret: ...
    def read_pair(self, *, with_key: bool = True) -> tuple[PairState, bytes | None, Secret | None]: ...
    def write_cert(self, data: bytes) -> None: ...
    def write_key(self, key: Secret) -> None: ...
    def check_readback(self, cert: bytes, key: Secret | None = None, *,
                       read_key: bool = True) -> tuple[list[str], PairState]: ...
    def prepare(self, new_file: bytes, new_key: Secret | None, *, file: Any = None,
                field: str | None = None) -> dict[str, Any]: ...
    def repair(self, rot: Any, extra: dict[str, Any], *, dry_run: bool = False) -> list[str]: ...


def check_pair_readback(store: "SlotStore", cert: bytes, key: Secret | None, *,
                        read_key: bool) -> tuple[list[str], PairState]:
    """Read ``store``'s certificate (and key, when one was written or ``read_key``) back and compare
    with what was written: the problems found (empty when it holds) and the pair read. One rule for
    every store (AT+SYSMFG slots and G1/G2 partitions)."""
    problems = []
    got_cert = store.read_cert()
    if sha256_hex(got_cert) != sha256_hex(cert):
        problems.append(f"certificate read back has sha256 {sha256_hex(got_cert)[:16]}..., "
                        f"wrote {sha256_hex(cert)[:16]}...")
    got_key = store.read_key() if (key is not None or read_key) else None
    if key is not None and got_key is not None and sha256_hex(got_key.reveal()) != sha256_hex(key.reveal()):
        problems.append("key read back differs from the key written")
    state = pair_state(got_cert, got_key, key_read=got_key is not None)
    if got_key is not None and not state.matched:
        problems.append(f"read-back pair: {state.problem}")
    return problems, state


class SlotIo:
    """Reads and writes one slot's certificate and key through ``client`` (one port)."""

    def __init__(self, client: AtClient, place: SlotPlace) -> None:
        self.client = client
        self.place = place

    @staticmethod
    def longest_write(firmware: Any) -> int:
        """The longest AT+SYSMFG blob payload (ground truth §6: 8191 bytes)."""
        return int(firmware.sysmfg_value_max)

    @staticmethod
    def check_layout(profile: Any, places: list[SlotPlace], *, file: Any = None) -> None:
        """Nothing to check before the units: mfg_nvs keys are written whole."""

    @staticmethod
    def cert_file_problem(profile: Any, places: list[SlotPlace], length: int) -> str | None:
        """One AT+SYSMFG blob write takes 1..8191 bytes (ground truth §6)."""
        return sysmfg_length_problem(length, profile.firmware)

    # -- reads ----------------------------------------------------------------------------------
    def _read(self, kind: str) -> bytes:
        ns, key = self._item(kind)
        try:
            value = self.client.sysmfg_read(ns, key)
        except AtBusy:
            raise
        except AtError:
            alt = self._other_name(ns, key)
            if alt is None:
                raise SlotMissing(f"slot {self.place.slot}: the unit has no {ns}/{key}") from None
            self._rename(kind, alt)
            value = self.client.sysmfg_read(ns, alt)
        if not isinstance(value, bytes):
            raise SlotMissing(f"slot {self.place.slot}: {ns}/{key} is not a blob")
        return value

    def _item(self, kind: str) -> tuple[str, str]:
        p = self.place
        return (p.cert_ns, p.cert_key) if kind == "cert" else (p.key_ns, p.key_key)

    def _rename(self, kind: str, key: str) -> None:
        self.place = replace(self.place, **{f"{kind}_key": key})

    def _other_name(self, ns: str, key: str) -> str | None:
        """The slot's key under the other esp-at naming (bare namespace vs ``ns.<i>``, §8.2)."""
        try:
            names = [k.key for k in self.client.sysmfg_keys(ns)]
        except AtBusy:
            raise
        except AtError:
            return None
        for cand in (f"{ns}.{self.place.index}", ns):
            if cand != key and cand in names and (cand != ns or self.place.index == 0):
                return cand
        return None

    def read_cert(self) -> bytes:
        """The certificate item's bytes (SlotMissing when the unit has none)."""
        return self._read("cert")

    def read_key(self) -> Secret:
        """The private key item, in memory only (SlotMissing when the unit has none)."""
        return Secret(self._read("key"))

    def read_pair(self, *, with_key: bool = True) -> tuple[PairState, bytes | None, Secret | None]:
        """What the slot holds: its state, the certificate bytes and (``with_key``) the key; a slot
        that does not read as a whole pair is read once more (:func:`reread_pair`)."""
        first = self._read_pair(with_key)
        if first[0].problem is None:
            return first
        return reread_pair(self.client, self.place.slot, first, lambda: self._read_pair(with_key))

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
    def write_cert(self, data: bytes) -> None:
        """``AT+SYSMFG=2,<cert ns>,<key>,8,<len>`` + the bytes."""
        self.client.sysmfg_write(self.place.cert_ns, self.place.cert_key, BLOB, bytes(data))

    def _staged(self) -> Secret | None:
        try:
            value = self.client.sysmfg_read(STAGE_NS, STAGE_KEY)
        except AtBusy:
            raise
        except AtError:
            return None
        return Secret(value) if isinstance(value, bytes) else None

    def write_key(self, key: Secret) -> None:
        """The key item, through a staged copy (:data:`STAGE_NS`): a blob whose payload a cut link
        left unfinished is completed by the next contact's bytes (AtClient.settle: 0xFF), so the item
        would hold neither key; the staged copy (read back first) lets :meth:`repair` put it back.
        ``AT+SYSMFG=2,<ns>,<key>,8,<len>`` + the bytes (redacted in the transcript), then the copy erased."""
        self.client.sysmfg_write(STAGE_NS, STAGE_KEY, BLOB, key.reveal())
        staged = self._staged()
        if staged is None or staged.reveal() != key.reveal():
            raise AtResponseError(f'AT+SYSMFG=1,"{STAGE_NS}","{STAGE_KEY}"', "the staged key reads back otherwise")
        self.client.sysmfg_write(self.place.key_ns, self.place.key_key, BLOB, key.reveal())
        self.client.sysmfg_erase(STAGE_NS)

    def prepare(self, new_file: bytes, new_key: Secret | None, *, file: Any = None,
                field: str | None = None) -> dict[str, Any]:
        """Before the journal: the new certificate file must fit one AT+SYSMFG write (InputError); the
        journal notes where the key is staged."""
        check_sysmfg_length(len(new_file), self.client.firmware, file=file,
                            field=f"{field}: new certificate file" if field else "new certificate file")
        return {"key_stage": f"{STAGE_NS}/{STAGE_KEY}"} if new_key is not None else {}

    def repair(self, rot: Any, extra: dict[str, Any], *, dry_run: bool = False) -> list[str]:
        """A key item left unreadable by a cut write gets the staged copy back when its public key is
        the journalled old or new one; a staged copy left behind is erased (the journal policy then
        classifies what the unit holds). Journals without ``key_stage`` (older rotations): nothing."""
        if not extra.get("key_stage"):
            return []
        staged = self._staged()
        if staged is None:
            return []
        notes = []
        journalled = {rot.old_key_fp, rot.new_key_fp} - {None}
        try:
            current = key_fingerprint(self.read_key())
        except SlotMissing:
            current = None
        staged_fp = key_fingerprint(staged)
        if current is None and staged_fp in journalled:
            notes.append(f"{self.place.key_ns}/{self.place.key_key} held no readable key: "
                         f"{'would write' if dry_run else 'wrote'} back the staged copy")
            if not dry_run:
                self.client.sysmfg_write(self.place.key_ns, self.place.key_key, BLOB, staged.reveal())
            current = staged_fp
        if current in journalled:
            notes.append(f"{'would erase' if dry_run else 'erased'} the staged copy ({STAGE_NS})")
            if not dry_run:
                self.client.sysmfg_erase(STAGE_NS)
        return notes

    def check_readback(self, cert: bytes, key: Secret | None = None, *,
                       read_key: bool = True) -> tuple[list[str], PairState]:
        """Read the items back: the mismatches (empty when all is well) and the slot's state.

        The certificate item must equal ``cert``; the key item (read when ``key`` is given or
        ``read_key``) must equal ``key`` when given, and be the certificate's private key. Read
        once more when they differ (:func:`reread_readback`: one damaged read is link noise).
        """
        first = self._check_readback(cert, key, read_key=read_key)
        if not first[0]:
            return first
        return reread_readback(self.client, self.place.slot, first,
                               lambda: self._check_readback(cert, key, read_key=read_key))

    def _check_readback(self, cert: bytes, key: Secret | None, *, read_key: bool) -> tuple[list[str], PairState]:
        return check_pair_readback(self, cert, key, read_key=read_key)


__all__ = ["Secret", "SlotMissing", "SlotPlace", "slot_places", "PairState", "pair_state", "check_pair_readback", "SlotIo", "SlotStore",
           "reread_pair", "reread_readback",
           "leaf_certificate", "key_fingerprint", "sha256_hex"]
