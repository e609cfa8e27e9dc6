"""``atfab build``: one unit's flashable output folder (reference §8, §11.3).

The folder holds ``at_customize.bin`` (secondary table with MD5), ``mfg_nvs.bin`` + ``mfg_nvs.csv``,
``flash_args`` (esptool argument file like esp-at's ``download.config``) and ``manifest.json``;
with firmware also ``bootloader.bin``, ``partition-table.bin``, ``ota_data_initial.bin``,
``esp-at.bin`` and the merged full-flash image ``factory_<module_name>.bin``. The folder is staged
and moved into place only when everything succeeded.

What mfg_nvs holds follows the firmware's build configuration
(:class:`~atfab.image.build_config.BuildConfig`): the ``sdkconfig`` given, else the one in the esp-at
build folder, else the module profile's ``[build]`` table (synthetic firmware, or no firmware);
the manifest records which (``build_config``) and the namespaces written (``namespaces``, ``nvs_keys``).
"""

from __future__ import annotations

import hashlib
import json
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..core.errors import InputError
from ..core.inputs import IMAGE_LIMIT, TEXT_LIMIT, load_json, read_bytes, read_text
from ..core.outputs import check_output
from ..core.esptool_log import EsptoolSink, routed
from ..core.fsutil import atomic_write, staged_dir
from .build_config import BuildConfig, find_sdkconfig, read_sdkconfig
from .appimage import AppInfo, default_at_core, make_app_image, make_bootloader_image, read_app_info, \
    read_image_summary
from ..core.firmware import FirmwareProfile, chips, feature_marker, release_of_core, releases
from ..core.firmware.catalog import is_release_name
from .legacy_build import LegacyImages, build_legacy_images
from .legacy_content import assemble_legacy
from .mfg_nvs import MfgNvs, UnitContent, build_mfg_nvs, pki_key_names
from .nonos import read_user1, synthetic_files
from .partition_table import decode, encode
from .profiles import ModuleProfile, load_profile
from .unit_content import Params, assemble

MANIFEST_SCHEMA = "atfab.build/1"
#: Firmware file roles and the names they get in a build folder (esp-at build-output names).
OUT_NAMES = {"bootloader": "bootloader.bin", "partition_table": "partition-table.bin",
             "otadata": "ota_data_initial.bin", "app": "esp-at.bin"}
#: Where an esp-at build folder keeps each file (a flat folder with the same base names also works).
BUILD_PATHS = {"bootloader": "bootloader/bootloader.bin", "partition_table": "partition_table/partition-table.bin",
               "otadata": "ota_data_initial.bin", "app": "esp-at.bin"}
_GENERATED = {"at_customize.bin", "mfg_nvs.bin"}


@dataclass
class FirmwareSet:
    """Firmware files of one module build: role -> (flash offset, bytes), plus the app's version."""

    files: dict[str, tuple[int, bytes]]
    app: AppInfo
    origin: dict[str, str] = field(default_factory=dict)   # role -> where it came from
    build: BuildConfig | None = None                       # the folder's sdkconfig, when it has one


@dataclass
class UnitImages:
    """The per-unit partitions: at_customize.bin and the mfg_nvs build."""

    at_customize: bytes
    mfg_nvs: MfgNvs

    def regions(self, profile: ModuleProfile) -> list[tuple[int, str, bytes]]:
        """(offset, file name, bytes) of every image, at_customize.bin first."""
        return [(profile.at_customize_offset, "at_customize.bin", self.at_customize),
                (profile.nvs_partition.offset, "mfg_nvs.bin", self.mfg_nvs.image)]

    @property
    def secret(self) -> bool:
        return any("_key" in ns for ns, _k, _t in self.mfg_nvs.keys)


def unit_images(profile: ModuleProfile, content: UnitContent, *, allow_unread: bool = False,
                source: str = "") -> "UnitImages | LegacyImages":
    """The per-unit images of any layout: mfg_nvs (G3, :func:`build_unit_images`) or the legacy
    per-item partitions (:func:`atfab.image.legacy_build.build_legacy_images`)."""
    if profile.legacy:
        return build_legacy_images(profile, content, source=source)
    return build_unit_images(profile, content, allow_unread=allow_unread, source=source)


# ------------------------------------------------------------------------------- unit images


def build_unit_images(profile: ModuleProfile, content: UnitContent, *, allow_unread: bool = False,
                      source: str = "") -> UnitImages:
    """at_customize.bin (with MD5, §11.1) and mfg_nvs for ``content`` (fast, in memory); content the
    firmware (``profile.build``) never reads is refused unless ``allow_unread``."""
    try:
        mfg = build_mfg_nvs(content, profile.nvs_partition.size, firmware=profile.firmware, build=profile.build,
                            allow_unread=allow_unread, source=source or "mfg_nvs")
    except InputError as exc:
        raise _locate_pki_error(exc, content, profile) from None
    return UnitImages(encode(profile.at_customize, md5=True), mfg)


def _locate_pki_error(exc: InputError, content: UnitContent, profile: ModuleProfile) -> InputError:
    """Name the PKI file when the NVS generator failed on one of its keys."""
    ns, _, key = (exc.field or "").partition("/")
    files = content.pki.get(ns)
    if files:
        for name, item in zip(pki_key_names(ns, len(files), profile.firmware), files):
            if name == key:
                return InputError(f"mfg_nvs: {exc.message}", file=item.path or item.name, field=ns)
    return exc


# -------------------------------------------------------------------------------- firmware


def synthetic_firmware_files(profile: ModuleProfile, *, version: str = "v3.3.0.0", at_core: str | None = None,
                             idf_ver: str = "v5.0.6-dirty", commit: str = "be332568") -> dict[str, tuple[int, bytes]]:
    """A synthetic esp-at build for ``profile``: role -> (offset, bytes) (see :data:`OUT_NAMES`)."""
    flash = {"flash_mode": profile.flash_mode, "flash_size": profile.flash_size_str, "flash_freq": profile.flash_freq}
    if profile.legacy:
        profile = profile.for_release(version)
        at_core = at_core or legacy_at_core(profile.firmware)
        idf_ver = profile.firmware.sdk_version or idf_ver
    fw = _release_firmware(profile, version)
    if at_core is None and fw is not None:
        at_core = f"{fw.at_version}({fw.core_commit} - {fw.gmr_chip} - {fw.core_date} {fw.core_time})"
    markers = tuple(feature_marker(fw.release, f) for f in fw.features) if fw is not None else ()
    app = make_app_image(chip=profile.chip, version=version, idf_ver=idf_ver, commit=commit,
                         at_core=at_core or default_at_core(version, profile.firmware.gmr_chip),
                         markers=markers, **flash)
    files = {
        "bootloader": (profile.bootloader_offset, make_bootloader_image(chip=profile.chip, **flash)),
        "partition_table": (profile.partition_table_offset,
                            encode(profile.primary, md5=profile.firmware.partition_table_md5)),
        "app": (profile.app_offset, app),
    }
    otadata = profile.otadata
    if otadata is not None:
        files["otadata"] = (otadata.offset, b"\xff" * otadata.size)
    return files


def _release_firmware(profile: ModuleProfile, version: str) -> FirmwareProfile | None:
    """The G3 firmware profile of ``profile``'s module built at release ``version`` (None: legacy or
    a version that is no release atfab knows): what the synthetic app says it is."""
    if profile.legacy:
        return None
    if version == profile.firmware.release:
        return profile.firmware
    if version in releases() and profile.chip in chips(version):
        try:
            return profile.for_release(version).firmware
        except InputError:
            return None
    return None


def legacy_at_core(fw: FirmwareProfile) -> str:
    """What ``AT version:`` prints for the legacy build ``fw`` (its release's format and arguments)."""
    major, minor, patch, build = fw.core_version.split(".")
    args = {"major": major, "minor": minor, "patch": patch, "build": build, "suffix": fw.core_suffix, "silence": "",
            "commit": fw.core_commit, "chip": fw.gmr_chip, "date": fw.core_date, "time": fw.core_time}
    fmt = fw.fmt("gmr_at_version").removeprefix("AT version:").removesuffix("\r\n")
    text = re.sub(r"%d|%s", "{}", fmt).format(*(args[a] for a in fw.gmr_at_version_args))
    return text


def release_of_app(profile: ModuleProfile, app: AppInfo, *, source: str = "") -> str:
    """The esp-at release a legacy app was built from (its AT core commit), one of the profile's."""
    m = re.search(r"\(([0-9a-f]{7})", app.at_core or "")
    release = release_of_core(profile.chip, m.group(1)) if m else None
    if release is None:
        if app.version in profile.releases:
            return app.version
        raise InputError(f"cannot tell which esp-at release built this app (no known AT core commit; the module's "
                         f"releases are {', '.join(profile.releases)})", file=source or None, field="app")
    if profile.releases and release not in profile.releases:
        raise InputError(f"the app is esp-at {release}, module {profile.name} is built by {', '.join(profile.releases)}",
                         file=source or None, field="app")
    return release


def write_synthetic_firmware(profile: ModuleProfile, folder: str | Path, *, version: str = "v3.3.0.0",
                             at_core: str | None = None, idf_ver: str = "v5.0.6-dirty",
                             commit: str = "be332568") -> Path:
    """Write a synthetic esp-at build folder (esp-at layout plus ``download.config``); returns it."""
    folder = Path(folder)
    files = synthetic_firmware_files(profile, version=version, at_core=at_core, idf_ver=idf_ver, commit=commit)
    lines = [" ".join(profile.flash_settings())]
    for role, (offset, data) in sorted(files.items(), key=lambda kv: kv[1][0]):
        atomic_write(folder / BUILD_PATHS[role], data)
        lines.append(f"0x{offset:x} {BUILD_PATHS[role]}")
    atomic_write(folder / "download.config", "\n".join(lines) + "\n")
    return folder


def _role_of(path: str, offset: int, profile: ModuleProfile) -> str | None:
    base = Path(path).name
    for role, name in OUT_NAMES.items():
        if base == name:
            return role
    if base in _GENERATED:
        return None
    if offset == profile.app_offset and base.endswith(".bin"):
        return "app"
    return None


def _listing(folder: Path, profile: ModuleProfile) -> tuple[dict[str, tuple[int, Path]], Path | None]:
    """role -> (offset, path) from flasher_args.json or download.config in ``folder``, if any."""
    pairs: list[tuple[str, str]] = []
    listing: Path | None = None
    if (folder / "flasher_args.json").is_file():
        listing = folder / "flasher_args.json"
        try:
            data = load_json(listing, "flash_files")
            pairs = [(str(k), str(v)) for k, v in data["flash_files"].items()]
        except InputError as exc:
            raise InputError(f"cannot read flash_files: {exc.message}", file=listing, field="flash_files") from None
        except (KeyError, TypeError, AttributeError) as exc:
            raise InputError(f"cannot read flash_files: {exc}", file=listing, field="flash_files") from None
    elif (folder / "download.config").is_file():
        listing = folder / "download.config"
        pairs = [(str(off), str(p.relative_to(folder))) for off, p in read_flash_args(listing)[1]]
    found: dict[str, tuple[int, Path]] = {}
    for off_text, rel in pairs:
        try:
            offset = int(off_text, 0)
        except ValueError:
            raise InputError(f"offset {off_text!r} is not a number", file=listing, field="flash_files") from None
        role = _role_of(rel, offset, profile)
        if role is not None:
            found[role] = (offset, folder / rel)
    return found, listing


def load_firmware(folder: str | Path, profile: ModuleProfile) -> FirmwareSet:
    """Read an esp-at build output folder (or a flat folder of the same files) and check it fits ``profile``."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError("firmware folder not found", file=folder, field="firmware")
    listed, listing = _listing(folder, profile)
    expected = {"bootloader": profile.bootloader_offset, "partition_table": profile.partition_table_offset,
                "app": profile.app_offset}
    if profile.otadata_offset is not None:
        expected["otadata"] = profile.otadata_offset
    files: dict[str, tuple[int, bytes]] = {}
    origin: dict[str, str] = {}
    for role, offset in expected.items():
        if role in listed:
            given, path = listed[role]
            if given != offset:
                raise InputError(f"{path.name} at 0x{given:x}, but module {profile.name} has it at 0x{offset:x}",
                                 file=listing, field=role)
        else:
            candidates = [folder / BUILD_PATHS[role], folder / OUT_NAMES[role]]
            path = next((p for p in candidates if p.is_file()), candidates[0])
        if not path.exists() and not path.is_symlink():
            raise InputError(f"missing {OUT_NAMES[role]}", file=path, field=role)
        files[role] = (offset, read_bytes(path, OUT_NAMES[role], limit=IMAGE_LIMIT, field=role))
        origin[role] = str(path)
    table_path = origin["partition_table"]
    table = decode(files["partition_table"][1], source=table_path)
    if table.entries != profile.primary.entries:
        raise InputError(f"partition table does not match module profile {profile.name}",
                         file=table_path, field="partition_table")
    boot = read_image_summary(files["bootloader"][1], source=origin["bootloader"])
    app = read_app_info(files["app"][1], source=origin["app"])
    for role, chip in (("bootloader", boot.chip), ("app", app.chip)):
        if chip != profile.chip:
            raise InputError(f"{chip} image, module {profile.name} is {profile.chip}", file=origin[role], field=role)
    if not app.checksum_ok or app.digest_ok is False:
        raise InputError("app image checksum or SHA-256 digest is wrong", file=origin["app"], field="app")
    if "otadata" in files and len(files["otadata"][1]) > (profile.otadata.size if profile.otadata else 0):
        raise InputError("larger than the otadata partition", file=origin["otadata"], field="otadata")
    sdkconfig = find_sdkconfig(folder)
    return FirmwareSet(files, app, origin, read_sdkconfig(sdkconfig) if sdkconfig is not None else None)


def firmware_from_synthetic(profile: ModuleProfile, version: str | None = None) -> FirmwareSet:
    """A :class:`FirmwareSet` of the synthetic firmware (no files involved)."""
    version = version or profile.firmware.release
    files = synthetic_firmware_files(profile, version=version)
    return FirmwareSet(files, read_app_info(files["app"][1]), {r: f"synthetic {version}" for r in files})


def merge_factory_image(profile: ModuleProfile, parts: list[tuple[int, bytes]]) -> bytes:
    """Full-flash image of ``parts`` via esptool's merge_bin, filled with 0xFF to the flash size."""
    from esptool.cmds import merge_bin  # noqa: PLC0415 (slow import)
    from esptool.util import FatalError  # noqa: PLC0415


    try:
        with routed(EsptoolSink()):
            merged = merge_bin(sorted(parts), profile.chip, output=None, flash_mode=profile.flash_mode,
                               flash_freq=profile.flash_freq, flash_size=profile.flash_size_str,
                               pad_to_size=profile.flash_size_str)
    except FatalError as exc:
        raise InputError(f"esptool merge_bin failed: {exc}", field="factory_image") from None
    assert merged is not None
    if len(merged) != profile.flash_size:
        raise InputError(f"merged image is 0x{len(merged):x} bytes, flash is 0x{profile.flash_size:x}",
                         field="factory_image")
    return merged


# ----------------------------------------------------------------------------------- build


def _safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", text) or "module"


def build(module: str | ModuleProfile, out_dir: str | Path, *, params: Params | str | Path | None = None,
          pki_dir: str | Path | None = None, gatt: str | Path | None = None,
          firmware: str | Path | None = None, synthetic_firmware: str | None = None,
          sdkconfig: str | Path | None = None, unread: str = "error",
          search: list[Path] | None = None) -> dict[str, Any]:
    """Build one unit's output folder; returns the manifest (also written as manifest.json).

    ``firmware`` is an esp-at build folder; ``synthetic_firmware`` a version for the synthetic one.
    ``sdkconfig`` is the firmware's build configuration when the folder has none (or no folder is
    given); ``unread`` says what happens to content the firmware never reads ("error", "skip" as
    esp-at's build does, "write"). On any error ``out_dir`` is left as it was.
    """
    check_output(out_dir, "output folder", kind="dir", field="-o")
    if synthetic_firmware is not None:
        known = [v for v in releases() if is_release_name(v)]
        if synthetic_firmware not in known:
            raise InputError(f"{synthetic_firmware} is not an esp-at release atfab knows (known: {', '.join(known)})",
                             field="--synthetic-firmware")
    if firmware is not None and synthetic_firmware is not None:
        raise InputError("give either a firmware folder or a synthetic firmware version", field="firmware")
    profile = module if isinstance(module, ModuleProfile) else load_profile(module, search)
    if profile.nonos is not None:
        given = [name for name, value in (("params", params), ("pki_dir", pki_dir), ("gatt", gatt),
                                          ("sdkconfig", sdkconfig)) if value is not None]
        if given:
            raise InputError(f"module {profile.name} runs NONOS AT: no factory parameters, certificates, GATT table "
                             "or build configuration to build", field=given[0])
        return _build_nonos(profile, out_dir, firmware=firmware, synthetic_firmware=synthetic_firmware)
    fw: FirmwareSet | None = None
    if firmware is not None:
        fw = load_firmware(firmware, profile)
    elif synthetic_firmware is not None:
        fw = firmware_from_synthetic(profile, synthetic_firmware)
    config = read_sdkconfig(sdkconfig, field="sdkconfig") if sdkconfig is not None else None
    if config is not None and fw is not None and fw.build is not None:
        raise InputError(f"the firmware folder has its own build configuration ({fw.build.source}); "
                         "give --sdkconfig only for a folder without one", file=str(sdkconfig), field="sdkconfig")
    config = config or (fw.build if fw is not None else None)
    if config is not None:
        profile = profile.with_build(config)
    if profile.legacy:
        if fw is not None:
            profile = profile.for_release(release_of_app(profile, fw.app, source=fw.origin.get("app", "")))
        assembled = assemble_legacy(profile, params=params, pki_dir=pki_dir, gatt=gatt, unread=unread)
        legacy = build_legacy_images(profile, assembled.content, source=str(params or ""))
        return _write_build(profile, out_dir, fw, assembled, legacy.regions(profile), legacy.secret, {
            "release": profile.firmware.release, "generation": profile.firmware.generation,
            "partitions": [{"name": name, "offset": f"0x{legacy.offsets[name]:x}", "size": len(data),
                            "sha256": hashlib.sha256(data).hexdigest()} for name, data in legacy.parts.items()],
            "pki_item_types": profile.firmware.pki_item_types, "factory_param_layout":
                profile.firmware.factory_param_layout or None}, inputs=_inputs(params, pki_dir, gatt, firmware,
                                                                                   synthetic_firmware, sdkconfig))
    assembled = assemble(profile, params=params, pki_dir=pki_dir, gatt=gatt, unread=unread)
    content = assembled.content
    images = build_unit_images(profile, content, allow_unread=unread == "write")
    secret = bool(content.pki) or any("_key" in ns for ns in content.custom)
    extra = {"build_config": profile.build.to_dict(),
             "namespaces": list(dict.fromkeys(ns for ns, _key, _type in images.mfg_nvs.keys)),
             "nvs_keys": [list(k) for k in images.mfg_nvs.keys]}
    return _write_build(profile, out_dir, fw, assembled, images.regions(profile), secret, extra,
                        csv=images.mfg_nvs.csv, inputs=_inputs(params, pki_dir, gatt, firmware, synthetic_firmware,
                                                               sdkconfig))


def _inputs(params: Any, pki_dir: Any, gatt: Any, firmware: Any, synthetic_firmware: Any, sdkconfig: Any) -> dict:
    return {k: (None if v is None else str(v)) for k, v in
            (("params", params if not isinstance(params, Params) else params.source), ("pki_dir", pki_dir),
             ("gatt", gatt), ("firmware", firmware), ("synthetic_firmware", synthetic_firmware),
             ("sdkconfig", sdkconfig))}


def _write_build(profile: ModuleProfile, out_dir: str | Path, fw: FirmwareSet | None, assembled: Any,
                 regions: list[tuple[int, str, bytes]], secret: bool, extra: dict[str, Any], *,
                 csv: str | None = None, inputs: dict[str, Any]) -> dict[str, Any]:
    """Write the build folder (staged): the unit's images, the firmware, factory image, flash_args, manifest."""
    content = assembled.content
    outputs: dict[str, tuple[int, bytes]] = {name: (off, data) for off, name, data in regions}
    if fw is not None:
        for role, (offset, data) in fw.files.items():
            outputs[OUT_NAMES[role]] = (offset, data)
    ordered = sorted(outputs.items(), key=lambda kv: kv[1][0])
    module_name = str(content.factory_param.get("module_name", profile.module_name))
    factory: tuple[str, bytes] | None = None
    if fw is not None:
        factory = (f"factory_{_safe_name(module_name)}.bin",
                   merge_factory_image(profile, [(off, data) for _, (off, data) in ordered]))

    flash_args = " ".join(profile.flash_settings()) + "\n" + "".join(
        f"0x{off:x} {name}\n" for name, (off, _data) in ordered)
    manifest: dict[str, Any] = {
        "schema": MANIFEST_SCHEMA,
        "module": profile.name,
        "module_name": module_name,
        "chip": profile.chip,
        "flash": {"mode": profile.flash_mode, "freq": profile.flash_freq, "size": profile.flash_size_str},
        "offsets": {
            "bootloader": f"0x{profile.bootloader_offset:x}",
            "partition_table": f"0x{profile.partition_table_offset:x}",
            "otadata": None if profile.otadata_offset is None else f"0x{profile.otadata_offset:x}",
            "at_customize": f"0x{profile.at_customize_offset:x}",
            **({} if profile.mfg_nvs is None else {"mfg_nvs": f"0x{profile.mfg_nvs.offset:x}"}),
            "app": f"0x{profile.app_offset:x}",
        },
        "files": [_file_entry(name, data, off) for name, (off, data) in ordered]
        + ([_file_entry("mfg_nvs.csv", csv.encode(), None)] if csv is not None else [])
        + [_file_entry("flash_args", flash_args.encode(), None)],
        "factory_image": None if factory is None else _file_entry(factory[0], factory[1], 0),
        "app": None if fw is None else fw.app.to_dict(),
        "firmware_source": None if fw is None else fw.origin,
        "factory_param": content.factory_param,
        "build_config": profile.build.to_dict(),
        **extra,
        "sources": assembled.to_dict(),
        "inputs": inputs,
    }
    with staged_dir(out_dir) as stage:
        for name, (_off, data) in ordered:
            _write(stage / name, data, secret and (name == "mfg_nvs.bin" or name.endswith("_key.bin")))
        if csv is not None:
            _write(stage / "mfg_nvs.csv", csv.encode(), False)
        _write(stage / "flash_args", flash_args.encode(), False)
        if factory is not None:
            _write(stage / factory[0], factory[1], secret)
        _write(stage / "manifest.json", (json.dumps(manifest, indent=2) + "\n").encode(), False)
    manifest["out_dir"] = str(Path(out_dir))
    return manifest


def nonos_download_map(profile: ModuleProfile, *, firmware: str | Path | None = None,
                       synthetic_firmware: str | None = None) -> list[tuple[int, str, bytes]]:
    """(offset, name, bytes) of a G0 module's download map: the synthetic NONOS AT firmware, or the
    files of a folder holding the SDK's boot.bin, user1.bin, esp_init_data_default.bin and blank.bin."""
    assert profile.nonos is not None
    if firmware is None:
        version = synthetic_firmware or profile.firmware.release
        if version not in profile.releases:
            raise InputError(f"{version}: module {profile.name} runs NONOS AT {', '.join(profile.releases)}",
                             field="synthetic_firmware")
        return synthetic_files(profile.nonos, profile.firmware, flash_size=profile.flash_size,
                               flash_mode=profile.flash_mode, flash_freq=profile.flash_freq)
    folder = Path(firmware)
    files = []
    for name, off in profile.nonos.regions():
        path = folder / name.split("@")[0]
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise InputError(f"cannot read: {exc.strerror} (a NONOS AT download map needs boot.bin, user1.bin, "
                             "esp_init_data_default.bin and blank.bin)", file=path, field="firmware") from None
        files.append((off, name, data))
    read_user1(next(data for _off, name, data in files if name == "user1.bin"))
    _check_map(profile, files, folder)
    return files


def _check_map(profile: ModuleProfile, files: list[tuple[int, str, bytes]], folder: Path) -> None:
    """Every file inside the flash and before the next one (a user1.bin for a bigger map overlaps)."""
    ordered = sorted(files)
    for (off, name, data), nxt in zip(ordered, [*ordered[1:], (profile.flash_size, "the end of the flash", b"")]):
        if off + len(data) > nxt[0]:
            raise InputError(f"{name.split('@')[0]} ({len(data)} bytes at 0x{off:x}) runs into {nxt[1].split('@')[0]} "
                             f"at 0x{nxt[0]:x}: not a build for the {profile.flash_size_str} map of {profile.name}",
                             file=folder / name.split("@")[0], field="firmware")


def _build_nonos(profile: ModuleProfile, out_dir: str | Path, *, firmware: str | Path | None,
                 synthetic_firmware: str | None) -> dict[str, Any]:
    """``atfab build`` of a G0 module: its download map, flash_args, the merged factory image, a manifest."""
    files = nonos_download_map(profile, firmware=firmware, synthetic_firmware=synthetic_firmware)
    app = read_user1(next(data for _off, name, data in files if name == "user1.bin"))
    factory = (f"factory_{_safe_name(profile.module_name)}.bin",
               merge_factory_image(profile, [(off, data) for off, _name, data in files]))
    flash_args = " ".join(profile.flash_settings()) + "\n" + "".join(f"0x{off:x} {name.split('@')[0]}\n"
                                                                      for off, name, _data in files)
    written = {name.split("@")[0]: data for _off, name, data in files}
    manifest: dict[str, Any] = {
        "schema": MANIFEST_SCHEMA, "module": profile.name, "module_name": profile.module_name, "chip": profile.chip,
        "generation": profile.firmware.generation, "release": profile.firmware.release,
        "flash": {"mode": profile.flash_mode, "freq": profile.flash_freq, "size": profile.flash_size_str},
        "files": [_file_entry(name.split("@")[0], data, off) for off, name, data in files]
        + [_file_entry("flash_args", flash_args.encode(), None)],
        "factory_image": _file_entry(factory[0], factory[1], 0),
        "app": {"at_version": app.at_version or None, "profile_version": profile.firmware.core_version,
                "sdk_version": app.sdk_version,
                "synthetic": app.synthetic, "sha256": app.sha256},
        "firmware_source": str(firmware) if firmware is not None else f"synthetic {profile.firmware.release}",
    }
    with staged_dir(out_dir) as stage:
        for name, data in written.items():
            _write(stage / name, data, False)
        _write(stage / "flash_args", flash_args.encode(), False)
        _write(stage / factory[0], factory[1], False)
        _write(stage / "manifest.json", (json.dumps(manifest, indent=2) + "\n").encode(), False)
    manifest["out_dir"] = str(Path(out_dir))
    return manifest


def _write(path: Path, data: bytes, secret: bool) -> None:
    path.write_bytes(data)
    if secret:
        path.chmod(0o600)


def _file_entry(name: str, data: bytes, offset: int | None) -> dict[str, Any]:
    entry: dict[str, Any] = {"name": name, "size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    if offset is not None:
        entry["offset"] = f"0x{offset:x}"
    return entry


def read_flash_args(path: str | Path) -> tuple[list[str], list[tuple[int, Path]]]:
    """Parse a flash_args / download.config file: (esptool options, [(offset, path)]) relative to it."""
    path = Path(path)
    text = read_text(path, "flash arguments", limit=TEXT_LIMIT)
    try:
        tokens = shlex.split(text)
    except ValueError as exc:
        raise InputError(f"cannot read: {exc}", file=path, field="file") from None
    options: list[str] = []
    pairs: list[tuple[int, Path]] = []
    i = 0
    while i < len(tokens):
        tok = tokens[i]
        if tok.startswith("-"):
            options.append(tok)
            if "=" not in tok and i + 1 < len(tokens):
                options.append(tokens[i + 1])
                i += 1
            i += 1
            continue
        if i + 1 >= len(tokens):
            raise InputError(f"offset {tok!r} has no file", file=path, field="flash_files")
        try:
            pairs.append((int(tok, 0), path.parent / tokens[i + 1]))
        except ValueError:
            raise InputError(f"offset {tok!r} is not a number", file=path, field="flash_files") from None
        i += 2
    return options, pairs


__all__ = ["build", "build_unit_images", "UnitImages", "FirmwareSet", "load_firmware", "write_synthetic_firmware",
           "synthetic_firmware_files", "firmware_from_synthetic", "merge_factory_image", "read_flash_args",
           "OUT_NAMES", "MANIFEST_SCHEMA"]
