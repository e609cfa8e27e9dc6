"""Station throughput per firmware generation: the shipped demo recipes on paced virtual modules.

One row per recipe (G3 esp32c2-4mb-default, G2 esp32-at-v2-g2, G1 esp32-at-v1.2-g1, G0 NONOS AT v0.21
and 1.7 on one UART0 per unit): ``count`` units provisioned in parallel by ``atfab demo`` (a throwaway
CA, modules paced at the recipe's UART baud, esptool at 460800 after its baud change; the ESP8266
ROM cannot change baud), a fresh round (everything written) and a second round on the same modules
(regions they hold are skipped by MD5; the ESP8266 ROM has no MD5, so G0 writes everything again).
Prints wall seconds, units/minute and the mean seconds per step of one unit.

    python bench/bench_generations.py [--count 4] [--recipes NAME,...]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from atfab.station.events import STEPS, Event, EventBus  # noqa: E402
from atfab.station.station import demo  # noqa: E402

RECIPES = ("esp32c2-4mb-default", "esp32-at-v2-g2", "esp32-at-v1.2-g1", "esp8266-nonos-at", "esp8266-nonos-at-1.7")


class StepClock:
    """Seconds per step (start -> end event) summed over the units of one run."""

    def __init__(self) -> None:
        self.started: dict[tuple[str, str], float] = {}
        self.total: dict[str, float] = defaultdict(float)

    def __call__(self, ev: Event) -> None:
        if ev.step not in STEPS or ev.status == "progress":
            return
        key = (ev.port, ev.step)
        if ev.status == "start":
            self.started[key] = ev.time
        elif key in self.started:
            self.total[ev.step] += ev.time - self.started.pop(key)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--count", type=int, default=4)
    ap.add_argument("--recipes", default=",".join(RECIPES))
    args = ap.parse_args()
    print(f"{'recipe':24} {'round':6} {'units':>5} {'wall s':>7} {'units/min':>9}  mean s per step of one unit")
    for name in args.recipes.split(","):
        with tempfile.TemporaryDirectory(prefix="bench-gen-") as tmp:
            state = Path(tmp) / "flash"
            state.mkdir()
            for round_name in ("fresh", "again"):
                bus = EventBus()
                clock = bus.subscribe(StepClock())
                t0 = time.monotonic()
                result = demo(Path(tmp) / "out", recipe=ROOT / "recipes" / f"{name}.toml", count=args.count,
                              bus=bus, state_dir=state)
                wall = time.monotonic() - t0
                s = result.summary
                steps = " ".join(f"{k}={v / max(1, len(s.finals)):.2f}" for k, v in clock.total.items() if v >= 0.01)
                print(f"{name:24} {round_name:6} {s.counts['PASS']:>2}/{len(s.finals):<2} {wall:7.2f} "
                      f"{s.units_per_minute:9.1f}  {steps}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
