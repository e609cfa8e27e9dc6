"""``atfab batch``: offline pre-programming images for gang programmers (atfab.station.batch)."""

from __future__ import annotations

import json
from pathlib import Path

import click

from ..station.recipe import load_recipe


@click.command("batch")
@click.argument("recipe_path", metavar="RECIPE", type=click.Path(dir_okay=False, path_type=Path))
@click.option("-n", "--count", type=click.IntRange(1, 0xFFFFFF), required=True, help="Units to pre-program.")
@click.option("-o", "--out", "out_dir", type=click.Path(path_type=Path), required=True,
              help="New folder for the images and the manifest (must not exist, or be empty).")
@click.option("--merged", is_flag=True, help="Also write each unit's full flash image (flash-size bytes per unit).")
@click.option("--workers", type=click.IntRange(1, 256), default=None, help="Processes [default: all cores].")
@click.option("--ledger", "ledger_path", default=None, metavar="FILE|URL",
              help="Ledger file or postgresql:// URL [default: the recipe's ledger.path / ledger.url].")
@click.option("--workdir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Folder the recipe's output paths are relative to [default: current folder].")
@click.option("--passphrase-env", default="ATFAB_CA_PASSPHRASE", show_default=True,
              help="Environment variable holding the factory CA key passphrase (prompted when unset).")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def batch(recipe_path: Path, count: int, out_dir: Path, merged: bool, workers: int | None, ledger_path: str | None,
          workdir: Path | None, passphrase_env: str, as_json: bool) -> None:
    """Reserve COUNT identities in the ledger and write their per-unit images and a manifest.

    Each unit's mfg_nvs (serial and certificate reserved now) goes to OUT/units/ (0600), the
    shared firmware files to OUT/common/, and OUT/manifest.json / manifest.csv list per unit
    what to program where (offset, size, SHA-256). A pre-programmed unit is bound to its MAC
    on first contact with `atfab run --batch OUT/manifest.json`. Nothing is left half-written.
    """
    from ..pki.ca import read_passphrase
    from ..station.batch import check_batch, make_batch
    from ..station.ledger import Ledger, ledger_location
    from ..station.firmware_images import firmware_images
    from ..station.station import load_recipe_ca
    from .prompting import passphrase_prompt

    recipe = load_recipe(recipe_path, workdir=workdir)
    check_batch(recipe, count, out_dir)            # before the passphrase is asked for
    ca = load_recipe_ca(recipe, read_passphrase(passphrase_env, passphrase_prompt("Passphrase for the factory CA key")))
    firmware = firmware_images(recipe)
    with Ledger(ledger_location(ledger_path) if ledger_path else recipe.ledger) as ledger:
        result = make_batch(recipe, count, out_dir, ca=ca, ledger=ledger, firmware=firmware, workers=workers,
                            merged=merged)
    if as_json:
        click.echo(json.dumps(result.to_dict(), indent=1))
        return
    click.echo(f"{result.count} unit(s) {result.first_serial}..{result.last_serial} in {result.seconds:.1f} s "
               f"on {result.workers} process(es): {result.out_dir}")
    click.echo(f"manifest: {result.manifest} ({result.manifest_csv.name})")
    if result.escrow is not None:
        click.echo(f"unit keys escrowed to {result.escrow}")
