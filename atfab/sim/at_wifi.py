"""RF and MAC commands of the virtual AT firmware (§6): AT+RFPOWER, AT+CWCOUNTRY, AT+CIPSTAMAC,
AT+CIPAPMAC. Present only when ``firmware.wifi`` (RFPOWER also on BLE-only builds with BLE fields).

* RFPOWER boot value: ``factory_param/max_tx_power`` (i8, 0.25 dBm) or ``firmware.rfpower_default``
  when missing. Query prints ``firmware.rfpower_fields`` fields; the Wi-Fi value is shown per
  ``firmware.rfpower_readback`` ("echo": the set value, "esp32_steps": the quantised table of
  §6.1, :func:`atfab.core.firmware.rfpower_readback`). BLE fields show
  ``firmware.rfpower_ble_uninit_value`` until BLE is initialised. Set:
  wifi in ``rfpower_min..max``; BLE values all or none, in ``rfpower_ble_min..max``, and the
  whole command fails while BLE is not initialised; scan/conn are forced to adv. Not persisted.
* CWCOUNTRY boot value: ``(firmware.cwcountry_boot_policy, country_code, start_channel,
  channel_num)`` from factory_param; any of them missing -> the Wi-Fi driver default
  (policy 0, ``"01"``, 1, 11). Set validates policy 0/1, code 1-3 chars, start 1-14 and
  ``start+count-1 <= 14``. Not persisted.
* MACs (ESP-IDF convention, §6.3): STA = base MAC, softAP = base + 1; lower-case, quoted per
  ``firmware.mac_quoted``. Set validates (unicast, not all 00/FF, STA != AP) and keeps the value
  in RAM (persistence under SYSSTORE is not simulated).
"""

from __future__ import annotations

from typing import Any

from ..core.firmware import rfpower_readback
from .at_boot import IDF_DEFAULT_COUNTRY
from .at_command import CommandSpec, Ctx, RunState
from .at_parser import Params, exec_fail, invalid


def mac_text(mac: bytes) -> str:
    return ":".join(f"{b:02x}" for b in mac)


def mac_offset(mac: bytes, n: int) -> bytes:
    """``mac`` + ``n`` as a 48-bit number (base+1 softAP, base+2 BT)."""
    return ((int.from_bytes(mac, "big") + n) % (1 << 48)).to_bytes(6, "big")


def parse_mac(text: str, index: int) -> bytes:
    parts = text.split(":")
    if len(parts) != 6 or any(len(x) != 2 for x in parts):
        raise invalid(index, "bad MAC")
    try:
        return bytes(int(x, 16) for x in parts)
    except ValueError:
        raise invalid(index, "bad MAC") from None


def init_wifi(st: "RunState", host: Any) -> None:
    """Boot values of RF power, country and MACs."""
    fw = host.firmware
    power = st.boot.fint("max_tx_power")
    st.extra["rf_wifi"] = power if power is not None else fw.rfpower_default
    st.extra["rf_ble"] = None
    cc = st.boot.factory.get("country_code")
    start, count = st.boot.fint("start_channel"), st.boot.fint("channel_num")
    if isinstance(cc, str) and start is not None and count is not None:
        st.extra["country"] = (fw.cwcountry_boot_policy, cc, start, count)
    else:
        st.extra["country"] = (0, *IDF_DEFAULT_COUNTRY)
    st.extra["sta_mac"] = bytes(host.mac)
    st.extra["ap_mac"] = mac_offset(bytes(host.mac), 1)


# -- RFPOWER ---------------------------------------------------------------------------------------
def ble_initialised(ctx: "Ctx") -> bool:
    return bool(ctx.st.extra.get("ble_role", 0))


def _rf_q(ctx: "Ctx", p: Params) -> None:
    fw = ctx.profile
    fields = [rfpower_readback(ctx.st.extra["rf_wifi"], fw)]
    if fw.rfpower_fields > 1:
        ble = ctx.st.extra.get("rf_ble")
        if not ble_initialised(ctx) or ble is None:
            ble = (fw.rfpower_ble_uninit_value,) * (fw.rfpower_fields - 1)
        fields += list(ble)
    ctx.info("+RFPOWER:" + ",".join(str(v) for v in fields))


def _rf_s(ctx: "Ctx", p: Params) -> None:
    fw = ctx.profile
    if fw.rfpower_fields > 1:
        if len(p) not in (1, fw.rfpower_fields):
            p.count(fw.rfpower_fields)
    else:
        p.count(1)
    wifi = p.int(0, fw.rfpower_min, fw.rfpower_max)
    ble = None
    if len(p) > 1:
        adv = p.int(1, fw.rfpower_ble_min, fw.rfpower_ble_max)
        for i in range(2, len(p)):
            p.int(i, fw.rfpower_ble_min, fw.rfpower_ble_max)
        if not ble_initialised(ctx):
            raise exec_fail("BLE not initialised")
        ble = (adv,) * (fw.rfpower_fields - 1)
    if not fw.wifi:
        raise exec_fail("no Wi-Fi")
    ctx.st.extra["rf_wifi"] = wifi
    if ble is not None:
        ctx.st.extra["rf_ble"] = ble


# -- CWCOUNTRY ---------------------------------------------------------------------------------------
def _country_q(ctx: "Ctx", p: Params) -> None:
    policy, cc, start, count = ctx.st.extra["country"]
    ctx.info(f'+CWCOUNTRY:{policy},"{cc}",{start},{count}')


def _country_s(ctx: "Ctx", p: Params) -> None:
    p.count(4)
    policy = p.int(0, 0, 1)
    cc = p.str(1, 3, min_len=1)
    start = p.int(2, 1, 14)
    count = p.int(3, 1, 14)
    if start + count - 1 > 14:
        raise invalid(3, "channels beyond 14")
    ctx.st.extra["country"] = (policy, cc, start, count)


# -- MACs -----------------------------------------------------------------------------------------------
def _mac_line(ctx: "Ctx", name: str, mac: bytes) -> None:
    text = mac_text(mac)
    ctx.info(f'+{name}:"{text}"' if ctx.profile.mac_quoted else f"+{name}:{text}")


def _mac_set(ctx: "Ctx", p: Params, mine: str, other: str) -> None:
    p.count(1)
    mac = parse_mac(p.str(0, 17, min_len=17), 0)
    if mac[0] & 1 or mac in (b"\x00" * 6, b"\xff" * 6) or mac == ctx.st.extra[other]:
        raise invalid(0, "MAC not allowed")
    ctx.st.extra[mine] = mac


def _sta_q(ctx: "Ctx", p: Params) -> None:
    _mac_line(ctx, "CIPSTAMAC", ctx.st.extra["sta_mac"])


def _ap_q(ctx: "Ctx", p: Params) -> None:
    _mac_line(ctx, "CIPAPMAC", ctx.st.extra["ap_mac"])


def _sta_s(ctx: "Ctx", p: Params) -> None:
    _mac_set(ctx, p, "sta_mac", "ap_mac")


def _ap_s(ctx: "Ctx", p: Params) -> None:
    _mac_set(ctx, p, "ap_mac", "sta_mac")


def commands(profile: Any) -> list[CommandSpec]:
    out = [CommandSpec("AT+RFPOWER", query=_rf_q, set=_rf_s)]
    if profile.wifi:
        out += [
            CommandSpec("AT+CWCOUNTRY", query=_country_q, set=_country_s),
            CommandSpec("AT+CIPSTAMAC", query=_sta_q, set=_sta_s),
            CommandSpec("AT+CIPAPMAC", query=_ap_q, set=_ap_s),
        ]
    return out


__all__ = ["commands", "init_wifi", "mac_text", "mac_offset"]
