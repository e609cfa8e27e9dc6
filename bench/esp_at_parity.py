"""Byte parity of atfab's G3 images (at_customize.bin, mfg_nvs.bin) with esp-at's own build pipeline.

Runs, beside the project, what esp-at's ``components/customized_partitions/CMakeLists.txt`` runs for
a module build: ESP-IDF's ``components/partition_table/gen_esp32part.py`` on the module's
``at_customize.csv``; ``at_customized_target_generate.py`` with the module's ``sdkconfig`` and
``at_customized_config_dependency.txt``; ``at_customized_target_bin_generate.py``, which runs
``generation_tools/mfg_nvs.py``, which runs ESP-IDF's ``nvs_partition_gen.py`` (a wrapper around
PyPI's ``esp-idf-nvs-partition-gen``, the project's own dependency). Then ``atfab build`` (the CLI)
on the same raw_data, and compares both images byte for byte, for every shipped G3 profile
(``partitions/*/profile.toml`` without ``firmware_releases``) and these input sets:

* ``default``   esp-at's ``raw_data`` folder without ``wpa_ent_*``, ``https_*``, ``wss_*`` (the default
  set of tests/test_build_parity.py and partitions/README.md: server, client x2, mqtt, ble_data,
  factory_param), esp-at's own files;
* ``raw_data``  esp-at's ``raw_data`` folder as esp-at ships it (every PKI folder, its test files);
* ``full``      every PKI folder esp-at ships, with esp-at's file names, certificates and keys made
  now (EC P-256), plus esp-at's ``ble_data`` and ``factory_param``;
* ``read``      ``full`` reduced to the folders the module's firmware reads (atfab needs no flag);
* ``factory``   ``default`` with other values in every row of ``factory_param_data.csv``;
* ``params``    the same values given to atfab as ``--params params.toml`` (and no factory_param
  folder); esp-at gets the edited csv;
* ``clients3``  ``default`` with three client certificates, keys and CAs made now (RSA-2048; the
  third CA file a bundle of four, so its blob spans NVS pages);
* ``clients12`` ``default`` with twelve client certificates, keys and CAs (EC), numbered without
  zero padding (``client_cert_10.crt`` sorts before ``client_cert_2.crt``: keys ``.0`` .. ``.11``);
* ``stray``     ``default`` with a ``README.txt`` beside the one certificate of ``server_ca/``: esp-at
  counts it and keys the certificate ``server_ca.0``; atfab refuses the stray file on purpose
  (exit 2), which the row reports as ``refused (by design)``, not as a difference.

Where esp-at's build leaves a folder out because its ``CONFIG_AT_*`` option is off, atfab refuses
the input naming the option; the script then runs ``atfab build --skip-unread`` (which yields
esp-at's bytes) and says so in the row. Nothing of esp-at or ESP-IDF is part of the project:
extract them beside it, e.g.::

    G=/work/.mirror/espressif+esp-at/repo        # esp-at HEAD b49e4b98
    I=/work/.mirror/espressif+esp-idf/repo
    mkdir -p EXT/esp-at EXT/idf-v5.4.4 EXT/idf-v5.5
    git --git-dir=$G archive HEAD components/customized_partitions tools module_config | tar -x -C EXT/esp-at
    # the ESP-IDF commits esp-at's module_config/*/IDF_VERSION pin: tag v5.4.4, and release/v5.5 for C5/C61
    P="components/partition_table components/nvs_flash/nvs_partition_generator tools/cmake/version.cmake"
    git --git-dir=$I archive 296b6eab9445fd720e71aecab961e2d3fbca9944 $P | tar -x -C EXT/idf-v5.4.4
    git --git-dir=$I archive 82e525ef3e8e6528c95b67dd634c9cc2f5d0c3b7 $P | tar -x -C EXT/idf-v5.5
    python bench/esp_at_parity.py --esp-at EXT/esp-at --idf EXT/idf-v5.4.4 --idf EXT/idf-v5.5

Each module runs with the ESP-IDF whose version its ``IDF_VERSION`` names (``--idf`` may be given
once per version). Its ``sdkconfig`` is ``tests/data/esp-at-kconfgen/<module>.sdkconfig`` (kconfgen's
output for the module, see the README there). ``--esp-at`` may instead be an esp-at project that was
configured and built (``sdkconfig`` and ``build/module_info.json`` at its top, ``esp-idf/`` inside):
then only that module runs, with that ``sdkconfig`` (given to atfab as ``--sdkconfig`` too), and
``--idf`` defaults to its ``esp-idf``. Prints one row per (profile, input set, image) and a summary;
exits 1 on any difference.

``--at-py`` also compares ``atfab customize --image`` with esp-at's own ``tools/at.py modify_bin`` on
a factory image of every profile (``bench/esp_at_customize_parity.py``, which has the details;
``--no-build`` skips the build comparison)::

    python bench/esp_at_parity.py --esp-at EXT/esp-at --idf EXT/idf-v5.4.4 --idf EXT/idf-v5.5 --at-py --no-build
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
from importlib.metadata import version as dist_version
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

ROOT = Path(__file__).resolve().parents[1]
PROFILES_DIR = ROOT / "partitions"
SDKCONFIGS = ROOT / "tests" / "data" / "esp-at-kconfgen"
COMPONENT = Path("components") / "customized_partitions"
IMAGES = ("at_customize.bin", "mfg_nvs.bin")
PKI_EXT = (".crt", ".key", ".pem")
#: Other factory_param values, valid on every chip (module_name and version stay: they choose the row).
NEW_VALUES = {"max_tx_power": 60, "country_code": "US", "start_channel": 1, "channel_num": 11, "uart_port": 1,
              "uart_baudrate": 921600, "uart_tx_pin": 4, "uart_rx_pin": 5, "uart_cts_pin": -1, "uart_rts_pin": -1,
              "sys_store": 0}
SETS = ("default", "raw_data", "full", "read", "factory", "params", "clients3", "clients12", "stray")
#: Folders esp-at added to raw_data after the default set (tests/raw_data_support.py DEFAULT).
LATER_FOLDERS = ("wpa_ent_", "https_", "wss_")


# ------------------------------------------------------------------------------------- inputs


class Material:
    """Certificates and keys made at run time (never written anywhere but the temporary folder)."""

    def __init__(self) -> None:
        self.ca_key = ec.generate_private_key(ec.SECP256R1())
        self.now = dt.datetime.now(dt.timezone.utc)

    def cert(self, cn: str, key, *, ca: bool) -> bytes:
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
        issuer = name if ca else x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "parity CA")])
        b = (x509.CertificateBuilder().subject_name(name).issuer_name(issuer).public_key(key.public_key())
             .serial_number(x509.random_serial_number()).not_valid_before(self.now - dt.timedelta(days=1))
             .not_valid_after(self.now + dt.timedelta(days=365))
             .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
        return b.sign(key if ca else self.ca_key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)

    def file(self, folder: str, name: str, *, rsa_bits: int = 0) -> bytes:
        """A PEM for raw_data ``folder``: a private key (``*_key``), a CA or a client/server certificate."""
        key = rsa.generate_private_key(65537, rsa_bits) if rsa_bits else ec.generate_private_key(ec.SECP256R1())
        if folder.endswith("_key"):
            return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                     serialization.NoEncryption())
        return self.cert(f"{folder}/{name}", key, ca=folder.endswith("_ca"))


def pki_folders(raw: Path) -> list[str]:
    """The PKI folders of a raw_data tree (every folder holding a certificate or key file)."""
    return sorted(d.name for d in raw.iterdir() if d.is_dir() and any(f.name.endswith(PKI_EXT) for f in d.iterdir()))


def folders_read(dependency: Path, sdkconfig: str) -> set[str]:
    """raw_data folders esp-at's mfg_nvs.py reads for this sdkconfig (its own test: the text occurs)."""
    out = set()
    for line in dependency.read_text().splitlines():
        parts = re.sub(" +", " ", line.strip()).split()
        if parts and not parts[0].startswith("#") and sdkconfig.find("CONFIG_" + parts[0]) != -1:
            out.add(parts[1])
    return out


def option_of(dependency: Path, folder: str) -> str:
    """The CONFIG_AT_* option the dependency file ties ``folder`` to."""
    for line in dependency.read_text().splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1] == folder:
            return "CONFIG_" + parts[0].split("=")[0]
    return "?"


def _edit_factory_csv(path: Path) -> None:
    rows = list(csv.reader(path.open(newline="")))
    header = rows[0]
    for row in rows[1:]:
        for key, value in NEW_VALUES.items():
            row[header.index(key)] = str(value)
    with path.open("w", newline="") as f:
        csv.writer(f, lineterminator="\n").writerows(rows)


def make_sets(esp_at_raw: Path, base: Path) -> dict[str, Path]:
    """Every input set as a raw_data tree (plus ``params.toml``), the same files for both pipelines."""
    material = Material()
    sets = {"raw_data": base / "raw_data", "default": base / "default"}
    shutil.copytree(esp_at_raw, sets["raw_data"])
    shutil.copytree(esp_at_raw, sets["default"], ignore=lambda d, names: [
        n for n in names if Path(d) == esp_at_raw and n.startswith(LATER_FOLDERS)])
    default = sets["default"]
    full = sets["full"] = base / "full"
    shutil.copytree(esp_at_raw, full)
    for folder in pki_folders(full):
        for f in (full / folder).iterdir():
            f.write_bytes(material.file(folder, f.name))
    sets["factory"] = base / "factory"
    shutil.copytree(default, sets["factory"])
    _edit_factory_csv(sets["factory"] / "factory_param" / "factory_param_data.csv")
    sets["params"] = base / "params"
    shutil.copytree(default, sets["params"], ignore=shutil.ignore_patterns("factory_param"))
    sets["params.toml"] = base / "params.toml"
    sets["params.toml"].write_text("[factory_param]\n" + "".join(
        f'{k} = "{v}"\n' if isinstance(v, str) else f"{k} = {v}\n" for k, v in NEW_VALUES.items()))
    c3 = sets["clients3"] = base / "clients3"
    shutil.copytree(default, c3)
    for kind, ext in (("cert", "crt"), ("key", "key"), ("ca", "crt")):
        folder = c3 / f"client_{kind}"
        shutil.rmtree(folder)
        folder.mkdir()
        for i in range(3):
            data = material.file(folder.name, f"{i}", rsa_bits=2048)
            if kind == "ca" and i == 2:   # a CA bundle: one blob larger than an NVS page
                data += b"".join(material.file(folder.name, f"{i}.{j}", rsa_bits=2048) for j in range(3))
            (folder / f"client_{kind}_{i:02d}.{ext}").write_bytes(data)
    c12 = sets["clients12"] = base / "clients12"
    shutil.copytree(default, c12)
    for kind, ext in (("cert", "crt"), ("key", "key"), ("ca", "pem")):
        folder = c12 / f"client_{kind}"
        shutil.rmtree(folder)
        folder.mkdir()
        for i in range(12):
            (folder / f"client_{kind}_{i}.{ext}").write_bytes(material.file(folder.name, f"{i}"))
    stray = sets["stray"] = base / "stray"
    shutil.copytree(default, stray)
    (stray / "server_ca" / "README.txt").write_text("notes about this CA\n")
    return sets


def read_set(full: Path, keep: set[str], dest: Path) -> Path:
    """``full`` without the PKI folders (and ``ble_data``) the firmware does not read."""
    drop = (set(pki_folders(full)) | {"ble_data"}) - keep
    if not dest.exists():
        shutil.copytree(full, dest, ignore=lambda d, names: [n for n in names if Path(d) == full and n in drop])
    return dest


# ------------------------------------------------------------------------------------- esp-at


def idf_version(idf: Path) -> str:
    """``5.4.4`` from ESP-IDF's tools/cmake/version.cmake."""
    text = (idf / "tools" / "cmake" / "version.cmake").read_text()
    parts = [re.search(rf"IDF_VERSION_{k} (\d+)", text).group(1) for k in ("MAJOR", "MINOR", "PATCH")]
    return ".".join(parts)


def pick_idf(pin: str, idfs: list[Path]) -> tuple[Path, str]:
    """The ``--idf`` tree matching a module's IDF_VERSION (``tag:v5.4.4`` / ``branch:release/v5.5``)."""
    tag = re.search(r"tag:v(\S+)", pin)
    branch = re.search(r"branch:release/v(\S+)", pin)
    for idf in idfs:
        v = idf_version(idf)
        if (tag and v == tag.group(1)) or (branch and v.startswith(branch.group(1) + ".")):
            return idf, ""
    return idfs[0], f"IDF pin {pin.split()[0]} not given, ran {idf_version(idfs[0])}"


def python_shim(folder: Path) -> Path:
    """An IDF_PYTHON_ENV_PATH whose ``bin/python`` is this interpreter (mfg_nvs.py runs ``python``)."""
    (folder / "bin").mkdir(parents=True, exist_ok=True)
    shim = folder / "bin" / "python"
    shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
    shim.chmod(0o755)
    return folder


def _run(cmd: list[str], env: dict[str, str], cwd: Path) -> None:
    res = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True, timeout=300, check=False)
    if res.returncode != 0:
        raise RuntimeError(f"{Path(cmd[1]).name} exit {res.returncode}: {(res.stdout + res.stderr).strip()[-300:]}")


def run_esp_at(esp_at: Path, idf: Path, module: str, sdkconfig: str, info: dict, raw: Path,
               work: Path, pyenv: Path) -> tuple[dict[str, bytes], str]:
    """esp-at's CMake steps for one module on ``raw`` (as its raw_data); the images and mfg_nvs.csv."""
    project = work / "esp-at"
    comp = project / COMPONENT
    shutil.copytree(esp_at / COMPONENT, comp, ignore=shutil.ignore_patterns("raw_data"))
    shutil.copytree(raw, comp / "raw_data")
    shutil.copytree(esp_at / "module_config" / module, project / "module_config" / module)
    (project / "sdkconfig").write_text(sdkconfig)
    build = project / "build"
    build.mkdir()
    (build / "module_info.json").write_text(json.dumps(info))
    (project / "esp-idf").symlink_to(idf.resolve())
    table_file = re.search(r'CONFIG_AT_CUSTOMIZED_PARTITION_TABLE_FILE="([^"]+)"', sdkconfig).group(1)
    table = project / table_file
    customize_bin = build / (Path(table_file).stem + ".bin")
    args_file = build / "flash_customized_partition_args"
    out = build / "customized_partitions"
    env = {**os.environ, "IDF_PATH": str(project / "esp-idf"), "IDF_PYTHON_ENV_PATH": str(pyenv)}
    py = sys.executable
    _run([py, str(idf / "components" / "partition_table" / "gen_esp32part.py"), str(table), str(customize_bin)],
         env, project)
    _run([py, str(comp / "at_customized_target_generate.py"), "--sdkconfig_file", str(project / "sdkconfig"),
          "--dependency_file", str(comp / "at_customized_config_dependency.txt"), "--partition_file", str(table),
          "--output_dir", str(out), "--flash_args_file", str(args_file)], env, project)
    _run([py, str(comp / "at_customized_target_bin_generate.py"), "--project_dir", str(project),
          "--tools_dir", str(comp / "generation_tools"), "--output_dir", str(out),
          "--flash_args_file", str(args_file)], env, project)
    images = {"at_customize.bin": customize_bin.read_bytes()}
    if (out / "mfg_nvs.bin").exists():
        images["mfg_nvs.bin"] = (out / "mfg_nvs.bin").read_bytes()
    csv_text = (out / "mfg_nvs.csv").read_text() if (out / "mfg_nvs.csv").exists() else ""
    return images, csv_text


# ------------------------------------------------------------------------------------- atfab


def run_atfab(profile: str, raw: Path, out: Path, *, params: Path | None, sdkconfig: Path | None,
              dependency: Path, left_out: set[str], stray: bool = False) -> tuple[dict[str, bytes], str]:
    """``atfab build`` on ``raw``; when it refuses a folder esp-at leaves out, again with --skip-unread.
    With ``stray``, a refusal of a stray file returns no images (the refusal is the expected outcome)."""
    atfab = shutil.which("atfab") or "atfab"
    cmd = [atfab, "build", "-m", profile, "--pki-dir", str(raw), "-o", str(out), "--json"]
    cmd += ["--params", str(params)] if params else []
    cmd += ["--sdkconfig", str(sdkconfig)] if sdkconfig else []
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False)
    note = ""
    if res.returncode == 2 and "never reads" in res.stderr:
        named = set(re.findall(r"CONFIG_AT_\w+", res.stderr))
        expected = {option_of(dependency, f) for f in left_out}
        if not left_out or not named or not named <= expected:
            raise RuntimeError(f"atfab refused, naming {sorted(named)}; esp-at leaves out {sorted(left_out)}: "
                               f"{res.stderr.strip()}")
        note = f"esp-at leaves out {_folders(left_out)}; atfab refuses ({', '.join(sorted(named))} off) -> --skip-unread"
        res = subprocess.run([*cmd, "--skip-unread"], capture_output=True, text=True, timeout=300, check=False)
    elif left_out and res.returncode == 0:
        raise RuntimeError(f"atfab wrote {sorted(left_out)}, which esp-at leaves out, without a word")
    if res.returncode == 2 and stray and "stray file" in res.stderr:
        return {}, "; ".join(filter(None, [note, "atfab refuses the stray file (exit 2)"]))
    if res.returncode != 0:
        raise RuntimeError(f"atfab build exit {res.returncode}: {(res.stderr or res.stdout).strip()[-300:]}")
    return {name: (out / name).read_bytes() for name in IMAGES if (out / name).exists()}, note


def _folders(names: set[str]) -> str:
    """``https_{ca,cert,key}, ble_data``: folder names grouped by their prefix."""
    groups: dict[str, list[str]] = {}
    for n in sorted(names):
        head, _, tail = n.rpartition("_") if n.endswith(("_ca", "_cert", "_key")) else (n, "", "")
        groups.setdefault(head, []).append(tail)
    return ", ".join(h if t == [""] else f"{h}_{t[0]}" if len(t) == 1 else f"{h}_{{{','.join(t)}}}"
                     for h, t in groups.items())


def blob_id(path: Path) -> str:
    """The git blob id of a file (names the revision of a script in an extracted tree)."""
    data = path.read_bytes()
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()[:8]


def compare(ours: bytes | None, theirs: bytes | None) -> str:
    if ours is None or theirs is None:
        return f"DIFFERENT: only {'esp-at' if ours is None else 'atfab'} writes it"
    if ours == theirs:
        return "identical"
    first = next((i for i in range(min(len(ours), len(theirs))) if ours[i] != theirs[i]), min(len(ours), len(theirs)))
    sizes = f", length atfab {len(ours)} esp-at {len(theirs)}" if len(ours) != len(theirs) else ""
    return f"DIFFERENT at 0x{first:x}{sizes}"


# ------------------------------------------------------------------------------------- cases


def g3_profiles() -> list[tuple[str, dict]]:
    return sorted((t.parent.name, d) for t in PROFILES_DIR.glob("*/profile.toml")
                  if "firmware_releases" not in (d := tomllib.loads(t.read_text())) and "esp_at_module" in d)


def module_info(profile: dict) -> dict:
    """What esp-at's build.py writes to build/module_info.json for the module's factory_param row."""
    return {"platform": f"PLATFORM_{profile['chip'].upper()}", "module": profile["module_name"].upper(), "silence": 0}


def revision(folder: Path) -> str:
    res = subprocess.run(["git", "-C", str(folder), "rev-parse", "--short=8", "HEAD"], capture_output=True,
                         text=True, check=False)
    return res.stdout.strip() if res.returncode == 0 and (folder / ".git").exists() else "extracted tree"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--esp-at", type=Path, required=True, help="extracted esp-at tree, or a built esp-at project")
    ap.add_argument("--idf", type=Path, action="append", default=[],
                    help="ESP-IDF tree (gen_esp32part.py, nvs_partition_gen.py); once per pinned version")
    ap.add_argument("--profile", action="append", default=[], help="only these profiles")
    ap.add_argument("--set", action="append", default=[], choices=SETS, help="only these input sets")
    ap.add_argument("--at-py", action="store_true",
                    help="also compare customize --image with esp-at's tools/at.py (bench/esp_at_customize_parity.py)")
    ap.add_argument("--no-build", action="store_true", help="skip the build comparison (with --at-py)")
    args = ap.parse_args()
    esp_at = args.esp_at.resolve()
    built = (esp_at / "sdkconfig").is_file() and (esp_at / "build" / "module_info.json").is_file()
    idfs = [p.resolve() for p in args.idf] or ([esp_at / "esp-idf"] if built else [])
    if not idfs:
        ap.error("--idf is required with an extracted esp-at tree")
    profiles = g3_profiles()
    if built:
        sdk_text = (esp_at / "sdkconfig").read_text()
        table_file = re.search(r'CONFIG_AT_CUSTOMIZED_PARTITION_TABLE_FILE="([^"]+)"', sdk_text).group(1)
        module = Path(table_file).parent.name
        profiles = [(n, p) for n, p in profiles if p["esp_at_module"] == module]
        if not profiles:
            ap.error(f"no shipped profile is esp-at's {module}")
    if args.profile:
        profiles = [(n, p) for n, p in profiles if n in args.profile]
    sets = [s for s in SETS if not args.set or s in args.set] if not args.no_build else []
    dependency = esp_at / COMPONENT / "at_customized_config_dependency.txt"
    nvs_gen = dist_version("esp-idf-nvs-partition-gen")
    scripts = ", ".join(f"{f} {blob_id(esp_at / COMPONENT / f)}" for f in (
        "at_customized_target_generate.py", "at_customized_target_bin_generate.py", "generation_tools/mfg_nvs.py"))
    print(f"esp-at: {esp_at} ({revision(esp_at)}{', built project' if built else ''}; blobs {scripts})")
    for p in idfs:
        print(f"ESP-IDF v{idf_version(p)}: {p} ({revision(p)}; blob gen_esp32part.py "
              f"{blob_id(p / 'components/partition_table/gen_esp32part.py')}, nvs_partition_gen.py "
              f"{blob_id(p / 'components/nvs_flash/nvs_partition_generator/nvs_partition_gen.py')})")
    print(f"esp-idf-nvs-partition-gen {nvs_gen} (PyPI); atfab {ROOT} ({revision(ROOT)})")
    if sets:
        print(f"{'profile':<22} {'set':<9} {'image':<17} {'result':<24} note")
    counts = {"identical": 0, "different": 0, "error": 0, "by design": 0}
    with tempfile.TemporaryDirectory(prefix="esp-at-parity-") as tmp:
        base = Path(tmp)
        trees = make_sets(esp_at / COMPONENT / "raw_data", base / "sets")
        pyenv = python_shim(base / "pyenv")
        for name, profile in profiles:
            module = profile["esp_at_module"]
            sdk_file = esp_at / "sdkconfig" if built else SDKCONFIGS / f"{module}.sdkconfig"
            sdkconfig = sdk_file.read_text()
            pin = (esp_at / "module_config" / module / "IDF_VERSION").read_text()
            idf, idf_note = pick_idf(pin, idfs)
            read = folders_read(dependency, sdkconfig)
            info = json.loads((esp_at / "build" / "module_info.json").read_text()) if built else module_info(profile)
            for set_name in sets:
                raw = (read_set(trees["full"], read, base / "sets" / f"read-{module}") if set_name == "read"
                       else trees[set_name])
                esp_at_raw = trees["factory"] if set_name == "params" else raw
                work = base / "run" / name / set_name
                notes = [idf_note] if idf_note else []
                try:
                    theirs, csv_text = run_esp_at(esp_at, idf, module, sdkconfig, info, esp_at_raw, work, pyenv)
                    left_out = {ns for ns in pki_folders(raw) if ns not in read}
                    if "ble_data" not in read and (raw / "ble_data").is_dir():
                        left_out.add("ble_data")
                    ours, note = run_atfab(name, raw, work / "atfab", dependency=dependency, left_out=left_out,
                                           params=trees["params.toml"] if set_name == "params" else None,
                                           sdkconfig=sdk_file if built else None, stray=set_name == "stray")
                    notes += [note] if note else []
                    namespaces = [ln.split(",")[0] for ln in csv_text.splitlines() if ln.endswith(",namespace,,")]
                    ns_note = f"{len(namespaces)} namespaces"
                except (RuntimeError, OSError, subprocess.TimeoutExpired) as exc:
                    counts["error"] += 1
                    print(f"{name:<22} {set_name:<9} {'-':<17} ERROR: {exc}")
                    continue
                if not ours:   # the stray set, refused on purpose
                    keys = [ln.split(",")[0] for ln in csv_text.splitlines() if ln.startswith("server_ca")
                            and not ln.endswith(",namespace,,")]
                    counts["by design"] += 1
                    print(f"{name:<22} {set_name:<9} {'both':<17} {'refused (by design)':<24} "
                          f"{'; '.join(notes)}; esp-at " + (f"keys the certificate {', '.join(keys)}" if keys else
                          f"leaves server_ca out ({option_of(dependency, 'server_ca')} off)"))
                    continue
                for image in IMAGES:
                    result = compare(ours.get(image), theirs.get(image))
                    counts["identical" if result == "identical" else "different"] += 1
                    note = "; ".join([ns_note, *notes] if image == "mfg_nvs.bin" else
                                     ["same build"] if notes else [])
                    print(f"{name:<22} {set_name:<9} {image:<17} {result:<24} {note}")
    total = sum(counts.values())
    if sets:
        print(f"summary: {counts['identical']}/{total} rows identical, {counts['different']} different, "
              f"{counts['error']} errors, {counts['by design']} refused by design ({len(profiles)} profiles x "
              f"{len(sets)} input sets; esp-idf-nvs-partition-gen {nvs_gen})")
    bad = counts["different"] + counts["error"]
    if args.at_py:
        if built:
            ap.error("--at-py takes an extracted esp-at tree, not a built project")
        import esp_at_customize_parity  # noqa: PLC0415 (it imports this module's helpers)

        print()
        bad += esp_at_customize_parity.run(esp_at, idfs, profiles)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
