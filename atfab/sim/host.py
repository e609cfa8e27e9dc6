"""What the AT firmware of a virtual module may use of the module it runs in."""

from __future__ import annotations

from typing import Protocol

from ..core.firmware import FirmwareProfile
from .faults import FaultPlan
from .flash import NorFlash


class ModuleHost(Protocol):
    """Implemented by :class:`atfab.sim.module.VirtualModule`.

    ``mac`` is the base MAC (STA = base, softAP = base + 1, BT = base + 2); ``state_token``
    changes on every mode change and boot; ``enter_download_mode`` (``AT+RST=1``) silences the AT
    port until the next flash session ends; ``power_loss`` is the fault "power lost" (e.g. between
    two SYSMFG writes); ``set_at_baud`` paces the AT endpoint after ``AT+UART_CUR``/``DEF``.
    """

    flash: NorFlash
    mac: bytes
    chip: str
    chip_revision: tuple[int, int]
    firmware: FirmwareProfile
    faults: FaultPlan
    state_token: int

    def enter_download_mode(self) -> None: ...
    def power_loss(self) -> None: ...
    def set_at_baud(self, baud: int) -> None: ...


__all__ = ["ModuleHost"]
