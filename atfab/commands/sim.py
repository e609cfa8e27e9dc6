"""``atfab sim``: serve virtual modules on 127.0.0.1 until interrupted."""

from __future__ import annotations

import json
import signal
import threading
from pathlib import Path

import click

from ..sim.chip import MB
from ..sim.server import ModulePool

# The heavy parts of the library are imported inside the commands that use them: `atfab --help`, a bad option or
# another command then does not load esptool and the image/PKI stack (docs/DESIGN.md, "Rules").


@click.command("sim")
@click.option("--count", "-n", type=click.IntRange(1, 256), default=1, show_default=True,
              help="Number of virtual modules.")
@click.option("--baud", type=click.IntRange(300, 5_000_000), default=None,
              help="Pace the AT endpoint like a UART at this rate (default: unpaced). The flash "
                   "endpoint is then paced too, at esptool's rate: 115200, then its baud-rate change.")
@click.option("--state", "state_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Keep each module's flash in DIR/module-<i>.flash across restarts.")
@click.option("--json", "as_json", is_flag=True, help="Print the module list as one JSON line.")
@click.option("--chip", default=None, help="Chip to emulate (default: the profile's, else esp32c2).")
@click.option("--module-profile", "profile_name", default=None,
              help="Module profile giving chip, flash size and firmware settings (e.g. esp32c2-4mb).")
@click.option("--seed", default="0", show_default=True, help="Seed of the modules' MAC addresses.")
@click.option("--chip-revision", default=None,
              help="Chip revision MAJOR.MINOR [default: the chip model's, C2 2.0, ESP32 3.0] "
                   "(0.0 makes esptool refuse its stub on the C2).")
@click.option("--reset-lines/--no-reset-lines", default=True, show_default=True,
              help="Also serve each module's UART0 as rfc2217:// with DTR/RTS wired like a devkit's "
                   "auto-reset circuit (esptool's resets work; a running stub survives reconnects).")
@click.option("--rfc2217-ports", "serial_server", is_flag=True,
              help="Serve the flash and AT URLs as rfc2217:// instead of socket:// (a serial server that tells "
                   "the module the port's baud: at another rate than the module's UART each side reads noise).")
def sim(count: int, baud: int | None, state_dir: Path | None, as_json: bool, chip: str | None,
        profile_name: str | None, seed: str, chip_revision: str | None, reset_lines: bool,
        serial_server: bool) -> None:
    """Serve virtual ESP-AT modules: flash (download-mode) URLs and one AT URL each.

    Point esptool at the flash URL: ``socket://127.0.0.1:P`` is a power-on into download mode on
    every connection (esptool forces --before/--after no-reset there); ``rfc2217://127.0.0.1:R``
    is UART0 behind a devkit's DTR/RTS reset circuit (esptool's default reset sequences, a stub
    kept across connections, --after hard-reset booting the app). An AT client goes to the AT
    URL. Runs until Ctrl-C.
    """
    from ..core.errors import InputError
    from ..core.outputs import check_output

    flash_size = 4 * MB
    firmware = None
    if profile_name:
        from ..image.profiles import load_profile

        profile = load_profile(profile_name)
        if chip and chip != profile.chip:
            raise InputError(f"profile {profile_name} is for {profile.chip}, not {chip}", field="--chip")
        chip, flash_size, firmware = profile.chip, profile.flash_size, profile.firmware
    revision: tuple[int, int] | None = None
    if chip_revision is not None:
        try:
            major, minor = (int(x) for x in chip_revision.split("."))
        except ValueError:
            raise InputError("must look like 2.0", field="--chip-revision") from None
        revision = (major, minor)
    if state_dir is not None:
        check_output(state_dir, "state folder", kind="dir", field="--state")
    pool = ModulePool(count, chip=chip or "esp32c2", flash_size=flash_size, baud=baud, state_dir=state_dir,
                      seed=seed, firmware=firmware, chip_revision=revision, reset_lines=reset_lines,
                      serial_server=serial_server)
    stop = threading.Event()
    previous = signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        with pool:
            rows = pool.describe()
            if as_json:
                click.echo(json.dumps(rows))
            else:
                for r in rows:
                    lines = f"  rfc2217 {r['rfc2217_url']}" if r["rfc2217_url"] else ""
                    click.echo(f"{r['index']}  {r['mac']}  flash {r['flash_url']}{lines}  at {r['at_url']}")
            try:
                while not stop.wait(0.5):
                    pass
            except KeyboardInterrupt:
                pass
    finally:
        signal.signal(signal.SIGTERM, previous)
