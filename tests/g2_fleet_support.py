"""A G2 fleet (ESP-AT v3.0.0.0 on ESP32, per-item PKI partitions) rotated with faults injected into its
AT+SYSFLASH rewrites, then rotated again: shared by tests/test_rotate_g2.py and bench/bench_rotate_g2.py.

Between the two runs a ``--dry-run`` says what the second would do (and must change nothing).
Each virtual module is provisioned with the partitions atfab builds for the profile (firmware,
at_customize, factory_param, client_cert / client_key / client_ca), gets one fault of :data:`FAULTS`
and is rotated through the real AT port (``socket://``). What a unit holds is read straight from
its flash with the layout of reference §10.2 (:func:`unit_holds`: this file's own decoder, not
atfab's), and compared with the ledger's journal.

Operations of one new-key rotation of ``client.0`` (numbered as the sim's ``*_flash_ops`` faults
count them): 1 erase the key staging sector, 2 write the staged key image, 3 erase the key
partition's head, 4 write the key image, 5 erase the staging sector, 6 erase the certificate
partition's head, 7 write the certificate image.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

from atfab.core.mac import normalize_mac
from atfab.image.build import synthetic_firmware_files
from atfab.image.legacy_build import build_legacy_images
from atfab.image.mfg_nvs import UnitContent
from atfab.pki.ca import create_ca, load_ca
from atfab.pki.issue import issue_unit
from atfab.pki.keys import spki_sha256
from atfab.pki.slots import plan_slots
from atfab.rotation.inventory import targets_from_ports
from atfab.sim.server import ModulePool
from atfab.station.fleet import RotateOptions, rotate_fleet
from atfab.station.ledger import Ledger
from atfab.station.recipe import load_recipe

PASSPHRASE = b"g2 fleet passphrase, not a secret"
RECIPE = """
name = "rot-g2"
module = "{module}"
[firmware]
synthetic = "{release}"
[pki]
ca = "ca"
[pki.identity]
subject = {{ CN = "{{serial}}", O = "atfab g2" }}
days = 30
[[pki.slot]]
set = "client"
cert = "unit"
key = "unit"
ca = ["factory_ca"]
[serial]
prefix = "G2-"
[report]
dir = "reports"
"""

#: (label, fault plan fields) per unit of the fleet; see the module docstring for the op numbers.
FAULTS: list[tuple[str, dict[str, Any]]] = [
    ("no fault", {}),
    ("link drop mid staged-key write", {"drop_in_flash_write": 1}),
    ("link drop mid key write", {"drop_in_flash_write": 2}),
    ("link drop mid cert write", {"drop_in_flash_write": 3}),
    ("power loss after staging erase", {"power_loss_after_flash_ops": 1}),
    ("power loss between key erase and write", {"power_loss_after_flash_ops": 3}),
    ("power loss after key write", {"power_loss_after_flash_ops": 4}),
    ("link drop between key and cert", {"drop_after_flash_ops": 5}),
    ("power loss between cert erase and write", {"power_loss_after_flash_ops": 6}),
    ("cert write answers ERROR", {"error_after_writes": 2}),
]


# -------------------------------------------------------------- what a unit holds, from its flash
def pki_items(data: bytes) -> list[bytes] | None:
    """Item contents of a §10.2 image (F1F1 | count u16 | total u32 | type,id,len u16,data,pad), or None."""
    if data[:2] != b"\xf1\xf1":
        return None
    count, total = struct.unpack_from("<HI", data, 2)
    pos, end, out = 8, 8 + total, []
    while pos < end and end <= len(data):
        length = struct.unpack_from("<H", data, pos + 2)[0]
        out.append(data[pos + 4:pos + 4 + length])
        pos += 4 + length + (-length % 4)
    return out if len(out) == count and pos == end else None


def cert_fingerprints(data: bytes) -> tuple[str, str] | None:
    try:
        cert = x509.load_pem_x509_certificates(data)[0]
        return cert.fingerprint(hashes.SHA256()).hex(), spki_sha256(cert)
    except Exception:  # noqa: BLE001 - anything unreadable is "no certificate"
        return None


def key_fingerprint(data: bytes) -> str | None:
    try:
        return spki_sha256(serialization.load_pem_private_key(data, None))
    except Exception:  # noqa: BLE001
        return None


@dataclass(frozen=True)
class Holds:
    """A unit's client.0 as its flash has it: certificate fingerprint / its SPKI, key SPKI (None: unreadable)."""

    cert_fp: str | None
    cert_spki: str | None
    key_fp: str | None
    staged: bool                       # the key partition's staging sector is not blank

    @property
    def matched(self) -> bool:
        return self.cert_spki is not None and self.cert_spki == self.key_fp


def unit_holds(profile: Any, module: Any) -> Holds:
    def head(name: str) -> tuple[bytes, int]:
        part = profile.at_customize.find(name)
        return module.flash.read(part.offset, part.size), part.size

    cert_img, _ = head("client_cert")
    key_img, key_size = head("client_key")
    certs, keys = pki_items(cert_img), pki_items(key_img)
    cert = cert_fingerprints(certs[0]) if certs else None
    key = key_fingerprint(keys[0]) if keys else None
    staged = key_img[key_size - 4096:] != b"\xff" * 4096
    return Holds(cert[0] if cert else None, cert[1] if cert else None, key, staged)


# -------------------------------------------------------------------------------------- the fleet
def flash_legacy_unit(module: Any, profile: Any, content: UnitContent) -> None:
    """Write what a legacy line writes (synthetic firmware of the profile's release, at_customize, the
    per-item partitions of ``content``) straight into the virtual module's flash, then power it on."""
    images = build_legacy_images(profile, content)
    module.flash.erase_all()
    for offset, data in synthetic_firmware_files(profile, version=profile.firmware.release).values():
        module.flash.program(offset, data)
    for offset, _name, data in images.regions(profile):
        module.flash.program(offset, data)
    module.power_cycle()


class G2Fleet:
    """Recipe, CA, ledger and ``count`` provisioned G2 virtual modules under ``tmp``."""

    def __init__(self, tmp: Path, count: int, *, baud: int | None = None, module: str = "esp32-at-v2",
                 release: str = "v3.0.0.0") -> None:
        self.tmp = tmp
        create_ca(tmp / "ca", common_name="G2 Rotation CA", passphrase=PASSPHRASE)
        (tmp / "r.toml").write_text(RECIPE.format(module=module, release=release))
        self.recipe = load_recipe(tmp / "r.toml", workdir=tmp)
        self.ca = load_ca(tmp / "ca", PASSPHRASE)
        self.ledger = Ledger(self.recipe.ledger)
        self.profile = self.recipe.profile
        self.plan = plan_slots(list(self.recipe.pki.slots), firmware=self.profile.firmware,
                               factory_ca=self.ca.chain_certs())
        self.keys: list[Any] = []
        self.pool = ModulePool(count, chip=self.profile.chip, flash_size=self.profile.flash_size,
                               firmware=self.profile.firmware, seed="g2rot", baud=baud).start()
        for m in self.pool:
            self.provision(m)

    def provision(self, module: Any) -> None:
        """What a G2 line writes: firmware, at_customize, factory_param and the PKI partitions."""
        r, mac = self.recipe, normalize_mac(module.mac)
        unit = self.ledger.reserve_identity(mac, r)
        ident = issue_unit(self.ca, r.pki.identity, r.identity_values(serial=unit.serial, mac=mac))
        self.keys.append(ident.private_key_object_for_escrow())
        self.ledger.record_certificate(mac, "client.0", issuer=ident.cert.issuer.rfc4514_string(),
                                       cert_serial=ident.serial, fingerprint=ident.fingerprint_sha256,
                                       key_fingerprint=spki_sha256(ident.cert))
        content = UnitContent(factory_param=dict(r.factory_param), pki=self.plan.pki_for(ident), ble_rows=[])
        flash_legacy_unit(module, self.profile, content)

    def rotate(self, **options: Any) -> Any:
        return rotate_fleet(self.recipe, targets_from_ports([m.at_url for m in self.pool]), ca=self.ca,
                            ledger=self.ledger, options=RotateOptions(**options))

    def holds(self) -> list[Holds]:
        return [unit_holds(self.profile, m) for m in self.pool]

    def close(self) -> None:
        self.pool.stop()
        self.ledger.close()


def describe(h: Holds, journal_pairs: dict[str, str]) -> str:
    """What a unit holds in words: ``old``/``new`` pair (by the journal), a mix, or what is missing."""
    cert = journal_pairs.get(h.cert_fp or "", "?") if h.cert_fp else "none"
    key = journal_pairs.get(f"key:{h.key_fp}", "?") if h.key_fp else "none"
    what = f"{cert} pair" if h.matched and cert == key else f"cert {cert} + key {key}"
    return what + (" (+staged key)" if h.staged else "")


def run_campaign(tmp: Path, *, baud: int | None = None) -> tuple[G2Fleet, list[dict[str, Any]]]:
    """Provision len(FAULTS) units, arm each one's fault, rotate, then rotate again; one row per unit."""
    fleet = G2Fleet(tmp, len(FAULTS), baud=baud)
    before = fleet.holds()
    for m, (_label, plan) in zip(fleet.pool, FAULTS):
        for name, value in plan.items():
            setattr(m.faults, name, value)
    first = fleet.rotate()
    mid = fleet.holds()
    first_states = [[r.state for r in fleet.ledger.rotations_for(normalize_mac(m.mac))] for m in fleet.pool]
    dry = fleet.rotate(dry_run=True)
    dry_holds = fleet.holds()
    second = fleet.rotate()
    after = fleet.holds()
    rows = []
    for i, m in enumerate(fleet.pool):
        mac = normalize_mac(m.mac)
        rots = fleet.ledger.rotations_for(mac)
        pairs = {before[i].cert_fp or "": "old", f"key:{before[i].key_fp}": "old"}
        if rots:
            pairs.update({rots[0].new_cert_fp: "new", f"key:{rots[0].new_key_fp}": "new"})
        for later in rots[1:]:
            pairs.update({later.new_cert_fp: "newer", f"key:{later.new_key_fp}": "newer"})
        current = fleet.ledger.certificates_for(mac, "client.0")[-1]
        rows.append({
            "unit": i, "fault": FAULTS[i][0], "mac": mac,
            "first": first.modules[i].outcome, "first_state": first_states[i][0] if first_states[i] else None,
            "mid": describe(mid[i], pairs),
            "dry": dry.modules[i].outcome, "dry_said": [s.message for s in dry.modules[i].slots],
            "dry_changed_nothing": dry_holds[i] == mid[i],
            "second": second.modules[i].outcome,
            "second_action": ",".join(f"{s.action}:{s.unit_holds or s.state}" for s in second.modules[i].slots),
            "repaired": [n for s in second.modules[i].slots for n in s.repaired],
            "final": describe(after[i], pairs),
            "final_matched": after[i].matched, "final_staged": after[i].staged,
            "journal_states": [r.state for r in rots],
            "pending": len(fleet.ledger.pending_rotations(mac)),
            "ledger_agrees": (current.fingerprint == after[i].cert_fp and current.key_fingerprint == after[i].key_fp),
            "first_line": first.modules[i].line(), "second_line": second.modules[i].line(),
        })
    return fleet, rows


__all__ = ["FAULTS", "G2Fleet", "flash_legacy_unit", "pki_items", "cert_fingerprints", "key_fingerprint", "Holds", "unit_holds", "run_campaign", "describe"]
