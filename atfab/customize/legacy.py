"""Customise a legacy factory_param block (magic 0xFCFC, esp32-at v1.1.3+ and ESP-AT v2.x-v3.0.0.0, §10.4).

Like esp-at's ``tools/at.py modify_bin``, only the bytes of the requested fields are written;
every other byte (reserved bytes, control pins, platform, the 0xFF tail) stays as it was. The
fields a block has depend on its version (byte 2): version 1 (esp32-at v1.2, ESP-AT v2.0.0.0)
has no UART port and no module name, version 2 (v2.1) no module name, version 3 (v2.2+) all.

Where atfab differs from at.py, on purpose:

* byte 7 is written as the *last* channel (start + count - 1), which is how every legacy firmware
  reads it; ``channel_num`` in the diff is the channel count (at.py writes the count there: the same
  byte whenever start_channel is 1);
* byte 4 (Wi-Fi power) is a power *level* 0..11 on esp32-at v1.x (G1) and 0.25 dBm (40..84) on
  ESP-AT v2.x+ (G2); a version 1 block is written by both, so the generation must be known (the
  image's app or ``--module``) to change it;
* a field the block's version does not have is refused (at.py writes it into bytes the firmware
  never reads).
"""

from __future__ import annotations

import struct
from typing import Any

from ..core.errors import AtfabError, InputError
from ..image import factory_param as fp
from ..image import legacy_factory as lf
from .nvs_edit import Change
from .plan import OPTION_KEYS, CustomizeRequest

#: field -> byte range in the block.
FIELD_BYTES: dict[str, tuple[int, int]] = {
    "max_tx_power": (4, 5), "uart_port": (5, 6), "start_channel": (6, 7), "channel_num": (7, 8),
    "country_code": (8, 12), "uart_baudrate": (12, 16), "uart_tx_pin": (16, 17), "uart_rx_pin": (17, 18),
    "uart_cts_pin": (18, 19), "uart_rts_pin": (19, 20), "module_name": (56, 88),
}
_BY_VERSION: dict[int, frozenset[str]] = {
    1: frozenset(FIELD_BYTES) - {"uart_port", "module_name"},
    2: frozenset(FIELD_BYTES) - {"module_name"},
    3: frozenset(FIELD_BYTES),
}
G1_LEVELS = (0, 11)


def _current(fields: dict[str, Any]) -> dict[str, Any]:
    """Field values as factory_param keys (``channel_num`` = the count, None when the bytes are invalid)."""
    return {k: fields.get(k) for k in FIELD_BYTES}


def _power(raw: Any, generation: str | None, version: int, target: str) -> int:
    option = OPTION_KEYS.get("max_tx_power", "--tx-power")
    if generation is None and version == 1:
        raise InputError(f"{target} is a version 1 factory_param block: esp32-at v1.x reads byte 4 as a power "
                         "level 0..11, ESP-AT v2.0 as 0.25 dBm; give --module to say which firmware it is for",
                         file=target, field=option)
    if generation == "G1":
        level = fp.parse_int(raw, field=option)
        if not G1_LEVELS[0] <= level <= G1_LEVELS[1]:
            raise InputError(f"{level} is out of range {G1_LEVELS[0]}..{G1_LEVELS[1]} (esp32-at v1.x power level)",
                             file=target, field=option)
        return level
    try:
        return int(fp.validate_value("max_tx_power", raw))
    except InputError as exc:
        raise InputError(exc.message, file=target, field=option) from None


def _encode(key: str, value: Any) -> bytes:
    lo, hi = FIELD_BYTES[key]
    if key == "country_code":
        return value.encode("ascii").ljust(4, b"\x00")[:4]
    if key == "module_name":
        return value.encode("ascii").ljust(32, b"\x00")[:32]
    if key == "uart_baudrate":
        return struct.pack("<i", value)
    if key in fp.PIN_KEYS or key == "uart_port":
        return struct.pack("<b", value)
    assert hi - lo == 1
    return bytes([value & 0xFF])


def customize_legacy_block(block: bytes, request: CustomizeRequest, *, chip: str | None, target: str,
                           generation: str | None = None) -> tuple[bytes, list[Change]]:
    """The block with the requested fields changed, and the changes (namespace ``factory_param``).

    ``generation`` ("G1"/"G2") is the firmware the block is for, when known (see the module docstring).
    """
    old = lf.decode_block(block, source=target)
    version = old["version"]
    if request.pki or request.gatt is not None or getattr(request, "gatt_rows", None):
        option = request.pki[0].option if request.pki else "--gatt"
        raise InputError(f"{target} is a legacy factory_param block: it has no key for {option} (certificates "
                         "and GATT data live in their own partitions there)", file=target, field=option)
    fields = _BY_VERSION[version]
    new_values: dict[str, Any] = {}
    for key, raw in request.factory_param.items():
        option = OPTION_KEYS.get(key, key)
        if key not in fields:
            raise InputError(f"{target} is a version {version} legacy factory_param block without a {key} field",
                             file=target, field=option)
        if key == "max_tx_power":
            new_values[key] = _power(raw, generation, version, target)
            continue
        try:
            new_values[key] = fp.validate_value(key, raw, chip=chip)
        except InputError as exc:
            raise InputError(exc.message, file=target, field=option) from None
    cur = _current(old)
    if {"start_channel", "channel_num"} & set(new_values):
        start = new_values.get("start_channel", old["start_channel"])
        count = new_values.get("channel_num", cur["channel_num"])
        if count is None:
            raise InputError(f"{target} has invalid channel bytes ({old['firmware']['channel_error']}); "
                             "give --channel-num too", file=target, field="--start-channel")
        if not 1 <= start <= start + count - 1 <= 14:
            raise InputError(f"channels {start}..{start + count - 1} are not inside 1..14", file=target,
                             field=OPTION_KEYS.get("channel_num", "--channel-num"))
        new_values["start_channel"], new_values["channel_num"] = start, count
    pins = {k: new_values.get(k, cur[k]) for k in fp.PIN_KEYS}
    if set(fp.PIN_KEYS) & set(new_values):
        try:
            fp.validate(pins, require_all=False)
        except InputError as exc:
            raise InputError(exc.message, file=target, field=OPTION_KEYS.get(exc.field or "", exc.field)) from None
    out = bytearray(block)
    for key, value in new_values.items():
        lo, hi = FIELD_BYTES[key]
        if key == "channel_num":
            value = new_values["start_channel"] + value - 1      # the firmware reads the last channel
        out[lo:hi] = _encode(key, value)
    new = _current(lf.decode_block(bytes(out), source=target))
    changes = [Change("factory_param", key, "legacy", "changed", cur.get(key), new[key])
               for key in FIELD_BYTES if key in new_values and cur.get(key) != new[key]]
    if any(new[k] != v for k, v in new_values.items()):
        raise AtfabError(f"re-encoded legacy block of {target} does not read back as planned (internal error)")
    return bytes(out), changes


__all__ = ["customize_legacy_block", "FIELD_BYTES"]
