"""``atfab flash`` and ``atfab verify``: write a build output folder to a module; check the running unit."""

from __future__ import annotations

import json
import sys

import click

# The heavy parts of the library are imported inside the commands that use them: `atfab --help`, a bad option or
# another command then does not load esptool and the image/PKI stack (docs/DESIGN.md, "Rules").

PORT_HELP = "Device, pyserial URL (socket://host:port), serial:<usb serial> or location:<usb path>."


def _progress_printer(port: str):
    """A progress callback drawing one status line on a terminal's stderr (nothing otherwise)."""
    if not sys.stderr.isatty():
        return None

    def show(done: int, total: int) -> None:
        pct = 100 * done // total if total else 100
        click.echo(f"\r{port}: writing {done}/{total} bytes ({pct}%)", nl=done >= total, err=True)

    return show


@click.command("flash")
@click.argument("out_dir", type=click.Path(file_okay=False))
@click.option("--port", "-p", help=PORT_HELP + " Default $ESPPORT.")
@click.option("--baud", "-b", type=int, help="Baud rate after connecting (default $ESPBAUD or 460800).")
@click.option("--at-port", help="AT port: enter download mode with AT+RST=1 there (boards without auto-reset).")
@click.option("--no-stub", is_flag=True, help="Talk to the ROM loader only (slower, uncompressed).")
@click.option("--force", is_flag=True, help="Write every region even when the device already holds it.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def flash(out_dir: str, port: str | None, baud: int | None, at_port: str | None, no_stub: bool, force: bool,
          as_json: bool) -> None:
    """Write the flash_args set of an `atfab build` OUT_DIR; regions already on the device are skipped."""
    from ..image.flash_set import load_flash_set  # noqa: PLC0415 (keep `atfab --help` fast)
    from ..link.flasher import Flasher
    from ..link.transport import resolve_baud, resolve_port

    flash_set = load_flash_set(out_dir)
    device = resolve_port(port)
    at_device = resolve_port(at_port) if at_port else None
    flasher = Flasher(device, baud=resolve_baud(baud, default=460800), at_port=at_device, stub=not no_stub,
                      progress=None if as_json else _progress_printer(device))
    result = flasher.flash(flash_set, force=force)
    if as_json:
        click.echo(json.dumps(result.to_dict(), indent=2))
        return
    chip = result.chip
    click.echo(f"{device}: {chip.description}, MAC {chip.mac}, {'stub' if result.stub else 'ROM'} at {result.baud} baud")
    for r in result.regions:
        click.echo(f"  0x{r.offset:06x}  {r.name:<24} {r.size:>9} bytes  {r.action}")
    click.echo(f"wrote {result.bytes_written} bytes in {result.seconds:.1f} s")


@click.command("verify")
@click.option("--port", "-p", required=True, help="AT port. " + PORT_HELP)
@click.option("--batch", "batch", type=click.Path(), default=None,
              help="Instead of --expect: a pre-programmed unit of this `atfab batch` folder; its reserved "
                   "identity is bound to the unit's MAC in --ledger (first contact).")
@click.option("--ledger", "ledger_path", type=click.Path(dir_okay=False), default=None,
              help="The ledger holding the batch's reservations (with --batch).")
@click.option("--expect", "expect", required=False, default=None, type=click.Path(file_okay=False),
              help="The `atfab build` output folder of this unit.")
@click.option("--mac-from", help="Flash port: read the MAC with esptool (the STA MAC must equal it).")
@click.option("--mac", help="Expected STA MAC (instead of --mac-from).")
@click.option("--baud", "-b", type=int, help="AT port baud rate (default $ESPBAUD or 115200).")
@click.option("--timeout", type=float, default=3.0, show_default=True, help="Seconds to wait for each reply.")
@click.option("--json", "as_json", is_flag=True, help="Print the measurements as JSON.")
def verify(port: str, batch: str | None, ledger_path: str | None, expect: str | None, mac_from: str | None,
           mac: str | None, baud: int | None, timeout: float, as_json: bool) -> None:
    """Check the running module on the AT port against what was built for it (exit 1 if a check fails)."""
    from ..link.at.client import AtClient  # noqa: PLC0415
    from ..core.errors import InputError
    from ..link.flasher import Flasher
    from ..link.transport import open_port, resolve_port
    from ..core.mac import normalize_mac
    from ..verify.unit import first_contact, load_built, verify_unit

    if mac and mac_from:
        raise InputError("give either --mac or --mac-from", field="mac")
    if (batch is None) == (expect is None):
        raise InputError("give either --expect BUILD_DIR or --batch BATCH_DIR", field="--expect")
    if batch is not None:
        _verify_batch(port, batch, ledger_path, baud, timeout, as_json)
        return
    assert expect is not None
    from ..verify.legacy import is_legacy_build  # noqa: PLC0415
    if is_legacy_build(expect):
        _verify_legacy(port, expect, mac, mac_from, baud, timeout, as_json)
        return
    built = load_built(expect)
    firmware = built.firmware()
    expected_mac = normalize_mac(mac, field="--mac") if mac else None
    if mac_from:
        expected_mac = Flasher(resolve_port(mac_from)).chip_info().mac
    with AtClient(open_port(port, baud), firmware=firmware, timeout=timeout) as client:
        first_contact(client)
        result = verify_unit(client, built, mac=expected_mac, firmware=firmware)
    _print_result(result, expected_mac, as_json)


def _print_result(result, expected_mac: str | None, as_json: bool, *, serial: str | None = None) -> None:
    """The measurements (or JSON with the MAC, and the serial when known); UnitFailed when one failed."""
    from ..core.errors import UnitFailed  # noqa: PLC0415
    if as_json:
        extra = {"mac": expected_mac, **({"serial": serial} if serial is not None else {})}
        click.echo(json.dumps({**result.to_dict(), **extra}, indent=2))
    else:
        for m in result.measurements:
            click.echo(f"{m.outcome.upper():4}  {m.name:<34} {_short(m.measured)}")
    if not result.passed:
        raise UnitFailed("verification failed: " + ", ".join(m.name for m in result.failed))
    if not as_json:
        click.echo(f"PASS  {len(result.measurements)} checks")


def _verify_legacy(port: str, expect: str, mac: str | None, mac_from: str | None, baud: int | None,
                   timeout: float, as_json: bool) -> None:
    """``atfab verify`` of a G1/G2 unit: per-item partitions read back with AT+SYSFLASH."""
    from ..core.inputs import load_json  # noqa: PLC0415
    from ..core.mac import normalize_mac  # noqa: PLC0415
    from ..link.at.client import AtClient  # noqa: PLC0415
    from ..link.flasher import Flasher  # noqa: PLC0415
    from ..link.transport import open_port, resolve_port  # noqa: PLC0415
    from ..verify.legacy import legacy_firmware, verify_legacy  # noqa: PLC0415
    from ..verify.unit import first_contact  # noqa: PLC0415
    manifest = load_json(f"{expect}/manifest.json", "manifest", field="")
    firmware = legacy_firmware(manifest, f"{expect}/manifest.json")
    expected_mac = normalize_mac(mac, field="--mac") if mac else None
    if mac_from:
        expected_mac = Flasher(resolve_port(mac_from)).chip_info().mac
    with AtClient(open_port(port, baud), firmware=firmware, timeout=timeout) as client:
        first_contact(client)
        result = verify_legacy(client, expect, mac=expected_mac)
    _print_result(result, expected_mac, as_json)


def _verify_batch(port: str, batch: str, ledger_path: str | None, baud: int | None, timeout: float,
                  as_json: bool) -> None:
    """``atfab verify --batch``: identify the pre-programmed unit, bind it, verify it."""
    from ..core.errors import InputError
    from ..image.profiles import load_profile
    from ..link.at.client import AtClient
    from ..link.transport import open_port
    from ..station.batch import BatchIndex, verify_preprogrammed
    from ..station.ledger import Ledger
    from ..verify.unit import first_contact

    if ledger_path is None:
        raise InputError("--batch needs the --ledger that holds the batch's reservations", field="--ledger")
    index = BatchIndex.load(batch)
    firmware = load_profile(index.module).firmware
    with Ledger(ledger_path, create=False) as ledger, \
            AtClient(open_port(port, baud), firmware=firmware, timeout=timeout) as client:
        first_contact(client)
        result, ident = verify_preprogrammed(client, index, ledger)
    if not as_json:
        click.echo(f"unit {ident.mac}: pre-programmed serial {ident.serial} (batch {index.batch_id}), bound")
    _print_result(result, ident.mac, as_json, serial=ident.serial)


def _short(value: object, limit: int = 60) -> str:
    text = json.dumps(value) if not isinstance(value, str) else value
    return text if len(text) <= limit else text[:limit - 3] + "..."
