"""Hostile inputs of the bad-input corpus (issue 12): files that are not files, files that never
end, documents nested thousands deep, and recipes whose referenced files are such things.

``hostile_<kind>_<ext>`` generators put ``{file}`` at ``ws/in/input.<ext>`` as:
  fifo      a named pipe nobody writes (a blocking reader hangs forever)
  loop      a symbolic link to itself (ELOOP)
  dir       a directory
  devzero   a symbolic link to /dev/zero (a reader that does not bound its input fills memory)
  dangling  a symbolic link to nothing
  huge      a sparse file larger than the cap of its kind
Deep documents (``deep_toml``, ``deep_json`` ...) are real files nested far past any real need.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

from tests.bad_input_generators import GENERATORS, REPO, _ca_material

#: Sizes of the "huge" files, each just past its kind's cap (atfab.core.inputs).
HUGE = {"toml": (1 << 20) + 1, "csv": (4 << 20) + 1, "pem": (1 << 20) + 1, "crt": (1 << 20) + 1,
        "json": (16 << 20) + 1, "bin": (128 << 20) + 1, "sqlite": (1 << 20), "txt": (4 << 20) + 1}
RECIPE = REPO / "recipes" / "esp32c2-4mb-default.toml"
KINDS = ("fifo", "loop", "dir", "devzero", "dangling", "huge")


def _nothing(ws: Path) -> dict[str, Path]:
    """No input file: the case is the command line itself."""
    return {}


GENERATORS["nothing"] = _nothing


def _make(kind: str, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "loop":
        path.symlink_to(path.name)
    elif kind == "dir":
        path.mkdir()
    elif kind == "devzero":
        path.symlink_to("/dev/zero")
    elif kind == "dangling":
        path.symlink_to(path.name + ".missing")
    elif kind == "huge":
        with path.open("wb") as f:
            f.truncate(HUGE[path.suffix[1:]])
    else:
        raise AssertionError(kind)


def _register(name: str, fn: Callable[[Path], dict[str, Path]]) -> None:
    fn.__name__ = name
    assert name not in GENERATORS, name
    GENERATORS[name] = fn


def _hostile(kind: str, ext: str) -> None:
    def make(ws: Path) -> dict[str, Path]:
        path = ws / "in" / f"input.{ext}"
        _make(kind, path)
        out = {"file": path, "recipe": RECIPE}
        if ext == "crt":                       # ca import needs a key beside the certificate
            key = ws / "in" / "ca_import.key"
            key.write_bytes(_ca_material()[1])
            out["key"] = key
        return out
    _register(f"hostile_{kind}_{ext}", make)


for _ext in HUGE:
    for _kind in KINDS:
        _hostile(_kind, _ext)


def _doc(name: str, text: str | bytes) -> None:
    def make(ws: Path) -> dict[str, Path]:
        path = ws / "in" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(text.encode() if isinstance(text, str) else text)
        return {"file": path, "recipe": RECIPE}
    _register(name.replace(".", "_"), make)


_doc("deep_array.toml", "a = " + "[" * 3000 + "]" * 3000 + "\n")
_doc("deep_inline.toml", "a = " + "{b = " * 3000 + "1" + "}" * 3000 + "\n")
_doc("deep_tables.toml", "[" + ".".join(f"t{i}" for i in range(200)) + "]\nx = 1\n")
_doc("deep_array.json", "[" * 100_000 + "]" * 100_000)
_doc("deep_object.json", '{"a":' * 100_000 + "1" + "}" * 100_000)
_doc("deep_70.json", "[" * 70 + "]" * 70)


# -- a module profile folder with one of its files hostile --


def _profile_case(kind: str, file: str) -> None:
    import shutil

    def make(ws: Path) -> dict[str, Path]:
        folder = ws / "profile" / "esp32c2-bad"
        shutil.copytree(REPO / "partitions" / "esp32c2-4mb", folder)
        (folder / file).unlink()
        _make(kind, folder / file)
        return {"profile": folder}
    _register(f"profile_{kind}_{file.replace('.', '_')}", make)


for _kind in ("fifo", "loop", "devzero"):
    for _file in ("profile.toml", "partitions_at.csv", "at_customize.csv"):
        _profile_case(_kind, _file)


# -- a recipe whose referenced file is hostile --

def _recipe_case(name: str, kind: str, target: str, edit: Callable[[str, Path], str]) -> None:
    """``target`` (relative to the recipe's folder) made hostile; ``edit`` points the recipe at it."""
    def make(ws: Path) -> dict[str, Path]:
        folder = ws / "in"
        folder.mkdir(parents=True, exist_ok=True)
        victim = folder / target
        _make(kind, victim)
        text = edit(RECIPE.read_text(encoding="utf-8"), victim)
        path = folder / "recipe.toml"
        path.write_text(text, encoding="utf-8")
        return {"file": path}
    _register(name, make)


def _module(text: str, victim: Path) -> str:
    return text.replace('module = "esp32c2-4mb"', f'module = "{victim}"')


def _gatt(text: str, victim: Path) -> str:
    text = text.replace('module = "esp32c2-4mb"', 'module = "esp32c2-2mb-ble"')
    return text.replace("[firmware]", "[firmware]\nallow_unread = true", 1) + f'\n[gatt]\nfile = "{victim}"\n'


def _firmware(text: str, victim: Path) -> str:
    lines = [ln for ln in text.splitlines() if not ln.startswith("synthetic")]
    out = "\n".join(lines)
    return out.replace("[firmware]", f'[firmware]\nfactory_image = "{victim}"', 1) + "\n"


for _kind in ("fifo", "loop", "devzero", "dangling"):
    _recipe_case(f"recipe_module_{_kind}", _kind, "module.d", _module)
    _recipe_case(f"recipe_gatt_{_kind}", _kind, "gatts.csv", _gatt)
    _recipe_case(f"recipe_factory_image_{_kind}", _kind, "factory.bin", _firmware)


# -- output paths that cannot be written (atfab.core.outputs): checked before any work --


def _no_pki_recipe() -> str:
    """The shipped recipe without [pki]: `atfab run` gets as far as its output checks with no CA."""
    out, skip = [], False
    for ln in RECIPE.read_text(encoding="utf-8").splitlines():
        if ln.startswith("["):
            skip = ln.startswith("[pki") or ln.startswith("[[pki")
        if not skip:
            out.append(ln)
    return "\n".join(out).replace('"pki", ', "") + "\n"


def out_targets(ws: Path) -> dict[str, Path]:
    """Places no output can go, and the good inputs the commands need to get there."""
    from tests.bad_input_generators import _mfg_nvs_image

    folder = ws / "in"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "afile").write_text("a file, not a folder\n")
    (folder / "adir").mkdir()
    os.mkfifo(folder / "apipe")
    (folder / "reports").mkdir()
    (folder / "image.bin").write_bytes(_mfg_nvs_image())
    (folder / "nopki.toml").write_text(_no_pki_recipe(), encoding="utf-8")
    (folder / "gatts.csv").write_bytes((REPO / "partitions" / "gatts_data.csv").read_bytes())
    return {"under_file": folder / "afile" / "sub" / "out", "proc": Path("/proc/self/atfab-out"),
            "is_dir": folder / "adir", "is_file": folder / "afile", "fifo": folder / "apipe",
            "image": folder / "image.bin", "nopki": folder / "nopki.toml", "reports": folder / "reports",
            "gattcsv": folder / "gatts.csv", "ws": ws}


_register("out_targets", out_targets)


def _recipe_with(name: str, report: str) -> None:
    """The no-PKI recipe with its [report] table replaced by ``report`` ({is_file} etc. filled in)."""
    def make(ws: Path) -> dict[str, Path]:
        values = out_targets(ws)
        table = report
        for key, value in values.items():
            table = table.replace("{" + key + "}", str(value))
        text = _no_pki_recipe().replace('[report]\ndir = "reports/esp32c2-4mb-default"', "[report]\n" + table)
        if "[ledger]" in table:
            text = text.replace('[ledger]\npath = "ledger.sqlite"\n', "")
        path = ws / "in" / f"{name}.toml"
        path.write_text(text, encoding="utf-8")
        return {**values, "file": path}
    _register(name, make)


_recipe_with("recipe_report_dir_is_file", 'dir = "{is_file}"\n')
_recipe_with("recipe_report_dir_under_file", 'dir = "{under_file}"\n')
_recipe_with("recipe_report_junit_proc", 'junit = "/proc/self/junit.xml"\n')
_recipe_with("recipe_report_csv_is_dir", 'csv = "{is_dir}"\n')
_recipe_with("recipe_ledger_under_file", 'dir = "{reports}"\n\n[ledger]\npath = "{under_file}"\n')
