"""``atfab build``: one unit's output folder (bins, mfg_nvs.csv, flash_args, manifest, factory image)."""

from __future__ import annotations

import json

import click

# The heavy parts of the library are imported inside the commands that use them: `atfab --help`, a bad option or
# another command then does not load esptool and the image/PKI stack (docs/DESIGN.md, "Rules").


@click.command("build")
@click.option("-m", "--module", required=True, help="Module profile name (see partitions/README.md), folder or .toml.")
@click.option("--params", type=click.Path(dir_okay=False), help="params.toml with [factory_param] overrides.")
@click.option("--pki-dir", type=click.Path(file_okay=False),
              help="esp-at raw_data-like folder: one sub-folder per PKI namespace; its ble_data/gatts_data.csv and "
                   "factory_param/factory_param_data.csv (the module's row) are used too.")
@click.option("--gatt", type=click.Path(dir_okay=False), help="esp-at gatts_data.csv (default: esp-at's table on BLE builds).")
@click.option("-o", "--out", "out_dir", required=True, type=click.Path(file_okay=False), help="Output folder.")
@click.option("--firmware", type=click.Path(file_okay=False), help="esp-at build output folder: also copy it and merge a factory image.")
@click.option("--synthetic-firmware", metavar="VERSION", help="Use atfab's synthetic AT firmware of this version (e.g. v3.3.0.0).")
@click.option("--sdkconfig", type=click.Path(dir_okay=False),
              help="The firmware's sdkconfig (or sdkconfig.json) when --firmware has none: which namespaces it reads "
                   "(default: the build folder's, else the module profile's [build]).")
@click.option("--allow-unread", is_flag=True, help="Write PKI folders / a GATT table the firmware never reads.")
@click.option("--skip-unread", is_flag=True,
              help="Leave out PKI folders / a GATT table the firmware never reads (as esp-at's build does).")
@click.option("--json", "as_json", is_flag=True, help="Print the manifest as JSON.")
def build(module: str, params: str | None, pki_dir: str | None, gatt: str | None, out_dir: str,
          firmware: str | None, synthetic_firmware: str | None, sdkconfig: str | None, allow_unread: bool,
          skip_unread: bool, as_json: bool) -> None:
    """Build at_customize.bin, mfg_nvs.bin/.csv, flash_args and manifest.json for one unit.

    A PKI folder for a namespace the firmware never reads (its CONFIG_AT_* option is off), or a
    GATT table for a build without BLE, is an error unless --allow-unread or --skip-unread.
    """
    from ..image.build import build as run_build  # noqa: PLC0415 (keep `atfab --help` fast)

    if allow_unread and skip_unread:
        raise click.UsageError("give --allow-unread or --skip-unread, not both")
    unread = "write" if allow_unread else "skip" if skip_unread else "error"
    manifest = run_build(module, out_dir, params=params, pki_dir=pki_dir, gatt=gatt, firmware=firmware,
                         synthetic_firmware=synthetic_firmware, sdkconfig=sdkconfig, unread=unread)
    if as_json:
        click.echo(json.dumps(manifest, indent=2))
        return
    click.echo(f"built {manifest['module']} ({manifest['module_name']}, {manifest['chip']}, "
               f"{manifest['flash']['size']}) into {manifest['out_dir']}")
    for entry in manifest["files"]:
        where = entry.get("offset", "")
        click.echo(f"  {where:>9}  {entry['name']:<24} {entry['size']:>9} bytes  sha256 {entry['sha256'][:16]}")
    if manifest["factory_image"]:
        fi = manifest["factory_image"]
        click.echo(f"  {'0x0':>9}  {fi['name']:<24} {fi['size']:>9} bytes  (full-flash image)")
    if manifest.get("generation") == "G0":
        app = manifest["app"]
        version = app["at_version"] or f"? (printed from numbers, not readable; the profile says {app['profile_version']})"
        click.echo(f"  NONOS AT {version}, SDK {app['sdk_version'] or '?'}: no partitions, "
                   f"{'synthetic' if app['synthetic'] else 'from ' + manifest['firmware_source']}")
        return
    if manifest["app"]:
        app = manifest["app"]
        click.echo(f"  app {app['project']} {app['version']} (IDF {app['idf_ver']})")
    if "partitions" in manifest:
        click.echo(f"  esp-at {manifest['release']} ({manifest['generation']}) per-item partitions: "
                   f"{', '.join(p['name'] for p in manifest['partitions']) or 'none'}")
    else:
        click.echo(f"  mfg_nvs namespaces: {', '.join(manifest['namespaces'])} (build configuration: "
                   f"{manifest['build_config']['source']})")
    for what, verb in (("skipped_unread", "left out"), ("written_unread", "written although never read")):
        for ns, why in manifest["sources"][what].items():
            click.echo(f"  {verb}: {ns} ({why})")
    for path in manifest["sources"]["not_used"]:
        click.echo(f"  not used: {path} (--gatt given)")
