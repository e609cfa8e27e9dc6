"""``atfab customize``: change a few factory settings of one live module or of an image."""

from __future__ import annotations

import json
from typing import Any

import click

from ..core.firmware import G3_DEFAULTS
from ..customize.image import customize_file
from ..customize.plan import PKI_FAMILIES, PKI_KINDS, gatt_row_option, make_request, pki_option
from ..image.gatt import GATTS_MAX_ROWS

# The heavy parts of the library are imported inside the commands that use them: `atfab --help`, a bad option or
# another command then does not load esptool and the image/PKI stack (docs/DESIGN.md, "Rules").

_PKI_PARAMS = {pki_option(f, k, i).lstrip("-").replace("-", "_"): (f, k, i)
               for f, n in PKI_FAMILIES.items() for k in PKI_KINDS for i in range(n)}


_ROW_PARAMS = {gatt_row_option(i).lstrip("-").replace("-", "_"): i for i in range(GATTS_MAX_ROWS)}


def _gatt_row_options(func: Any) -> Any:
    for opt in reversed(list(_ROW_PARAMS)):
        index = _ROW_PARAMS[opt]
        func = click.option(gatt_row_option(index), opt, metavar="ROW", hidden=index != 0,
                            help=f"Replace one ble_data row, cfg0 (also --gatts-cfg1 ... --gatts-cfg{GATTS_MAX_ROWS - 1}"
                                 ", esp-at at.py's --gatts_cfgN): \"index,uuid_len,uuid,perm,val_max_len,val_cur_len,"
                                 "value\"; checked with the other rows.")(func)
    return func


def _pki_options(func: Any) -> Any:
    for opt in reversed(list(_PKI_PARAMS)):
        family, kind, index = _PKI_PARAMS[opt]
        func = click.option(pki_option(family, kind, index), opt, metavar="FILE",
                            type=click.Path(exists=True, dir_okay=False),
                            help=f"PEM {kind} file for {family} set {index}.",
                            hidden=opt not in ("client_cert0", "client_key0", "client_ca0"))(func)
    return func


@click.command("customize")
@click.option("--image", "image", type=click.Path(exists=True, dir_okay=False),
              help="Factory image (full flash), bare mfg_nvs.bin or legacy factory_param.bin to change offline.")
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="Where to write the changed image.")
@click.option("--in-place", is_flag=True, help="Overwrite --image (atomically).")
@click.option("--port", "-p", help="Live module: device, pyserial URL, serial:<usb serial> or location:<usb path>.")
@click.option("--usb-serial", help="Live module: select the port by USB serial number.")
@click.option("--location", help="Live module: select the port by USB location.")
@click.option("--connect-baud", type=int, help="Baud of the AT port now (default $ESPBAUD or 115200).")
@click.option("--module", "module", help="Module profile: chip for validation, partition table offset, firmware behaviour.")
@click.option("--chip", type=click.Choice(sorted(G3_DEFAULTS)), help="Chip when neither the image nor --module says it.")
@click.option("--baud", type=int, help="AT UART baud: factory_param/uart_baudrate (+ AT+UART_DEF on a live module).")
@click.option("--tx-power", type=int, help="factory_param/max_tx_power, 0.25 dBm units (+ AT+RFPOWER live).")
@click.option("--country", help="factory_param/country_code, e.g. US.")
@click.option("--start-channel", type=int, help="factory_param/start_channel.")
@click.option("--channel-num", type=int, help="factory_param/channel_num (number of channels).")
@click.option("--tx-pin", type=int, help="factory_param/uart_tx_pin (-1 = unused).")
@click.option("--rx-pin", type=int, help="factory_param/uart_rx_pin.")
@click.option("--cts-pin", type=int, help="factory_param/uart_cts_pin.")
@click.option("--rts-pin", type=int, help="factory_param/uart_rts_pin.")
@click.option("--module-name", help="factory_param/module_name (shown by AT+GMR).")
@click.option("--uart-num", type=int, help="factory_param/uart_port: the UART the firmware answers AT on (at.py --uart_num).")
@_pki_options
@click.option("--gatt", type=click.Path(exists=True, dir_okay=False),
              help="GATT table (gatts_data.csv or .toml description): replaces ble_data cfg0..cfgN.")
@_gatt_row_options
@click.option("--add-missing", is_flag=True,
              help="Create keys/namespaces the target does not have yet (a namespace lands where esp-at's build puts it).")
@click.option("--allow-unread", is_flag=True,
              help="With --add-missing: also add a namespace the --module's firmware never reads.")
@click.option("--whole-partition", is_flag=True,
              help="Live: rebuild mfg_nvs and rewrite it with AT+SYSFLASH instead of per-key AT+SYSMFG.")
@click.option("--timeout", type=float, default=3.0, show_default=True, help="Live: seconds per AT reply.")
@click.option("--journal", type=click.Path(file_okay=False),
              help="Live G1/G2: folder of the factory_param block journal (a cut rewrite is put back on the next "
                   "run on that unit) [default: $XDG_STATE_HOME/atfab/customize or ~/.local/state/atfab/customize].")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def customize(image: str | None, output: str | None, in_place: bool, port: str | None, usb_serial: str | None,
              location: str | None, connect_baud: int | None, module: str | None, chip: str | None,
              baud: int | None, tx_power: int | None, country: str | None, start_channel: int | None,
              channel_num: int | None, tx_pin: int | None, rx_pin: int | None, cts_pin: int | None,
              rts_pin: int | None, module_name: str | None, uart_num: int | None, gatt: str | None,
              add_missing: bool, allow_unread: bool, whole_partition: bool, timeout: float, journal: str | None,
              as_json: bool, **more: str | None) -> None:
    """Change factory settings of one module (--port) or of an image (--image ... -o NEW).

    Only the keys you name change; an option the target has no key for is refused unless
    --add-missing. PKI options: --{client,https,wss}-{cert,key,ca}{0,1} and
    --{server,mqtt,wpa-ent}-{cert,key,ca}0 (PEM files). Single GATT rows: --gatts-cfgN ROW.
    """
    live = bool(port or usb_serial or location)
    if live == bool(image):
        raise click.UsageError("give either --image (offline) or --port/--usb-serial/--location (live module)")
    if live and (output or in_place):
        raise click.UsageError("-o/--in-place only go with --image")
    if not live and (whole_partition or connect_baud or journal):
        raise click.UsageError("--whole-partition/--connect-baud/--journal only go with a live module")
    values = {"uart_baudrate": baud, "max_tx_power": tx_power, "country_code": country,
              "start_channel": start_channel, "channel_num": channel_num, "uart_tx_pin": tx_pin,
              "uart_rx_pin": rx_pin, "uart_cts_pin": cts_pin, "uart_rts_pin": rts_pin, "module_name": module_name,
              "uart_port": uart_num}
    files = {_PKI_PARAMS[name]: path for name, path in more.items() if path and name in _PKI_PARAMS}
    rows = {_ROW_PARAMS[name]: row for name, row in more.items() if row is not None and name in _ROW_PARAMS}
    request = make_request(values, pki_files=files, gatt=gatt, gatt_rows=rows, add_missing=add_missing,
                           allow_unread=allow_unread)
    if not live:
        result = customize_file(image, request, output=output, in_place=in_place, module=module,  # type: ignore[arg-type]
                                chip=chip)
        if as_json:
            click.echo(json.dumps({**result.to_dict(), "output": output or image}, indent=2))
            return
        click.echo(f"{result.source}: {result.located.describe()}" + (f", chip {result.chip}" if result.chip else ""))
        for problem in result.problems:
            click.echo(f"warning: {problem}")
        for change in result.changes:
            click.echo(f"  {change.describe()}")
        click.echo(f"wrote {output or image} ({len(result.changes)} key(s) changed)")
        return
    from ..customize.block_journal import default_folder  # noqa: PLC0415
    from ..customize.live import run_on_port  # noqa: PLC0415

    outcome = run_on_port(request, port=port, usb_serial=usb_serial, location=location, connect_baud=connect_baud,
                          module=module, chip=chip, whole_partition=whole_partition, timeout=timeout,
                          journal=journal or default_folder())
    if as_json:
        click.echo(json.dumps(outcome.to_dict(), indent=2))
    else:
        for problem in outcome.problems:
            click.echo(f"warning: {problem}")
        for change in outcome.changes:
            click.echo(f"  {change.describe()}")
        for m in outcome.measurements:
            click.echo(f"{m.outcome.upper():4} {m.describe()}")
    outcome.require_pass()
