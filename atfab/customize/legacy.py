"""Customise a legacy factory_param block (magic 0xFCFC, ESP-AT v2.x, §10.4).

The block is decoded with :func:`atfab.image.factory_param.decode_legacy_block`, the requested fields
are re-encoded with :func:`atfab.image.factory_param.encode_legacy_block`, and only the bytes of those
fields are taken from the encoding: every other byte (reserved bytes, control pins, platform,
the 0xFF tail) stays as it was. Byte 7 is written as the *last* channel (start + count - 1), which
is how the firmware reads it; ``channel_num`` in the diff is the channel count.
"""

from __future__ import annotations

from typing import Any

from ..core.errors import AtfabError, InputError
from .nvs_edit import Change
from .plan import OPTION_KEYS, CustomizeRequest
from ..image import factory_param as fp

#: field -> byte range in the block (versions 2/3; version 1 has no power/port/name fields).
FIELD_BYTES: dict[str, tuple[int, int]] = {
    "max_tx_power": (4, 5), "uart_port": (5, 6), "start_channel": (6, 7), "channel_num": (7, 8),
    "country_code": (8, 12), "uart_baudrate": (12, 16), "uart_tx_pin": (16, 17), "uart_rx_pin": (17, 18),
    "uart_cts_pin": (18, 19), "uart_rts_pin": (19, 20), "module_name": (56, 88),
}
_BY_VERSION: dict[int, frozenset[str]] = {
    1: frozenset(FIELD_BYTES) - {"max_tx_power", "uart_port", "module_name"},
    2: frozenset(FIELD_BYTES) - {"module_name"},
    3: frozenset(FIELD_BYTES),
}
#: stand-ins for kept fields whose stored value the encoder would reject (their bytes are kept anyway)
_STAND_IN: dict[str, Any] = {"max_tx_power": 78, "uart_port": 1, "start_channel": 1, "channel_num": 13,
                             "country_code": "CN", "uart_baudrate": 115200, "uart_tx_pin": -1, "uart_rx_pin": -1,
                             "uart_cts_pin": -1, "uart_rts_pin": -1, "module_name": "MODULE"}


def _current(old: dict[str, Any]) -> dict[str, Any]:
    """Field values as factory_param keys; ``channel_num`` as a count (None when the bytes are invalid)."""
    cur = {k: old[k] for k in FIELD_BYTES if k in old}
    channels = old["firmware"]["channels"]
    cur["start_channel"], cur["channel_num"] = channels if channels else (old["start_channel"], None)
    return cur


def customize_legacy_block(block: bytes, request: CustomizeRequest, *, chip: str | None,
                           target: str) -> tuple[bytes, list[Change]]:
    """The block with the requested fields changed, and the changes (namespace ``factory_param``)."""
    old = fp.decode_legacy_block(block, source=target)
    version = old["version"]
    if request.pki or request.gatt is not None:
        option = (request.pki[0].option if request.pki else "--gatt")
        raise InputError(f"{target} is a legacy factory_param block (ESP-AT v2.x): it has no mfg_nvs key for "
                         f"{option} (certificates and GATT data live in their own partitions there)",
                         file=target, field=option)
    fields = _BY_VERSION[version]
    new_values: dict[str, Any] = {}
    for key, raw in request.factory_param.items():
        option = OPTION_KEYS.get(key, key)
        if key not in fields:
            raise InputError(f"{target} is a version {version} legacy factory_param block without a {key} field",
                             file=target, field=option)
        try:
            new_values[key] = fp.validate_value(key, raw, chip=chip)
        except InputError as exc:
            raise InputError(exc.message, field=option) from None
    cur = _current(old)
    changing = set(new_values)
    if changing & {"start_channel", "channel_num"}:
        changing |= {"start_channel", "channel_num"}
        if cur["channel_num"] is None and "channel_num" not in new_values:
            raise InputError(f"{target} has invalid channel bytes ({old['firmware']['channel_error']}); "
                             "give --channel-num too", file=target, field="--start-channel")
    merged: dict[str, Any] = {}
    for key in fields:
        if key in new_values:
            merged[key] = new_values[key]
            continue
        value = cur.get(key)
        try:
            merged[key] = fp.validate_value(key, value, chip=chip) if value is not None else _STAND_IN[key]
        except InputError:
            if key in changing:
                raise InputError(f"{target} holds an invalid {key} ({value!r}); give {OPTION_KEYS.get(key, key)} too",
                                 file=target, field=OPTION_KEYS.get(key, key)) from None
            merged[key] = _STAND_IN[key]
    if cur["channel_num"] is None and not changing & {"start_channel", "channel_num"}:
        # invalid channel bytes that stay as they are: encode consistent stand-ins (bytes are kept)
        merged["start_channel"], merged["channel_num"] = _STAND_IN["start_channel"], _STAND_IN["channel_num"]
    related = changing | (set(fp.PIN_KEYS) if changing & set(fp.PIN_KEYS) else set())
    try:
        fp.validate({k: merged[k] for k in related}, require_all=False)
    except InputError as exc:
        raise InputError(exc.message, field=OPTION_KEYS.get(exc.field or "", exc.field)) from None
    if version == 1:
        merged["power_level"] = old["power_level"]
    encoded = fp.encode_legacy_block(merged, version, platform=old.get("platform") or "PLATFORM_ESP32",
                                     module_id=old["module_id"], channel_byte="last")
    out = bytearray(block)
    for key in changing:
        lo, hi = FIELD_BYTES[key]
        out[lo:hi] = encoded[lo:hi]
    new = _current(fp.decode_legacy_block(bytes(out), source=target))
    changes = [Change("factory_param", key, "legacy", "changed", cur.get(key), new[key])
               for key in sorted(changing, key=list(FIELD_BYTES).index) if cur.get(key) != new[key]]
    if any(new[k] != v for k, v in new_values.items()):
        raise AtfabError(f"re-encoded legacy block of {target} does not read back as planned (internal error)")
    return bytes(out), changes


__all__ = ["customize_legacy_block", "FIELD_BYTES"]
