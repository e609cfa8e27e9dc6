"""Flasher over ``rfc2217://`` (pyserial's PortManager bridge, tests/rfc2217_bridge.py) vs ``socket://``.

One 1 MB incompressible region written by :class:`atfab.link.flasher.Flasher` (stub, --baud) to an
unpaced virtual module, then the same set again (MD5 check only, nothing written). Unpaced: the
figures are host CPU plus protocol round trips, not UART wire time.

Usage: /tmp/venv/bin/python bench/bench_rfc2217.py [--size-mb 1] [--baud 460800]
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from atfab.image.flash_set import FlashSet, Region  # noqa: E402
from atfab.link.flasher import Flasher  # noqa: E402
from atfab.sim.module import VirtualModule  # noqa: E402
from tests.rfc2217_bridge import Rfc2217Bridge  # noqa: E402

MB = 1024 * 1024


def run(url_of, size: int, baud: int) -> tuple[float, float, int]:
    image = bytearray(random.Random(3).randbytes(size))
    image[0] = 0
    fs = FlashSet(regions=(Region(0x10000, "random.bin", bytes(image)),), chip="esp32c2")
    with VirtualModule(seed="bench") as module:
        url, stop = url_of(module)
        try:
            t = time.monotonic()
            first = Flasher(url, baud=baud).flash(fs)
            t1 = time.monotonic()
            again = Flasher(url, baud=baud).flash(fs)
            t2 = time.monotonic()
        finally:
            stop()
        assert module.flash.read(0x10000, size) == bytes(image) and again.bytes_written == 0
    return t1 - t, t2 - t1, first.bytes_written


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size-mb", type=int, default=1)
    ap.add_argument("--baud", type=int, default=460800)
    args = ap.parse_args()
    size = args.size_mb * MB

    def direct(module: VirtualModule):
        return module.flash_url, lambda: None

    def bridged(module: VirtualModule):
        bridge = Rfc2217Bridge(module.flash_url).start()
        return bridge.url, bridge.stop

    print(f"{args.size_mb} MB incompressible, stub, baud {args.baud}, unpaced virtual module")
    print(f"{'transport':<12}{'write s':>9}{'MB/s':>7}{'md5-skip s':>12}")
    for name, url_of in (("socket://", direct), ("rfc2217://", bridged)):
        write, skip, written = run(url_of, size, args.baud)
        print(f"{name:<12}{write:>9.2f}{written / MB / write:>7.2f}{skip:>12.2f}")


if __name__ == "__main__":
    main()
