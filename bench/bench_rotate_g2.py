"""The G2 rotation fault campaign (issue 16 must-show), as a table: ten ESP-AT v3.0.0.0 virtual modules
(per-item PKI partitions, AT+SYSFLASH), one fault each in the middle of the certificate/key rewrite,
rotated, then rotated again. Per unit: the fault, the first run's outcome and journal state, what the
unit held then (read from its flash), the second run, what it holds at the end, and whether the
ledger's journal and certificate record agree with it. Also the wall time of both runs.

    .venv/bin/python bench/bench_rotate_g2.py [--baud 115200]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.g2_fleet_support import run_campaign  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--baud", type=int, default=None, help="pace the AT ports at this baud (default: unpaced)")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="atfab-bench-g2-"))
    try:
        started = time.monotonic()
        fleet, rows = run_campaign(tmp, baud=args.baud)
        took = time.monotonic() - started
        cols = [("#", "unit"), ("fault", "fault"), ("run 1", "first"), ("journal", "first_state"),
                ("unit after run 1", "mid"), ("run 2", "second"), ("run 2 did", "second_action"),
                ("unit at the end", "final"), ("pending", "pending"), ("ledger=unit", "ledger_agrees")]
        table = [[str(r[k]) for _h, k in cols] for r in rows]
        widths = [max(len(h), *(len(t[i]) for t in table)) for i, (h, _k) in enumerate(cols)]
        print("  ".join(h.ljust(w) for (h, _k), w in zip(cols, widths)))
        for t in table:
            print("  ".join(c.ljust(w) for c, w in zip(t, widths)))
        whole = sum(r["final_matched"] and not r["final_staged"] and r["pending"] == 0 and r["ledger_agrees"]
                    for r in rows)
        print("\nold = the pair provisioned, new = run 1's rotation, newer = run 2's; "
              "'+staged key': the key partition's staging sector holds a copy")
        print(f"{whole}/{len(rows)} units end with a whole pair the ledger records, nothing pending; "
              f"provision + 2 rotations of {len(rows)} units: {took:.2f} s"
              f" ({'unpaced' if args.baud is None else f'{args.baud} baud'})")
        fleet.close()
        return 0 if whole == len(rows) else 1
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
