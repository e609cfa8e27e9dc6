"""``atfab customize --image`` against esp-at's own ``tools/at.py modify_bin`` on G3 factory images.

The ``--at-py`` mode of ``bench/esp_at_parity.py`` (its docstring has the setup; this module uses its
helpers and can also run on its own with the same ``--esp-at``/``--idf`` arguments). Per shipped G3
profile (``partitions/*/profile.toml`` without ``firmware_releases``):

1. the **base image**: the profile's ``read`` input set (every PKI folder the firmware reads,
   certificates and keys made now, esp-at's ble_data and factory_param) through esp-at's own pipeline
   (``esp_at_parity.run_esp_at``) and through ``atfab build --synthetic-firmware`` (which merges a
   whole-flash factory image); the two mfg_nvs must be identical (row ``base``), and the factory
   image used below carries esp-at's mfg_nvs bytes;
2. for every edit of :data:`EDITS` whose keys the image has: esp-at HEAD's ``tools/at.py modify_bin``
   on one copy (run in its own folder: it writes ``mfg_nvs/`` into its working directory) and
   ``atfab customize --image`` with the equivalent options on another, compared byte for byte as
   whole images, then page by page and decoded (``atfab.image.nvs.reader``) so that a difference names
   the key. ``keys`` = what changed against the base image, decoded;
3. edits at.py has no option for (``https_*``, ``wss_*``: no shipped module reads them, so these run
   on a second base image built with their ``CONFIG_AT_*`` options on, :data:`VARIANTS`) and
   ``--add-missing`` (on an image built without the files) are compared with esp-at's **rebuild**: its
   pipeline on the input set holding the new files, spliced into the image. For the add rows at.py
   runs too, to show it adds nothing.

Results: ``identical``; ``content-identical, header-different`` (see :func:`header_only`: every
entry, bitmap and page byte equal; only the 32-byte page headers differ, as at.py's embedded
generator, a copy of ESP-IDF ``17451f1fb3d``'s ``nvs_partition_gen.py``, writes them: the last data
page ``FULL`` (0xFFFFFFFC) where today's generator leaves it ``ACTIVE`` (0xFFFFFFFE), and an
initialised ``FULL`` header (sequence number, version 0xFE, CRC) on every unused page except the
reserved last one, where today's generator leaves them erased (0xFF); partitions/README.md says what
the firmware does with them); ``n/a`` (the build has no key for the edit); ``DIFFERENT``, ``atfab
refuses`` or ``at.py fails`` (exit 1). Prints one row per (profile, edit) and a summary.
"""

from __future__ import annotations

import argparse
import json
import shutil
import struct
import subprocess
import sys
import tempfile
import zlib
from dataclasses import dataclass, replace
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

import esp_at_parity as ep
from atfab.image.nvs.reader import read_nvs

PAGE = 4096
#: atfab's synthetic firmware release for the factory images (a G3 release every G3 profile takes).
RELEASE = "v5.0.1.0"
GATT_ROW = "2,16,0xC300,0x01,1,1,31"          # esp-at's cfg2 (C300's value) with value 0x31 for 0x30
FACTORY = [("--tx-power", "--tx_power", "60"), ("--uart-num", "--uart_num", "0"),
           ("--start-channel", "--start_channel", "3"), ("--channel-num", "--channel_number", "9"),
           ("--country", "--country_code", "US"), ("--baud", "--baud", "921600"), ("--tx-pin", "--tx_pin", "4"),
           ("--rx-pin", "--rx_pin", "5"), ("--cts-pin", "--cts_pin", "-1"), ("--rts-pin", "--rts_pin", "-1"),
           ("--module-name", "--module_name", "MY-MODULE")]
#: One row per option (a pin or start channel alone would collide with the module's other pins or
#: run past channel 14, which atfab refuses: those go in pairs).
SINGLE = [[FACTORY[0]], [FACTORY[1]], [FACTORY[3]], [FACTORY[4]], [FACTORY[5]], [FACTORY[8]], [FACTORY[9]],
          [FACTORY[10]], FACTORY[2:4], FACTORY[6:10]]


@dataclass(frozen=True)
class Edit:
    """One customisation: atfab's options, at.py's (None: at.py has none) and the keys it needs.

    ``files`` are (atfab option, at.py option or None, raw_data folder, index): a PEM made now for
    ``folder`` that replaces that folder's ``index``-th file (``add`` = the base image lacks it)."""

    name: str
    opts: tuple[tuple[str, str, str], ...] = ()
    files: tuple[tuple[str, str | None, str, int], ...] = ()
    needs: tuple[str, ...] = ()                 # namespace/key the base image must have
    add: bool = False                           # --add-missing: the base image is built without the files
    present: bool = False                       # only the files whose keys the image has (n/a if none)
    variant: str = ""                           # a build configuration of VARIANTS ("" = the module's)

    @property
    def at_py(self) -> bool:
        return not self.add and all(f[1] for f in self.files)


def _pki(family: str, index: int | None, kinds=("ca", "cert", "key")) -> tuple[tuple[str, str | None, str, int], ...]:
    """The files of one PKI set: atfab ``--client-cert1``, at.py ``--client_cert1`` / ``--mqtt_ca``."""
    out = []
    for kind in kinds:
        n = "" if index is None else str(index)
        ours = f"--{family.replace('_', '-')}-{kind}{n or '0'}"
        theirs = None if family in ("https", "wss") else f"--{family}_{kind}{n}"
        out.append((ours, theirs, f"{family}_{kind}", index or 0))
    return tuple(out)


def _needs(files) -> tuple[str, ...]:
    return tuple(f"{folder}/{folder}" + ("" if folder.startswith(("server", "mqtt", "wpa_ent")) else f".{i}")
                 for _, _, folder, i in files)


def _edit(name, *, opts=(), files=(), add=False, needs=(), present=False, variant="") -> Edit:
    return Edit(name, tuple(opts), tuple(files), tuple(needs) + ((), _needs(files))[not present], add, present,
                variant)


#: Build configurations beside the module's own: no shipped module reads https_*/wss_* (their
#: CONFIG_AT_* options are off everywhere), so their edits run on a build with them turned on.
#: A build with CONFIG_AT_EAP_LEGACY_NAMESPACE_SUPPORT writes the enterprise set as wpa2_* (esp-at's
#: mfg_nvs.py WPA_ENT_LEGACY_NAME_MAP), which at.py edits with --wpa2_*.
VARIANTS = {"https+wss": ("AT_HTTPS_CLIENT_AUTH_SERVER", "AT_HTTPS_SERVER_AUTH_CLIENT", "AT_WSS_CLIENT_AUTH_SERVER",
                          "AT_WSS_SERVER_AUTH_CLIENT"),
            "legacy EAP": ("AT_EAP_COMMAND_SUPPORT", "AT_EAP_LEGACY_NAMESPACE_SUPPORT")}


EDITS: list[Edit] = [
    *[_edit(" ".join(f"{o.lstrip('-')} {v}" for o, _, v in opts), opts=opts) for opts in SINGLE],
    _edit("tx-pin 0", opts=[("--tx-pin", "--tx_pin", "0")]),
    _edit("channels 1+14", opts=[("--start-channel", "--start_channel", "1"), ("--channel-num", "--channel_number", "14")]),
    _edit("gatts-cfg2", opts=[("--gatts-cfg2", "--gatts_cfg2", GATT_ROW)], needs=["ble_data/cfg2"]),
    _edit("server set", files=_pki("server", None)),
    _edit("client set 0", files=_pki("client", 0)),
    _edit("client set 1", files=_pki("client", 1)),
    _edit("mqtt set", files=_pki("mqtt", None)),
    _edit("wpa_ent set", files=_pki("wpa_ent", None)),
    _edit("all factory_param", opts=FACTORY),
    _edit("all PKI", files=sum((_pki("server", None), _pki("client", 0), _pki("client", 1), _pki("mqtt", None),
                               _pki("wpa_ent", None)), ()), present=True),
    _edit("everything", opts=FACTORY,
          files=_pki("client", 1) + _pki("server", None), present=True),
    _edit("https set 0 (rebuild)", files=_pki("https", 0), variant="https+wss"),
    _edit("wss set 1 (rebuild)", files=_pki("wss", 1), variant="https+wss"),
    _edit("https+wss sets 1 (rebuild)", files=_pki("https", 1) + _pki("wss", 0), variant="https+wss"),
    Edit("wpa2 set (legacy EAP)", files=tuple((o, a.replace("wpa_ent", "wpa2"), f, i) for o, a, f, i in
                                              _pki("wpa_ent", None)),
         needs=("wpa2_ca/wpa2_ca", "wpa2_cert/wpa2_cert", "wpa2_key/wpa2_key"), variant="legacy EAP"),
    _edit("add mqtt_ca (rebuild)", files=_pki("mqtt", None, ("ca",)), add=True),
    _edit("add client sets (rebuild)", files=_pki("client", 0) + _pki("client", 1), add=True),
]


# ------------------------------------------------------------------------------------- comparing


def header_only(ours: bytes, theirs: bytes) -> str | None:
    """The documented page-header difference of two mfg_nvs images, or None if they differ otherwise.

    Allowed per page, everything else equal: (a) ours ACTIVE (``FE FF FF FF``), theirs FULL
    (``FC FF FF FF``), the rest of the page equal; (b) ours erased (4096 x 0xFF), theirs the same page
    with an initialised header: state FULL, sequence number = page index, version 0xFE, bytes 9..27
    0xFF, CRC32 of bytes 4..27 at 28."""
    if len(ours) != len(theirs):
        return None
    active, blank = 0, 0
    for off in range(0, len(ours), PAGE):
        a, b = ours[off:off + PAGE], theirs[off:off + PAGE]
        if a == b:
            continue
        if a[32:] != b[32:]:
            return None
        state_a, state_b = struct.unpack_from("<I", a)[0], struct.unpack_from("<I", b)[0]
        if state_a == 0xFFFFFFFE and state_b == 0xFFFFFFFC and a[4:] == b[4:]:
            active += 1
        elif (a == b"\xff" * PAGE and state_b == 0xFFFFFFFC and struct.unpack_from("<I", b, 4)[0] == off // PAGE
              and b[8] == 0xFE and b[9:28] == b"\xff" * 19
              and struct.unpack_from("<I", b, 28)[0] == zlib.crc32(b[4:28], 0xFFFFFFFF) & 0xFFFFFFFF):
            blank += 1
        else:
            return None
    return f"content-identical, header-different; pages: {active} ACTIVE->FULL, {blank} erased->FULL header"


def decoded(data: bytes) -> dict[tuple[str, str], object]:
    return {(e.namespace, e.key): e.value for e in read_nvs(data).entries}


def key_diff(a: dict, b: dict) -> list[str]:
    return sorted(f"{ns}/{k}" for ns, k in set(a) | set(b) if a.get((ns, k)) != b.get((ns, k)))


def compare(ours: bytes, theirs: bytes, nvs: slice) -> tuple[str, bool]:
    """(result, documented) for two whole images whose mfg_nvs is ``nvs``."""
    if ours == theirs:
        return "identical", True
    if len(ours) != len(theirs):
        return f"DIFFERENT length {len(ours)} vs {len(theirs)}", False
    outside = [i for i in range(len(ours)) if ours[i] != theirs[i] and not nvs.start <= i < nvs.stop]
    if outside:
        return f"DIFFERENT outside mfg_nvs at 0x{outside[0]:x}", False
    headers = header_only(ours[nvs], theirs[nvs])
    if headers:
        return headers, True   # the row prints the part before ';' as the result
    keys = key_diff(decoded(ours[nvs]), decoded(theirs[nvs]))
    return "DIFFERENT: " + (", ".join(keys[:6]) if keys else "same keys, other bytes"), False


# ------------------------------------------------------------------------------------- running


def _run(cmd: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=300, check=False)


def atfab_image(profile: str, raw: Path, out: Path, sdkconfig: Path | None = None) -> tuple[Path, dict]:
    """``atfab build --synthetic-firmware`` on ``raw``: the factory image and the manifest."""
    res = _run([shutil.which("atfab") or "atfab", "build", "-m", profile, "--synthetic-firmware", RELEASE,
                "--pki-dir", str(raw), "-o", str(out), "--json", *(["--sdkconfig", str(sdkconfig)] if sdkconfig else [])],
               out.parent)
    if res.returncode != 0:
        raise RuntimeError(f"atfab build exit {res.returncode}: {res.stderr.strip()[-300:]}")
    manifest = json.loads(res.stdout)
    return out / manifest["factory_image"]["name"], manifest


def without(raw: Path, files, dest: Path) -> Path:
    """``raw`` without the ``index``-th file of each (folder, index) of ``files`` (a folder left
    empty is removed)."""
    shutil.copytree(raw, dest)
    doomed = [sorted((dest / folder).iterdir())[index] for _, _, folder, index in files]
    for f in doomed:
        f.unlink()
    for _, _, folder, _ in files:
        if (dest / folder).is_dir() and not any((dest / folder).iterdir()):
            (dest / folder).rmdir()
    return dest


def with_files(raw: Path, files, pems: dict[str, Path], dest: Path) -> Path:
    """``raw`` with each (folder, index) file's content replaced by the new PEM."""
    shutil.copytree(raw, dest)
    for ours, _, folder, index in files:
        sorted((dest / folder).iterdir())[index].write_bytes(pems[ours].read_bytes())
    return dest


def run_at_py(at_py: Path, image: Path, out: Path, args: list[str], cwd: Path) -> str:
    """esp-at's at.py modify_bin; "" or why it failed (it catches its own errors and exits 0)."""
    cwd.mkdir(parents=True, exist_ok=True)
    res = _run([sys.executable, str(at_py), "modify_bin", "--input", str(image), "--output", str(out), *args], cwd)
    text = res.stdout + res.stderr
    if res.returncode != 0 or "error occurred" in text or "Error" in text or not out.exists():
        return f"at.py fails (exit {res.returncode}): {text.strip().splitlines()[-1][-120:] if text.strip() else ''}"
    return ""


@dataclass
class Base:
    """The factory image every edit starts from, for one build configuration."""

    raw: Path                 # its input set
    image: Path               # atfab's factory image with esp-at's mfg_nvs
    data: bytes
    nvs: slice                # where mfg_nvs is
    row: tuple[str, str, str, str, bool]
    keys: set[str]            # "namespace/key" it has
    sdkconfig: str
    sdk_file: Path | None     # given to atfab build for a variant configuration


def rows_for(name: str, profile: dict, esp_at: Path, idf: Path, sets: dict[str, Path], pems: dict[str, Path],
             work: Path, pyenv: Path) -> list[tuple[str, str, str, str, bool]]:
    """(edit, keys changed, result, note, ok) for one profile."""
    module = profile["esp_at_module"]
    dependency = esp_at / ep.COMPONENT / "at_customized_config_dependency.txt"
    info = ep.module_info(profile)
    atfab = shutil.which("atfab") or "atfab"
    at_py = esp_at / "tools" / "at.py"
    bases: dict[str, Base] = {}

    def esp_at_nvs(base: Base, tree: Path, tag: str) -> bytes:
        images, _ = ep.run_esp_at(esp_at, idf, module, base.sdkconfig, info, tree, work / f"esp-at-{tag}", pyenv)
        return images["mfg_nvs.bin"]

    def make_base(variant: str) -> Base:
        sdkconfig = (ep.SDKCONFIGS / f"{module}.sdkconfig").read_text()
        sdk_file = None
        if variant:
            sdkconfig += "".join(f"CONFIG_{o}=y\n" for o in VARIANTS[variant])
            sdk_file = work / f"sdkconfig-{len(bases)}"
            sdk_file.write_text(sdkconfig)
        read = ep.folders_read(dependency, sdkconfig)
        raw = ep.read_set(sets["full"], read, work / f"read-{len(bases)}")
        image_path, manifest = atfab_image(name, raw, work / f"base-{len(bases)}", sdk_file)
        nvs_off = int(manifest["offsets"]["mfg_nvs"], 16)
        base = Base(raw, work / f"base-{len(bases)}.bin", b"", slice(0), ("", "", "", "", True), set(), sdkconfig,
                    sdk_file)
        theirs = esp_at_nvs(base, raw, f"base-{len(bases)}")
        data = bytearray(image_path.read_bytes())
        base.nvs = slice(nvs_off, nvs_off + len(theirs))
        same = bytes(data[base.nvs]) == theirs
        base.row = (f"base{' (' + variant + ')' if variant else ''}",
                    f"{len(read_nvs(theirs).namespaces())} namespaces", "identical" if same else "DIFFERENT",
                    "atfab build vs esp-at build" + (f" with {', '.join(VARIANTS[variant])} on" if variant else ""),
                    same)
        data[base.nvs] = theirs
        base.data = bytes(data)
        base.image.write_bytes(base.data)
        base.keys = {f"{ns}/{k}" for ns, k in decoded(theirs)}
        return base

    rows = []
    for i, edit in enumerate(EDITS):
        if edit.variant not in bases:
            bases[edit.variant] = make_base(edit.variant)
            rows.append(bases[edit.variant].row)
        base = bases[edit.variant]
        nvs = base.nvs
        missing = [k for k in edit.needs if k not in base.keys]
        if edit.present:
            files = tuple(f for f in edit.files if _needs([f])[0] in base.keys)
            edit = replace(edit, files=files) if files else edit
            missing = [] if files else ["key of its sets"]
        if missing:
            rows.append((edit.name, "-", "n/a", f"no {missing[0]} in this build", True))
            continue
        run = work / f"edit{i}"
        run.mkdir()
        src = base.image
        if edit.add:   # the base image without the files, which --add-missing puts back
            src, _ = atfab_image(name, without(base.raw, edit.files, run / "raw-without"), run / "without",
                                 base.sdk_file)
        ours_opts = [x for o, _, v in edit.opts for x in (o, v)]
        ours_opts += [x for o, _, _, _ in edit.files for x in (o, str(pems[o]))]
        ours_opts += ["--add-missing"] if edit.add else []
        mine = run / "atfab.bin"
        res = _run([atfab, "customize", "--image", str(src), "-o", str(mine), *ours_opts], run)
        if res.returncode != 0:
            rows.append((edit.name, "-", f"atfab refuses (exit {res.returncode})", res.stderr.strip()[-140:], False))
            continue
        ours = mine.read_bytes()
        keys = ", ".join(key_diff(decoded(ours[nvs]), decoded(src.read_bytes()[nvs]))) or "none"
        if edit.at_py:
            theirs_path = run / "at_py.bin"
            args = [x for _, a, v in edit.opts for x in (a, v)] + [x for o, a, _, _ in edit.files
                                                                   for x in (a, str(pems[o]))]
            failed = run_at_py(at_py, src, theirs_path, args, run / "at-py-cwd")
            if failed:
                rows.append((edit.name, keys, failed, "", False))
                continue
            result, ok = compare(ours, theirs_path.read_bytes(), nvs)
            rows.append((edit.name, keys, result, "vs at.py", ok))
            continue
        # no at.py option (https/wss) or --add-missing: esp-at's rebuild with the new files
        rebuilt = bytearray(base.data)
        rebuilt[nvs] = esp_at_nvs(base, with_files(base.raw, edit.files, pems, run / "raw-new"), f"edit{i}")
        result, ok = compare(ours, bytes(rebuilt), nvs)
        note = "vs esp-at rebuild"
        if edit.add:   # what at.py makes of the same request: it only rewrites lines it has
            args = [x for o, a, _, _ in edit.files if a for x in (a, str(pems[o]))]
            theirs_path = run / "at_py.bin"
            failed = run_at_py(at_py, src, theirs_path, args, run / "at-py-cwd")
            same = not failed and decoded(theirs_path.read_bytes()[nvs]) == decoded(src.read_bytes()[nvs])
            note += "; at.py cannot add a key (content unchanged)" if same else f"; at.py: {failed or 'changed?'}"
        else:
            note += "; at.py has no option for it"
        rows.append((edit.name, keys, result, note, ok))
    return rows


def pem_files(material: ep.Material, folder: Path) -> dict[str, Path]:
    """A new PEM per atfab option of :data:`EDITS`: per set a CA, and a certificate with its own EC
    key (made now; the key file mode 0600)."""
    folder.mkdir(parents=True)
    out: dict[str, Path] = {}
    for edit in EDITS:
        for ours, _, kind_folder, index in edit.files:
            if ours in out:
                continue
            family = kind_folder.rpartition("_")[0]
            key = ec.generate_private_key(ec.SECP256R1())
            pems = {"ca": material.file(f"{family}_ca", f"new-{index}"),
                    "cert": material.cert(f"{family}/new-{index}", key, ca=False),
                    "key": key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                             serialization.NoEncryption())}
            for kind, data in pems.items():
                path = out[f"--{family.replace('_', '-')}-{kind}{index}"] = folder / f"{family}-{kind}{index}.pem"
                path.write_bytes(data)
                path.chmod(0o600)
    return out


def run(esp_at: Path, idfs: list[Path], profiles: list[tuple[str, dict]]) -> int:
    """Print the at.py table; 1 on an undocumented difference or an error."""
    at_py = esp_at / "tools" / "at.py"
    print(f"at.py: {at_py} (blob {ep.blob_id(at_py)}); factory images: atfab build --synthetic-firmware {RELEASE} "
          "with esp-at's mfg_nvs")
    print(f"{'profile':<22} {'edit':<40} {'result':<38} keys changed; note")
    counts = {"identical": 0, "header": 0, "n/a": 0, "different": 0}
    with tempfile.TemporaryDirectory(prefix="esp-at-at-py-") as tmp:
        base = Path(tmp)
        sets = ep.make_sets(esp_at / ep.COMPONENT / "raw_data", base / "sets")
        pems = pem_files(ep.Material(), base / "pems")
        pyenv = ep.python_shim(base / "pyenv")
        for name, profile in profiles:
            module = profile["esp_at_module"]
            idf, _ = ep.pick_idf((esp_at / "module_config" / module / "IDF_VERSION").read_text(), idfs)
            try:
                rows = rows_for(name, profile, esp_at, idf, sets, pems, base / "run" / name, pyenv)
            except (RuntimeError, OSError, subprocess.TimeoutExpired, KeyError) as exc:
                counts["different"] += 1
                print(f"{name:<22} {'-':<40} ERROR: {exc}")
                continue
            for edit, keys, result, note, ok in rows:
                kind = ("n/a" if result == "n/a" else "identical" if result == "identical" else
                        "header" if ok else "different")
                counts[kind] += 1
                result, _, detail = result.partition("; ")
                print(f"{name:<22} {edit:<40} {result:<38} {keys}; {'; '.join(filter(None, [note, detail]))}")
    total = sum(counts.values())
    print(f"summary at.py: {total} rows, {counts['identical']} identical, {counts['header']} content-identical "
          f"header-different (documented), {counts['different']} different or errors, {counts['n/a']} n/a "
          f"({len(profiles)} profiles x {len(EDITS)} edits and {1 + len(VARIANTS)} base images)")
    return 1 if counts["different"] else 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--esp-at", type=Path, required=True, help="extracted esp-at tree (tools/at.py inside)")
    ap.add_argument("--idf", type=Path, action="append", required=True, help="ESP-IDF tree, once per pinned version")
    ap.add_argument("--profile", action="append", default=[], help="only these profiles")
    args = ap.parse_args()
    profiles = [(n, p) for n, p in ep.g3_profiles() if not args.profile or n in args.profile]
    return run(args.esp_at.resolve(), [p.resolve() for p in args.idf], profiles)


if __name__ == "__main__":
    sys.exit(main())
