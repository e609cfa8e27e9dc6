"""Certificate rotation of one client cert+key pair on a virtual module paced at 115200 baud.

Prints seconds per module for ``rotate_fleet`` (identify, read the old pair, issue, journal,
write key + certificate, read both back, record, optional ``AT+RST``) next to the wire-time
bound of the bytes that crossed the AT port in both directions (counted on the host port,
10 bits per byte at the emulated baud), and their ratio (target <= 1.3x). Also a fleet of
``--fleet`` modules rotated in parallel (each port has its own UART, so the wall time should
stay near one module's).

    /tmp/venv/bin/python bench/bench_rotate.py [--runs 5] [--fleet 10] [--baud 115200] [--no-restart]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from atfab.image.build import build_unit_images, synthetic_firmware_files  # noqa: E402
from atfab.station.ledger import Ledger  # noqa: E402
from atfab.image.mfg_nvs import UnitContent  # noqa: E402
from atfab.pki.ca import create_ca  # noqa: E402
from atfab.pki.issue import issue_unit  # noqa: E402
from atfab.pki.slots import plan_slots  # noqa: E402
from atfab.station.recipe import load_recipe  # noqa: E402
from atfab.station.fleet import RotateOptions, rotate_fleet  # noqa: E402
from atfab.rotation.inventory import targets_from_ports  # noqa: E402
from atfab.core.mac import normalize_mac  # noqa: E402
from atfab.sim.server import ModulePool  # noqa: E402
from atfab.link.transport import open_port  # noqa: E402

PASSPHRASE = b"bench passphrase, not a secret"
RECIPE = """
name = "bench-rotate"
module = "esp32c2-4mb"
[firmware]
synthetic = "v4.1.0.0"
[pki]
ca = "ca"
[pki.identity]
subject = { CN = "{serial}", O = "atfab bench" }
[[pki.slot]]
set = "client"
cert = "unit"
key = "unit"
ca = ["factory_ca"]
"""


class CountingPort:
    """A pyserial port that counts the bytes read and written (what crossed the UART) and the
    seconds spent in ``close()`` (pyserial's socket:// close sleeps 0.3 s "for quick reconnects";
    a real UART closes at once, so that sleep is reported apart from the rotation)."""

    def __init__(self, port: Any) -> None:
        object.__setattr__(self, "_port", port)
        object.__setattr__(self, "rx", 0)
        object.__setattr__(self, "tx", 0)
        object.__setattr__(self, "close_s", 0.0)

    def close(self) -> None:
        t0 = time.perf_counter()
        self._port.close()
        object.__setattr__(self, "close_s", self.close_s + time.perf_counter() - t0)

    def read(self, n: int = 1) -> bytes:
        data = self._port.read(n)
        object.__setattr__(self, "rx", self.rx + len(data))
        return data

    def write(self, data: bytes) -> int | None:
        object.__setattr__(self, "tx", self.tx + len(data))
        return self._port.write(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._port, name)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self._port, name, value)


def provision(pool: ModulePool, recipe, ca, ledger: Ledger) -> None:
    profile = recipe.profile
    plan = plan_slots(list(recipe.pki.slots), firmware=profile.firmware, factory_ca=ca.chain_certs())
    firmware = synthetic_firmware_files(profile, version="v4.1.0.0")
    for m in pool:
        mac = normalize_mac(m.mac)
        serial = ledger.reserve_identity(mac, recipe).serial
        ident = issue_unit(ca, recipe.pki.identity, recipe.identity_values(serial=serial, mac=mac))
        content = UnitContent(factory_param=dict(recipe.factory_param), pki=plan.pki_for(ident))
        images = build_unit_images(profile, content)
        m.flash.erase_all()
        for offset, data in firmware.values():
            m.flash.program(offset, data)
        m.flash.program(profile.at_customize_offset, images.at_customize)
        m.flash.program(profile.mfg_nvs.offset, images.mfg_nvs.image)
        m.power_cycle()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5, help="rotations of one module (median reported)")
    ap.add_argument("--fleet", type=int, default=10, help="modules rotated in parallel (0: skip)")
    ap.add_argument("--baud", type=int, default=115200)
    ap.add_argument("--no-restart", action="store_true", help="skip AT+RST after the rotation")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory() as tmp_s:
        tmp = Path(tmp_s)
        ca = create_ca(tmp / "ca", common_name="Bench CA", passphrase=PASSPHRASE)
        (tmp / "r.toml").write_text(RECIPE)
        recipe = load_recipe(tmp / "r.toml", workdir=tmp)
        ledger = Ledger(tmp / "ledger.sqlite")
        ports: list[CountingPort] = []

        def opener(port: str, baud: int | None) -> CountingPort:
            p = CountingPort(open_port(port, args.baud))
            ports.append(p)
            return p

        opts = RotateOptions(opener=opener, restart=not args.no_restart, reports=False)
        with ModulePool(1, baud=args.baud, firmware=recipe.profile.firmware, seed="bench") as pool:
            provision(pool, recipe, ca, ledger)
            times, sizes, closes = [], [], []
            for _ in range(args.runs):
                ports.clear()
                t0 = time.perf_counter()
                fleet = rotate_fleet(recipe, targets_from_ports([pool[0].at_url]), ca=ca, ledger=ledger,
                                     options=opts)
                times.append(time.perf_counter() - t0)
                if fleet.exit_code != 0:
                    print(fleet.modules[0].line())
                    return 1
                sizes.append((ports[0].tx, ports[0].rx))
                closes.append(ports[0].close_s)
        tx, rx = sizes[len(sizes) // 2]
        wire = (tx + rx) * 10 / args.baud
        total = statistics.median(times)
        close = statistics.median(closes)
        t = statistics.median(a - b for a, b in zip(times, closes))
        print(f"one module, client.0 cert+key, {args.baud} baud, restart={'no' if args.no_restart else 'yes'}:")
        print(f"  bytes host->module {tx}, module->host {rx}, total {tx + rx}")
        print(f"  wire-time bound    {wire * 1000:8.1f} ms")
        print(f"  rotate_fleet       {total * 1000:8.1f} ms   (median of {', '.join(f'{x * 1000:.0f}' for x in times)})")
        print(f"    port close       {close * 1000:8.1f} ms   (pyserial socket:// close sleeps 0.3 s; not on a UART)")
        print(f"  rotation           {t * 1000:8.1f} ms   = rotate_fleet - port close")
        print(f"  ratio              {t / wire:8.2f}x  (target <= 1.3x; {total / wire:.2f}x with the socket close)")

        if args.fleet:
            with ModulePool(args.fleet, baud=args.baud, firmware=recipe.profile.firmware, seed="fleet") as pool:
                provision(pool, recipe, ca, ledger)
                ports.clear()
                t0 = time.perf_counter()
                fleet = rotate_fleet(recipe, targets_from_ports([m.at_url for m in pool]), ca=ca, ledger=ledger,
                                     options=opts)
                wall = time.perf_counter() - t0
            worst = max((p.tx + p.rx) for p in ports) * 10 / args.baud
            close = max(p.close_s for p in ports)
            print(f"fleet of {args.fleet} in parallel: {fleet.counts}, wall {wall * 1000:.0f} ms "
                  f"(port close {close * 1000:.0f} ms), {wall / args.fleet * 1000:.0f} ms per module; "
                  f"slowest port's wire bound {worst * 1000:.0f} ms -> {(wall - close) / worst:.2f}x "
                  f"({wall / worst:.2f}x with the socket close)")
        ledger.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
