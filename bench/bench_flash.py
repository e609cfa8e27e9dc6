"""Full provision vs re-provision of a unit whose firmware is unchanged, on the virtual module.

The module is paced like a real UART: 115200 baud until esptool's CHANGE_BAUDRATE, then the
flasher's baud (921600 by default). The firmware is the synthetic esp-at app grown to a
realistic size with firmware-like (partly compressible) filler, so the transfer is what a real
ESP-AT image costs.

* full provision: an erased module gets the whole flash-args set;
* re-provision: the same module gets the set of *another* unit (same firmware, different
  factory parameters): only mfg_nvs differs, every other region is skipped after its MD5.

* a station's unit already up to date: chip read + write as two esptool connections
  (``chip_info()`` then ``flash()``, the runner before ``Flasher.session()``) against one
  (``session()``), 3 rounds each. The difference is what a second connection costs: opening
  the port, esptool's ROM sync and chip/eFuse reads at 115200 baud. Closing costs nothing fixed:
  ``socket://`` ports are :class:`atfab.link.url_ports.SocketPort`, which closes at once (no pyserial
  0.3 s close sleep) and retries a refused reconnect every 0.05 s while the module restarts.

Wall time minus the wire-time bound is host and simulator work (esptool's round trips: sync,
stub upload, MD5 checks, the reset), not a fixed close delay.

Also measures esptool's trace formatting cost: the same 1 MB of random data flashed unpaced
with esptool's own ``command`` and with the flasher's trace-free bulk path.

    /tmp/venv/bin/python bench/bench_flash.py [--baud 921600] [--app-kb 1536]
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from atfab.link import flasher as flasher_mod  # noqa: E402
from atfab.image.build import BUILD_PATHS, build, write_synthetic_firmware  # noqa: E402
from atfab.image.flash_set import FlashSet, Region, load_flash_set  # noqa: E402
from atfab.link.flasher import Flasher  # noqa: E402
from atfab.image.profiles import load_profile  # noqa: E402
from atfab.sim.module import VirtualModule  # noqa: E402
from atfab.image.unit_content import Params  # noqa: E402

ROM_BAUD = 115200


def firmware_like(size: int, seed: int = 1) -> bytes:
    """Bytes that deflate roughly like an ESP-IDF app (~55-65 % of the original)."""
    rng = random.Random(seed)
    out = bytearray()
    while len(out) < size:
        if out and rng.random() < 0.45:               # repeated code/data fragments
            start = rng.randrange(max(1, len(out) - 4096), len(out))
            out += out[start:start + rng.randrange(8, 64)]
        else:                                          # fresh bytes, skewed like machine code
            out += bytes(rng.choices(range(256), weights=[8 if b < 16 else 1 for b in range(256)],
                                     k=rng.randrange(8, 64)))
    return bytes(out[:size])


def make_units(tmp: Path, app_kb: int) -> tuple[Path, Path]:
    profile = load_profile("esp32c2-4mb")
    fw = write_synthetic_firmware(profile, tmp / "fw")
    app = fw / BUILD_PATHS["app"]
    app.write_bytes(app.read_bytes() + firmware_like(app_kb * 1024 - app.stat().st_size))
    a, b = tmp / "unit_a", tmp / "unit_b"
    build(profile, a, firmware=fw, params=Params(factory_param={"max_tx_power": 78}))
    build(profile, b, firmware=fw, params=Params(factory_param={"max_tx_power": 70, "country_code": "US"}))
    return a, b


def wire_bound(stats) -> float:
    """Seconds the session's bytes need on the wire at the emulated baud (both directions)."""
    marks = [(0, ROM_BAUD)] + list(stats.baud_changes) + [(stats.rx_bytes, None)]
    host = sum((end - start) * 10 / baud for (start, baud), (end, _) in zip(marks, marks[1:]))
    final = marks[-2][1]
    return host + stats.tx_bytes * 10 / final   # device replies: small; counted at the final rate


def provision(module: VirtualModule, folder: Path, baud: int) -> tuple[float, object, object]:
    previous = module.last_session
    t0 = time.perf_counter()
    result = Flasher(module.flash_url, baud=baud).flash(load_flash_set(folder))
    wall = time.perf_counter() - t0
    deadline = time.monotonic() + 10      # the module files its session stats once it saw the port close
    while module.last_session is previous and time.monotonic() < deadline:
        time.sleep(0.01)
    return wall, result, module.last_session


def per_unit_connections(module: VirtualModule, folder: Path, baud: int, rounds: int = 3) -> list[str]:
    """A station's unit on an up-to-date module: chip read + write as two esptool connections
    (``chip_info()`` then ``flash()``) against one (``session()``)."""
    fs = load_flash_set(folder)

    def two() -> None:
        flasher = Flasher(module.flash_url, baud=baud)
        flasher.chip_info()
        flasher.flash(fs)

    def one() -> None:
        with Flasher(module.flash_url, baud=baud).session() as s:
            s.chip_info
            s.write(fs)

    lines = []
    for label, fn in (("chip_info() + flash(): 2 connections", two), ("session(): 1 connection", one)):
        times = []
        for _ in range(rounds):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
            module.wait_state("at", 10)
        lines.append(f"  {label:<40} mean {sum(times) / rounds:5.2f} s  (min {min(times):.2f}, max {max(times):.2f})")
    return lines


def trace_cost() -> None:
    data = os.urandom(1 << 20)
    fs = FlashSet((Region(0x100000, "random.bin", data),), chip="esp32c2")
    original = flasher_mod._quiet_bulk_commands
    for label, quiet in (("esptool command()", False), ("trace-free bulk path", True), ("esptool command()", False),
                         ("trace-free bulk path", True)):
        if not quiet:
            flasher_mod._quiet_bulk_commands = lambda esp: None
        module = VirtualModule().start()
        try:
            c0, t0 = time.process_time(), time.perf_counter()
            Flasher(module.flash_url, baud=921600).flash(fs)
            wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        finally:
            flasher_mod._quiet_bulk_commands = original
            module.stop()
        print(f"  1 MB random, unpaced, {label:<22} wall {wall:5.2f} s  process CPU {cpu:5.2f} s")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--baud", type=int, default=921600)
    ap.add_argument("--app-kb", type=int, default=1536, help="size of the AT app image (default 1.5 MB)")
    ap.add_argument("--no-trace-cost", action="store_true", help="skip the trace formatting measurement")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        unit_a, unit_b = make_units(Path(tmp), args.app_kb)
        module = VirtualModule(baud=ROM_BAUD).start()
        try:
            full, r_full, s_full = provision(module, unit_a, args.baud)
            again, r_again, s_again = provision(module, unit_b, args.baud)
            per_unit = per_unit_connections(module, unit_b, args.baud)
        finally:
            module.stop()
    print(f"virtual ESP32-C2, {ROM_BAUD} baud until CHANGE_BAUDRATE, then {args.baud}; app {args.app_kb} KB")
    for label, secs, result, stats in (("full provision", full, r_full, s_full),
                                       ("re-provision (firmware unchanged)", again, r_again, s_again)):
        written = ", ".join(r.name for r in result.regions if r.action == "written")
        print(f"{label:<34} {secs:6.2f} s   wire-time bound {wire_bound(stats):6.2f} s   "
              f"host->device {stats.rx_bytes:>9} B   wrote {result.bytes_written:>8} B ({written})")
    print(f"ratio full / re-provision: {full / again:.1f}x (target >= 10x)")
    print("  (wall - wire bound = esptool round trips and host/simulator work; socket:// ports close at once,\n"
          "   atfab.link.url_ports.SocketPort: no pyserial 0.3 s close sleep)")
    print("a station's unit that is already up to date: chip read + write "
          "(the difference = a second port open, ROM sync and chip reads)")
    print("\n".join(per_unit))
    if not args.no_trace_cost:
        print("esptool trace formatting (hex dumps built even with tracing off):")
        trace_cost()


if __name__ == "__main__":
    main()
