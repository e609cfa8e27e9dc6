"""``atfab rotate``: renew unit certificates on deployed modules over AT (docs/rotation.md)."""

from __future__ import annotations

import json
from pathlib import Path

import click

from ..core.errors import InputError
from .prompting import passphrase_prompt

# The heavy parts of the library are imported inside the commands that use them: `atfab --help`, a bad option or
# another command then does not load esptool and the image/PKI stack (docs/DESIGN.md, "Rules").

DEFAULT_PASSPHRASE_ENV = "ATFAB_CA_PASSPHRASE"


def _progress(port: str, slot: str, event: str) -> None:
    click.echo(f"{port}: {slot}: {event}", err=True)


@click.command("rotate")
@click.option("--recipe", "recipe_path", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Recipe whose [pki] (CA, identity template, slots) and [rotate] table apply.")
@click.option("--port", "ports", multiple=True,
              help="Module port (device, pyserial URL, serial:<usb serial>, location:<path>); repeatable.")
@click.option("--inventory", type=click.Path(dir_okay=False, path_type=Path),
              help="CSV or TOML file listing the modules (port, optional mac/serial/name).")
@click.option("--mode", type=click.Choice(["new-key", "recertify"]), default=None,
              help="new-key: new key pair; recertify: new certificate for the key on the unit [recipe].")
@click.option("--slot", "slots", multiple=True, help="Slot to rotate, e.g. client.0 (repeatable) [recipe].")
@click.option("--restart/--no-restart", default=None, help="AT+RST after a unit was rotated [recipe: restart].")
@click.option("--dry-run", is_flag=True, help="Only read: show what would change; no writes, no ledger change.")
@click.option("--workdir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Folder the recipe's output paths (ledger, reports) are relative to.")
@click.option("--ledger", "ledger_path", default=None, metavar="FILE|URL",
              help="Ledger file or postgresql:// URL [recipe ledger.path / ledger.url].")
@click.option("--report-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Folder of the rotation reports [<recipe report.dir>/rotations].")
@click.option("--station", "station_id", default=None, help="Station id in reports [host name].")
@click.option("--operator", default=None, help="Operator name in reports.")
@click.option("--passphrase-env", default=DEFAULT_PASSPHRASE_ENV, show_default=True,
              help="Environment variable holding the CA key passphrase (prompted when unset).")
@click.option("--baud", type=int, default=None, help="AT port baud rate [$ESPBAUD or 115200].")
@click.option("--timeout", type=float, default=None, help="AT reply timeout in seconds [recipe verify].")
@click.option("--workers", type=int, default=None, help="Modules rotated at once [all].")
@click.option("-v", "--verbose", is_flag=True, help="Print each rotation step on stderr.")
@click.option("--json", "as_json", is_flag=True, help="Print the fleet result as JSON.")
@click.pass_context
def rotate(ctx: click.Context, recipe_path: Path, ports: tuple[str, ...], inventory: Path | None, mode: str | None,
           slots: tuple[str, ...], restart: bool | None, dry_run: bool, workdir: Path | None,
           ledger_path: Path | None, report_dir: Path | None, station_id: str | None, operator: str | None,
           passphrase_env: str, baud: int | None, timeout: float | None, workers: int | None, verbose: bool,
           as_json: bool) -> None:
    """Rotate unit certificates on deployed modules (journalled, verified, rolled back on failure).

    Exit status: 0 every module PASS, 1 a module FAIL (old pair kept), 3 a module ERROR
    (link/station trouble, or a unit state atfab will not guess about), 2 bad input.
    """
    from ..station.ledger import Ledger, ledger_location
    from ..pki.ca import load_ca, read_passphrase
    from ..station.recipe import load_recipe
    from ..station.fleet import RotateOptions, rotate_fleet
    from ..rotation.inventory import load_inventory, targets_from_ports

    if bool(ports) == bool(inventory):
        raise InputError("give either --port (one or more) or --inventory", field="--port")
    recipe = load_recipe(recipe_path, workdir=workdir)
    targets = load_inventory(inventory) if inventory else targets_from_ports(ports)
    ca = None
    if not dry_run:
        if recipe.pki is None or recipe.pki.ca_dir is None:
            raise InputError("rotation needs [pki] ca (the factory CA folder)", file=recipe_path, field="pki.ca")
        ca = load_ca(recipe.pki.ca_dir, read_passphrase(passphrase_env, passphrase_prompt("CA key passphrase")))
    path = ledger_location(ledger_path) if ledger_path else recipe.ledger
    missing = isinstance(path, Path) and not path.is_file()
    ledger = None if dry_run and missing else Ledger(path, create=not dry_run)
    options = RotateOptions(mode=mode, slots=slots, restart=restart, dry_run=dry_run, operator=operator,
                            report_dir=report_dir, baud=baud, timeout=timeout, workers=workers,
                            progress=_progress if verbose else None)
    if station_id:
        options.station_id = station_id
    try:
        result = rotate_fleet(recipe, targets, ca=ca, ledger=ledger, options=options)
    finally:
        if ledger is not None:
            ledger.close()
    if as_json:
        click.echo(json.dumps(result.to_json(), indent=2))
    else:
        for m in result.modules:
            click.echo(m.line())
        c = result.counts
        click.echo(f"{'dry run: ' if dry_run else ''}{len(result.modules)} module(s): {c['PASS']} PASS, "
                   f"{c['FAIL']} FAIL, {c['ERROR']} ERROR ({result.mode})", err=True)
        if result.escrow:
            click.echo(f"new keys escrowed to {result.escrow}", err=True)
    ctx.exit(result.exit_code)
