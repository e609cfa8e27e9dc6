"""``atfab gatt …``: check, compile and export ESP-AT GATT server tables (parse options, call the library)."""

from __future__ import annotations

import json
from pathlib import Path

import click

from ..core.fsutil import atomic_write
from ..core.outputs import check_output

# The heavy parts of the library are imported inside the commands that use them: `atfab --help`, a bad option or
# another command then does not load esptool and the image/PKI stack (docs/DESIGN.md, "Rules").


def _load_rows(path: Path):
    from ..image.gatt import load_gatts_csv
    from ..image.gatt_desc import load_description

    if path.suffix.lower() == ".toml":
        return load_description(path)
    return load_gatts_csv(path)


@click.group()
def gatt() -> None:
    """Check, compile and export ESP-AT GATT server tables (gatts_data.csv)."""


@gatt.command("check")
@click.argument("file", type=click.Path(path_type=Path, dir_okay=False))
@click.option("--max-rows", type=int, default=None, help="row limit (default: atfab.image.gatt.GATTS_MAX_ROWS)")
@click.option("--style", type=click.Choice(["c2", "full"]), default="full", show_default=True,
              help="+BLEGATTSCHAR: line style to print (c2: no property/desc lines)")
@click.option("--json", "as_json", is_flag=True, help="print the result as JSON")
def gatt_check(file: Path, max_rows: int | None, style: str, as_json: bool) -> None:
    """Validate FILE (gatts_data.csv, or a .toml description) and print the expected discovery lines."""
    from ..image.gatt import GATTS_MAX_ROWS, cfg_strings, expected_discovery_lines, validate_rows

    rows = _load_rows(file)
    validate_rows(rows, source=str(file), max_rows=max_rows or GATTS_MAX_ROWS)
    lines = expected_discovery_lines(rows, style)
    if as_json:
        click.echo(json.dumps({"file": str(file), "rows": len(rows), "cfg": cfg_strings(rows),
                    "services": lines.services, "chars": lines.chars}, indent=2, sort_keys=True, default=str))
        return
    click.echo(f"{file}: {len(rows)} rows OK")
    for line in lines.services + lines.chars:
        click.echo(line)


@gatt.command("compile")
@click.argument("desc", type=click.Path(path_type=Path, dir_okay=False))
@click.option("-o", "--output", type=click.Path(path_type=Path, dir_okay=False), required=True)
@click.option("--max-rows", type=int, default=None)
def gatt_compile(desc: Path, output: Path, max_rows: int | None) -> None:
    """Compile a TOML description DESC to an esp-at gatts_data.csv."""
    from ..image.gatt import GATTS_MAX_ROWS, dump_gatts_csv, validate_rows
    from ..image.gatt_desc import load_description

    check_output(output, "GATT table", field="--output")
    rows = load_description(desc)
    validate_rows(rows, source=str(desc), max_rows=max_rows or GATTS_MAX_ROWS)
    atomic_write(output, dump_gatts_csv(rows))
    click.echo(f"{output}: {len(rows)} rows")


@gatt.command("export")
@click.argument("csv_file", type=click.Path(path_type=Path, dir_okay=False))
@click.option("-o", "--output", type=click.Path(path_type=Path, dir_okay=False), required=True)
@click.option("--max-rows", type=int, default=None)
def gatt_export(csv_file: Path, output: Path, max_rows: int | None) -> None:
    """Export an esp-at gatts_data.csv to a readable TOML description."""
    from ..image.gatt import GATTS_MAX_ROWS, load_gatts_csv, validate_rows
    from ..image.gatt_desc import decompile, dump_description

    check_output(output, "GATT description", field="--output")
    rows = load_gatts_csv(csv_file)
    validate_rows(rows, source=str(csv_file), max_rows=max_rows or GATTS_MAX_ROWS)
    desc = decompile(rows, source=str(csv_file))
    atomic_write(output, dump_description(desc, comment=f"GATT description exported from {csv_file.name}"))
    click.echo(f"{output}: {len(desc['service'])} services")
