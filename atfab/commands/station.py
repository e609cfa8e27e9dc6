"""Station commands: ``atfab check``, ``atfab report ...``, ``atfab ledger ...`` (and ``run``/``demo``).

Commands only parse options, call the library and print; ``--json`` prints the returned data.
"""

from __future__ import annotations

import dataclasses
import json
import socket
from pathlib import Path
from typing import Any

import click

from ..core.errors import OUTCOMES, InputError
from ..core.fsutil import atomic_write
from ..station.ledger import Ledger, ledger_location
from ..station.ledger_db import redact_url
from ..core.outputs import check_output
from ..station.recipe import check_recipe, load_recipe
from ..station.recipe_warnings import recipe_warnings
from ..station.report import jsonable, list_reports, read_report
from ..station.report_export import junit_xml, summary_csv

# The heavy parts of the library are imported inside the commands that use them: `atfab --help`, a bad option or
# another command then does not load esptool and the image/PKI stack (docs/DESIGN.md, "Rules").


def _echo_json(data: Any) -> None:
    click.echo(json.dumps(jsonable(data), indent=2))


# ------------------------------------------------------------------------------------- check


@click.command("check")
@click.argument("recipes", nargs=-1, required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--workdir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Folder that output paths (reports, ledger) are relative to [default: current folder].")
@click.option("--passphrase-env", default="ATFAB_CA_PASSPHRASE", show_default=True,
              help="Variable holding the factory CA key passphrase: when set, check also proves the key "
                   "decrypts and matches ca.crt (never prompted).")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.pass_context
def check(ctx: click.Context, recipes: tuple[Path, ...], workdir: Path | None, passphrase_env: str,
          as_json: bool) -> None:
    """Validate recipes: one line per problem (FILE: FIELD: what is wrong); exit 2 if any."""
    import os

    results = []
    failed = False
    secret = os.environ.get(passphrase_env) if passphrase_env else None
    passphrase = secret.encode("utf-8") if secret else None
    for path in recipes:
        problems = check_recipe(path, workdir=workdir, passphrase=passphrase)
        entry: dict[str, Any] = {"recipe": str(path), "ok": not problems, "problems": [str(p) for p in problems]}
        if not problems:
            recipe = load_recipe(path, workdir=workdir)
            entry.update(name=recipe.name, module=recipe.module, hash=recipe.hash, checks=list(recipe.verify.checks),
                         warnings=recipe_warnings(recipe))
        failed = failed or bool(problems)
        results.append(entry)
        if as_json:
            continue
        for line in entry["problems"]:
            click.echo(line)
        for line in entry.get("warnings", ()):
            click.echo(line, err=True)
        if not problems:
            click.echo(f"{path}: ok ({entry['name']}, module {entry['module']}, {entry['hash'][:19]})")
    if as_json:
        _echo_json(results if len(results) > 1 else results[0])
    if failed:
        ctx.exit(InputError.exit_code)


# ------------------------------------------------------------------------------------ report

_filters = [
    click.option("--outcome", type=click.Choice(OUTCOMES, case_sensitive=False)),
    click.option("--serial", help="Only this unit serial."),
    click.option("--mac", help="Only this MAC (any notation)."),
    click.option("--recipe", "recipe_name", help="Only this recipe name."),
]


def _with_filters(f):
    for option in reversed(_filters):
        f = option(f)
    return f


@click.group("report")
def report() -> None:
    """List, show and export per-unit reports."""


@report.command("list")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@_with_filters
@click.option("--json", "as_json", is_flag=True, help="Print the reports' summaries as JSON.")
def report_list(directory: Path, outcome: str | None, serial: str | None, mac: str | None,
                recipe_name: str | None, as_json: bool) -> None:
    """List the unit reports under DIRECTORY, oldest first."""
    entries = list_reports(directory, outcome=outcome, serial=serial, mac=mac, recipe=recipe_name)
    rows = [{"path": str(e.path), "started": e.report.started, "outcome": e.report.outcome,
             "serial": e.report.serial, "mac": e.report.mac, "attempt": e.report.attempt,
             "attempt_id": e.report.attempt_id, "recipe": e.report.recipe_name, "port": e.report.port,
             "failed": [m.name for m in e.report.failed_measurements], "error": e.report.error}
            for e in entries]
    if as_json:
        _echo_json(rows)
        return
    for r in rows:
        extra = f"  failed: {', '.join(r['failed'])}" if r["failed"] else (f"  {r['error']}" if r["error"] else "")
        click.echo(f"{r['started']}  {r['outcome'] or '-':7}  {r['serial'] or '-':16}  {r['mac'] or '-':17}  "
                   f"#{r['attempt']}  {r['recipe']}  {r['path']}{extra}")
    click.echo(f"{len(rows)} report(s)", err=True)


@report.command("show")
@click.argument("path", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the whole report document.")
def report_show(path: Path, as_json: bool) -> None:
    """Show one unit report."""
    rep = read_report(path)
    if as_json:
        _echo_json(rep.to_dict())
        return
    click.echo(f"{rep.outcome}  {rep.serial or '-'}  {rep.mac or '-'}  ({rep.chip or '?'})  attempt {rep.attempt}"
               + (f" (retry of {rep.retry_of})" if rep.retry_of else ""))
    click.echo(f"recipe {rep.recipe_name} {rep.recipe_hash}  station {rep.station_id}  port {rep.port}"
               + (f"  operator {rep.operator}" if rep.operator else ""))
    click.echo(f"{rep.started} .. {rep.ended}  ({rep.duration_s} s)")
    if rep.error:
        click.echo(f"error: {rep.error}")
    for s in rep.steps:
        click.echo(f"  step {s.name:20} {s.outcome:8} {s.duration_s} s" + (f"  {s.detail}" if s.detail else ""))
    for m in rep.measurements:
        click.echo(f"  {m.outcome:4}  {m.describe()}")
    for c in rep.certificates:
        click.echo(f"  cert {c.get('slot')}: serial {c.get('serial')} sha256 {c.get('fingerprint_sha256')}")
    for name, digest in rep.images.items():
        click.echo(f"  image {name}: sha256 {digest}")


@report.command("export")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.option("--format", "fmt", type=click.Choice(["junit", "csv"]), required=True)
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path),
              help="Write to this file (atomically) instead of standard output.")
@_with_filters
def report_export(directory: Path, fmt: str, output: Path | None, outcome: str | None, serial: str | None,
                  mac: str | None, recipe_name: str | None) -> None:
    """Export the reports under DIRECTORY as JUnit XML or a CSV summary."""
    if output is not None:
        check_output(output, "export", field="--output")
    entries = list_reports(directory, outcome=outcome, serial=serial, mac=mac, recipe=recipe_name)
    text = junit_xml(entries) if fmt == "junit" else summary_csv(entries)
    if output is None:
        click.echo(text, nl=False)
    else:
        atomic_write(output, text)
        click.echo(f"{output}: {len(entries)} unit attempt(s)", err=True)


@report.command("html")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path), default=Path("reports"), required=False)
@click.option("--since", help="Only reports that started at or after this time: ISO 8601 (2025-03-03, "
                              "2025-03-03T06:00; no zone = local time) or an age like 8h, 2d, 30m.")
@click.option("--until", help="Only reports that started before this time (same forms as --since).")
@_with_filters
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the report here (one self-contained HTML file, atomically).")
@click.option("--json", "as_json", is_flag=True, help="Print the figures as JSON (the numbers the HTML shows).")
def report_html(directory: Path, since: str | None, until: str | None, outcome: str | None, serial: str | None,
                mac: str | None, recipe_name: str | None, output: Path | None, as_json: bool) -> None:
    """Yield report of the unit reports under DIRECTORY [default: reports]: first-pass yield, yield per
    station/port/recipe, failing checks (Pareto), units per hour, step times, with plots."""
    from ..station.yieldreport.stats import parse_when, yield_figures

    if output is None and not as_json:
        raise InputError("give -o FILE.html (or --json)", field="--output")
    if output is not None:
        check_output(output, "yield report", field="--output")
    start, end = parse_when(since, "--since"), parse_when(until, "--until")
    entries = list_reports(directory, outcome=outcome, serial=serial, mac=mac, recipe=recipe_name)
    figures = yield_figures(entries, since=start, until=end)
    if output is not None:
        from ..station.yieldreport.html import render_html

        atomic_write(output, render_html(figures, sources=[str(directory)]))
        click.echo(f"{output}: {figures['attempts']} report(s), {figures['units']} unit(s)", err=True)
    if as_json:
        _echo_json(figures)


# ------------------------------------------------------------------------------------ ledger


@click.group("ledger")
@click.option("--ledger", "ledger_path", envvar="ATFAB_LEDGER", default="ledger.sqlite", show_default=True,
              metavar="FILE|URL", help="Ledger file, or a postgresql:// URL (or $ATFAB_LEDGER).")
@click.pass_context
def ledger(ctx: click.Context, ledger_path: str) -> None:
    """Inspect and maintain the unit ledger (units, attempts, certificates, rotations)."""
    ctx.obj = ledger_location(ledger_path)


def _open(ctx: click.Context) -> Ledger:
    return Ledger(ctx.obj, create=False)


@ledger.command("migrate")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def ledger_migrate(ctx: click.Context, as_json: bool) -> None:
    """Create the ledger's tables, or bring an older ledger to this atfab's schema (one transaction)."""
    before, after = Ledger.migrate(ctx.obj)
    if as_json:
        _echo_json({"ledger": str(ctx.obj) if isinstance(ctx.obj, Path) else redact_url(ctx.obj),
                    "from": before, "to": after})
    else:
        click.echo(f"schema {before} -> {after}" if before != after else f"schema {after}: nothing to do")


@ledger.command("close-stale")
@click.option("--station", "station_id", default=None, help="Only attempts of this station id.")
@click.option("--reports", "reports_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Report folder for attempts that recorded none (ledgers older than schema 3).")
@click.option("--recipe", "recipe_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="The line's recipe: its [report] publish addresses get the closing reports; its name and hash "
                   "describe attempts of it.")
@click.option("--publish", "publish", multiple=True, metavar="URL",
              help="Publish each closing report to this MES address (mqtt://host/topic or http(s)://host/path) "
                   "through the spool of the station that ran the attempt. Repeatable; replaces the recipe's.")
@click.option("--publish-wait", "publish_wait", type=click.FloatRange(0, 3600), default=5.0, show_default=True,
              help="Seconds to wait for delivery (the rest goes out with that station's next start).")
@click.option("--workdir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Folder the recipe's output paths are relative to [default: current folder].")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def ledger_close_stale(ctx: click.Context, station_id: str | None, reports_dir: Path | None, recipe_path: Path | None,
                       publish: tuple[str, ...], publish_wait: float, workdir: Path | None, as_json: bool) -> None:
    """End attempts whose station died (lease passed): ABORTED, each with its report.

    An attempt whose station still renews its lease is never touched. An attempt whose report was
    sealed before the station died keeps that report's outcome. With --publish (or a recipe's
    [report] publish) each of these reports also goes to the MES, with the message id its station
    would have used, so the MES can drop a repeat.
    """
    from ..station.mes.publisher import StationSpools
    from ..station.mes.targets import parse_targets
    from ..station.recorder import close_stale

    recipe = load_recipe(recipe_path, workdir=workdir) if recipe_path is not None else None
    if publish:
        targets = parse_targets(publish, field="--publish")
    else:
        targets = (parse_targets(recipe.report.publish, file=recipe.path, field="report.publish")
                   if recipe is not None else ())
    spools = StationSpools(targets) if targets else None
    described = ({"recipe_name": recipe.name, "recipe_hash": recipe.hash, "recipe_path": recipe.path}
                 if recipe is not None else {})
    try:
        with _open(ctx) as led:
            closed = close_stale(led, reports_dir=reports_dir, station=station_id,
                                 detected_by=f"atfab ledger close-stale on {socket.gethostname()}",
                                 publish=spools.publish_report if spools is not None else None, **described)
    finally:
        status = spools.stop(drain_s=publish_wait) if spools is not None else None
    if as_json:
        _echo_json({"closed": closed, "publish": status} if status is not None else closed)
        return
    for a in closed:
        click.echo(f"attempt {a.id}  {a.mac or '-'}  {a.station}:{a.port}  -> {a.outcome}  {a.report_path or ''}")
    click.echo(f"{len(closed)} stale attempt(s) closed", err=True)
    if status is not None:
        delivered = sum(t["delivered"] for t in status["targets"])
        click.echo(f"published: {delivered} delivered, {status['pending']} still spooled"
                   + "".join(f"; {e}" for e in status["errors"]), err=True)


@ledger.command("list")
@click.option("--recipe", "recipe_name", help="Only units first provisioned with this recipe.")
@click.option("--outcome", type=click.Choice(OUTCOMES, case_sensitive=False))
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def ledger_list(ctx: click.Context, recipe_name: str | None, outcome: str | None, as_json: bool) -> None:
    """List units in the order they were first seen."""
    with _open(ctx) as led:
        units = led.units(recipe=recipe_name, outcome=outcome.upper() if outcome else None)
    if as_json:
        _echo_json(units)
        return
    for u in units:
        click.echo(f"{u.serial:16}  {u.mac}  {u.last_outcome or '-':7}  {u.recipe}  {u.created}")
    click.echo(f"{len(units)} unit(s)", err=True)


@ledger.command("show")
@click.argument("unit")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def ledger_show(ctx: click.Context, unit: str, as_json: bool) -> None:
    """Show one unit (by serial or MAC) with its attempts, certificates and rotations."""
    with _open(ctx) as led:
        detail = led.unit_detail(unit)
    if detail is None:
        raise InputError(f"no unit {unit!r} in the ledger", file=ctx.obj, field="unit")
    if as_json:
        _echo_json(dataclasses.asdict(detail))
        return
    u = detail.unit
    click.echo(f"{u.serial}  {u.mac}  recipe {u.recipe}  last outcome {u.last_outcome or '-'}  first seen {u.created}")
    for a in detail.attempts:
        click.echo(f"  attempt {a.id} (#{a.attempt}{', retry of ' + str(a.retry_of) if a.retry_of else ''}) "
                   f"{a.outcome or 'OPEN'}  {a.started} .. {a.ended or ''}  {a.station}:{a.port}"
                   + (f"  owner {a.owner}" if a.open and a.owner else "")
                   + (f"  {a.report_path}" if a.report_path else ""))
    for c in detail.certificates:
        click.echo(f"  cert {c.slot}: serial {c.cert_serial} issuer {c.issuer} sha256 {c.fingerprint}")
    for r in detail.rotations:
        click.echo(f"  rotation {r.id} {r.slot}: {r.state}  {r.updated}")


@ledger.command("rotations")
@click.argument("mac", required=False)
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def ledger_rotations(ctx: click.Context, mac: str | None, as_json: bool) -> None:
    """List pending certificate rotations (of one MAC, or all)."""
    with _open(ctx) as led:
        pending = led.pending_rotations(mac)
    if as_json:
        _echo_json(pending)
        return
    for r in pending:
        click.echo(f"{r.id}  {r.mac}  {r.slot}  {r.state}  since {r.created}")
    click.echo(f"{len(pending)} pending rotation(s)", err=True)


@ledger.command("export")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the CSV to this file (atomically) instead of standard output.")
@click.pass_context
def ledger_export(ctx: click.Context, output: Path | None) -> None:
    """Export all units as CSV (serial, MAC, recipe, outcome, attempts, certificate fingerprints)."""
    if output is not None:
        check_output(output, "export", field="--output")
    with _open(ctx) as led:
        text = led.export_units_csv()
    if output is None:
        click.echo(text, nl=False)
    else:
        atomic_write(output, text)


# ------------------------------------------------------------------------------------ run / demo


def _console(ports: list[str], as_json: bool):
    """The live status renderer (stderr when stdout carries --json)."""
    import sys

    from ..station.console import StatusRenderer

    return StatusRenderer(sys.stderr if as_json else sys.stdout, ports)


def _finish(summary_data: dict[str, Any], lines: list[str], as_json: bool) -> None:
    if as_json:
        _echo_json(summary_data)
    for line in lines:
        click.echo(line, err=as_json)


@click.command("run")
@click.argument("recipe_path", metavar="RECIPE", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--port", "ports", multiple=True, metavar="[LABEL=]FLASH[,AT]",
              help="A unit slot: its download (flash) port and its AT port, e.g. /dev/ttyUSB0,/dev/ttyUSB1 or "
                   "slot1=serial:5A6B0012,serial:5A6B0013 (devices, pyserial URLs or serial:/location:/usb: "
                   "selectors). Repeat for parallel slots.")
@click.option("--sim", "sim_count", type=click.IntRange(1, 64), default=None,
              help="Run on N in-process virtual modules instead of --port.")
@click.option("--sim-baud", type=click.IntRange(0, 5_000_000), default=None,
              help="Pace the virtual modules at this baud [default: the recipe's uart_baudrate; 0 = unpaced].")
@click.option("--sim-seed", default="0", show_default=True, help="Seed of the virtual modules' MACs.")
@click.option("--sim-rfc2217", "sim_rfc2217", is_flag=True,
              help="Serve the virtual modules' ports as rfc2217:// (the port's baud reaches the module: a unit "
                   "at another rate is heard as noise, as on a real line) instead of socket://.")
@click.option("--loop", is_flag=True, help="Keep each port waiting for the next unit (a new MAC, or the port "
                                           "coming back) until Ctrl-C.")
@click.option("--baud", "flash_baud", type=click.IntRange(9600, 5_000_000), default=None,
              help="esptool baud rate for flashing [default: $ESPBAUD or 460800].")
@click.option("--at-baud", type=click.IntRange(80, 5_000_000), default=None,
              help="AT port baud rate [default: the recipe's uart_baudrate].")
@click.option("--ledger", "ledger_path", default=None, metavar="FILE|URL",
              help="Ledger file or postgresql:// URL [default: the recipe's ledger.path / ledger.url].")
@click.option("--reports", "reports_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Folder of the unit reports [default: the recipe's report.dir].")
@click.option("--junit", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="JUnit XML of this run [default: the recipe's report.junit].")
@click.option("--csv", "csv_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="CSV summary of this run [default: the recipe's report.csv].")
@click.option("--workdir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Folder the recipe's output paths are relative to [default: current folder].")
@click.option("--station-id", default=None, help="Station name in reports and the ledger [default: host name].")
@click.option("--operator", default=None, help="Operator name in reports and the ledger.")
@click.option("--passphrase-env", default="ATFAB_CA_PASSPHRASE", show_default=True,
              help="Environment variable holding the factory CA key passphrase (prompted when unset).")
@click.option("--stop-after", "stop_after_s", type=click.FloatRange(0.1, None), default=None, metavar="SECONDS",
              help="Stop after this many seconds: the units in flight finish, no new one starts (--loop).")
@click.option("--poll", "poll_s", type=click.FloatRange(0.05, 60), default=1.0, show_default=True,
              help="Seconds between looks for the next unit (--loop).")
@click.option("--ui", "ui_url", metavar="URL", default=None,
              help="Serve the live station page at this address while the run lasts, e.g. http://127.0.0.1:8080 "
                   "(port 0: any free port; the address is printed). Binds where the URL says: loopback unless "
                   "told otherwise.")
@click.option("--publish", "publish", multiple=True, metavar="URL",
              help="Publish every sealed report to this MES address (mqtt://host[:port]/topic, QoS 1, or "
                   "http(s)://host/path, POST), spooled under <reports>/spool/<station>/ until delivered. "
                   "Repeatable; replaces the recipe's [report] publish.")
@click.option("--publish-wait", "publish_wait", type=click.FloatRange(0, 3600), default=5.0, show_default=True,
              help="Seconds the run waits at its end for the spool to empty (the rest goes out on the next run).")
@click.option("--batch", "batch", type=click.Path(path_type=Path), default=None,
              help="A batch from `atfab batch` (its folder or manifest.json): a unit holding one of its mfg_nvs "
                   "images keeps it, and its reserved identity is bound to the unit's MAC.")
@click.option("--json", "as_json", is_flag=True, help="Print the final summary as JSON (status goes to stderr).")
@click.pass_context
def run(ctx: click.Context, recipe_path: Path, ports: tuple[str, ...], sim_count: int | None, sim_baud: int | None,
        sim_seed: str, sim_rfc2217: bool, loop: bool, flash_baud: int | None, at_baud: int | None, ledger_path: str | None,
        reports_dir: Path | None, junit: Path | None, csv_path: Path | None, workdir: Path | None,
        station_id: str | None, operator: str | None, passphrase_env: str, stop_after_s: float | None, poll_s: float,
        ui_url: str | None, publish: tuple[str, ...], publish_wait: float, batch: Path | None, as_json: bool) -> None:
    """Provision units with RECIPE on every --port in parallel (or on --sim N virtual modules).

    Exit status: 0 all PASS, 1 a unit FAILed, 3 an ERROR, 130 interrupted (Ctrl-C or SIGTERM records
    the units in flight as ABORTED; the next run resumes them).
    """
    from ..station.station import DEFAULT_FLASH_BAUD, Station, load_recipe_ca, parse_port, run_sim, uart_baud
    from ..link.transport import resolve_baud

    if bool(ports) == bool(sim_count):
        raise InputError("give either --port (one or more) or --sim N", field="--port")
    if ui_url is not None:
        from ..station.live.server import parse_ui_url

        parse_ui_url(ui_url)
    recipe = load_recipe(recipe_path, workdir=workdir)
    ca = None
    if recipe.pki is not None and recipe.pki.needs_ca:
        from ..pki.ca import read_passphrase
        from .prompting import passphrase_prompt

        ca = load_recipe_ca(recipe, read_passphrase(passphrase_env, passphrase_prompt("Passphrase for the factory CA key")))
    options: dict[str, Any] = dict(station_id=station_id, operator=operator,
                                   ledger=ledger_location(ledger_path) if ledger_path else None,
                                   reports_dir=reports_dir, junit=junit, csv=csv_path, ca=ca, at_baud=at_baud, ui=ui_url,
                                   flash_baud=resolve_baud(flash_baud, default=DEFAULT_FLASH_BAUD),
                                   publish=list(publish) if publish else None, publish_drain_s=publish_wait,
                                   batch=batch)
    if sim_count:
        labels = [f"sim{i}" for i in range(sim_count)]
        baud = uart_baud(recipe) if sim_baud is None else (sim_baud or None)
    else:
        specs = [parse_port(p, i) for i, p in enumerate(ports)]
        labels = [s.label for s in specs]
    from ..station.events import EventBus

    bus = EventBus()
    console = bus.subscribe(_console(labels, as_json))
    if sim_count:
        summary = run_sim(recipe, sim_count, sim_baud=baud, seed=sim_seed, loop=loop, bus=bus,
                          serial_server=sim_rfc2217, **options)
    else:
        summary = Station(recipe, specs, bus=bus, **options).run(loop=loop, poll_s=poll_s, stop_after_s=stop_after_s)
    console.close()
    from ..station.console import summary_lines

    _finish(summary.to_dict(), summary_lines(summary), as_json)
    ctx.exit(summary.exit_code)


@click.command("demo")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=Path("atfab-demo"),
              show_default=True, help="Folder for the throwaway CA, the ledger and the reports.")
@click.option("--recipe", "recipe_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Recipe to run [default: recipes/esp32c2-4mb-default.toml].")
@click.option("--count", type=click.IntRange(1, 64), default=4, show_default=True, help="Virtual modules.")
@click.option("--sim-baud", type=click.IntRange(0, 5_000_000), default=None,
              help="Pace the virtual modules at this baud [default: the recipe's uart_baudrate; 0 = unpaced].")
@click.option("--sim-rfc2217", "sim_rfc2217", is_flag=True,
              help="Serve the virtual modules' ports as rfc2217:// (the port's baud reaches the module) instead of "
                   "socket://.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON (status goes to stderr).")
@click.pass_context
def demo(ctx: click.Context, out_dir: Path, recipe_path: Path | None, count: int, sim_baud: int | None,
         sim_rfc2217: bool, as_json: bool) -> None:
    """Provision 4 virtual modules with a ready recipe and a throwaway CA; reports go to ./atfab-demo."""
    from ..station.console import summary_lines
    from ..station.events import EventBus
    from ..station.station import demo as run_demo

    bus = EventBus()
    console = bus.subscribe(_console([f"sim{i}" for i in range(count)], as_json))
    result = run_demo(out_dir, recipe=recipe_path, count=count, sim_baud=sim_baud, bus=bus, serial_server=sim_rfc2217)
    console.close()
    s = result.summary
    lines = summary_lines(s)
    passed = [r.report for r in s.finals if r.outcome == "PASS" and r.report is not None]
    lines.append(f"throwaway CA: {result.ca_dir} (its passphrase was never stored; each demo makes a new one)")
    lines.append(f"{len(passed)} PASS report(s) in {s.reports_dir}; look at one with: atfab report show {passed[0]}"
                 if passed else "no unit passed")
    lines.append(f"demo took {result.seconds:.1f} s")
    _finish(result.to_dict(), lines, as_json)
    ctx.exit(s.exit_code)
