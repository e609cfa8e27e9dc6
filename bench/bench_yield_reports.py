"""Synthesise a line's worth of unit reports (default 1,000 units) for `atfab report html`, and time it.

How: first a real station run on virtual modules (``--calibrate`` units, paced like a 115200-baud
UART) gives real reports; then every synthetic attempt is one of those reports re-issued through
the report API (:class:`atfab.station.report.ReportBuilder`, sealed atomically like the station's)
with its own unit (MAC, serial), station, port, times and outcome:

* 3 stations x 4 ports, shifts 06-14 and 14-22 with a 30-minute break at 10:00 and 18:00, an
  operator swap time per unit (log-normal, median 50 s); step names, order and details from the
  real run, step times log-normal around what a real module takes (the virtual module's synthetic
  firmware is far smaller than esp-at's 1.3 MB, so its flash time is no model): flash median 14 s at
  460800 baud, verify 3.5 s at 115200, boot 1.2 s, the rest well under a second;
* FAIL 2.5 % per attempt (one port with a worn fixture: 12 %), failing checks drawn from a fixed
  Pareto (rf_power.wifi first); ERROR 1.5 % (flash or boot), retried once at once; a third of the
  FAILed units come back later from rework as retries;
* two recipes (80 / 20 %).

Prints what it wrote and how long it took. Then e.g.:
    atfab report html OUT --json | head;  atfab report html OUT -o yield.html
"""

from __future__ import annotations

import argparse
import math
import random
import sys
import tempfile
import time
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from atfab.core.measurement import Measurement  # noqa: E402
from atfab.pki.ca import create_ca  # noqa: E402
from atfab.station.recipe import load_recipe  # noqa: E402
from atfab.station.report import ReportBuilder, UnitReport, list_reports  # noqa: E402
from atfab.station.station import run_sim  # noqa: E402

FAIL_CHECKS = [("rf_power.wifi", 34), ("uart_def", 19), ("factory_param.max_tx_power", 12), ("country", 10),
               ("mac.prefix", 8), ("gmr.recipe_version", 7), ("at_customize.partitions", 5), ("sta_mac", 3),
               ("gmr.module_name", 2)]
ERROR_STEPS = [("flash", "esptool: A fatal error occurred: Packet content transfer stopped (received 8 bytes)"),
               ("boot", "AtTimeout: no ready within 10.0 s"), ("connect", "could not open port: [Errno 16] busy")]
RECIPES = [("esp32c2-4mb-default", 0.8), ("esp32c2-ble-sensor", 0.2)]
#: Median seconds and log-normal sigma of each step on a real module.
STEP_TIMES = {"connect": (0.05, 0.3), "chip": (0.7, 0.2), "identity": (0.02, 0.4), "certificate": (0.03, 0.3),
              "build": (0.09, 0.2), "flash": (14.0, 0.08), "boot": (1.2, 0.25), "configure": (0.16, 0.2),
              "verify": (3.5, 0.12)}


def calibrate(work: Path, count: int) -> list[UnitReport]:
    """Real reports from a station run on ``count`` paced virtual modules."""
    text = (REPO / "recipes" / "esp32c2-4mb-default.toml").read_text()
    ca = work / "ca"
    pw = b"bench passphrase"
    ca_obj = create_ca(ca, common_name="bench CA", organization="atfab bench", passphrase=pw)
    recipe_path = work / "recipe.toml"
    recipe_path.write_text(text.replace('ca = "../certs/demo-ca"', f'ca = "{ca}"').replace("demo_ca = true",
                                                                                             "demo_ca = false"))
    recipe = load_recipe(recipe_path, workdir=work)
    summary = run_sim(recipe, count, sim_baud=115200, ca=ca_obj, station_id="calibration", junit=False, csv=False)
    return [e.report for e in list_reports(summary.reports_dir) if e.report.outcome == "PASS"]


def failed(m: Measurement) -> Measurement:
    """``m`` as a failed check with a plausible wrong reading."""
    v = m.expected
    if isinstance(v, bool) or v is None:
        bad = "missing"
    elif isinstance(v, int):
        bad = v + random.choice([-12, -8, -4, 4, 6])
    elif isinstance(v, list) and v and all(isinstance(x, int) for x in v):
        bad = [x + (1 if i == 0 else 0) * random.choice([-9600, 9600]) for i, x in enumerate(v)]
    elif isinstance(v, list):
        bad = ["JP", 1, 14] if m.name == "country" else ["30:ae:a4"]
    else:
        bad = f"{v}".replace("4", "3", 1) if "4" in f"{v}" else f"{v}-x"
    return replace(m, measured=bad, outcome="fail")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path, help="folder for the reports")
    ap.add_argument("--units", type=int, default=1000)
    ap.add_argument("--calibrate", type=int, default=8, help="real units run first (their reports are templates)")
    ap.add_argument("--seed", type=int, default=17)
    ap.add_argument("--start", default="2025-03-03T08:40:00+00:00", help="start of the first shift (ISO, UTC)")
    args = ap.parse_args()
    random.seed(args.seed)
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp:
        templates = calibrate(Path(tmp), args.calibrate)
    t_cal = time.monotonic() - t0
    if not templates:
        sys.exit("the calibration run passed no unit")
    names = {m.name for m in templates[0].measurements}
    checks = [(c, w) for c, w in FAIL_CHECKS if c in names]     # the checks the templates' recipe makes
    slots = [(f"st-{s}", f"slot{p}") for s in range(1, 4) for p in range(4)]
    worn = ("st-2", "slot1")
    shift0 = datetime.fromisoformat(args.start)
    clock = {slot: shift0 + timedelta(seconds=random.uniform(0, 60)) for slot in slots}
    rework: list[tuple[datetime, dict]] = []
    attempt_id, units, attempts, serial_no = 0, 0, 0, 0
    args.out.mkdir(parents=True, exist_ok=True)

    def on_shift(t: datetime) -> datetime:
        """Move ``t`` out of the breaks and the night (shifts 06-14, 14-22 with a break at 10:00/18:00)."""
        day = t.replace(hour=0, minute=0, second=0, microsecond=0)
        for start, end in ((10, 10.5), (18, 18.5)):
            if day + timedelta(hours=start) <= t < day + timedelta(hours=end):
                return day + timedelta(hours=end)
        if t >= day + timedelta(hours=22):
            return day + timedelta(days=1, hours=6)
        return max(t, day + timedelta(hours=6))

    def issue(unit: dict, slot: tuple[str, str], start: datetime, retry_of: int | None, attempt: int,
              outcome: str, why: str | None = None) -> tuple[datetime, int]:
        nonlocal attempt_id, attempts
        attempt_id += 1
        attempts += 1
        tpl = random.choice(templates)
        b = ReportBuilder(args.out / unit["recipe"], recipe_name=unit["recipe"], recipe_hash=tpl.recipe_hash,
                          station_id=slot[0], port=slot[1], operator="shift-a" if start.hour < 14 else "shift-b",
                          attempt_id=attempt_id, attempt=attempt, retry_of=retry_of, started=start, tools=tpl.tools)
        b.set_unit(chip=tpl.chip, mac=unit["mac"], serial=unit["serial"])
        b.set_firmware(**tpl.firmware)
        t = start
        measurements = [m for m in tpl.measurements]
        error_step = why if outcome == "ERROR" else None
        for s in tpl.steps:
            median, sigma = STEP_TIMES.get(s.name, (0.1, 0.3))
            d = random.lognormvariate(math.log(median), sigma)
            end = t + timedelta(seconds=d)
            if s.name == error_step:
                b.add_step(s.name, t, end, "error", dict(ERROR_STEPS)[s.name])
                t = end
                break
            if outcome == "FAIL" and s.name == "verify":
                i = next(i for i, m in enumerate(measurements) if m.name == why)
                measurements[i] = failed(measurements[i])
                b.add_step(s.name, t, end, "fail", f"failed: {why}")
            else:
                b.add_step(s.name, t, end, "ok", s.detail)
            t = end
        if outcome != "ERROR":
            b.add_measurements(measurements)
        error = (f"failed: {why}" if outcome == "FAIL" else dict(ERROR_STEPS)[why] if outcome == "ERROR" else None)
        b.seal(outcome, error=error, ended=t)
        return t, attempt_id

    while units < args.units:
        slot = min(slots, key=lambda s: clock[s])
        start = on_shift(clock[slot] + timedelta(seconds=random.lognormvariate(math.log(50), 0.5)))
        if rework and rework[0][0] <= start:
            _, unit = rework.pop(0)
        else:
            serial_no += 1
            units += 1
            recipe = "esp32c2-4mb-default" if random.random() < RECIPES[0][1] else "esp32c2-ble-sensor"
            low = (serial_no * 2654435761) & 0xFFFFFF               # unique per unit, scattered like a reel
            unit = {"mac": "24:0a:c4:" + ":".join(f"{low >> s & 255:02x}" for s in (16, 8, 0)),
                    "serial": f"C2D-{serial_no:06d}", "recipe": recipe, "last": None, "attempt": 0}
        p_fail = 0.12 if slot == worn else 0.025
        r = random.random()
        retry_of = unit["last"]
        unit["attempt"] = unit["attempt"] + 1 if retry_of else 1
        if r < p_fail:
            why = random.choices([c for c, _ in checks], [w for _, w in checks])[0]
            end, aid = issue(unit, slot, start, retry_of, unit["attempt"], "FAIL", why)
            unit["last"] = aid
            if random.random() < 0.33:
                rework.append((end + timedelta(minutes=random.uniform(40, 180)), unit))
                rework.sort(key=lambda x: x[0])
        elif r < p_fail + 0.015:
            step = random.choices([s for s, _ in ERROR_STEPS], [6, 3, 1])[0]
            end, aid = issue(unit, slot, start, retry_of, unit["attempt"], "ERROR", step)
            unit["attempt"] += 1
            end, aid = issue(unit, slot, end + timedelta(seconds=1), aid, unit["attempt"], "PASS")
            unit["last"] = None
        else:
            end, aid = issue(unit, slot, start, retry_of, unit["attempt"], "PASS")
            unit["last"] = None
        clock[slot] = end
    took = time.monotonic() - t0
    print(f"calibration: {len(templates)} real PASS reports from virtual modules in {t_cal:.1f} s")
    print(f"wrote {attempts} reports for {units} units (+{len(rework)} still in rework) to {args.out} "
          f"in {took - t_cal:.1f} s ({attempts / max(took - t_cal, 1e-9):.0f} reports/s)")
    print(f"span {shift0.isoformat()} .. {max(clock.values()).isoformat()}")


if __name__ == "__main__":
    main()
