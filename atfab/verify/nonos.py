"""On-device checks of an ESP8266 NONOS AT (G0) unit: there is nothing in its flash to compare
but the firmware, so the checks are what the release's commands can show (v0.21 or NONOS AT 1.x).

* ``boot``: ``at.alive`` (``AT`` → OK) and ``at.echo_off`` (``ATE0`` holds).
* ``gmr``: ``gmr.at_version`` and ``gmr.sdk_version`` (the first two lines of every NONOS AT GMR,
  reference §2.4; 1.x: ``AT version:1.7.6.0(<libat date time>)``), against what was flashed (the
  download map's user1.bin, else the firmware profile).
  On 1.x also ``gmr.compile_time`` and ``gmr.bin_version``, from the custom text the flashed
  user1.bin carries (``compile time:…`` / ``Bin version(…):…``): the very build, not only its release.
* ``mac``: ``sta_mac`` (``AT+CIPSTAMAC?``) equals the MAC esptool read from the OTP.
* ``uart``: a release with ``AT+UART_DEF?`` (1.x) is asked what it stored (``uart_def``, the five
  values); then, on every release, the check restarts the unit (``AT+RST``) and measures that it
  answers ``AT`` at the baud the configure step stored (``uart.after_reset``; v0.21's ``AT+UART=`` is
  set-only, so this is all it can show): a setting that was not stored, or a wrong baud on a real
  line, leaves it silent.

The configure step (:class:`atfab.station.unit_plan.NonosPlan`) stores the baud with the release's
``g0_uart_command`` (``AT+UART=`` on v0.21, ``AT+UART_DEF=`` on 1.x).

Reads that do not hold are read again first; a re-read that disagrees is link noise
(:class:`~atfab.verify.reread.ReadDisagrees`, ERROR), never a FAIL.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

from ..core.errors import InputError
from ..core.firmware import FirmwareProfile
from ..core.mac import normalize_mac
from ..link.at.client import AtClient
from ..link.at.errors import AtError, AtTimeout
from ..link.at.parse import UartConfig
from .reread import RereadVerifier
from .unit import VerifyResult

#: The checks of a G0 unit (a subset of :data:`atfab.verify.checks.CHECKS`).
NONOS_CHECKS = ("boot", "gmr", "mac", "uart")


def _fields(cfg: UartConfig) -> list[int]:
    return [cfg.baud, cfg.databits, cfg.stopbits, cfg.parity, cfg.flow]


class _NonosVerifier(RereadVerifier):
    """The G0 checks under the re-read discipline (G0 builds no partitions to compare)."""

    def nonos_gmr(self, at_version: str, sdk_version: str, app: dict[str, Any]) -> None:
        gmr = self.check("gmr.at_version", at_version, lambda: self.at.gmr().at_version)
        if gmr is not None:
            self.check("gmr.sdk_version", sdk_version, lambda: self.at.gmr().sdk_version)
            # 1.x: the app's custom text (compile time, Bin version) names the very build that was flashed
            if app.get("compile_time"):
                self.check("gmr.compile_time", app["compile_time"], lambda: self.at.gmr().compile_time)
            if app.get("bin_version"):
                self.check("gmr.bin_version", app["bin_version"], lambda: self.at.gmr().bin_version)

    def nonos_uart_def(self, baud: int) -> None:
        """``AT+UART_DEF?`` (1.x) equals what the configure step stored."""
        self.check("uart_def", [baud, 8, 1, 0, 0], lambda: _fields(self.at.uart_def()))

    def nonos_mac(self, mac: str | None) -> None:
        self.check("sta_mac", mac, lambda: normalize_mac(self.at.sta_mac()))

    def nonos_uart(self, baud: int, boot_timeout: float) -> None:
        """Restart and measure that the unit answers ``AT`` at ``baud`` within ``boot_timeout``."""
        self.at.call("AT+RST")
        deadline = time.monotonic() + boot_timeout
        measured: Any = None
        while time.monotonic() < deadline:
            try:
                self.at.at()
                measured = baud
                break
            except (AtTimeout, AtError):
                self.at.drain()
                time.sleep(0.1)
        self.add("uart.after_reset", baud, measured,
                 detail="AT answered after AT+RST at the baud AT+UART= stored" if measured else
                 f"no answer to AT within {boot_timeout:.0f} s after AT+RST")


def verify_nonos(at: AtClient, *, firmware: FirmwareProfile, app: dict[str, Any] | None, mac: str | bytes | None,
                 uart_baud: int | None, checks: Iterable[str] | None = None, boot_timeout: float = 10.0) -> VerifyResult:
    """Check a running G0 unit on ``at`` (see the module doc). ``app``: what the station flashed
    (``version``/``sdk_version``; None: the firmware profile's); ``mac``: what esptool read."""
    wanted = frozenset(NONOS_CHECKS if checks is None else checks)
    unknown = wanted - set(NONOS_CHECKS)
    if unknown:
        raise InputError(f"check(s) {', '.join(sorted(unknown))} do not exist on NONOS AT "
                         f"(known: {', '.join(NONOS_CHECKS)})", field="checks")
    v = _NonosVerifier(at, firmware)
    app = app or {}
    if "boot" in wanted:
        v.basics()
    if "gmr" in wanted:
        v.nonos_gmr(str(app.get("version") or firmware.core_version), str(app.get("sdk_version") or firmware.sdk_version),
                    app)
    if "mac" in wanted:
        v.nonos_mac(normalize_mac(mac) if mac is not None else None)
    if "uart" in wanted and uart_baud:
        if firmware.has_command("AT+UART_DEF", "query"):
            v.nonos_uart_def(uart_baud)
        v.nonos_uart(uart_baud, boot_timeout)
    return VerifyResult(v.out)


__all__ = ["verify_nonos", "NONOS_CHECKS"]
