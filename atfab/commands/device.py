"""``atfab ports`` and ``atfab at``: list serial ports; send AT commands to one module."""

from __future__ import annotations

import json

import click

from ..core.firmware import G3_DEFAULTS, firmware_for
from ..link.at.client import AtClient
from ..link.at.errors import AtError, AtTimeout
from ..link.transport import list_ports, open_port, selector_from_options


@click.command("ports")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def ports(as_json: bool) -> None:
    """List serial ports with USB serial number, location and VID:PID."""
    found = list_ports()
    if as_json:
        click.echo(json.dumps([p.to_json() for p in found], indent=2))
        return
    if not found:
        click.echo("no serial ports found")
        return
    for p in found:
        usb = f"{p.vid:04x}:{p.pid:04x}" if p.vid is not None and p.pid is not None else "-"
        click.echo(f"{p.device}\tserial={p.serial_number or '-'}\tlocation={p.location or '-'}\tusb={usb}\t"
                   f"{p.description or ''}".rstrip())


def _print_urcs(urcs: list[str]) -> None:
    for u in urcs:
        click.echo(f"[urc] {u}")


@click.command("at")
@click.argument("commands", nargs=-1)
@click.option("--port", "-p", "port", help="Device, pyserial URL, serial:<usb serial> or location:<usb path>.")
@click.option("--usb-serial", help="Select the port by USB serial number.")
@click.option("--location", help="Select the port by USB location (e.g. 1-1.2).")
@click.option("--baud", "-b", type=int, help="Baud rate (default $ESPBAUD or 115200).")
@click.option("--chip", type=click.Choice(sorted(G3_DEFAULTS)), default="esp32c2", show_default=True,
              help="Firmware behaviour to expect.")
@click.option("--timeout", type=float, default=3.0, show_default=True, help="Seconds to wait for each reply.")
@click.option("--interactive", "-i", is_flag=True, help="Read commands from the terminal (Ctrl-D exits).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def at(commands: tuple[str, ...], port: str | None, usb_serial: str | None, location: str | None,
       baud: int | None, chip: str, timeout: float, interactive: bool, as_json: bool) -> None:
    """Send AT commands to one module and print the replies ("AT+GMR" "AT+CMD?" ...)."""
    if not commands and not interactive:
        raise click.UsageError("give AT commands to send, or --interactive")
    selector = selector_from_options(port, usb_serial, location)
    serial_port = open_port(selector, baud)
    with AtClient(serial_port, firmware=firmware_for(chip), timeout=timeout) as client:
        results = []
        for cmd in commands:
            reply = client.exchange(cmd)
            lines = client.display_lines(reply)
            if as_json:
                results.append({"command": cmd, "lines": lines, "urcs": reply.urcs})
            else:
                for line in lines:
                    click.echo(line)
                _print_urcs(reply.urcs)
                click.echo("OK")
        if as_json and commands:
            click.echo(json.dumps(results, indent=2))
        if interactive:
            _repl(client)


def _repl(client: AtClient) -> None:
    """Read a line, send it, print the reply and URCs; an empty line shows pending URCs."""
    while True:
        try:
            line = input("AT> ")
        except EOFError:
            click.echo("")
            return
        line = line.strip()
        if not line:
            _print_urcs(client.drain())
            continue
        try:
            reply = client.exchange(line)
        except AtTimeout as exc:
            click.echo(f"TIMEOUT: {exc}")
            continue
        except AtError as exc:
            for info in exc.lines:
                click.echo(info)
            click.echo(f"ERROR: {exc.message}")
            continue
        for info in client.display_lines(reply):
            click.echo(info)
        _print_urcs(reply.urcs)
        click.echo("OK" if reply.result == "ok" else str(reply.result))
