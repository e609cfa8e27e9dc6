"""The command table of the virtual AT firmware and the boot-time RAM state of each group."""

from __future__ import annotations

from . import at_basic, at_ble, at_sysflash, at_sysmfg, at_uart, at_wifi

from .at_command import CommandSpec, RunState
from .host import ModuleHost
from ..core.firmware import FirmwareProfile


def build_table(profile: FirmwareProfile) -> list[CommandSpec]:
    """Every command this firmware build registers, in ``AT+CMD?`` order."""
    specs = (at_basic.commands(profile) + at_sysflash.commands(profile) + at_sysmfg.commands(profile)
             + at_uart.commands(profile) + at_wifi.commands(profile) + at_ble.commands(profile))
    if profile.legacy:   # G1/G2: only what the release's command tables register (no AT+CWCOUNTRY on v1.x)
        specs = [s for s in specs if profile.has_command(s.name)]
    return specs


def init_run_state(st: RunState, host: ModuleHost, profile: FirmwareProfile) -> None:
    """Boot defaults of every group (after the flash was read) for the build that booted."""
    at_basic.init_basic(st, host, profile)
    at_wifi.init_wifi(st, host, profile)
    at_ble.init_ble(st, host)


__all__ = ["build_table", "init_run_state"]
