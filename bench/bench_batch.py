"""Wall time of ``atfab batch -n N`` (offline pre-programming) on all cores, EC P-256 certificates.

Makes a throwaway factory CA and ledger in a temporary folder, runs
:func:`atfab.station.batch.make_batch` with the shipped recipe esp32c2-4mb-default (EC P-256 unit
key, client slot 0) and prints the wall time, units per second and the time per phase
(ledger reservation, issue + build + write on the worker processes, ledger certificate records).
Goal: ``-n 10000`` under 15 s on 2 cores. The output (about 124 kB per unit) is deleted after.

By default it runs once on a SQLite ledger and once on PostgreSQL (``--pg``: a libpq conninfo of
the server; the ledger lives in a throwaway schema, created and dropped) and prints both;
``--ledger sqlite`` or ``--ledger postgresql`` runs one, ``--ledger postgresql://...`` an existing ledger.

    python bench/bench_batch.py [-n 10000] [--workers 2] [--merged] [--ledger sqlite|postgresql|URL]
                                [--pg "host=127.0.0.1 port=5432 dbname=test"]
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import secrets
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import quote

from atfab.pki.ca import create_ca, load_ca
from atfab.station.batch import make_batch
from atfab.station.ledger import Ledger
from atfab.station.recipe import load_recipe
from atfab.station.firmware_images import firmware_images

REPO = Path(__file__).resolve().parent.parent
RECIPE = REPO / "recipes" / "esp32c2-4mb-default.toml"
PASSPHRASE = b"bench passphrase only"
GOAL_S = 15.0


def _cpu() -> float:
    """User + system CPU seconds of this process and its finished children (the workers)."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


@contextmanager
def _pg_schema(conninfo: str) -> Iterator[str]:
    """A throwaway schema in the server at ``conninfo``: yields its ledger URL, dropped after."""
    import psycopg

    name = f"atfab_bench_{secrets.token_hex(4)}"
    parts = dict(p.split("=", 1) for p in conninfo.split())
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{name}"')
    try:
        yield (f"postgresql://{parts.get('host', '127.0.0.1')}:{parts.get('port', '5432')}/"
               f"{parts.get('dbname', 'test')}?options={quote(f'-csearch_path={name}')}")
    finally:
        with psycopg.connect(conninfo, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')


@contextmanager
def _ledger_location(which: str, tmp: Path, conninfo: str) -> Iterator[str]:
    if which == "sqlite":
        yield str(tmp / "ledger.sqlite")
    elif which == "postgresql":
        with _pg_schema(conninfo) as url:
            yield url
    else:
        yield which


def _run(which: str, args: argparse.Namespace, tmp: Path, recipe, ca, firmware) -> None:
    out = tmp / f"batch-{secrets.token_hex(3)}"
    with _ledger_location(which, tmp, args.pg) as location, Ledger(location) as ledger:
        make_batch(recipe, 20, tmp / f"warm-up-{secrets.token_hex(3)}", ca=ca, ledger=ledger, firmware=firmware,
                   workers=1)
        cpu0 = _cpu()
        start = time.perf_counter()
        result = make_batch(recipe, args.count, out, ca=ca, ledger=ledger, firmware=firmware,
                            workers=args.workers, merged=args.merged)
        wall = time.perf_counter() - start
        cpu = _cpu() - cpu0
        backend = ledger.dialect
    size = sum(f.stat().st_size for f in (out / "units").iterdir())
    shutil.rmtree(out, ignore_errors=True)
    t = result.timings
    print(f"atfab bench_batch [{backend} ledger]: {recipe.profile.name}, key {recipe.pki.identity.key_type}, "
          f"{result.workers} worker process(es) on {os.cpu_count()} core(s)"
          + (", merged images" if args.merged else ""))
    print(f"  {args.count} units in {wall:.2f} s: {args.count / wall:,.0f} units/s, "
          f"{wall / args.count * 1000:.3f} ms/unit; {size / 2**20:,.0f} MiB written")
    print(f"  reserve {t.get('reserve', 0):.2f} s, issue+build+write {t.get('build', 0):.2f} s, "
          f"record certificates {t.get('record', 0):.2f} s")
    per_10k = wall * 10_000 / args.count
    verdict = "met" if per_10k < GOAL_S else "NOT met"
    how = "measured" if args.count == 10_000 else f"extrapolated from {args.count}"
    print(f"  goal: -n 10000 under {GOAL_S:.0f} s on 2 cores -> {per_10k:.1f} s ({how}): {verdict}")
    print(f"  CPU time {cpu:.2f} s ({cpu / args.count * 1000:.3f} ms/unit, this process + workers): "
          f"{cpu * 10_000 / args.count / 2:.1f} s per 10000 units on 2 idle cores")
    load = os.getloadavg()
    print(f"  load average during the run: {load[0]:.1f} (other processes share these cores)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", "--count", type=int, default=10_000)
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--merged", action="store_true", help="also write the full flash image per unit")
    ap.add_argument("--ledger", action="append", default=None, metavar="sqlite|postgresql|URL",
                    help="ledger backend(s) to run on (repeatable) [default: sqlite and postgresql]")
    ap.add_argument("--pg", default="host=127.0.0.1 port=5432 dbname=test",
                    help="PostgreSQL server (libpq conninfo) for the throwaway schema")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench_batch."))
    try:
        create_ca(tmp / "ca", common_name="Bench CA", passphrase=PASSPHRASE)
        text = RECIPE.read_text(encoding="utf-8")
        text = re.sub(r'ca = "[^"]*"', f'ca = "{tmp / "ca"}"', text, count=1).replace("demo_ca = true", "demo_ca = false")
        (tmp / "recipe.toml").write_text(text, encoding="utf-8")
        recipe = load_recipe(tmp / "recipe.toml", workdir=tmp)
        ca = load_ca(tmp / "ca", PASSPHRASE)
        firmware = firmware_images(recipe)
        for which in args.ledger or ["sqlite", "postgresql"]:
            _run(which, args, tmp, recipe, ca, firmware)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
