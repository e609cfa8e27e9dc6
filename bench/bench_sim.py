"""Flashing a virtual module through the real esptool: wall time against the wire-time bound.

For a 4 MB compressible and a 4 MB incompressible image, one esptool session (connect at
115200, stub, change to --baud, write, verify MD5) against a module paced like a UART:

    wire bound = sum over baud segments of (host->device bytes * 10 bits / baud)

Also measured, unpaced: the same writes (what the host CPU costs), the share of that cost that is
esptool formatting hex-dump trace strings it then throws away (tracing off), and esptool's
read speed over ``socket://`` (pyserial reports 0/1 byte waiting, so esptool reads byte by byte).

Usage: /tmp/venv/bin/python bench/bench_sim.py [--baud 921600] [--size-mb 4] [--skip-paced]
"""

from __future__ import annotations

import argparse
import random
import time

import esptool.loader
from esptool import cmds
from esptool.logger import log

from atfab.sim.module import VirtualModule
from atfab.link.transport import port_for_url

MB = 1024 * 1024


def images(size: int) -> dict[str, bytes]:
    rnd = random.Random(7)
    random_img = bytearray(rnd.randbytes(size))
    random_img[0] = 0
    comp = bytearray(b"\xff" * size)
    comp[:128 * 1024] = rnd.randbytes(128 * 1024)
    comp[0] = 0
    return {"compressible": bytes(comp), "incompressible": bytes(random_img)}


def flash_once(module: VirtualModule, image: bytes, baud: int | None) -> dict:
    t0 = time.monotonic()
    esp = cmds.detect_chip(module.flash_url)
    try:
        esp = cmds.run_stub(esp)
        if baud:
            esp.change_baud(baud)
        cmds.attach_flash(esp)
        t1 = time.monotonic()
        cmds.write_flash(esp, [(0, image)], no_progress=True)
        t2 = time.monotonic()
    finally:
        esp._port.close()
    deadline = time.monotonic() + 10
    while module.state != "at" and time.monotonic() < deadline:
        time.sleep(0.01)
    stats = module.last_session
    assert stats is not None and module.flash.read(0, len(image)) == image
    return {"session": t2 - t0, "write": t2 - t1, "stats": stats}


def wire_bound(stats, initial_baud: int) -> float:
    """Seconds the host->device bytes need on the wire, segment by segment."""
    total, last_rx, baud = 0.0, 0, initial_baud
    for rx_at, new_baud in stats.baud_changes:
        total += (rx_at - last_rx) * 10 / baud
        last_rx, baud = rx_at, new_baud
    return total + (stats.rx_bytes - last_rx) * 10 / baud


def trace_format_cost(mb: int) -> float:
    """CPU seconds esptool spends formatting trace strings for ``mb`` MB of FLASH_DATA (tracing off)."""
    block = random.Random(1).randbytes(0x4000)
    packet = b"\x00" * 24 + block
    t = time.process_time()
    for _ in range(mb * MB // len(block)):
        str(esptool.loader.HexFormatter(block + b"\x00" * 16))   # command(): "--- Cmd ... data {}"
        str(esptool.loader.HexFormatter(packet))                 # write(): "Write N bytes: {}"
    return time.process_time() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--baud", type=int, default=921600)
    ap.add_argument("--size-mb", type=int, default=4)
    ap.add_argument("--skip-paced", action="store_true", help="only the unpaced (CPU) figures")
    args = ap.parse_args()
    log.set_verbosity("silent")
    imgs = images(args.size_mb * MB)

    print(f"esptool {esptool.__version__}, {args.size_mb} MB images, stub flasher")
    if not args.skip_paced:
        print(f"\npaced link: sync at 115200, then {args.baud} baud")
        print(f"{'image':<16}{'host->dev B':>13}{'wire bound s':>14}{'write s':>9}{'session s':>11}{'ratio':>7}")
        for name, img in imgs.items():
            with VirtualModule(baud=115200, seed="bench") as m:
                r = flash_once(m, img, args.baud)
            bound = wire_bound(r["stats"], 115200)
            naive = r["stats"].rx_bytes * 10 / args.baud
            print(f"{name:<16}{r['stats'].rx_bytes:>13,}{bound:>14.2f}{r['write']:>9.2f}{r['session']:>11.2f}"
                  f"{r['session'] / bound:>7.2f}   (all bytes at {args.baud}: {naive:.2f} s)")

    print("\nunpaced link (host CPU and simulator cost only)")
    unpaced = {}
    for name, img in imgs.items():
        with VirtualModule(seed="bench") as m:
            unpaced[name] = flash_once(m, img, None)
            print(f"{name:<16}{unpaced[name]['stats'].rx_bytes:>13,} B  write {unpaced[name]['write']:.2f} s")

    cost = trace_format_cost(1)
    print(f"\nesptool hex-dump trace formatting with tracing off: {cost:.2f} s CPU per MB of FLASH_DATA")
    original = esptool.loader.HexFormatter.__str__
    esptool.loader.HexFormatter.__str__ = lambda self: ""     # measurement only, restored below
    try:
        with VirtualModule(seed="bench") as m:
            quiet = flash_once(m, imgs["incompressible"], None)
    finally:
        esptool.loader.HexFormatter.__str__ = original
    print(f"incompressible write unpaced: {unpaced['incompressible']['write']:.2f} s with the formatting, "
          f"{quiet['write']:.2f} s without")

    n = 1 * MB
    for label, opener in (("pyserial socket://", None), ("atfab SocketPort", port_for_url)):
        with VirtualModule(seed="bench") as m:
            port = None
            if opener is not None:
                port = opener(m.flash_url, timeout=5)
                port.open()
            esp = cmds.detect_chip(port if port is not None else m.flash_url)
            try:
                esp = cmds.run_stub(esp)
                cmds.attach_flash(esp)
                t = time.monotonic()
                cmds.read_flash(esp, 0, n, no_progress=True)
                dt = time.monotonic() - t
            finally:
                esp._port.close()
        print(f"esptool read-flash unpaced via {label}: {n / dt / 1024:.0f} KB/s "
              f"({dt / n * 1e6:.2f} us per byte; 4 MB in {4 * MB * dt / n:.1f} s)")

if __name__ == "__main__":
    main()
