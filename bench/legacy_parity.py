"""Byte parity of atfab's legacy (G1/G2) per-item partitions with esp-at's own generators.

Runs, beside the project, the partition generators of the esp-at release that built each legacy
layout (``components/customized_partitions/generation_tools/*.sh|*.py`` calling
``tools/AtPKI.py``, ``tools/BLEService.py``, ``tools/factory_param_generate.py`` of that tag) on
that tag's own ``raw_data`` folder, then ``atfab build`` on the same folder, and compares every
partition image byte for byte. Nothing of esp-at is part of the project: point ``--tags`` at a
folder holding one extracted tree per tag, e.g.::

    G=/work/.mirror/espressif+esp-at/repo
    for t in v1.1.0.0 v1.2.0.0 v2.0.0.0_esp32 v2.1.0.0_esp32 v2.2.0.0_esp32 v2.4.0.0 v3.0.0.0; do
        mkdir -p TAGS/$t && git --git-dir=$G archive $t tools components/customized_partitions | tar -x -C TAGS/$t
    done
    ~/.pyenv/versions/2.7.18/bin/python -m pip install --target PY2LIB 'PyYAML<6'   # 5.4.1
    mkdir -p STUB && touch STUB/xlrd.py
    python bench/legacy_parity.py --tags TAGS --python2 ~/.pyenv/versions/2.7.18/bin/python \\
        --pythonpath2 PY2LIB:STUB --pythonpath3 STUB --at-py

The v1.x-v2.1 generators are shell scripts that call ``python`` (Python 2 on the build hosts of
that time: BLEService.py of v2.0/v2.1 breaks under Python 3); v2.2.0.0+ call ``sys.executable``
(Python 3). BLEService.py imports ``yaml`` and ``xlrd`` (xlrd only for .xls input: an empty stub
module is enough). Prints one row per (tag, profile, partition), a summary line, and exits 1 on any
difference that is not a documented one.

``--at-py`` adds the customisation check: esp-at's ``tools/at.py modify_bin`` of v2.4.0.0 and
v3.0.0.0 against ``atfab customize --image`` on the same factory images, option by option.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

#: tag folder -> (release, [(profile, platform, module)])
CASES: dict[str, tuple[str, list[tuple[str, str, str]]]] = {
    "v1.1.0.0": ("v1.1.0.0", [("esp32-at-v1.1", "PLATFORM_ESP32", "WROOM-32")]),
    "v1.2.0.0": ("v1.2.0.0", [("esp32-at-v1.2", "PLATFORM_ESP32", "WROOM-32")]),
    "v2.0.0.0_esp32": ("v2.0.0.0", [("esp32-at-v2", "PLATFORM_ESP32", "WROOM-32")]),
    "v2.1.0.0_esp32": ("v2.1.0.0", [("esp32-at-v2", "PLATFORM_ESP32", "WROOM-32")]),
    "v2.2.0.0_esp32": ("v2.2.0.0", [("esp32-at-v2", "PLATFORM_ESP32", "WROOM-32")]),
    "v2.4.0.0": ("v2.4.0.0", [("esp32-at-v2", "PLATFORM_ESP32", "WROOM-32"),
                              ("esp32c3-at-v2", "PLATFORM_ESP32C3", "MINI-1")]),
    "v3.0.0.0": ("v3.0.0.0", [("esp32-at-v2", "PLATFORM_ESP32", "WROOM-32"),
                              ("esp32c3-at-v2", "PLATFORM_ESP32C3", "MINI-1"),
                              ("esp32c2-4mb-at-v3.0", "PLATFORM_ESP32C2", "ESP32C2-4MB"),
                              ("esp32c2-2mb-at-v3.0", "PLATFORM_ESP32C2", "ESP32C2-2MB")]),
}
#: Differences atfab makes on purpose (reference §10.4 / issue 16): offset -> why.
DOCUMENTED = {"factory_param": {0x16: "reserved2 0xFF in esp-at (never written by its generator)",
                                0x17: "reserved2 0xFF in esp-at (never written by its generator)"}}


def _shim(folder: Path, python: str, pythonpath: str) -> Path:
    """A folder whose ``python`` is the interpreter the generators of a tag ran under."""
    folder.mkdir(parents=True, exist_ok=True)
    shim = folder / "python"
    shim.write_text(f'#!/bin/sh\nPYTHONPATH="{pythonpath}" exec "{python}" "$@"\n')
    shim.chmod(0o755)
    return folder


def run_esp_at(tag_dir: Path, parts: list[str], platform: str, module: str, python: str, pythonpath: str,
               work: Path) -> dict[str, bytes]:
    """esp-at's generator for every partition in ``parts``; their output images."""
    project = work / "project"
    shutil.copytree(tag_dir, project)
    out = project / "build" / "customized_partitions"
    for sub in ("customized_partitions", "factory", "include"):
        (project / "build" / sub).mkdir(parents=True, exist_ok=True)
    (project / "build" / "module_info.json").write_text(json.dumps({"platform": platform, "module": module}))
    (project / "build" / "include" / "sdkconfig.h").write_text(f'#define CONFIG_AT_MODULE_NAME "{module}"\n')
    tools = project / "components" / "customized_partitions" / "generation_tools"
    env = dict(os.environ, ESP_AT_PROJECT_PATH=str(project), PROJECT_PATH=str(project),
               ESP_AT_PROJECT_PLATFORM=platform, ESP_AT_MODULE_NAME=module,
               PATH=f"{_shim(work / 'bin', python, pythonpath)}{os.pathsep}{os.environ['PATH']}")
    images = {}
    for name in parts:
        if (tools / f"{name}.py").exists():
            cmd = [python, str(tools / f"{name}.py"), "--partition_name", name, "--partition_size", "0",
                   "--outdir", str(out), "--project_path", str(project)]
        elif (tools / f"{name}.sh").exists():
            cmd = ["bash", str(tools / f"{name}.sh"), name, str(out)]
        else:
            continue
        subprocess.run(cmd, env={**env, "PYTHONPATH": pythonpath}, cwd=project, check=False,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=120)
        if (out / f"{name}.bin").exists():
            images[name] = (out / f"{name}.bin").read_bytes()
    return images


def run_atfab(tag_dir: Path, profile: str, release: str, work: Path) -> tuple[dict[str, bytes], list[str]]:
    """``atfab build`` on the tag's raw_data; its per-item images and their names in table order."""
    out = work / "atfab"
    raw = tag_dir / "components" / "customized_partitions" / "raw_data"
    res = subprocess.run([shutil.which("atfab") or "atfab", "build", "-m", profile, "--synthetic-firmware", release,
                          "--pki-dir", str(raw), "--allow-unread", "-o", str(out), "--json"],
                         capture_output=True, text=True, timeout=300, check=False)
    if res.returncode != 0:
        raise SystemExit(f"atfab build {profile} {release}: {res.stderr.strip() or res.stdout.strip()}")
    names = [p["name"] for p in json.loads(res.stdout)["partitions"]]
    return {n: (out / f"{n}.bin").read_bytes() for n in names}, names


def compare(name: str, ours: bytes | None, theirs: bytes | None) -> str:
    """``identical``, ``identical except documented …`` or where the bytes differ."""
    if ours is None or theirs is None:
        return f"only {'esp-at' if ours is None else 'atfab'} writes it"
    if ours == theirs:
        return "identical"
    if len(ours) != len(theirs):
        return f"DIFFERENT length atfab {len(ours)} esp-at {len(theirs)}"
    diff = [i for i in range(len(ours)) if ours[i] != theirs[i]]
    documented = DOCUMENTED.get(name, {})
    if all(i in documented for i in diff):
        return "identical except " + ", ".join(f"0x{i:02x} ({documented[i]})" for i in diff)
    return "DIFFERENT at " + ", ".join(f"0x{i:x}" for i in diff[:8]) + (" …" if len(diff) > 8 else "")


#: (atfab customize options, at.py modify_bin options, why they may differ or "")
AT_PY_CASES = [
    (["--tx-power", "60"], ["--tx_power", "60"], ""),
    (["--baud", "921600", "--country", "US"], ["--baud", "921600", "--country_code", "US"], ""),
    (["--tx-pin", "4", "--rx-pin", "5", "--cts-pin", "-1", "--rts-pin", "-1"],
     ["--tx_pin", "4", "--rx_pin", "5", "--cts_pin", "-1", "--rts_pin", "-1"], ""),
    (["--tx-pin", "0"], ["--tx_pin", "0"], "v2.4 at.py: `if arg:` skips a 0 value"),
    (["--uart-num", "0"], ["--uart_num", "0"], "v2.4 at.py: `if arg:` skips a 0 value; v1 block has no uart_port"),
    (["--module-name", "MY-MODULE"], ["--module_name", "MY-MODULE"], "v1/v2 blocks: the firmware reads no name"),
    (["--start-channel", "1", "--channel-num", "11"], ["--start_channel", "1", "--channel_number", "11"], ""),
    (["--start-channel", "3", "--channel-num", "9"], ["--start_channel", "3", "--channel_number", "9"],
     "byte 7 is the last channel for the firmware (§10.4): atfab 11, at.py 9"),
]
#: Releases whose factory_param block is version 1 or 2 (no PLATFORM_ESP string in it).
OLD_BLOCKS = ("v1.2.0.0", "v2.0.0.0", "v2.1.0.0")


def _why(release: str, tag: str, ours_opts: list[str], why: str, result: str) -> str:
    """The documented reason for a row, where the case's own reason does not cover the image."""
    if tag == "v2.4.0.0" and release in OLD_BLOCKS and result.startswith("at.py fails"):
        return "v2.4 at.py cannot edit a v1/v2 block: no PLATFORM_ESP string ('NoneType' ... 'span')"
    if release.startswith("v1.") and ours_opts[:1] == ["--tx-power"] and result.startswith("atfab refuses"):
        return "esp32-at v1.x takes a power level 0..11 (partitions/README.md), at.py writes the byte"
    return why


#: factory images to customise: (tag of the release, profile)
AT_PY_IMAGES = [("v1.2.0.0", "esp32-at-v1.2"), ("v2.0.0.0", "esp32-at-v2"), ("v2.1.0.0", "esp32-at-v2"),
                ("v2.4.0.0", "esp32-at-v2"), ("v3.0.0.0", "esp32-at-v2"), ("v3.0.0.0", "esp32c3-at-v2"),
                ("v3.0.0.0", "esp32c2-4mb-at-v3.0"), ("v3.0.0.0", "esp32c2-2mb-at-v3.0")]


def at_py_rows(tags: Path, work: Path) -> list[tuple[str, str, str, str, str]]:
    """(release/profile, at.py tag, options, result, documented reason) for every AT_PY case."""
    atfab = shutil.which("atfab") or "atfab"
    rows = []
    for release, profile in AT_PY_IMAGES:
        out = work / f"{profile}-{release}"
        res = subprocess.run([atfab, "build", "-m", profile, "--synthetic-firmware", release, "-o", str(out),
                              "--json"], capture_output=True, text=True, timeout=300, check=False)
        if res.returncode != 0:
            raise SystemExit(f"atfab build {profile} {release}: {res.stderr.strip()}")
        manifest = json.loads(res.stdout)
        image = out / manifest["factory_image"]["name"]
        block_off = next(int(p["offset"], 16) for p in manifest["partitions"] if p["name"] == "factory_param")
        for tag in ("v2.4.0.0", "v3.0.0.0"):
            at_py = tags / tag / "tools" / "at.py"
            for ours_opts, theirs_opts, why in AT_PY_CASES:
                mine, theirs = work / "atfab.bin", work / "at_py.bin"
                for f in (mine, theirs):
                    f.unlink(missing_ok=True)
                r1 = subprocess.run([atfab, "customize", "--image", str(image), "-o", str(mine), *ours_opts],
                                    capture_output=True, text=True, timeout=120, check=False)
                extra = ["--parameter_offset", hex(block_off)] if tag == "v2.4.0.0" else []
                r2 = subprocess.run([sys.executable, str(at_py), "modify_bin", "--input", str(image), "--output",
                                     str(theirs), *extra, *theirs_opts], capture_output=True, text=True,
                                    timeout=120, check=False)
                if r1.returncode != 0:
                    result = f"atfab refuses (exit {r1.returncode}): {(r1.stderr or r1.stdout).strip()[-90:]}"
                elif r2.returncode != 0 or not theirs.exists() or "error occurred" in r2.stdout:
                    result = f"at.py fails (exit {r2.returncode})"
                else:
                    a, b = mine.read_bytes(), theirs.read_bytes()
                    diff = [i for i in range(len(a)) if a[i] != b[i]] if len(a) == len(b) else None
                    result = ("identical" if diff == [] else "DIFFERENT length" if diff is None else
                              "differs at " + ", ".join(f"0x{i - block_off:x}" for i in diff[:6]) + " of the block")
                rows.append((f"{release} {profile}", tag, " ".join(ours_opts), result,
                             _why(release, tag, ours_opts, why, result)))
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tags", type=Path, required=True, help="folder with one extracted esp-at tree per tag")
    ap.add_argument("--python2", default="python2", help="Python 2 for the v1.x-v2.1 shell generators")
    ap.add_argument("--pythonpath2", default="", help="PYTHONPATH for Python 2 (yaml, an xlrd stub)")
    ap.add_argument("--pythonpath3", default="", help="PYTHONPATH for Python 3 (yaml, an xlrd stub)")
    ap.add_argument("--at-py", action="store_true", help="also compare customize --image with at.py modify_bin")
    ap.add_argument("--no-partitions", action="store_true", help="skip the generator comparison")
    args = ap.parse_args()
    bad = 0
    parts = {"identical": 0, "documented": 0, "different": 0}
    cases = {} if args.no_partitions else CASES
    print(f"{'tag':<16} {'profile':<22} {'partition':<14} result")
    for tag, (release, profiles) in cases.items():
        tag_dir = args.tags / tag
        if not tag_dir.is_dir():
            print(f"{tag:<16} (not extracted, skipped)")
            continue
        legacy_shell = not (tag_dir / "components/customized_partitions/generation_tools/ble_data.py").exists()
        python, path = (args.python2, args.pythonpath2) if legacy_shell else (sys.executable, args.pythonpath3)
        for profile, platform, module in profiles:
            with tempfile.TemporaryDirectory(prefix="legacy-parity-") as tmp:
                ours, names = run_atfab(tag_dir, profile, release, Path(tmp))
                theirs = run_esp_at(tag_dir, names, platform, module, python, path, Path(tmp))
                for name in names:
                    result = compare(name, ours.get(name), theirs.get(name))
                    different = result.startswith(("DIFFERENT", "only"))
                    bad += different
                    parts["different" if different else "identical" if result == "identical" else "documented"] += 1
                    print(f"{tag:<16} {profile:<22} {name:<14} {result}")
    at_py = {"identical": 0, "documented": 0, "undocumented": 0}
    if args.at_py:
        print()
        print(f"{'image':<34} {'at.py':<9} {'atfab options':<44} result")
        with tempfile.TemporaryDirectory(prefix="legacy-at-py-") as tmp:
            for image, tag, opts, result, why in at_py_rows(args.tags, Path(tmp)):
                undocumented = result != "identical" and not why
                bad += undocumented
                at_py["identical" if result == "identical" else "undocumented" if undocumented else "documented"] += 1
                note = f"  [{why}]" if why and result != "identical" else ""
                print(f"{image:<34} {tag:<9} {opts:<44} {result}{note}")
    print(f"summary: partitions {parts['identical']} identical, {parts['documented']} identical except documented "
          f"bytes, {parts['different']} different" + (f"; at.py {at_py['identical']} identical, {at_py['documented']} "
          f"differ for a documented reason, {at_py['undocumented']} undocumented" if args.at_py else ""))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
