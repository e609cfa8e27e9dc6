"""Hostile-input campaign, apart from tests/bad_inputs: mutated recipes, profiles, tables and images.

Each mutant goes through the real CLI as a subprocess (``python -m atfab.cli``) with a timeout and
an address-space cap. A result is *clean* when the exit code is 0 (the mutant happens to be valid)
or 2 with one error line (``atfab check`` prints one line per problem on stdout), no traceback and
no "unexpected" error; everything else is printed. Figures: mutants run, clean, not clean, time.

    python bench/hostile_inputs.py [--seed 1] [--count 40] [--timeout 30]
"""

from __future__ import annotations

import argparse
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

RECIPE = REPO / "recipes" / "esp32c2-4mb-default.toml"
PROFILE = REPO / "partitions" / "esp32c2-4mb"
GATT = REPO / "partitions" / "gatts_data.csv"
AS_LIMIT = 2 << 30


def _limit() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (AS_LIMIT, AS_LIMIT))


def run(argv: list[str], cwd: Path, timeout: float) -> tuple[str, str]:
    """(verdict, detail): "clean" or what was wrong."""
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "ATFAB_CA_PASSPHRASE": "hostile-campaign-passphrase"}
    try:
        proc = subprocess.run([sys.executable, "-m", "atfab.cli", *argv], cwd=cwd, capture_output=True, text=True,
                              timeout=timeout, preexec_fn=_limit, stdin=subprocess.DEVNULL, env=env)
    except subprocess.TimeoutExpired:
        return "hang", f"no exit within {timeout:.0f} s"
    both = proc.stdout + proc.stderr
    if "Traceback" in both or "unexpected" in both:
        return "traceback", both.strip().splitlines()[-1][:200]
    if proc.returncode == 0:
        return "clean", ""
    if proc.returncode != 2:
        return f"exit {proc.returncode}", both.strip()[:200]
    lines = proc.stderr.splitlines() if proc.stderr else proc.stdout.splitlines()
    if argv[0] != "check" and len(lines) != 1:
        return "lines", f"{len(lines)} lines: {both[:200]!r}"
    return "clean", ""


# ------------------------------------------------------------------------------- mutators

def mutate_text(rng: random.Random, text: str) -> str:
    """One of: drop a line, duplicate a line, swap a value's type, truncate, inject bytes, nest deep."""
    lines = text.splitlines()
    op = rng.choice(["drop", "dup", "type", "truncate", "inject", "deep", "huge_value", "unicode"])
    i = rng.randrange(len(lines))
    if op == "drop":
        del lines[i]
    elif op == "dup":
        lines.insert(i, lines[i])
    elif op == "type" and "=" in lines[i]:
        key, _, value = lines[i].partition("=")
        value = value.strip()
        new = rng.choice([f'"{value}"', "true", "1.5", "[]", "{}", "-1", str(2 ** 70), '""'])
        lines[i] = f"{key}= {new}"
    elif op == "truncate":
        return text[:rng.randrange(len(text))]
    elif op == "inject":
        pos = rng.randrange(len(text))
        return text[:pos] + bytes(rng.randrange(256) for _ in range(8)).decode("latin-1") + text[pos:]
    elif op == "deep" and "=" in lines[i]:
        key = lines[i].partition("=")[0]
        lines[i] = f"{key}= " + "[" * 2000 + "]" * 2000
    elif op == "huge_value" and "=" in lines[i]:
        key = lines[i].partition("=")[0]
        lines[i] = f'{key}= "{"A" * rng.choice([65, 4000, 200_000])}"'
    elif op == "unicode" and "=" in lines[i]:
        key = lines[i].partition("=")[0]
        lines[i] = f'{key}= "\u202e\u0000\u2028x"'
    return "\n".join(lines) + "\n"


def mutate_bytes(rng: random.Random, data: bytes) -> bytes:
    out = bytearray(data)
    for _ in range(rng.choice([1, 4, 64])):
        out[rng.randrange(len(out))] = rng.randrange(256)
    if rng.random() < 0.2:
        out = out[:rng.randrange(len(out))]
    return bytes(out)


def factory_image() -> bytes:
    from tests.bad_input_generators import _factory_image

    return _factory_image("esp32c2-4mb")


# ------------------------------------------------------------------------------- campaign

def campaign(seed: int, count: int, timeout: float) -> dict[str, int]:
    rng = random.Random(seed)
    results: dict[str, int] = {}
    image = factory_image()
    kinds: list[tuple[str, Callable[[Path], list[str]]]] = []

    def recipe_case(ws: Path) -> list[str]:
        (ws / "r.toml").write_text(mutate_text(rng, RECIPE.read_text()), encoding="utf-8", errors="replace")
        return ["check", str(ws / "r.toml")]

    def profile_case(ws: Path) -> list[str]:
        import shutil

        folder = ws / "esp32c2-mut"
        shutil.copytree(PROFILE, folder)
        name = rng.choice(["profile.toml", "partitions_at.csv", "at_customize.csv"])
        (folder / name).write_text(mutate_text(rng, (folder / name).read_text()), encoding="utf-8", errors="replace")
        return ["build", "-m", str(folder), "-o", str(ws / "out")]

    def gatt_case(ws: Path) -> list[str]:
        (ws / "g.csv").write_text(mutate_text(rng, GATT.read_text()), encoding="utf-8", errors="replace")
        return ["gatt", "check", str(ws / "g.csv")]

    def image_case(ws: Path) -> list[str]:
        region = rng.choice([(0x8000, 0x8C00), (0x1E000, 0x1EC00), (0x1F000, 0x3E000), (0, 0x8000)])
        data = image[:region[0]] + mutate_bytes(rng, image[region[0]:region[1]]) + image[region[1]:]
        (ws / "fi.bin").write_bytes(data)
        return ["customize", "--image", str(ws / "fi.bin"), "-o", str(ws / "out.bin"), "--baud", "921600"]

    def inspect_case(ws: Path) -> list[str]:
        (ws / "x.bin").write_bytes(mutate_bytes(rng, image[:0x60000]))
        return ["inspect", str(ws / "x.bin")]

    kinds = [("recipe", recipe_case), ("profile", profile_case), ("gatt", gatt_case), ("image", image_case),
             ("inspect", inspect_case)]
    for n in range(count):
        name, make = kinds[n % len(kinds)]
        with tempfile.TemporaryDirectory() as d:
            ws = Path(d)
            argv = make(ws)
            verdict, detail = run(argv, ws, timeout)
        results[verdict] = results.get(verdict, 0) + 1
        if verdict != "clean":
            print(f"  NOT CLEAN [{name} #{n}] {verdict}: {detail}")
    return results


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--count", type=int, default=40)
    ap.add_argument("--timeout", type=float, default=30.0)
    args = ap.parse_args()
    t0 = time.monotonic()
    results = campaign(args.seed, args.count, args.timeout)
    took = time.monotonic() - t0
    clean = results.get("clean", 0)
    print(f"hostile inputs: {args.count} mutants (seed {args.seed}), {clean} clean, {args.count - clean} not clean "
          f"{dict(sorted((k, v) for k, v in results.items() if k != 'clean'))}, {took:.1f} s "
          f"({took / max(args.count, 1):.2f} s per mutant)")


if __name__ == "__main__":
    main()
