"""Units per second for building one unit's mfg_nvs + at_customize in-process (no certificates).

Content: the profile's default factory_param (module_name varied per unit) + esp-at's default
GATT table. Target for later: >= 5,000 images/s. Prints the rate and a cProfile top list.

    python bench/bench_build.py [--module esp32c2-4mb] [--seconds 3]
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import time

from atfab.image.build import build_unit_images
from atfab.image.gatt import cfg_strings, load_gatts_csv
from atfab.image.mfg_nvs import UnitContent
from atfab.image.profiles import load_profile
from atfab.image.unit_content import DEFAULT_GATT


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--module", default="esp32c2-4mb")
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--profile-units", type=int, default=200)
    args = ap.parse_args()

    profile = load_profile(args.module)
    rows = cfg_strings(load_gatts_csv(DEFAULT_GATT)) if profile.build.ble_data else []   # only BLE builds read ble_data

    def one(i: int) -> None:
        fp = dict(profile.factory_param, module_name=f"UNIT-{i:06d}")
        images = build_unit_images(profile, UnitContent(factory_param=fp, ble_rows=rows))
        assert len(images.mfg_nvs.image) == profile.mfg_nvs.size

    one(0)  # warm up imports
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < args.seconds:
        one(n)
        n += 1
    elapsed = time.perf_counter() - start
    rate = n / elapsed
    print(f"module {profile.name}: mfg_nvs 0x{profile.mfg_nvs.size:x} bytes, {len(rows)} GATT rows, "
          f"13 factory_param keys")
    print(f"{n} units in {elapsed:.2f} s: {rate:,.0f} units/s ({1000 / rate:.3f} ms/unit); target 5,000 units/s")

    prof = cProfile.Profile()
    prof.enable()
    for i in range(args.profile_units):
        one(i)
    prof.disable()
    out = io.StringIO()
    stats = pstats.Stats(prof, stream=out).sort_stats("tottime")
    stats.print_stats(5)
    print(f"\ncProfile top 5 by own time ({args.profile_units} units):")
    print(_table(out.getvalue()))
    out = io.StringIO()
    pstats.Stats(prof, stream=out).sort_stats("cumulative").print_stats(r"nvs_partition_gen|mfg_nvs|build\.py", 6)
    print("\ncumulative (atfab build -> mfg_nvs -> esp-idf-nvs-partition-gen):")
    print(_table(out.getvalue()))


def _table(text: str) -> str:
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip().startswith("ncalls"))
    return "\n".join(line.replace("/tmp/venv/lib/python3.11/site-packages/", "") for line in lines[start:] if line.strip())


if __name__ == "__main__":
    main()
