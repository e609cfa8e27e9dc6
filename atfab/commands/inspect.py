"""``atfab inspect``: show what a factory image, flash dump, partition table or mfg_nvs image holds."""

from __future__ import annotations

import json

import click

# The heavy parts of the library are imported inside the commands that use them: `atfab --help`, a bad option or
# another command then does not load esptool and the image/PKI stack (docs/DESIGN.md, "Rules").


@click.command("inspect")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("-m", "--module", help="Module profile to read the layout from and compare against.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def inspect(file: str, module: str | None, as_json: bool) -> None:
    """Show partition tables, NVS namespaces/keys/values and app versions in FILE.

    Private keys are shown only as type and size, certificates as subject and SHA-256 fingerprint.
    """
    from ..image.inspect import inspect_file, render_text  # noqa: PLC0415 (keep `atfab --help` fast)

    report = inspect_file(file, module=module)
    click.echo(json.dumps(report, indent=2) if as_json else render_text(report))
