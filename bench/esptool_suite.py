"""Run esptool's own test suite (test/test_esptool.py) against `atfab sim`, print the pass/fail table.

Beside the project (never inside it, never committed): a checkout of espressif/esptool at one
commit and a venv where *that same checkout* is installed (pip install -e), so the suite and the
tool it drives agree; atfab is installed there too and `atfab sim` runs from that venv (its stub
check compares with the stub images of the esptool it runs with). Per chip:

* pass 1, over ``socket://`` (fast; esptool forces no-reset there): every test of the suite except
  the reset-line ones;
* pass 2, over ``rfc2217://`` (the sim's UART0 behind a devkit's DTR/RTS circuit): the tests that
  need reset lines (:data:`RESET_LINE_TESTS`), plus the stub-reuse tests again.

    python bench/esptool_suite.py --esptool-git /work/.mirror/espressif+esptool/repo \\
        --workdir ../ext/esptool-suite [--rev <commit>] [--chips esp32c2,esp32] [--all-rfc2217]

Prints one row per test and transport: outcome, and for a failure the known reason (a CPU
would have to run a loaded program, ...) or the failure's first line. ``--json FILE`` writes the
rows. Takes 10-20 minutes per chip on a 2-core machine.
"""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]

#: Tests that need DTR/RTS reset lines: they run over rfc2217:// (and are left out of the socket pass).
RESET_LINE_TESTS = [
    "TestReset",
    "TestConfigFile and test_custom_reset_sequence",
    "TestConfigFile and test_open_port_attempts",
]
#: Run over both transports (the stub reuse means something only with reset lines).
BOTH = ["TestStubReuse"]

#: Failures the simulator cannot remove, and why (matched on the test id's tail).
KNOWN_REASONS = {
    "TestLoadRAM::test_load_ram": "needs a CPU executing the loaded program (it prints 'Hello world!')",
    "TestLoadRAM::test_load_ram_hex": "needs a CPU executing the loaded program (it prints 'Hello world!')",
    # rfc2217 only (over socket:// the reconnect of verify_output is a power-on into download mode)
    "TestReset::test_watchdog_reset": (
        "pyserial's RFC 2217 client spends ~200 ms between commands (it renegotiates the line settings, "
        "polling every 50 ms, whenever esptool changes the timeout): the RTC watchdog armed with 2000 slow-clock "
        "ticks (~15 ms) resets the chip before esptool's 'lock' write, whose reply esptool then reads from the "
        "ROM's boot noise ('Invalid head of packet (0x8C)'); a devkit behind an RFC 2217 server does the same. "
        "With a port that does not stall (atfab's Rfc2217Port) it passes: tests/test_sim_reset_lines.py"),
}


def sh(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    print("+", " ".join(str(c) for c in cmd), flush=True)
    return subprocess.run([str(c) for c in cmd], check=True, **kw)


def prepare(workdir: Path, source: str, rev: str | None) -> tuple[Path, Path, str]:
    """Clone/check out esptool, make the venv; returns (checkout, python, commit)."""
    workdir.mkdir(parents=True, exist_ok=True)
    checkout = workdir / "esptool"
    if not checkout.exists():
        sh(["git", "clone", "-q", source, checkout])
    if rev:
        sh(["git", "-C", checkout, "checkout", "-q", rev])
    commit = subprocess.run(["git", "-C", str(checkout), "rev-parse", "HEAD"], check=True,
                            capture_output=True, text=True).stdout.strip()
    venv = workdir / "venv"
    python = venv / "bin" / "python"
    if not python.exists():
        sh([sys.executable, "-m", "venv", venv])
    # the checkout's esptool (editable), what its suite needs, then atfab (esptool kept: it is in range)
    sh([python, "-m", "pip", "install", "-q", "-e", checkout, "bitstring<5", "pytest", "pytest-rerunfailures",
        "pyelftools"])
    sh([python, "-m", "pip", "install", "-q", "-e", PROJECT])
    return checkout, python, commit


class Sim:
    """`atfab sim --chip C --json` from the suite's venv; stopped with SIGINT."""

    def __init__(self, python: Path, chip: str, cwd: Path) -> None:
        self.proc = subprocess.Popen([str(python), "-m", "atfab.cli", "sim", "--chip", chip, "--seed",
                                      f"esptool-suite-{chip}", "--json"], stdout=subprocess.PIPE, text=True,
                                     cwd=cwd)
        line = self.proc.stdout.readline()
        if not line:
            raise SystemExit(f"atfab sim --chip {chip} did not start")
        self.row = json.loads(line)[0]

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def run_pass(python: Path, test_dir: Path, port: str, chip: str, expr: str | None, xml: Path,
             log: Path) -> None:
    cmd = [str(python), "-m", "pytest", "test_esptool.py", "-m", "not host_test", "--port", port,
           "--chip", chip, "--baud", "115200", "-p", "no:cacheprovider", f"--junitxml={xml}", "-q"]
    if expr:
        cmd += ["-k", expr]
    print("+", " ".join(cmd), flush=True)
    with open(log, "w") as out:
        subprocess.run(cmd, cwd=test_dir, stdout=out, stderr=subprocess.STDOUT, timeout=4 * 3600)


def rows_from(xml: Path, chip: str, transport: str) -> list[dict]:
    rows = []
    if not xml.exists():
        return rows
    for case in ET.parse(xml).getroot().iter("testcase"):
        name = f"{case.get('classname', '').split('.')[-1]}::{case.get('name')}"
        outcome, reason = "pass", ""
        for tag in ("failure", "error", "skipped"):
            el = case.find(tag)
            if el is not None:
                outcome = "skip" if tag == "skipped" else "fail"
                reason = (el.get("message") or "").strip().splitlines()[0][:160] if el.get("message") else ""
                break
        if outcome == "fail":
            for key, why in KNOWN_REASONS.items():
                if name.endswith(key):
                    reason = why
        rows.append({"chip": chip, "transport": transport, "test": name, "outcome": outcome,
                     "reason": reason, "seconds": float(case.get("time", 0))})
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--esptool-git", default="https://github.com/espressif/esptool.git",
                    help="where to clone esptool from (a URL or a local/bare repository)")
    ap.add_argument("--rev", default=None, help="esptool commit to check out (default: the clone's HEAD)")
    ap.add_argument("--workdir", type=Path, default=PROJECT.parent / "esptool-suite")
    ap.add_argument("--chips", default="esp32c2,esp32")
    ap.add_argument("--all-rfc2217", action="store_true", help="run the whole suite over rfc2217:// too (slow)")
    ap.add_argument("-k", dest="only", default=None, help="restrict both passes to this pytest -k expression")
    ap.add_argument("--json", type=Path, default=None, help="write the rows to this file")
    args = ap.parse_args()

    checkout, python, commit = prepare(args.workdir.resolve(), args.esptool_git, args.rev)
    test_dir = checkout / "test"
    runs = args.workdir.resolve() / "runs"
    runs.mkdir(exist_ok=True)
    reset_expr = " or ".join(f"({t})" for t in RESET_LINE_TESTS)
    rows: list[dict] = []
    for chip in args.chips.split(","):
        sim = Sim(python, chip, runs)      # not the workdir: its esptool/ folder would shadow the package
        try:
            t0 = time.monotonic()
            socket_expr = f"not ({reset_expr})" if not args.all_rfc2217 else None
            rfc_expr = None if args.all_rfc2217 else " or ".join([reset_expr] + [f"({t})" for t in BOTH])
            if args.only:
                socket_expr = f"({args.only})" + (f" and {socket_expr}" if socket_expr else "")
                rfc_expr = f"({args.only})" + (f" and ({rfc_expr})" if rfc_expr else "")
            for transport, port, expr in (("socket", sim.row["flash_url"], socket_expr),
                                          ("rfc2217", sim.row["rfc2217_url"], rfc_expr)):
                xml = runs / f"{chip}-{transport}.xml"
                xml.unlink(missing_ok=True)
                run_pass(python, test_dir, port, chip, expr, xml, runs / f"{chip}-{transport}.log")
                rows += rows_from(xml, chip, transport)
            print(f"{chip}: {time.monotonic() - t0:.0f} s", flush=True)
        finally:
            sim.stop()

    print(f"\nesptool suite at {commit} (test/test_esptool.py, esptool installed from the same checkout)")
    print(f"{'chip':8} {'transport':9} {'outcome':7} test  [reason]")
    for r in rows:
        if r["outcome"] != "skip":
            print(f"{r['chip']:8} {r['transport']:9} {r['outcome']:7} {r['test']}"
                  + (f"  [{r['reason']}]" if r["outcome"] == "fail" else ""))
    for chip in args.chips.split(","):
        for transport in ("socket", "rfc2217"):
            mine = [r for r in rows if r["chip"] == chip and r["transport"] == transport]
            count = {o: sum(r["outcome"] == o for r in mine) for o in ("pass", "fail", "skip")}
            print(f"{chip} {transport}: {count['pass']} passed, {count['fail']} failed, {count['skip']} skipped")
    if args.json:
        args.json.write_text(json.dumps({"esptool_commit": commit, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
