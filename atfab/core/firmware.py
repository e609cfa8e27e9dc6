"""Firmware-generation behaviour that the reference marks [derived] or contradictory.

One :class:`FirmwareProfile` is shared by the AT client and the virtual module, so that every
guess is a setting in one place instead of two hard-coded beliefs that happen to agree.
Module profiles (``partitions/*/profile.toml``) select a generation and may override fields
in their ``[firmware]`` table.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any

from .errors import InputError


@dataclass(frozen=True)
class FirmwareProfile:
    """What one ESP-AT firmware generation prints and expects (reference section in brackets)."""

    generation: str = "G3"
    #: AT port echoes commands after boot (§2.2, ATE1 is the factory default).
    echo_default: bool = True
    #: ``ATE0`` is itself echoed before ``OK`` (§1.2 [obs]).
    ate0_echoed: bool = True
    #: Commands that enter ROM download mode, tried in order (§2.3, contradiction 1).
    download_mode_commands: tuple[str, ...] = ("AT+RST=1", "AT+RST=1,1")
    #: Bytes the firmware sends after the raw bytes of a SYSFLASH/SYSMFG binary read (§1.2, 21).
    raw_read_trailer: bytes = b"\r\n"
    #: ``AT+SYSFLASH=1`` write prompt: "ok_prompt" = ``\r\nOK\r\n\r\n>``, "bare_prompt" = ``\r\n>``
    #: (§4.2, contradiction 12).
    sysflash_write_prompt: str = "bare_prompt"
    #: ``AT+SYSMFG=2`` (string/blob) write prompt; G3 docs show OK before ``>`` (§5.4).
    sysmfg_write_prompt: str = "ok_prompt"
    #: Length field of a numeric SYSMFG read: characters of the decimal text (§5.3 [derived]).
    sysmfg_numeric_length: str = "decimal_text"
    #: ``+RFPOWER:`` query fields: 1 = wifi only (C2, S2), 4 = wifi + 3 BLE fields (§6.1).
    rfpower_fields: int = 1
    #: Valid ``wifi_power`` set range in 0.25 dBm (§6.1).
    rfpower_min: int = 40
    rfpower_max: int = 84
    #: BLE power fields range when present (ESP32 0..7, C3/C5 0..15, C6 3..15).
    rfpower_ble_min: int = 0
    rfpower_ble_max: int = 15
    #: Query shows the set value ("echo") or the quantised hardware value ("esp32_steps") (§6.1).
    rfpower_readback: str = "echo"
    #: ``+BLEGATTSCHAR:`` style: "c2" = char lines only, no property; "full" = prop + desc lines (§7).
    gattschar_style: str = "c2"
    #: Services must be created with AT+BLEGATTSSRVCRE after BLEINIT (ESP32/C3) or are automatic.
    gatts_auto_create: bool = True
    #: PKI key naming: "by_count" = bare namespace name when one file, else ``ns.i`` (esp-at
    #: generator rule, §8.2); "indexed" = always ``ns.i`` (contradiction 13).
    pki_key_naming: str = "by_count"
    #: Enterprise namespaces: "wpa_ent" (HEAD) or "wpa2" (v3.x, legacy option) (contradiction 14).
    enterprise_namespace: str = "wpa_ent"
    #: Country policy shown by ``AT+CWCOUNTRY?`` after boot from factory params (contradiction 17).
    cwcountry_boot_policy: int = 0
    #: Flow control a fresh module reports in UART_DEF (contradiction 20).
    uart_default_flow_control: int = 1
    #: ``+CIPSTAMAC:"…"`` quoted (G2/G3 real output) (contradiction 9).
    mac_quoted: bool = True
    #: ``+BLEADDR:"…"`` quoted (G2/G3) (contradiction 8).
    bleaddr_quoted: bool = True
    #: Module has BLE commands (C2 Wi-Fi builds have none, §7).
    ble: bool = False
    #: Module has Wi-Fi commands (C2 2MB-BLE build has none).
    wifi: bool = True
    #: ``AT+BLEADDR?`` public address = base MAC + this (ESP-IDF convention BT = base + 2, §6.3
    #: [derived, verify per chip]); how a BLE-only module's base MAC is found (atfab.link.at.mac).
    bt_mac_offset: int = 2
    #: Chip name printed inside ``AT version:`` (from v2.2), e.g. "ESP32C2".
    gmr_chip: str = "ESP32C2"
    #: AT UART RX buffer in bytes (§5.5: 1 KB on C2, 2 KB elsewhere): pacing for raw payloads.
    uart_rx_buffer: int = 1024
    #: ``busy p...`` line (§1.2).
    busy_text: str = "busy p..."
    #: Max NVS string value in bytes, including the NUL (§8.6).
    nvs_string_max: int = 4000
    #: Flash offset of the primary partition table the bootloader reads (§11.2: 0xC000 on C5/C61).
    partition_table_offset: int = 0x8000
    #: UART source clock in Hz; ``AT+UART_CUR?`` reports the baud the divider really gives (§3.2).
    #: C2 default clock PLL_F40M; ESP32/C3 use the 80 MHz APB clock.
    uart_clock_hz: int = 40_000_000
    #: Highest accepted baud (§3.1: 80 … SOC_UART_BITRATE_MAX).
    uart_baud_max: int = 5_000_000
    #: ``+RFPOWER:`` Wi-Fi value when factory_param/max_tx_power is missing (driver default 20 dBm).
    rfpower_default: int = 80
    #: ``+RFPOWER:`` BLE fields before ``AT+BLEINIT`` (observed 0, contradiction 21).
    rfpower_ble_uninit_value: int = 0

    def with_overrides(self, overrides: dict[str, Any], *, source: str = "<profile>") -> "FirmwareProfile":
        """A copy with fields replaced from a TOML table; unknown names are an :class:`InputError`."""
        known = {f.name: f for f in fields(self)}
        values: dict[str, Any] = {}
        for name, value in overrides.items():
            if name not in known:
                raise InputError(f"unknown firmware setting {name!r}", file=source, field=f"firmware.{name}")
            current = getattr(self, name)
            if isinstance(current, tuple):
                value = tuple(value)
            elif isinstance(current, bytes) and isinstance(value, str):
                value = value.encode("latin-1").decode("unicode_escape").encode("latin-1")
            elif isinstance(current, bool) and not isinstance(value, bool):
                raise InputError("must be true or false", file=source, field=f"firmware.{name}")
            elif isinstance(current, int) and not isinstance(current, bool) and (
                isinstance(value, bool) or not isinstance(value, int)
            ):
                raise InputError("must be an integer", file=source, field=f"firmware.{name}")
            values[name] = value
        return replace(self, **values)


#: Baseline per chip family for G3 (ESP-AT v3.1+); profiles override what differs.
G3_DEFAULTS: dict[str, FirmwareProfile] = {
    "esp32c2": FirmwareProfile(gmr_chip="ESP32C2", rfpower_fields=1, gattschar_style="c2", uart_rx_buffer=1024),
    "esp32s2": FirmwareProfile(gmr_chip="ESP32S2", rfpower_fields=1, uart_rx_buffer=2048, uart_clock_hz=80_000_000),
    "esp32": FirmwareProfile(
        gmr_chip="ESP32", rfpower_fields=4, rfpower_ble_min=0, rfpower_ble_max=7, rfpower_readback="esp32_steps",
        gattschar_style="full", gatts_auto_create=False, ble=True, uart_rx_buffer=2048,
        download_mode_commands=(), uart_clock_hz=80_000_000,
    ),
    "esp32c3": FirmwareProfile(
        gmr_chip="ESP32C3", rfpower_fields=4, gattschar_style="full", gatts_auto_create=False, ble=True,
        uart_rx_buffer=2048, uart_clock_hz=80_000_000,
    ),
    "esp32c5": FirmwareProfile(gmr_chip="ESP32C5", rfpower_fields=4, gattschar_style="full", ble=True,
                               uart_rx_buffer=2048, download_mode_commands=(), uart_clock_hz=80_000_000),
    "esp32c6": FirmwareProfile(gmr_chip="ESP32C6", rfpower_fields=4, rfpower_ble_min=3, gattschar_style="full",
                               ble=True, uart_rx_buffer=2048, download_mode_commands=(), uart_clock_hz=80_000_000),
    "esp32c61": FirmwareProfile(gmr_chip="ESP32C61", rfpower_fields=4, rfpower_ble_min=3, gattschar_style="full",
                                ble=True, uart_rx_buffer=2048, download_mode_commands=(), uart_clock_hz=80_000_000),
}


#: ESP32 (G3) Wi-Fi power readback (§6.1): (lowest set value of a step, what ``AT+RFPOWER?`` then
#: shows): set 40–43 → 34, 44–51 → 44, 52–55 → 52, 56–59 → 56, 60–65 → 60, 66–71 → 66, 72–77 → 72,
#: 78–84 → 78. Used by :func:`rfpower_readback` (the client's expectations and the simulator alike).
ESP32_RFPOWER_STEPS = ((78, 78), (72, 72), (66, 66), (60, 60), (56, 56), (52, 52), (44, 44), (40, 34))


def rfpower_readback(value: int, firmware: FirmwareProfile) -> int:
    """What ``AT+RFPOWER?`` shows after the Wi-Fi power ``value`` was applied (§6.1).

    ``firmware.rfpower_readback`` "echo" shows the value; "esp32_steps" quantises it with
    :data:`ESP32_RFPOWER_STEPS`. A value outside ``rfpower_min..rfpower_max`` (the firmware refuses
    to set it) is returned as it is.
    """
    if firmware.rfpower_readback != "esp32_steps" or not firmware.rfpower_min <= value <= firmware.rfpower_max:
        return value
    return next((shown for low, shown in ESP32_RFPOWER_STEPS if value >= low), value)


def firmware_for(chip: str, overrides: dict[str, Any] | None = None, *, source: str = "<profile>") -> FirmwareProfile:
    """The G3 firmware profile of ``chip`` with ``overrides`` (a profile's ``[firmware]`` table) applied."""
    try:
        base = G3_DEFAULTS[chip]
    except KeyError:
        raise InputError(f"unknown chip {chip!r} (known: {', '.join(sorted(G3_DEFAULTS))})",
                         file=source, field="chip") from None
    return base.with_overrides(overrides or {}, source=source)


__all__ = ["FirmwareProfile", "G3_DEFAULTS", "firmware_for", "rfpower_readback", "ESP32_RFPOWER_STEPS"]
