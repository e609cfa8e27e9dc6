"""Faults a test can plan for one virtual module.

The link-level faults (``flash``, ``at``) are :class:`~atfab.sim.link.LinkFaults` applied by the
module to the connection on that endpoint; the AT-level ones are read and consumed by the AT
firmware (:mod:`atfab.sim.at_firmware`). Every field is one-shot: it is cleared once it fired.

Link faults are read *live*: setting ``plan.at.drop_after_tx`` (or assigning a new
``plan.at``) while a host is connected takes effect on that connection. Byte counts are per
connection, since it opened. A flash-side ``drop_after_rx`` of N is a power loss in the middle
of flashing: the connection is cut after the host sent N bytes and the module boots from
whatever the flash then holds.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

from .link import Link, LinkFaults


@dataclass
class FaultPlan:
    """What goes wrong next on one module (see the module docstring for the rules)."""

    #: Link faults of the download (flash) endpoint.
    flash: LinkFaults = field(default_factory=LinkFaults)
    #: Link faults of the AT endpoint.
    at: LinkFaults = field(default_factory=LinkFaults)
    #: Answer ``busy p...`` to the next N AT commands.
    busy_next: int = 0
    #: Bytes injected between an information line and the final OK.
    garbage_between_lines: bytes | None = None
    #: An unsolicited result code injected between an information line and the final OK.
    urc_between_lines: str | None = None
    #: Seconds the next AT reply is held back.
    stall_reply_seconds: float = 0.0
    #: Flip one byte in the next SYSFLASH/SYSMFG raw read.
    corrupt_next_read: bool = False
    #: Flip a byte in each of the next N SYSFLASH/SYSMFG raw reads, another byte each time (reads that
    #: disagree with each other: link noise).
    corrupt_next_reads: int = 0
    #: Store the next AT+SYSMFG blob write with one byte flipped (a unit that keeps other bytes than it
    #: was sent: every read-back shows the same wrong bytes).
    store_corrupt_next_write: bool = False
    #: Answer ERROR to the next SYSMFG/SYSFLASH write.
    error_next_write: bool = False
    #: Let N more SYSMFG/SYSFLASH writes through, then answer ERROR to the one after them.
    error_after_writes: int | None = None
    #: Lose power after N more committed SYSMFG writes.
    power_loss_after_writes: int | None = None
    #: The AT link drops halfway through the payload of the Nth AT+SYSMFG string/blob write from now;
    #: the write then waits for the rest from the next link (ground truth §6).
    drop_in_sysmfg_write: int | None = None
    #: Lose power once N more AT+SYSFLASH erases/writes were carried out (after the Nth, before its reply).
    power_loss_after_flash_ops: int | None = None
    #: The AT link drops at that same point instead (the module keeps running).
    drop_after_flash_ops: int | None = None
    #: The AT link drops halfway through the payload of the Nth AT+SYSFLASH write from now; the write
    #: then waits for the rest from the next link, as the core reading its UART does.
    drop_in_flash_write: int | None = None

    def live(self, side: str) -> "LiveLinkFaults":
        """A view of ``self.<side>`` for a :class:`Link` that follows later changes."""
        if side not in ("flash", "at"):
            raise ValueError(f"no link side {side!r}")
        return LiveLinkFaults(self, side)

    def consume_fired(self, side: str, link: Link) -> None:
        """Clear the link faults of ``side`` that fired on ``link`` (call when it closed)."""
        faults: LinkFaults = getattr(self, side)
        tx, rx = link.tx_count, link.rx_count
        if faults.drop_after_tx is not None and tx >= faults.drop_after_tx:
            faults.drop_after_tx = None
        if faults.drop_after_rx is not None and (rx >= faults.drop_after_rx
                                                 or getattr(link, "rx_fault_fired", False)):
            faults.drop_after_rx = None
        if faults.stall_after_tx is not None and tx > faults.stall_after_tx:
            faults.stall_after_tx = None
            faults.stall_seconds = 0.0
        if faults.corrupt_tx_at is not None and tx > faults.corrupt_tx_at:
            faults.corrupt_tx_at = None

    def clear(self) -> None:
        """Cancel every planned fault."""
        for f in fields(self):
            setattr(self, f.name, f.default_factory() if callable(f.default_factory) else f.default)  # type: ignore[misc]


class LiveLinkFaults:
    """Duck-typed :class:`LinkFaults` reading the current ``plan.<side>`` on every access."""

    __slots__ = ("_plan", "_side")

    def __init__(self, plan: FaultPlan, side: str) -> None:
        self._plan = plan
        self._side = side

    def __getattr__(self, name: str) -> Any:
        return getattr(getattr(self._plan, self._side), name)


__all__ = ["FaultPlan", "LiveLinkFaults", "LinkFaults"]
