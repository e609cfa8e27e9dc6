"""Expected at_customize.bin / mfg_nvs.bin of an esp-at build, made the way esp-at's build makes them.

Written from the rules as the reference states them (``at-provisioning-reference.md`` §8.1-§8.6,
§11.1, and the esp-at build parity research) and from esp-at's own data files in
``tests/data/esp-at`` - never from atfab's builder, which the parity test checks against this:

* ``at_customize.bin``: ESP-IDF's ``gen_esp32part.py <at_customize.csv> at_customize.bin`` with its
  defaults: one ``<2sBBLL16sL>`` entry per CSV row (magic ``AA 50``), the MD5 entry (``EB EB`` +
  14 x ``FF`` + MD5 of the entries), ``FF`` padding to 0xC00 bytes (§11.1).
* ``mfg_nvs.csv``: esp-at's ``generation_tools/mfg_nvs.py``: for every ``OPTION=y folder`` line of
  ``at_customized_config_dependency.txt`` in file order, the folder ``raw_data/<folder>`` is read when
  the text ``CONFIG_OPTION=y`` occurs in the sdkconfig and the folder exists; in it the files ending
  ``.crt``/``.key``/``.pem`` in sorted name order become ``file,binary`` blobs, keyed by the folder
  name when the folder has exactly one directory entry and ``<ns>.<i>`` otherwise (§8.2); with
  ``CONFIG_AT_EAP_LEGACY_NAMESPACE_SUPPORT=y`` the ``wpa_ent_*`` folders are named ``wpa2_*``. Then
  ``factory_param``: the type table's 3-field rows, values from the first data row whose platform
  and module match (strings quoted) (§8.1, §8.5). Then, when ``ble_data`` was read, every
  ``gatts_data.csv`` row that is not empty and does not start with ``#`` as ``cfgN`` (§8.3).
* ``mfg_nvs.bin``: that csv through PyPI esp-idf-nvs-partition-gen's ``generate`` (what ESP-IDF's
  ``nvs_partition_gen.py`` wrapper runs), NVS version 2, the partition size (§8.5, §8.6).
"""

from __future__ import annotations

import csv
import hashlib
import os
import re
import struct
from contextlib import redirect_stdout
from io import StringIO
from pathlib import Path
from types import SimpleNamespace

from esp_idf_nvs_partition_gen import nvs_partition_gen

DATA = Path(__file__).resolve().parent / "data"
ESP_AT = DATA / "esp-at"
COMPONENT = ESP_AT / "components" / "customized_partitions"
DEPENDENCY_FILE = COMPONENT / "at_customized_config_dependency.txt"
FACTORY_DATA = COMPONENT / "raw_data" / "factory_param" / "factory_param_data.csv"
FACTORY_TYPE = COMPONENT / "raw_data" / "factory_param" / "factory_param_type.csv"
GATTS_DATA = COMPONENT / "raw_data" / "ble_data" / "gatts_data.csv"
SDKCONFIGS = DATA / "esp-at-kconfgen"
LEGACY_NAMES = {"wpa_ent_ca": "wpa2_ca", "wpa_ent_cert": "wpa2_cert", "wpa_ent_key": "wpa2_key"}

# ------------------------------------------------------------------------------------ at_customize.bin

_TYPES = {"app": 0x00, "data": 0x01}
_DATA_SUBTYPES = {"ota": 0x00, "phy": 0x01, "nvs": 0x02, "coredump": 0x03, "nvs_keys": 0x04, "efuse": 0x05,
                  "undefined": 0x06, "esphttpd": 0x80, "fat": 0x81, "spiffs": 0x82, "littlefs": 0x83}
_APP_SUBTYPES = {"factory": 0x00, "test": 0x20, **{f"ota_{i}": 0x10 + i for i in range(16)}}


def parse_size(text: str) -> int:
    """``124K`` -> 126976, ``1M`` -> 1048576, ``0x1f000`` -> 126976 (gen_esp32part's numbers)."""
    t = text.strip()
    for suffix, mult in (("K", 1024), ("M", 1024 * 1024)):
        if t.upper().endswith(suffix):
            return int(t[:-1], 0) * mult
    return int(t, 0)


def table_rows(csv_text: str) -> list[tuple[str, int, int, int, int, int]]:
    """(name, type, subtype, offset, size, flags) of every row of a partition CSV."""
    rows = []
    for line in csv_text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        f = [x.strip() for x in line.split(",")]
        ptype = _TYPES[f[1]] if f[1] in _TYPES else int(f[1], 0)
        subtypes = _APP_SUBTYPES if ptype == 0 else _DATA_SUBTYPES
        sub = subtypes[f[2]] if f[2] in subtypes else int(f[2], 0)
        flags = 0
        for flag in (f[5].split(":") if len(f) > 5 and f[5] else []):
            flags |= {"encrypted": 1, "readonly": 2}[flag]
        rows.append((f[0], ptype, sub, parse_size(f[3]), parse_size(f[4]), flags))
    return rows


def at_customize_bin(csv_path: Path) -> bytes:
    """gen_esp32part.py's binary of ``csv_path`` with its defaults (MD5 entry, 0xC00 bytes)."""
    entries = b"".join(struct.pack("<2sBBLL16sL", b"\xaa\x50", t, s, off, size, name.encode(), flags)
                       for name, t, s, off, size, flags in table_rows(csv_path.read_text()))
    data = entries + b"\xeb\xeb" + b"\xff" * 14 + hashlib.md5(entries).digest()
    return data + b"\xff" * (0xC00 - len(data))


def partition_size(csv_path: Path, name: str) -> int:
    return next(size for n, _t, _s, _o, size, _f in table_rows(csv_path.read_text()) if n == name)


# ------------------------------------------------------------------------------------------ mfg_nvs.csv


def folders_read(raw_data: Path, sdkconfig: str) -> list[Path]:
    """The raw_data folders esp-at's generator reads, in dependency-file order."""
    out = []
    for line in DEPENDENCY_FILE.read_text().splitlines():
        line = re.sub(" +", " ", line.strip())
        if not line or line.startswith("#"):
            continue
        option, folder = line.split()[:2]
        if sdkconfig.find("CONFIG_" + option) != -1 and (raw_data / folder).exists():
            out.append(raw_data / folder)
    return out


def mfg_nvs_csv(raw_data: Path, sdkconfig: str, *, platform: str, module: str) -> str:
    """The mfg_nvs.csv esp-at's build writes for ``raw_data`` (files named by absolute path); its
    ``factory_param/`` folder holds the data and type CSVs, as in esp-at's tree."""
    legacy = "CONFIG_AT_EAP_LEGACY_NAMESPACE_SUPPORT=y" in sdkconfig
    read = folders_read(raw_data, sdkconfig)
    lines = ["key,type,encoding,value"]
    for folder in read:
        base = LEGACY_NAMES.get(folder.name, folder.name) if legacy else folder.name
        names = os.listdir(folder)
        index = 0
        for name in sorted(names):
            if not name.endswith((".crt", ".key", ".pem")):
                continue
            if index == 0:
                lines.append(f"{base},namespace,,")
            if len(names) == 1:
                key = base
            else:
                key = f"{base}.{index}"
                index += 1
            lines.append(f"{key},file,binary,{folder / name}")
    # factory_param: type rows with 3 fields; values of the first row matching platform + module
    with open(raw_data / "factory_param" / "factory_param_type.csv") as f:
        types = [row for row in csv.reader(f) if len(row) == 3]
    with open(raw_data / "factory_param" / "factory_param_data.csv") as f:
        data = list(csv.reader(f))
    header = next(row for row in data if row[0] == "platform")
    row = next(r for r in data if r[0] == platform and r[1] == module)
    lines.append("factory_param,namespace,,")
    for key, _enc, kind in types:
        value = row[header.index(key)]
        lines.append(f"{key},data,{kind}," + (f'"{value}"' if kind == "string" else value))
    if raw_data / "ble_data" in read:
        with open(raw_data / "ble_data" / "gatts_data.csv") as f:
            rows = [r for r in csv.reader(f) if r and not r[0].startswith("#")]
        lines.append("ble_data,namespace,,")
        lines += [f'cfg{i},data,string,"{",".join(r)}"' for i, r in enumerate(rows)]
    return "\n".join(lines) + "\n"


def mfg_nvs_bin(csv_text: str, size: int, workdir: Path) -> bytes:
    """esp-idf-nvs-partition-gen's ``generate`` of ``csv_text`` for a partition of ``size`` bytes."""
    workdir.mkdir(parents=True, exist_ok=True)
    src, out = workdir / "mfg_nvs.csv", workdir / "mfg_nvs.bin"
    src.write_text(csv_text)
    with redirect_stdout(StringIO()):
        nvs_partition_gen.generate(SimpleNamespace(input=[str(src)], output=str(out), size=str(size), version=2,
                                                   outdir=str(workdir)))
    return out.read_bytes()


def namespaces_of(csv_text: str) -> list[str]:
    return [line.split(",")[0] for line in csv_text.splitlines() if line.endswith(",namespace,,")]


__all__ = ["at_customize_bin", "partition_size", "folders_read", "mfg_nvs_csv", "mfg_nvs_bin", "namespaces_of",
           "ESP_AT", "SDKCONFIGS", "FACTORY_DATA", "FACTORY_TYPE", "GATTS_DATA"]
