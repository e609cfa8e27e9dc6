"""AT client throughput against a virtual module: paced at a baud (like a real UART) and unpaced.

For each case prints seconds and the ratio to the wire-time bound (bytes both ways x 10 bits /
baud) where the module is paced, so client overhead shows as a ratio above 1.

    /tmp/venv/bin/python bench/bench_at_client.py [--baud 115200] [--kib 64] [--runs 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from atfab.link.at.client import AtClient  # noqa: E402
from atfab.sim.module import VirtualModule  # noqa: E402
from atfab.link.transport import open_port  # noqa: E402
from tests.sim_at_support import build_flash, c2_profile  # noqa: E402


class CountingPort:
    """Wraps a pyserial port and counts the bytes in both directions."""

    def __init__(self, port) -> None:
        self.port = port
        self.rx = 0
        self.tx = 0

    def read(self, n: int = 1) -> bytes:
        data = self.port.read(n)
        self.rx += len(data)
        return data

    def write(self, data: bytes) -> int:
        self.tx += len(data)
        return self.port.write(data)

    def __getattr__(self, name):
        return getattr(self.port, name)

    def __setattr__(self, name, value):
        if name in ("port", "rx", "tx"):
            object.__setattr__(self, name, value)
        else:
            setattr(self.port, name, value)


def run_case(client: AtClient, cp: CountingPort, name: str, fn, baud: int | None, runs: int) -> None:
    times, ratios = [], []
    for _ in range(runs):
        cp.rx = cp.tx = 0
        t0 = time.perf_counter()
        fn()
        dt = time.perf_counter() - t0
        times.append(dt)
        if baud:
            ratios.append(dt / ((cp.rx + cp.tx) * 10 / baud))
    med = statistics.median(times)
    ratio = f"  x{statistics.median(ratios):.2f} of wire time" if ratios else ""
    print(f"  {name:<34} {med * 1000:9.1f} ms  ({cp.rx + cp.tx} bytes){ratio}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--baud", type=int, default=115200)
    ap.add_argument("--kib", type=int, default=64)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    profile = c2_profile()
    blob = bytes(range(256)) * 8
    for baud in (args.baud, None):
        module = VirtualModule(flash=build_flash(profile), firmware=replace(profile.firmware), baud=baud).start()
        try:
            cp = CountingPort(open_port(module.at_url, baud or 115200, env={}))
            client = AtClient(cp, firmware=module.firmware, timeout=5.0)
            client.echo_off()
            print(f"module {'paced at %d baud' % baud if baud else 'unpaced'}:")
            run_case(client, cp, "AT", client.at, baud, args.runs)
            run_case(client, cp, "AT+GMR", client.gmr, baud, args.runs)
            run_case(client, cp, "AT+CMD? (parse all)", client.cmd_list, baud, args.runs)
            run_case(client, cp, f"sysflash_read {args.kib} KiB", lambda: client.sysflash_read(
                "mfg_nvs", 0, args.kib * 1024), baud, args.runs)
            run_case(client, cp, "sysmfg_write 2 KiB blob", lambda: client.sysmfg_write(
                "client_cert", "client_cert.0", "blob", blob), baud, args.runs)
            run_case(client, cp, "sysmfg_read 2 KiB blob", lambda: client.sysmfg_read(
                "client_cert", "client_cert.0"), baud, args.runs)
            client.close()
        finally:
            module.stop()


if __name__ == "__main__":
    main()
