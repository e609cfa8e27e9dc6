"""UART commands of the virtual AT firmware (§3): AT+UART_CUR, AT+UART_DEF, AT+UART.

* Set forms take exactly five parameters, each range checked (baud 80 …
  ``firmware.uart_baud_max``, data bits 5-8, stop bits 1-3, parity 0-2, flow 0-3), else ERROR.
  OK is sent at the old rate, then the module's AT endpoint switches (``host.set_at_baud``).
* ``AT+UART_DEF=`` / ``AT+UART=`` also apply at once and are always written to system NVS
  (namespace ``UART``, §3.2), whatever SYSSTORE says.
* ``AT+UART_CUR?`` / ``AT+UART?`` report what the hardware runs: the baud the clock divider
  really produces from ``firmware.uart_clock_hz`` (:func:`actual_baud`).
* ``AT+UART_DEF?`` reads the stored values back from system NVS (RAM copy when the module has no
  system nvs partition).
"""

from __future__ import annotations

from typing import Any

from .at_boot import NVS_ERRORS, PARITY_IDF_TO_AT, UartConfig, read_nvs_region, store_uart_def
from .at_command import After, CommandSpec, Ctx
from .at_parser import Params, exec_fail


#: Integer clock divider register limit of the UART (12 bits), with a 4-bit fraction.
_DIV_INT_MAX = (1 << 12) - 1


def actual_baud(baud: int, clock_hz: int) -> int:
    """The baud a UART with an integer.4-bit-fraction divider (+ source pre-divider) really runs at.

    Same arithmetic as ESP-IDF's ``uart_ll_set_baudrate`` / ``uart_ll_get_baudrate``: the divider
    is truncated, so most rates come out slightly high (115200 at 40 MHz -> 115211).
    """
    if baud <= 0:
        return 0
    sclk_div = max(1, -(-clock_hz // (_DIV_INT_MAX * baud)))
    clk_div = (clock_hz << 4) // (baud * sclk_div)
    if clk_div == 0:
        return 0
    return (clock_hz << 4) // (clk_div * sclk_div)


def _parse(ctx: "Ctx", p: Params) -> UartConfig:
    p.count(5)
    return UartConfig(
        baud=p.int(0, 80, ctx.profile.uart_baud_max),
        databits=p.int(1, 5, 8),
        stopbits=p.int(2, 1, 3),
        parity=p.int(3, 0, 2),
        flow=p.int(4, 0, 3),
    )


def _line(name: str, cfg: UartConfig, baud: int | None = None) -> str:
    b = cfg.baud if baud is None else baud
    return f"+{name}:{b},{cfg.databits},{cfg.stopbits},{cfg.parity},{cfg.flow}"


def _apply_after(ctx: "Ctx", cfg: UartConfig) -> After:
    def after() -> None:
        ctx.st.uart_cur = cfg
        ctx.host.set_at_baud(cfg.baud)
        return None

    return after


def _cur_q(ctx: "Ctx", p: Params, name: str = "UART_CUR") -> None:
    cfg = ctx.st.uart_cur
    ctx.info(_line(name, cfg, actual_baud(cfg.baud, ctx.profile.uart_clock_hz)))


def _uart_q(ctx: "Ctx", p: Params) -> None:
    _cur_q(ctx, p, "UART")


def _cur_s(ctx: "Ctx", p: Params) -> After:
    return _apply_after(ctx, _parse(ctx, p))


def stored_uart_def(ctx: "Ctx") -> UartConfig:
    """UART_DEF as stored in system NVS now (RAM copy without a system nvs partition)."""
    part = ctx.boot.sys_nvs
    if part is None:
        return ctx.st.extra.get("uart_def", ctx.boot.uart_def)
    try:
        image = read_nvs_region(ctx.host.flash, part, "nvs")
    except NVS_ERRORS as exc:
        raise exec_fail(f"system nvs unreadable: {exc}") from None
    vals = [image.get("UART", k) for k in ("rate", "databits", "stopbits", "parity", "flow_ctrl")]
    if any(v is None for v in vals):
        raise exec_fail("UART settings missing from system nvs")
    rate, bits, stop, parity, flow = (int(v.value) for v in vals)  # type: ignore[union-attr]
    return UartConfig(rate, bits + 5, stop, PARITY_IDF_TO_AT.get(parity, parity), flow)


def _def_q(ctx: "Ctx", p: Params) -> None:
    ctx.info(_line("UART_DEF", stored_uart_def(ctx)))


def _def_s(ctx: "Ctx", p: Params) -> After:
    cfg = _parse(ctx, p)
    try:
        store_uart_def(ctx.host.flash, ctx.boot.sys_nvs, cfg)
    except NVS_ERRORS as exc:
        raise exec_fail(f"cannot store UART settings: {exc}") from None
    ctx.st.extra["uart_def"] = cfg
    return _apply_after(ctx, cfg)


def commands(profile: Any) -> list[CommandSpec]:
    return [
        CommandSpec("AT+UART", query=_uart_q, set=_def_s),
        CommandSpec("AT+UART_CUR", query=_cur_q, set=_cur_s),
        CommandSpec("AT+UART_DEF", query=_def_q, set=_def_s),
    ]


__all__ = ["actual_baud", "commands", "stored_uart_def"]
