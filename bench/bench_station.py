"""Station throughput (units/minute) on 1, 2, 4, 8 virtual modules, and where the time goes.

The modules run in a separate ``atfab sim`` process (so its CPU can be told apart from the
station's), paced like real UARTs: 115200 baud until esptool's CHANGE_BAUDRATE, then the flash
baud (921600 by default); the AT port stays at the recipe's 115200. The firmware is esp-at
sized: the synthetic app grown to ``--app-kb`` with firmware-like filler (bench_flash.py), so a
fresh unit costs what a real ESP-AT image costs on the wire.

* fresh: blank modules (a new ``atfab sim`` with a new MAC seed per round): everything is written;
* again: the same modules provisioned again: firmware regions are skipped by MD5, only the
  unit's new mfg_nvs (new certificate) and nothing else is written.

Per row: units, wall time, units/minute, scaling against one port, CPU seconds per unit of the
station process and of the simulator process (2 cores here: the sum caps what 8 ports can do),
and the mean wall time per step of one unit. Each unit uses one esptool connection (``chip``
step to ``flash`` step, :meth:`atfab.link.flasher.Flasher.session`) and one AT port; ``socket://``
ports close at once (:class:`atfab.link.url_ports.SocketPort`, without pyserial's 0.3 s close
sleep), so no fixed per-connection delay is in the figures.

    /tmp/venv/bin/python bench/bench_station.py [--ports 1,2,4,8] [--rounds 2] [--baud 921600] [--app-kb 1536]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import signal
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_flash import firmware_like  # noqa: E402

from atfab.image.build import BUILD_PATHS, write_synthetic_firmware  # noqa: E402
from atfab.station.events import Event, EventBus  # noqa: E402
from atfab.pki.ca import create_ca  # noqa: E402
from atfab.image.profiles import load_profile  # noqa: E402
from atfab.station.recipe import load_recipe  # noqa: E402
from atfab.station.station import Station, parse_port  # noqa: E402

ROM_BAUD = 115200
TICK = os.sysconf("SC_CLK_TCK")


def cpu_of(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK          # utime + stime


def own_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


class Steps:
    """Mean wall seconds per step over the units of a run (from the event stream)."""

    def __init__(self) -> None:
        self.open: dict[tuple[str, str], float] = {}
        self.total: dict[str, float] = defaultdict(float)
        self.units = 0

    def __call__(self, e: Event) -> None:
        if e.status == "start":
            self.open[(e.port, e.step)] = e.time
        elif e.ended and (e.port, e.step) in self.open:
            self.total[e.step] += e.time - self.open.pop((e.port, e.step))
            self.units += e.step == "unit"

    def means(self) -> dict[str, float]:
        n = max(1, self.units)
        return {k: v / n for k, v in self.total.items()}


def make_recipe(tmp: Path, app_kb: int) -> Path:
    profile = load_profile("esp32c2-4mb")
    fw = write_synthetic_firmware(profile, tmp / "fw", version="v4.1.0.0")
    app = fw / BUILD_PATHS["app"]
    app.write_bytes(app.read_bytes() + firmware_like(app_kb * 1024 - app.stat().st_size))
    create_ca(tmp / "ca", common_name="bench CA", passphrase=b"bench passphrase only")
    text = (ROOT / "recipes" / "esp32c2-4mb-default.toml").read_text()
    text = text.replace('synthetic = "v4.1.0.0"', f'build_dir = "{fw}"')
    text = text.replace('ca = "../certs/demo-ca"', f'ca = "{tmp / "ca"}"').replace("demo_ca = true", "demo_ca = false")
    path = tmp / "bench.toml"
    path.write_text(text)
    return path


class Sim:
    """``atfab sim`` in its own process: N paced modules with MACs from ``seed``."""

    def __init__(self, count: int, seed: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "atfab.cli", "sim", "--count", str(count), "--baud", str(ROM_BAUD), "--seed", seed,
             "--module-profile", "esp32c2-4mb", "--json"], stdout=subprocess.PIPE, text=True)
        self.modules = json.loads(self.proc.stdout.readline())

    def cpu(self) -> float:
        return cpu_of(self.proc.pid)

    def close(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def run_once(recipe, ca, sim: Sim, baud: int, tmp: Path) -> dict:
    bus = EventBus()
    steps = bus.subscribe(Steps())
    ports = [parse_port(f"m{m['index']}={m['flash_url']},{m['at_url']}") for m in sim.modules]
    st = Station(recipe, ports, ca=ca, station_id="bench", flash_baud=baud, bus=bus, junit=False, csv=False,
                 ledger=tmp / "ledger.sqlite", reports_dir=tmp / "reports")
    c0, s0, t0 = own_cpu(), sim.cpu(), time.perf_counter()
    summary = st.run()
    wall = time.perf_counter() - t0
    bad = [r for r in summary.finals if r.outcome != "PASS"]
    if bad:
        raise SystemExit(f"bench run failed: {bad[0].outcome}: {bad[0].error}")
    return {"units": len(summary.finals), "wall": wall, "station_cpu": own_cpu() - c0, "sim_cpu": sim.cpu() - s0,
            "steps": steps.means()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ports", default="1,2,4,8")
    ap.add_argument("--rounds", type=int, default=2, help="rounds per row (fresh: new modules each round)")
    ap.add_argument("--baud", type=int, default=921600, help="flash baud after esptool's CHANGE_BAUDRATE")
    ap.add_argument("--app-kb", type=int, default=1536)
    args = ap.parse_args()
    counts = [int(x) for x in args.ports.split(",")]
    from atfab.pki.ca import load_ca

    rows = []
    with tempfile.TemporaryDirectory() as tmp_s:
        tmp = Path(tmp_s)
        recipe = load_recipe(make_recipe(tmp, args.app_kb), workdir=tmp)
        ca = load_ca(tmp / "ca", b"bench passphrase only")
        for n in counts:
            sim = None
            for kind in ("fresh", "again"):      # "again" reuses the modules of the last fresh round
                agg = {"units": 0, "wall": 0.0, "station_cpu": 0.0, "sim_cpu": 0.0, "steps": defaultdict(float)}
                for r in range(args.rounds):
                    if kind == "fresh":
                        if sim is not None:
                            sim.close()
                        sim = Sim(n, f"bench-{n}-{r}")
                    got = run_once(recipe, ca, sim, args.baud, tmp)
                    for k in ("units", "wall", "station_cpu", "sim_cpu"):
                        agg[k] += got[k]
                    for k, v in got["steps"].items():
                        agg["steps"][k] += v / args.rounds
                agg["upm"] = agg["units"] * 60 / agg["wall"]
                rows.append((n, kind, agg))
                print(f"  {n} port(s) {kind}: {agg['upm']:.1f} units/min", file=sys.stderr, flush=True)
            sim.close()
    base = {kind: agg["upm"] for n, kind, agg in rows if n == counts[0]}
    print(f"virtual ESP32-C2 modules in an `atfab sim` process, {ROM_BAUD} baud until CHANGE_BAUDRATE, then "
          f"{args.baud}; AT at 115200; app {args.app_kb} KB; {os.cpu_count()} CPU(s); {args.rounds} round(s) per row")
    print(f"{'ports':>5} {'kind':<6} {'units':>5} {'wall s':>7} {'units/min':>9} {'scale':>6} "
          f"{'station CPU s/unit':>18} {'sim CPU s/unit':>14} {'CPU use':>8}")
    for n, kind, agg in rows:
        u = agg["units"]
        util = (agg["station_cpu"] + agg["sim_cpu"]) / agg["wall"] / (os.cpu_count() or 1)
        print(f"{n:>5} {kind:<6} {u:>5} {agg['wall']:>7.1f} {agg['upm']:>9.1f} {agg['upm'] / base[kind]:>5.2f}x "
              f"{agg['station_cpu'] / u:>18.2f} {agg['sim_cpu'] / u:>14.2f} {util:>7.0%}")
    print("mean wall seconds per unit and step (one port's view):")
    for n, kind, agg in rows:
        print(f"  {n} port(s) {kind:<5} " + "  ".join(f"{k} {v:.2f}" for k, v in agg["steps"].items()))
    top = max(counts)
    for kind in ("fresh", "again"):
        ratio = next(agg["upm"] for n, k, agg in rows if n == top and k == kind) / base[kind]
        print(f"scaling {kind}: {top} ports = {ratio:.2f}x one port (target >= 7x)")
    print("notes: one esptool connection (chip step to flash step) and one AT port per unit; socket:// ports "
          "close at once (atfab.link.url_ports.SocketPort: no pyserial 0.3 s close sleep, no fixed per-connection "
          "delay in these figures); 'CPU use' is "
          "station + simulator CPU over wall time and all cores.")


if __name__ == "__main__":
    main()
