"""Offline pre-programming: ``atfab batch RECIPE -n N -o DIR`` (docs/recipes.md, "Offline pre-programming").

Reserves N identities in the ledger (serials from the recipe's counter, certificates from the
factory CA) before any unit exists, and writes what a gang programmer needs:

* ``common/``: the firmware regions and at_customize.bin, the same for every unit;
* ``units/<serial>.mfg_nvs.bin``: each unit's mfg_nvs (its private key inside: mode 0600);
  with ``merged`` also ``units/<serial>.factory.bin``, the full flash image (0600);
* ``manifest.json`` and ``manifest.csv``: per unit every file to program with its flash offset,
  size, SHA-256 and MD5, the serial and the certificate fingerprint.

With ``[pki] escrow`` every unit key is also kept in the recipe's escrow file, encrypted to the
operator's key (context ``batch``, the placeholder MAC and the batch id in its clear facts): the
workers encrypt each record beside the image, and once the ledger holds the certificates all of
them are appended with one write and fsync, before the images leave the staging folder (no key
ever reaches a gang programmer without its escrow record; a batch the ledger refused leaves no
escrow records).

A batch unit has no MAC yet, so its identity is reserved under a *placeholder* MAC
(:func:`placeholder_mac`: first octet ``0x0f``, the multicast bit set, which no unit's base MAC
has) and moved to the unit's MAC on first contact (:func:`bind_preprogrammed`, called by the
station when the unit's mfg_nvs is one of the batch's).

The images are built on all cores (multiprocessing, one process per core, the CA inherited by
fork). Everything is written into a temporary folder beside ``DIR`` and renamed to ``DIR`` at
the end; on any failure the folder is removed and the ledger reservations are rolled back (the
serials are not handed out again), so there is never half a batch.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import multiprocessing as mp
import os
import secrets
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..core.errors import InputError, UnitFailed
from ..core.fsutil import atomic_write
from ..core.inputs import load_json
from ..image.build import merge_factory_image
from ..image.mfg_nvs import UnitContent, build_mfg_nvs
from ..image.nvs.reader import read_nvs
from ..image.partition_table import decode, encode
from ..link.at.client import AtClient
from ..link.at.errors import AtError
from ..link.at.mac import read_base_mac
from ..rotation.device import leaf_certificate
from ..verify.unit import BuiltUnit, VerifyResult, verify_unit
from ..pki.escrow_policy import BATCH, escrow_record, open_escrow
from ..pki.issue import issue_unit
from ..pki.keys import cert_sha256, spki_sha256
from ..pki.slots import UNIT, plan_slots
from .ledger import Ledger, LedgerError, UnitIdentity, utc_now
from .recipe_spec import Recipe, slot_name

MANIFEST_SCHEMA = "atfab.batch-manifest/1"
PLACEHOLDER_OCTET = 0x0F          # multicast + locally administered: never a unit's base MAC
KEY_FILE_MODE = 0o600


def placeholder_mac(batch_id: int, index: int) -> str:
    """The placeholder MAC of unit ``index`` of batch ``batch_id`` (16 bits; 24 bits)."""
    raw = bytes([PLACEHOLDER_OCTET]) + batch_id.to_bytes(2, "big") + index.to_bytes(3, "big")
    return ":".join(f"{b:02x}" for b in raw)


def is_placeholder(mac: str) -> bool:
    """True for a MAC made by :func:`placeholder_mac`."""
    return mac.lower().startswith(f"{PLACEHOLDER_OCTET:02x}:")


@dataclass
class BatchResult:
    """What :func:`make_batch` wrote."""

    out_dir: Path
    batch_id: int
    count: int
    first_serial: str
    last_serial: str
    seconds: float
    workers: int
    manifest: Path
    manifest_csv: Path
    merged: bool = False
    timings: dict[str, float] = field(default_factory=dict)
    escrow: Path | None = None                    # the key escrow file the batch's keys went to

    def to_dict(self) -> dict[str, Any]:
        return {"out_dir": str(self.out_dir), "batch_id": f"{self.batch_id:04x}", "count": self.count,
                "first_serial": self.first_serial, "last_serial": self.last_serial,
                "seconds": round(self.seconds, 3), "workers": self.workers, "merged": self.merged,
                "manifest": str(self.manifest), "manifest_csv": str(self.manifest_csv),
                "escrow": str(self.escrow) if self.escrow is not None else None,
                "timings": {k: round(v, 3) for k, v in self.timings.items()}}


# -- worker side (fork-inherited state; one process per core) ----------------------------------

_job: dict[str, Any] = {}


def _write_secret(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, KEY_FILE_MODE)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def _build_chunk(chunk: list[tuple[int, str, str]]) -> list[dict[str, Any]]:
    """Issue, build and write the units of one chunk; their public facts."""
    recipe: Recipe = _job["recipe"]
    ca, plan, units_dir = _job["ca"], _job["plan"], _job["units_dir"]
    profile, template = recipe.profile, recipe.pki.identity  # type: ignore[union-attr]
    out = []
    for index, serial, placeholder in chunk:
        values = recipe.identity_values(serial=serial, mac=placeholder)
        ident = issue_unit(ca, template, values, usages=plan.usages or ("clientAuth",))
        content = UnitContent(factory_param=dict(recipe.factory_param), pki=plan.pki_for(ident),
                              ble_rows=list(_job["ble_rows"]))
        image = build_mfg_nvs(content, profile.nvs_partition.size, firmware=profile.firmware, build=profile.build,
                              allow_unread=recipe.firmware.allow_unread, source="mfg_nvs").image
        name = f"{serial}.mfg_nvs.bin"
        _write_secret(units_dir / name, image)
        cert = ident.cert
        escrow = _job.get("escrow")
        sealed = (escrow_record(escrow, ident, serial=serial, mac=placeholder, slots=_job["slots"], context=BATCH,
                                batch=_job["batch"], recipe=recipe.name) if escrow is not None else None)
        info = {"serial": f"{cert.serial_number:x}", "issuer": _job["issuer"],
                "subject": cert.subject.rfc4514_string(), "sha256": ident.fingerprint_sha256,
                "spki_sha256": spki_sha256(cert),
                "not_before": cert.not_valid_before_utc.isoformat(),
                "not_after": cert.not_valid_after_utc.isoformat()}
        files = [{"file": f"units/{name}", "offset": profile.mfg_nvs.offset, "size": len(image),
                  "sha256": hashlib.sha256(image).hexdigest(), "md5": hashlib.md5(image).hexdigest()}]
        template_image = _job.get("merged_template")
        if template_image is not None:
            full = bytearray(template_image)
            off = profile.mfg_nvs.offset
            full[off:off + len(image)] = image
            merged_name = f"{serial}.factory.bin"
            _write_secret(units_dir / merged_name, bytes(full))
            files.append({"file": f"units/{merged_name}", "offset": 0, "size": len(full),
                          "sha256": hashlib.sha256(full).hexdigest(), "md5": hashlib.md5(full).hexdigest()})
        out.append({"index": index, "serial": serial, "placeholder": placeholder, "files": files,
                    "certificate": {"serial": info["serial"], "issuer": info["issuer"], "subject": info["subject"],
                                    "sha256": info["sha256"], "spki_sha256": info["spki_sha256"],
                                    "not_before": info["not_before"], "not_after": info["not_after"]},
                    "escrow": sealed})
    return out


# -- the batch ----------------------------------------------------------------------------------

def _check_recipe(recipe: Recipe) -> None:
    pki = recipe.pki
    if pki is None or not any(s.cert == UNIT for s in pki.slots):
        raise InputError("a batch needs a unit identity: a [[pki.slot]] with cert = \"unit\"", file=recipe.path,
                         field="pki.slot")
    if recipe.profile.legacy or recipe.profile.nonos is not None:
        raise InputError(f"batches are built for mfg_nvs modules; {recipe.profile.name} is not one",
                         file=recipe.path, field="module")
    if recipe.serial.scheme == "mac":
        raise InputError("a batch reserves serials before the units are known: serial.scheme \"mac\" cannot",
                         file=recipe.path, field="serial.scheme")
    a = recipe.identity_values(serial="X", mac=placeholder_mac(1, 1))
    b = recipe.identity_values(serial="X", mac=placeholder_mac(2, 2))
    t = pki.identity
    if t.subject_name(a) != t.subject_name(b) or t.san(a) != t.san(b):
        raise InputError("the identity template uses the MAC ({mac}/{mac_hex}), which a pre-programmed unit "
                         "does not have yet", file=recipe.path, field="pki.identity")


def check_batch(recipe: Recipe, count: int, out_dir: str | Path) -> None:
    """Refuse (InputError) a recipe, count or output folder a batch cannot be made with."""
    _check_recipe(recipe)
    if not 1 <= count <= 0xFFFFFF:
        raise InputError(f"must be 1..{0xFFFFFF}, not {count}", field="--count")
    out = Path(out_dir)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise InputError("exists and is not an empty folder (a batch goes into a new folder)", file=out,
                         field="--out")


def _common_files(recipe: Recipe, firmware: Any, at_customize: bytes) -> list[tuple[str, int, bytes]]:
    profile = recipe.profile
    files = [(r.name, r.offset, r.data) for r in firmware.regions]
    files.append(("at_customize.bin", profile.at_customize_offset, at_customize))
    return sorted(files, key=lambda f: f[1])


def make_batch(recipe: Recipe, count: int, out_dir: str | Path, *, ca: Any, ledger: Ledger,
               firmware: Any, workers: int | None = None, merged: bool = False) -> BatchResult:
    """Reserve ``count`` identities and write their images and manifest into ``out_dir`` (new).

    ``firmware``: the recipe's :class:`~atfab.station.firmware_images.FirmwareImages`. Raises InputError
    for bad input (nothing reserved, nothing written), LedgerError for ledger trouble.
    """
    started = time.perf_counter()
    timings: dict[str, float] = {}
    check_batch(recipe, count, out_dir)
    out = Path(out_dir)
    workers = max(1, min(workers or os.cpu_count() or 1, count))
    assert recipe.pki is not None
    plan = plan_slots(list(recipe.pki.slots), firmware=recipe.profile.firmware, factory_ca=ca.chain_certs(),
                      source=str(recipe.path))
    slots = [slot_name(s) for s in recipe.pki.slots if s.cert == UNIT]
    ble_rows: list[str] = []
    if recipe.gatt is not None:
        from ..image.gatt import cfg_strings  # noqa: PLC0415 - only recipes with a GATT table

        ble_rows = cfg_strings(recipe.gatt.rows())

    # reserve: a batch id whose placeholders are all new, then every serial in one transaction
    for _ in range(64):
        batch_id = secrets.randbelow(0xFFFF) + 1
        if ledger.unit(placeholder_mac(batch_id, 0)) is None:
            break
    else:
        raise LedgerError("no free batch id found")
    placeholders = [placeholder_mac(batch_id, i) for i in range(count)]
    escrow = open_escrow(recipe, station_id=f"batch-{batch_id:04x}", started=utc_now())
    t0 = time.perf_counter()
    identities: list[UnitIdentity] = ledger.reserve_batch(placeholders, recipe)
    timings["reserve"] = time.perf_counter() - t0

    out.parent.mkdir(parents=True, exist_ok=True)
    stage = out.parent / f".{out.name}.batch-{batch_id:04x}-{os.getpid()}.tmp"
    try:
        (stage / "units").mkdir(parents=True)
        (stage / "common").mkdir()
        os.chmod(stage / "units", 0o700)
        t0 = time.perf_counter()
        at_customize = _at_customize(recipe)
        common = _common_files(recipe, firmware, at_customize)
        for name, _off, data in common:
            atomic_write(stage / "common" / name, data)
        template = merge_factory_image(recipe.profile, [(off, data) for _n, off, data in common]) if merged else None
        _job.clear()
        _job.update(recipe=recipe, ca=ca, plan=plan, issuer=ca.cert.subject.rfc4514_string(), units_dir=stage / "units", ble_rows=ble_rows,
                    merged_template=template, escrow=escrow, slots=slots, batch=f"{batch_id:04x}")
        work = [(i, ident.serial, ident.mac) for i, ident in enumerate(identities)]
        size = max(1, min(256, count // (workers * 8) or 1))
        chunks = [work[i:i + size] for i in range(0, count, size)]
        if workers == 1:
            built = [u for c in chunks for u in _build_chunk(c)]
        else:
            ctx = mp.get_context("fork")
            with ctx.Pool(workers) as pool:
                built = [u for part in pool.imap(_build_chunk, chunks) for u in part]
        _job.clear()
        timings["build"] = time.perf_counter() - t0

        t0 = time.perf_counter()
        ledger.record_batch_certificates([
            {"mac": u["placeholder"], "slots": slots, "issuer": u["certificate"]["issuer"],
             "cert_serial": u["certificate"]["serial"], "fingerprint": u["certificate"]["sha256"],
             "key_fingerprint": u["certificate"]["spki_sha256"], "not_before": u["certificate"]["not_before"],
             "not_after": u["certificate"]["not_after"]} for u in built])
        timings["record"] = time.perf_counter() - t0
        if escrow is not None:      # every key kept, encrypted, before the images leave the staging folder
            t0 = time.perf_counter()
            escrow.append([u["escrow"] for u in built])
            timings["escrow"] = time.perf_counter() - t0
        manifest = _manifest(recipe, batch_id, common, built, slots, merged)
        atomic_write(stage / "manifest.json", json.dumps(manifest, separators=(",", ":")) + "\n")
        atomic_write(stage / "manifest.csv", _manifest_csv(manifest))
        if out.exists():
            out.rmdir()
        os.rename(stage, out)
    except BaseException:
        _job.clear()
        shutil.rmtree(stage, ignore_errors=True)
        try:
            ledger.release_batch(placeholders)
        except LedgerError:
            pass                                    # the original error says more; the placeholders stay unbound
        raise
    return BatchResult(out, batch_id, count, identities[0].serial, identities[-1].serial,
                       time.perf_counter() - started, workers, out / "manifest.json", out / "manifest.csv",
                       merged, timings, escrow.path if escrow is not None else None)


def _at_customize(recipe: Recipe) -> bytes:
    """at_customize.bin, the same for every unit (as :func:`build_unit_images` makes it)."""
    return encode(recipe.profile.at_customize, md5=True)


def _manifest(recipe: Recipe, batch_id: int, common: list[tuple[str, int, bytes]], built: list[dict[str, Any]],
              slots: list[str], merged: bool) -> dict[str, Any]:
    p = recipe.profile
    return {
        "schema": MANIFEST_SCHEMA, "batch_id": f"{batch_id:04x}", "created": utc_now(),
        "recipe": {"name": recipe.name, "hash": recipe.hash, "path": str(recipe.path)},
        "module": p.name, "chip": p.chip, "flash": {"mode": p.flash_mode, "freq": p.flash_freq,
                                                     "size": p.flash_size_str},
        "slots": slots, "merged": merged,
        "common": [{"file": f"common/{n}", "offset": off, "size": len(d), "sha256": hashlib.sha256(d).hexdigest(),
                    "md5": hashlib.md5(d).hexdigest()} for n, off, d in common],
        "units": [{k: u[k] for k in ("serial", "placeholder", "files", "certificate")} for u in built],
    }


def _manifest_csv(manifest: dict[str, Any]) -> str:
    """One row per file to program per unit: the common files, then the unit's own."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["serial", "file", "offset", "size", "sha256", "cert_sha256"])
    for u in manifest["units"]:
        own = [f for f in u["files"] if f["offset"] != 0 or not manifest["merged"]]
        for f in (manifest["common"] + own):
            w.writerow([u["serial"], f["file"], f"0x{f['offset']:x}", f["size"], f["sha256"], u["certificate"]["sha256"]])
    return buf.getvalue()


# -- first contact --------------------------------------------------------------------------------

@dataclass(frozen=True)
class BatchIndex:
    """A batch manifest read back, to recognise its units on first contact (by mfg_nvs MD5)."""

    folder: Path
    batch_id: str
    recipe: str
    module: str
    offset: int                                   # mfg_nvs flash offset
    size: int
    units: dict[str, dict[str, Any]]              # mfg_nvs MD5 -> unit entry of the manifest
    slots: tuple[str, ...] = ()                   # the unit identity slots the certificate is in

    @classmethod
    def load(cls, path: str | Path) -> "BatchIndex":
        """Read ``manifest.json`` (or the batch folder holding it)."""
        path = Path(path)
        if path.is_dir():
            path = path / "manifest.json"
        data = load_json(path, "batch manifest")
        try:
            if data.get("schema") != MANIFEST_SCHEMA:
                raise InputError(f"not an {MANIFEST_SCHEMA} file", file=path, field="schema")
            units, offset, size = {}, None, None
            for u in data["units"]:
                for f in u["files"]:
                    if f["file"].endswith(".mfg_nvs.bin"):
                        units[str(f["md5"])] = u
                        offset, size = int(f["offset"]), int(f["size"])
            if offset is None or size is None:
                raise InputError("the manifest lists no unit", file=path, field="units")
            return cls(path.parent, str(data["batch_id"]), str(data["recipe"]["name"]), str(data["module"]),
                       offset, size, units, tuple(data.get("slots", ())))
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise InputError(f"not a batch manifest ({type(exc).__name__}: {exc})", file=path) from None

    def mfg_nvs(self, entry: dict[str, Any]) -> bytes:
        """The unit's mfg_nvs image from the batch folder, checked against the manifest's SHA-256."""
        (f,) = [f for f in entry["files"] if f["file"].endswith(".mfg_nvs.bin")]
        path = self.folder / f["file"]
        data = path.read_bytes()
        if hashlib.sha256(data).hexdigest() != f["sha256"]:
            raise InputError("differs from the batch manifest (sha256)", file=path)
        return data


def _cert_item(index: BatchIndex) -> tuple[str, str, dict[str, dict[str, Any]]]:
    """Where the batch's images keep the unit certificate (namespace, key), and units by certificate
    fingerprint; found in the first unit's image by its manifest fingerprint."""
    by_cert = {u["certificate"]["sha256"]: u for u in index.units.values()}
    first = next(iter(index.units.values()))
    for e in read_nvs(index.mfg_nvs(first)).entries:
        if isinstance(e.value, bytes) and b"CERTIFICATE" in e.value:
            cert = leaf_certificate(e.value)
            if cert is not None and cert_sha256(cert) == first["certificate"]["sha256"]:
                return e.namespace, e.key, by_cert
    raise InputError("the batch's images hold no unit certificate", file=index.folder / "manifest.json")


def verify_preprogrammed(client: AtClient, index: BatchIndex, ledger: Ledger) -> tuple[VerifyResult, UnitIdentity]:
    """First contact over AT (``atfab verify --batch``): find which batch unit the module is by its
    certificate, bind its reserved identity to the module's MAC, verify it against its images.

    InputError when the module holds no certificate of the batch (it is not one of its units).
    """
    mac = read_base_mac(client)
    ns, key, by_cert = _cert_item(index)
    try:
        held = client.sysmfg_read(ns, key)
    except AtError as exc:
        raise InputError(f"unit {mac} has no {ns}/{key} ({exc}): not one of batch {index.batch_id}'s units",
                         field="--batch") from None
    cert = leaf_certificate(held) if isinstance(held, bytes) else None
    entry = by_cert.get(cert_sha256(cert)) if cert is not None else None
    if entry is None:
        raise InputError(f"unit {mac} holds a certificate that is not in batch {index.batch_id}", field="--batch")
    ident = bind_preprogrammed(ledger, entry["placeholder"], mac)
    if ident.serial != entry["serial"]:
        raise UnitFailed(f"unit {mac} holds pre-programmed serial {entry['serial']} but the ledger has serial "
                         f"{ident.serial} for it")
    common = {Path(f["file"]).name: f for f in json.loads((index.folder / "manifest.json").read_text())["common"]}
    at_customize = (index.folder / common["at_customize.bin"]["file"]).read_bytes()
    built = BuiltUnit(index.folder, {"module": index.module}, decode(at_customize), read_nvs(index.mfg_nvs(entry)))
    return verify_unit(client, built, mac=mac, firmware=built.firmware()), ident


def bind_preprogrammed(ledger: Ledger, placeholder: str, mac: str) -> UnitIdentity:
    """Give a pre-programmed unit (identity reserved under ``placeholder``) its MAC; idempotent
    when the unit was bound before."""
    unit = ledger.unit(mac)
    reserved = ledger.unit(placeholder)
    if reserved is None and unit is not None:
        return UnitIdentity(serial=unit.serial, mac=unit.mac, new=False, recipe=unit.recipe)
    return ledger.bind_unit(placeholder, mac)


__all__ = ["MANIFEST_SCHEMA", "BatchResult", "check_batch", "BatchIndex", "make_batch", "placeholder_mac", "is_placeholder",
           "bind_preprogrammed", "verify_preprogrammed"]
