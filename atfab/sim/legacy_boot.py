"""What a legacy (G1/G2) AT firmware takes from its ``factory_param`` partition at boot (reference §10.4).

esp32-at v1.1.3+ and ESP-AT v2.x-v3.0.0.0 have no mfg_nvs: the firmware reads the 4 KB 0xFCFC
block of the type-0x40 ``factory_param`` partition. How it applies the bytes is release data
(:class:`~atfab.core.firmware.FirmwareProfile`):

* module (``Bin version``): ``factory_param_module`` "id" = the compiled-in table entry of byte 3;
  "version" = by id in blocks of version <= 2, by the name at offset 56 otherwise (no match: entry 0);
* Wi-Fi power byte 4 unless 0xFF (``factory_param_tx_power`` "skip_v1_levels": also not when the
  block is version 1 and the value < 10, a v1.x level); on G1 the byte is a power level, stored here
  as its 0.25 dBm value (``rfpower_levels``);
* AT UART port byte 5 unless 0xFF, when ``factory_param_uart_port``; pins bytes 16-19; baud 12-15
  unless all 0xFF;
* country and channels only when bytes 6, 7, 8 are not 0xFF, byte 7 read as the *last* channel.

The result uses the G3 factory key names, so the command handlers read one ``BootInfo.factory``
for every generation. Decoding is :func:`atfab.image.legacy_factory.decode_block`.
"""

from __future__ import annotations

from typing import Any

from ..core.errors import InputError
from ..image import legacy_factory as lf
from ..image.partition_table import PartitionTable

FACTORY_PARTITION = "factory_param"
AT_CUSTOMIZE_TYPE = 0x40


def _module(block: dict[str, Any], firmware: Any) -> str:
    names = tuple(firmware.module_names) or ("",)
    by_id = firmware.factory_param_module == "id" or block["version"] <= 2
    if by_id:
        ident = block.get("module_id", 0)
        return names[ident] if 0 <= ident < len(names) else names[0]
    return firmware.printed_module_name(block.get("module_name"))


def _power(raw: int, version: int, firmware: Any) -> int | None:
    if raw == 0xFF:
        return None
    if firmware.factory_param_tx_power == "skip_v1_levels" and version == 1 and raw < 10:
        return None
    levels = tuple(firmware.rfpower_levels)
    if levels:                                   # G1: the byte is a level
        return levels[raw] if raw < len(levels) else None
    return raw


def legacy_factory_values(read: Any, secondary: PartitionTable, firmware: Any,
                          problems: list[str]) -> dict[str, Any]:
    """Factory values (G3 key names) the legacy firmware applies; ``read(offset, n)`` reads flash."""
    part = secondary.find(FACTORY_PARTITION)
    if part is None or part.type != AT_CUSTOMIZE_TYPE:
        return {}
    data = read(part.offset, min(part.size, lf.SIZE))
    try:
        block = lf.decode_block(data, source=f"{FACTORY_PARTITION}@0x{part.offset:x}")
    except InputError as exc:
        problems.append(f"factory_param not applied: {exc.message}")
        return {}
    fw = block["firmware"]
    out: dict[str, Any] = {"module_name": _module(block, firmware)}
    power = _power(data[4], block["version"], firmware)
    if power is not None:
        out["max_tx_power"] = power
    if firmware.factory_param_uart_port and fw["uart_port"] is not None:
        out["uart_port"] = fw["uart_port"]
    if fw["uart_baudrate"] is not None:
        out["uart_baudrate"] = fw["uart_baudrate"]
    for key in ("uart_tx_pin", "uart_rx_pin", "uart_cts_pin", "uart_rts_pin"):
        out[key] = block[key]
    if fw["channels"] is not None:
        out["country_code"] = fw["country_code"]
        out["start_channel"], out["channel_num"] = fw["channels"]
    elif fw["channel_error"]:
        problems.append(f"factory_param channels not applied: {fw['channel_error']}")
    return out


__all__ = ["legacy_factory_values"]
