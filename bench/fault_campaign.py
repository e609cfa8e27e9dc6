"""Fault campaign: randomized provisioning and rotation runs on virtual modules with injected faults.

Each run picks a module, an operation (provision a new or known unit with the station and the
recipe's retry policy; or rotate its certificate with ``rotate_fleet``), a fault kind and a
random point in the traffic that operation makes (byte offsets, AT command, write command, or a
moment), runs the operation through the library API exactly as the CLI does, then - when the
result was ERROR/ABORTED - the "next contact" (the same operation without faults, as the line
would; with ``--faulty-next`` of the failed runs first one more contact with another fault, so
the recovery paths meet faults too). After each step the module's flash is decoded independently (bench/campaign_lib.py)
and the invariants are checked:

  false PASS                a PASS report while the device content differs from the recipe
  unknown mismatch          the ledger calls the unit good (last attempt PASS, no pending rotation)
                            but its key does not match its certificate, its certificate is not
                            the ledger's current one, or its content differs from the recipe
  duplicates                a serial on two MACs, a certificate serial naming two certificates
                            (ledger and every report)
  reports missing/truncated an attempt (ledger) or a rotation without a complete report
  tool crashes              a traceback escaping the library (a station/rotation call, a port
                            thread), a hang, an unexpected exception recorded as ERROR, an
                            exception the simulator caught in a handler

    /tmp/venv/bin/python bench/fault_campaign.py [--runs 1000] [--seed 1] [--workers 6]

Runs are assigned to workers statically (run i -> worker i % W) and each draws from
``Random(f"{seed}:{i}")``, so a campaign repeats with the same ``--seed/--runs/--workers``
(up to timing: stalls, timeouts and the ``power_cut``/``abort`` moments race the traffic).
Exit status 1 when an invariant count is not 0.
"""

from __future__ import annotations

import argparse
import random
import re
import sys
import tempfile
import threading
import time
import traceback
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from atfab.core.errors import AtfabError  # noqa: E402
from atfab.station.events import EventBus  # noqa: E402
from atfab.station.ledger import Ledger  # noqa: E402
from atfab.pki.ca import create_ca, load_ca  # noqa: E402
from atfab.station.recipe import load_recipe  # noqa: E402
from atfab.station.report import SCHEMA  # noqa: E402
from atfab.station.fleet import ROTATION_SCHEMA, RotateOptions, rotate_fleet  # noqa: E402
from atfab.rotation.inventory import RotateTarget  # noqa: E402
from atfab.station.runner import PortSpec  # noqa: E402
from atfab.core.mac import normalize_mac  # noqa: E402
from atfab.sim.faults import FaultPlan  # noqa: E402
from atfab.sim.module import VirtualModule  # noqa: E402
from atfab.station.firmware_images import firmware_images  # noqa: E402
from atfab.station.station import Station  # noqa: E402
from bench.campaign_lib import (  # noqa: E402
    CampaignFaults, Expected, Fault, Traffic, cert_fp, check_attempt_reports, check_duplicates, choose_fault,
    content_problems, instrumented_firmware, ledger_claims_good, read_device, report_problem,
)

REPO = Path(__file__).resolve().parents[1]
BASE_RECIPE = REPO / "recipes" / "esp32c2-4mb-default.toml"
PASSPHRASE = b"fault campaign passphrase, not a secret"
INVARIANTS = ("false_pass", "unknown_mismatch", "duplicates", "reports_missing", "crashes")
NO_FAULT = Fault("none", "-")
_ATFAB_ERRORS: set[str] = set()


def _atfab_error_names() -> set[str]:
    if not _ATFAB_ERRORS:
        todo = [AtfabError]
        while todo:
            cls = todo.pop()
            _ATFAB_ERRORS.add(cls.__name__)
            todo += cls.__subclasses__()
    return _ATFAB_ERRORS


_EXC_PREFIX = re.compile(r"^(?:report not written: )?([A-Za-z_][\w.]*(?:Error|Exception|Interrupt)): ")


def unexpected_exception(error: str | None) -> bool:
    """True when an outcome's error text is a non-atfab exception the library swallowed (a bug)."""
    if not error:
        return False
    m = _EXC_PREFIX.match(error)
    return bool(m) and m.group(1).rsplit(".", 1)[-1] not in _atfab_error_names()


@dataclass
class Slot:
    """One module position of a worker: the current virtual module and whether it was ever provisioned."""

    label: str
    module: VirtualModule
    blank: bool = True


@dataclass
class StepResult:
    op: str
    fault: Fault
    outcome: str | None = None                      # final outcome (PASS/FAIL/ERROR/ABORTED), None on a crash
    attempts: list[Any] = field(default_factory=list)     # AttemptResult (provisioning)
    module_result: Any = None                       # rotate.ModuleResult
    crash: str | None = None
    fired: bool = False
    seconds: float = 0.0


class Tally:
    """Thread-safe counters and the first examples of every problem."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.c: Counter = Counter()
        self.examples: dict[str, list[str]] = {}

    def add(self, key: str, n: int = 1, example: str | None = None) -> None:
        with self.lock:
            self.c[key] += n
            if example is not None:
                self.examples.setdefault(key, [])
                if len(self.examples[key]) < 5:
                    self.examples[key].append(example)


class Campaign:
    """A fault campaign in ``workdir`` (CA, recipe, ledger, reports are created there)."""

    def __init__(self, workdir: str | Path, *, seed: str = "1", workers: int = 6, modules_per_worker: int = 2,
                 step_timeout: float = 240.0, faulty_next: float = 0.3, baud: int | None = None,
                 progress: bool = False) -> None:
        self.workdir = Path(workdir).resolve()
        self.seed = str(seed)
        self.workers = max(1, workers)
        self.mpw = max(1, modules_per_worker)
        self.step_timeout = step_timeout
        self.progress = progress
        self.faulty_next = faulty_next
        self.baud = baud
        self.tally = Tally()
        self.done = 0
        self.started = 0.0
        self.seconds = 0.0
        ca_dir = self.workdir / "ca"
        if not (ca_dir / "ca.crt").exists():
            create_ca(ca_dir, common_name="Fault Campaign CA", organization="atfab bench", passphrase=PASSPHRASE)
        text = BASE_RECIPE.read_text(encoding="utf-8")
        text = text.replace('ca = "../certs/demo-ca"', f'ca = "{ca_dir}"').replace("demo_ca = true", "demo_ca = false")
        text = text.replace('name = "esp32c2-4mb-default"', 'name = "fault-campaign"')
        (self.workdir / "campaign.toml").write_text(text, encoding="utf-8")
        self.recipe = load_recipe(self.workdir / "campaign.toml", workdir=self.workdir)
        self.ca = load_ca(ca_dir, PASSPHRASE)
        self.reports = self.workdir / "reports"
        self.rot_reports = self.reports / "rotations"
        self.ledger_path = self.workdir / "ledger.sqlite"
        self.fw = firmware_images(self.recipe)
        self.expected = Expected(dict(self.recipe.factory_param), tuple(cert_fp(c) for c in self.ca.chain_certs()),
                                 self.fw.info.get("version"))
        self.traffic: dict[str, Traffic] = {}
        self._thread_crashes: list[tuple[str, str]] = []
        self._hook_lock = threading.Lock()
        self._macs = Counter()

    # -- modules ------------------------------------------------------------------------------
    def new_module(self, worker: int, slot: int) -> VirtualModule:
        with self._hook_lock:
            n = self._macs[worker]
            self._macs[worker] += 1
        mac = bytes([0x24, 0x0A, 0xC4, worker & 0xFF, (n >> 8) & 0xFF, n & 0xFF])
        return VirtualModule(mac=mac, firmware=self.recipe.profile.firmware, faults=CampaignFaults(), baud=self.baud,
                             firmware_factory=instrumented_firmware, name=f"w{worker}m{slot}").start()

    # -- one step -------------------------------------------------------------------------------
    def step(self, slot: Slot, op: str, fault: Fault, *, ledger: Ledger, station_id: str, mode: str = "new-key",
             restart: bool = True) -> StepResult:
        """Run one operation on ``slot`` with ``fault`` armed; never raises (crashes are recorded)."""
        res = StepResult(op, fault)
        m = slot.module
        plan: CampaignFaults = m.faults  # type: ignore[assignment]
        plan.clear()
        plan.instrument.reset()
        if fault.setup is not None:
            fault.setup(plan)
        if fault.trigger is not None:
            fault.trigger.fired = False
            plan.instrument.trigger = fault.trigger
        box: dict[str, Any] = {}
        bus = EventBus()

        def body() -> None:
            try:
                if op == "provision":
                    st = Station(self.recipe, [PortSpec(slot.label, m.flash_url, m.at_url)], ca=self.ca,
                                 station_id=station_id, ledger=self.ledger_path, reports_dir=self.reports,
                                 junit=False, csv=False, bus=bus)
                    box["station"] = st
                    box["summary"] = st.run()
                else:
                    opts = RotateOptions(mode=mode, restart=restart, station_id=station_id, report_dir=self.rot_reports)
                    box["fleet"] = rotate_fleet(self.recipe, [RotateTarget(m.at_url, name=slot.label)], ca=self.ca,
                                                ledger=ledger, options=opts)
            except BaseException:  # noqa: BLE001 - a traceback escaping the library: the thing we count
                box["crash"] = traceback.format_exc()

        t0 = time.monotonic()
        runner = threading.Thread(target=body, name=f"campaign-{slot.label}", daemon=True)
        runner.start()
        timer = None
        fired_timer = threading.Event()
        if fault.timer is not None:
            def strike() -> None:
                fired_timer.set()
                if fault.kind == "power_cut":
                    m.power_loss()
                elif "station" in box:
                    box["station"].stop(abort=True)
            timer = threading.Timer(fault.timer, strike)
            timer.name = f"campaign-timer-{slot.label}"
            timer.daemon = True
            timer.start()
        runner.join(self.step_timeout)
        if runner.is_alive():
            res.crash = f"hang: {op} did not return within {self.step_timeout} s"
            m.stop()                                   # closes its links: the stuck thread gets an error
            runner.join(15)
            slot.module = None  # type: ignore[assignment]   # replaced by the caller
        if timer is not None:
            timer.cancel()
            timer.join()
        res.seconds = time.monotonic() - t0
        res.crash = res.crash or box.get("crash")
        res.fired = self._fired(fault, plan, fired_timer.is_set())
        plan.clear()
        if bus.errors:
            res.crash = (res.crash or "") + "".join(
                f"event subscriber error: {''.join(traceback.format_exception(e))}" for e in bus.errors)
        for name, tb in self._take_thread_crashes(slot.label):
            res.crash = (res.crash or "") + f"thread {name}:\n{tb}"
        sim = plan.instrument.sim_errors()
        if sim:
            res.crash = (res.crash or "") + "".join(f"simulator caught: {e!r}\n" for e in sim)
        if "summary" in box and box["summary"].finals:
            res.attempts = list(box["summary"].results)
            res.outcome = box["summary"].finals[-1].outcome
        elif "fleet" in box and box["fleet"].modules:
            res.module_result = box["fleet"].modules[0]
            res.outcome = res.module_result.outcome
        return res

    @staticmethod
    def _fired(fault: Fault, plan: FaultPlan, timer_fired: bool) -> bool:
        if fault.kind == "none":
            return False
        if fault.timer is not None:
            return timer_fired
        if fault.trigger is not None and not fault.trigger.fired:
            return False
        untouched = asdict(FaultPlan())
        now = asdict(plan)
        return now == untouched

    # -- thread crash hook ------------------------------------------------------------------------
    def _excepthook(self, args: threading.ExceptHookArgs) -> None:
        name = args.thread.name if args.thread is not None else "?"
        tb = "".join(traceback.format_exception(args.exc_type, args.exc_value, args.exc_traceback))
        with self._hook_lock:
            self._thread_crashes.append((name, tb))

    def _take_thread_crashes(self, label: str) -> list[tuple[str, str]]:
        with self._hook_lock:
            names = (f"atfab-port-{label}", f"campaign-{label}", f"campaign-timer-{label}")
            mine = [c for c in self._thread_crashes if c[0] in names or c[0].startswith(f"{label}-")]
            self._thread_crashes = [c for c in self._thread_crashes if c not in mine]
        return mine

    # -- invariants after a step --------------------------------------------------------------------
    def check(self, run: int, slot: Slot, res: StepResult, ledger: Ledger, tag: str) -> None:
        t = self.tally
        where = f"run {run} ({tag}, seed {self.seed}:{run}, {res.op}, fault {res.fault.kind} @ {res.fault.point})"
        if res.crash:
            t.add("crashes", example=f"{where}:\n{res.crash}")
        unit = ledger.unit(normalize_mac(slot.module.mac)) if slot.module is not None else None
        for a in res.attempts:
            problem = report_problem(a.report, schema=SCHEMA, outcome=a.outcome, attempt_id=a.attempt_id)
            if problem is None and unit is not None:
                problem = self._wrong_unit(a.report, unit)
            if problem:
                t.add("reports_missing", example=f"{where}: attempt {a.attempt_id}: {problem}")
            if unexpected_exception(a.error):
                t.add("crashes", example=f"{where}: attempt {a.attempt_id} ERROR from an unexpected exception: {a.error}")
        mr = res.module_result
        if mr is not None:
            problem = report_problem(mr.report_path, schema=ROTATION_SCHEMA, outcome=mr.outcome)
            if problem is None and unit is not None and mr.mac is not None:
                problem = self._wrong_unit(mr.report_path, unit)
            if problem:
                t.add("reports_missing", example=f"{where}: rotation report: {problem} ({mr.outcome}: {mr.error})")
            if unexpected_exception(mr.error):
                t.add("crashes", example=f"{where}: rotation ERROR from an unexpected exception: {mr.error}")
        if slot.module is None:
            return
        mac = normalize_mac(slot.module.mac)
        view = read_device(slot.module.flash.snapshot(), self.recipe.profile, self.fw.regions)
        if res.outcome == "PASS":
            cert = self._reported_cert(res)
            problems = content_problems(view, self.expected, cert)
            if cert is None:
                problems.append("the PASS report names no certificate")
            if problems:
                t.add("false_pass", example=f"{where}: {mac}: {'; '.join(problems)}")
        good, current = ledger_claims_good(ledger, mac)
        if good:
            problems = content_problems(view, self.expected, current)
            if problems:
                t.add("unknown_mismatch", example=f"{where}: {mac}: {'; '.join(problems)}")
        elif view.cert_fp is not None and unit is not None:     # whatever state: no identity the ledger never saw
            known = {c.fingerprint for c in ledger.certificates_for(mac)}
            known |= {r.new_cert_fp for r in ledger.pending_rotations(mac)}
            if view.cert_fp not in known:
                t.add("unknown_mismatch", example=f"{where}: {mac}: holds certificate {view.cert_fp[:16]} the "
                                                  f"ledger never recorded for it")

    @staticmethod
    def _wrong_unit(path: Any, unit: Any) -> str | None:
        """The report names another MAC or serial than the ledger has for the unit on the port."""
        import json

        got = json.loads(Path(path).read_text(encoding="utf-8")).get("unit") or {}
        if got.get("mac") not in (None, unit.mac) or got.get("serial") not in (None, unit.serial):
            return f"report names unit {got.get('mac')}/{got.get('serial')}, ledger {unit.mac}/{unit.serial}"
        return None

    @staticmethod
    def _reported_cert(res: StepResult) -> str | None:
        import json

        if res.attempts:
            path = res.attempts[-1].report
            certs = json.loads(Path(path).read_text())["certificates"] if path else []
            return certs[-1]["fingerprint_sha256"] if certs else None
        mr = res.module_result
        if mr is None or not mr.report_path:
            return None
        data = json.loads(Path(mr.report_path).read_text())
        done = [r for r in data.get("rotations") or [] if r.get("state") == "done" and r.get("certificate")]
        if done:
            return done[-1]["certificate"]["fingerprint_sha256"]
        return next((r["after"]["cert_sha256"] for r in reversed(data.get("rotations") or []) if r.get("after")), None)

    # -- bookkeeping of outcomes ---------------------------------------------------------------------
    def count(self, res: StepResult, tag: str) -> None:
        t = self.tally
        t.add(f"outcome:{tag}:{res.op}:{res.outcome or 'CRASH'}")
        if tag in ("first", "faulty"):
            t.add(f"fault:{res.op}:{res.fault.kind}")
            if res.fired:
                t.add(f"fired:{res.op}:{res.fault.kind}")
        if res.module_result is not None:
            for s in res.module_result.slots:
                t.add(f"rotation:{s.action}:{s.state or 'not journalled'}")

    # -- calibration ---------------------------------------------------------------------------------
    def calibrate(self) -> None:
        """Fault-free runs of each operation: the traffic the fault points are drawn from."""
        slot = Slot("cal", self.new_module(255, 0))
        with Ledger(self.ledger_path) as ledger:
            try:
                for name, op, mode in (("provision_fresh", "provision", ""), ("provision_again", "provision", ""),
                                       ("rotate_new-key", "rotate", "new-key"),
                                       ("rotate_recertify", "rotate", "recertify")):
                    res = self.step(slot, op, NO_FAULT, ledger=ledger, station_id="calibration", mode=mode)
                    if res.outcome != "PASS":
                        raise RuntimeError(f"calibration {name} did not PASS: {res.outcome} {res.crash or ''}"
                                           f"{[a.error for a in res.attempts]}{res.module_result}")
                    self.traffic[name] = Traffic.of(slot.module.faults.instrument, res.seconds)  # type: ignore[attr-defined]
            finally:
                slot.module.stop()

    # -- the campaign --------------------------------------------------------------------------------
    def run(self, runs: int) -> "Campaign":
        old_hook = threading.excepthook
        threading.excepthook = self._excepthook
        self.started = time.monotonic()
        try:
            if not self.traffic:
                self.calibrate()
            threads = [threading.Thread(target=self._worker, args=(w, runs), name=f"campaign-worker-{w}", daemon=True)
                       for w in range(self.workers)]
            for th in threads:
                th.start()
            for th in threads:
                th.join()
            with Ledger(self.ledger_path) as ledger:
                for problem in check_attempt_reports(ledger):
                    self.tally.add("reports_missing", example=f"final scan: {problem}")
            for problem in check_duplicates(self.ledger_path, [self.reports]):
                self.tally.add("duplicates", example=problem)
            with self._hook_lock:
                for name, tb in self._thread_crashes:
                    self.tally.add("crashes", example=f"thread {name}:\n{tb}")
        finally:
            threading.excepthook = old_hook
            self.seconds = time.monotonic() - self.started
        return self

    def _worker(self, w: int, runs: int) -> None:
        slots = [Slot(f"w{w}m{j}", self.new_module(w, j)) for j in range(self.mpw)]
        station_id = f"campaign-w{w}"
        try:
            with Ledger(self.ledger_path) as ledger:
                for i in range(w, runs, self.workers):
                    try:
                        self._one_run(i, slots, ledger, station_id, w)
                    except Exception:  # noqa: BLE001 - a harness bug: counted, shown, the campaign goes on
                        self.tally.add("crashes", example=f"run {i}: campaign harness error:\n{traceback.format_exc()}")
                    with self.tally.lock:
                        self.done += 1
                        done = self.done
                    if self.progress and done % 50 == 0:
                        el = time.monotonic() - self.started
                        bad = sum(self.tally.c[k] for k in INVARIANTS)
                        print(f"  {done}/{runs} runs, {el:.0f} s, {done / el:.2f} runs/s, invariant hits {bad}",
                              file=sys.stderr, flush=True)
        finally:
            for s in slots:
                if s.module is not None:
                    s.module.stop()

    def _one_run(self, i: int, slots: list[Slot], ledger: Ledger, station_id: str, w: int) -> None:
        rng = random.Random(f"{self.seed}:{i}")
        j = rng.randrange(len(slots))
        slot = slots[j]
        mac = normalize_mac(slot.module.mac)
        good = not slot.blank and ledger_claims_good(ledger, mac)[0]
        r = rng.random()
        if not slot.blank and ledger.pending_rotations(mac):
            op = "rotate"                       # a unit with a pending rotation goes back to rotation
        elif slot.blank or not good:
            op = "provision"
        elif r < 0.55:
            op = "rotate"
        elif r < 0.75:
            op = "provision"
        else:                                   # the next unit arrives on this position
            slot.module.stop()
            slot.module, slot.blank, op = self.new_module(w, j), True, "provision"
        mode = rng.choice(("new-key", "recertify"))
        restart = rng.random() < 0.5
        faulty_next = rng.random() < self.faulty_next
        key = ("provision_fresh" if slot.blank else "provision_again") if op == "provision" else f"rotate_{mode}"
        fault = choose_fault(rng, op, self.traffic[key])
        second = choose_fault(rng, op, self.traffic["provision_again" if op == "provision" else key])
        self.tally.add(f"runs:{op}")
        res = self.step(slot, op, fault, ledger=ledger, station_id=station_id, mode=mode, restart=restart)
        if op == "provision":
            slot.blank = False
        self.count(res, "first")
        self.check(i, slot, res, ledger, "first contact")
        if slot.module is None:
            slot.module, slot.blank = self.new_module(w, j), True
            return
        if res.outcome not in ("ERROR", "ABORTED", None):
            return
        if faulty_next:                         # recovery itself hit by a fault, then a clean contact
            res = self.step(slot, op, second, ledger=ledger, station_id=station_id, mode=mode, restart=restart)
            self.count(res, "faulty")
            self.check(i, slot, res, ledger, "faulty next contact")
            if slot.module is None:
                slot.module, slot.blank = self.new_module(w, j), True
                return
            if res.outcome not in ("ERROR", "ABORTED", None):
                return
        again = self.step(slot, op, NO_FAULT, ledger=ledger, station_id=station_id, mode=mode, restart=restart)
        self.count(again, "next")
        self.check(i, slot, again, ledger, "next contact")
        if again.outcome != "PASS":
            self.tally.add("next_not_pass", example=(
                f"run {i} ({op}, {res.outcome} after {res.fault.kind} @ {res.fault.point}): clean next contact "
                f"{again.outcome}: {self._why(again)}"))
        if slot.module is None:
            slot.module, slot.blank = self.new_module(w, j), True

    @staticmethod
    def _why(res: StepResult) -> str:
        if res.attempts:
            return "; ".join(str(a.error) for a in res.attempts)
        if res.module_result is not None:
            mr = res.module_result
            return mr.error or "; ".join(s.message for s in mr.slots)
        return res.crash or "?"

    # -- the table -------------------------------------------------------------------------------------
    def ok(self) -> bool:
        return all(self.tally.c[k] == 0 for k in INVARIANTS)

    def table(self, runs: int) -> str:
        c = self.tally.c
        lines = [f"fault campaign: {runs} runs, seed {self.seed}, {self.workers} workers x {self.mpw} modules "
                 f"({'unpaced' if not self.baud else f'{self.baud} baud'} virtual ESP32-C2, recipe {BASE_RECIPE.name})",
                 ""]
        lines.append("calibration (fault-free traffic the fault points are drawn from)")
        for name, tr in self.traffic.items():
            lines.append(f"  {name:<18} flash tx/rx {tr.flash}  AT tx/rx {tr.at}  {tr.commands} commands, "
                         f"{tr.reads} raw reads, {tr.writes} writes, {tr.seconds:.2f} s")
        lines += ["", f"{'operation':<12}{'runs':>6}"]
        for op in ("provision", "rotate"):
            lines.append(f"{op:<12}{c[f'runs:{op}']:>6}")
        lines += ["", f"{'fault kind (first + faulty next)':<34}{'runs':>6}{'fired':>7}"]
        for key in sorted(k for k in c if k.startswith("fault:")):
            _, op, kind = key.split(":")
            lines.append(f"{op + ':' + kind:<34}{c[key]:>6}{c[f'fired:{op}:{kind}']:>7}")
        lines += ["", f"{'outcomes':<28}{'PASS':>6}{'FAIL':>6}{'ERROR':>7}{'ABORTED':>9}{'CRASH':>7}"]
        names = {"first": "first contact", "faulty": "faulty next", "next": "clean next"}
        for tag in ("first", "faulty", "next"):
            for op in ("provision", "rotate"):
                row = [c[f"outcome:{tag}:{op}:{o}"] for o in ("PASS", "FAIL", "ERROR", "ABORTED", "CRASH")]
                label = f"{op} ({names[tag]})"
                lines.append(f"{label:<28}{row[0]:>6}{row[1]:>6}{row[2]:>7}{row[3]:>9}{row[4]:>7}")
        lines += ["", "rotation slots (action -> journal state)"]
        for key in sorted(k for k in c if k.startswith("rotation:")):
            _, action, state = key.split(":")
            lines.append(f"  {action + ' -> ' + state:<34}{c[key]:>6}")
        lines += ["", f"next contact not PASS (informative): {c['next_not_pass']}", "", "invariants"]
        labels = {"false_pass": "false PASS (report PASS, device differs)",
                  "unknown_mismatch": "key/cert mismatch unknown to the ledger",
                  "duplicates": "duplicate serials / certificate serials",
                  "reports_missing": "reports missing or truncated",
                  "crashes": "tool crashes (traceback, hang, swallowed bug)"}
        for k in INVARIANTS:
            lines.append(f"  {labels[k]:<48}{c[k]:>6}")
        rate = runs / self.seconds if self.seconds else 0.0
        lines += ["", f"runtime {self.seconds:.1f} s, {rate:.2f} runs/s"]
        for k in INVARIANTS + ("next_not_pass",):
            for ex in self.tally.examples.get(k, []):
                lines += ["", f"[{k}] {ex.rstrip()}"]
        return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=1000)
    ap.add_argument("--seed", default="1")
    ap.add_argument("--workers", type=int, default=6, help="runs in parallel (each on its own modules)")
    ap.add_argument("--modules", type=int, default=2, help="module positions per worker")
    ap.add_argument("--workdir", type=Path, default=None, help="keep CA, ledger and reports here [temporary]")
    ap.add_argument("--step-timeout", type=float, default=240.0, help="seconds before a step counts as a hang")
    ap.add_argument("--baud", type=int, default=None, help="pace the virtual modules' links [unpaced]")
    ap.add_argument("--faulty-next", type=float, default=0.3,
                    help="share of failed runs whose next contact gets a fault too (a clean contact follows)")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="atfab-campaign-") as tmp:
        workdir = args.workdir or Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        camp = Campaign(workdir, seed=args.seed, workers=args.workers, modules_per_worker=args.modules,
                        step_timeout=args.step_timeout, faulty_next=args.faulty_next, baud=args.baud, progress=True)
        camp.run(args.runs)
        print(camp.table(args.runs))
    return 0 if camp.ok() else 1


if __name__ == "__main__":
    sys.exit(main())
