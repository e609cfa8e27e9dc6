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
from .at_boot import IDF_DEFAULT_COUNTRY, NVS_ERRORS, nvs_editor, read_nvs_region
from .at_command import CommandSpec, Ctx, RunState
from .at_parser import SUB_PARA_INVALID, SUB_PARA_NUM_MISMATCH, AtCmdError, Params, exec_fail, invalid


def mac_text(mac: bytes) -> str:
    return ":".join(f"{b:02x}" for b in mac)


def mac_offset(mac: bytes, n: int) -> bytes:
    """``mac`` + ``n`` as a 48-bit number (base+1 softAP, base+2 BT)."""
    return ((int.from_bytes(mac, "big") + n) % (1 << 48)).to_bytes(6, "big")


def parse_mac(text: str, index: int) -> bytes:
    parts = text.split(":")
    if len(parts) != 6 or any(len(x) != 2 for x in parts):
        raise AtCmdError(SUB_PARA_INVALID, index, "bad MAC")
    try:
        return bytes(int(x, 16) for x in parts)
    except ValueError:
        raise AtCmdError(SUB_PARA_INVALID, index, "bad MAC") from None


#: The Wi-Fi chain of factory_param at boot (key, NVS type), in order: the first key missing or
#: stored with another type ends it, the rest is not applied (ground truth §11, "split" boot).
WIFI_CHAIN = (("max_tx_power", "i8"), ("start_channel", "u8"), ("channel_num", "u8"), ("country_code", "string"))


def init_wifi(st: "RunState", host: Any, fw: Any) -> None:
    """Boot values of RF power, country, MACs, Wi-Fi mode and the multiple-connection flag."""
    got: dict[str, Any] = {}
    for key, kind in WIFI_CHAIN:
        value = st.boot.typed(key, kind)
        if value is None:
            break                      # early return: the country code is skipped too
        got[key] = value
    st.extra["rf_wifi"] = got.get("max_tx_power", fw.rfpower_default) if fw.wifi else 0
    st.extra["rf_ble"] = None
    if len(got) == len(WIFI_CHAIN):
        st.extra["country"] = (fw.cwcountry_boot_policy, got["country_code"], got["start_channel"],
                               got["channel_num"])
    else:
        st.extra["country"] = (0, *IDF_DEFAULT_COUNTRY)
    st.extra["sta_mac"] = _stored_sta_mac(st, host, fw) or bytes(host.mac)
    st.extra["ap_mac"] = mac_offset(bytes(host.mac), 1)
    st.extra["cwmode"] = 1            # esp_wifi_get_mode after esp-at's init: station
    st.extra["cipmux"] = 0


def _stored_sta_mac(st: "RunState", host: Any, fw: Any) -> bytes | None:
    """The station MAC ``AT+CIPSTAMAC=`` stored under SYSSTORE=1 (system NVS ``firmware.sta_mac_nvs``)."""
    if st.boot.sys_nvs is None:
        return None
    ns, key, _kind = fw.sta_mac_nvs
    try:
        entry = read_nvs_region(host.flash, st.boot.sys_nvs, "nvs").get(ns, key)
    except NVS_ERRORS:
        return None
    if entry is None or not isinstance(entry.value, (bytes, bytearray)) or len(entry.value) != 6:
        return None
    return bytes(entry.value)


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
    if fw.rfpower_levels and p.present(0):   # G1: a power level, applied as its 0.25 dBm value
        wifi = fw.rfpower_levels[p.int(0, 0, len(fw.rfpower_levels) - 1)]
    else:
        wifi = p.int(0, fw.rfpower_min, fw.rfpower_max) if p.present(0) else None
    if not fw.wifi and len(p) == 1:
        return                         # BLE-only build, Wi-Fi value only: OK, nothing set (§7)
    ble = None
    if len(p) > 1:
        adv = p.int(1, fw.rfpower_ble_min, fw.rfpower_ble_max)
        for i in range(2, len(p)):
            p.int(i, fw.rfpower_ble_min, fw.rfpower_ble_max)
        if not ble_initialised(ctx):
            raise exec_fail("BLE not initialised")
        ble = (adv,) * (fw.rfpower_fields - 1)
    if fw.wifi and wifi is not None:
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
    if len(p) != 1:
        raise AtCmdError(SUB_PARA_NUM_MISMATCH, 0, "one parameter")
    mac = parse_mac(p.str(0, 17, min_len=17), 0)
    if mac[0] & 1 or mac in (b"\x00" * 6, b"\xff" * 6) or mac == ctx.st.extra[other]:
        raise AtCmdError(SUB_PARA_INVALID, 0, "MAC not allowed")
    ctx.st.extra[mine] = mac
    if mine == "sta_mac" and ctx.st.sysstore and ctx.boot.sys_nvs is not None:
        ns, key, kind = ctx.profile.sta_mac_nvs      # persists across reset (ground truth §9)
        try:
            nvs_editor(ctx.host.flash, ctx.boot.sys_nvs).set(ns, key, kind, mac)
        except NVS_ERRORS as exc:
            raise exec_fail(str(exc)) from None


def _sta_q(ctx: "Ctx", p: Params) -> None:
    _mac_line(ctx, "CIPSTAMAC", ctx.st.extra["sta_mac"])


def _ap_q(ctx: "Ctx", p: Params) -> None:
    _mac_line(ctx, "CIPAPMAC", ctx.st.extra["ap_mac"])


def _sta_s(ctx: "Ctx", p: Params) -> None:
    _mac_set(ctx, p, "sta_mac", "ap_mac")


def _ap_s(ctx: "Ctx", p: Params) -> None:
    _mac_set(ctx, p, "ap_mac", "sta_mac")


# -- start-up commands third-party host drivers send (CWMODE, CWSTATE, CIPMUX) ---------------------------
#: Highest mode ``at_setup_cmd_cwmode`` passes (4 = NAN); above -> ``ERR CODE:0x01070001``.
CWMODE_MAX = 4


def _cwmode_q(ctx: "Ctx", p: Params) -> None:
    ctx.send(cformat_d(ctx.profile.fmt("cwmode_query"), "+CWMODE", ctx.st.extra["cwmode"]))
    ctx.info_lines += 1


def _cwmode_s(ctx: "Ctx", p: Params) -> None:
    if not 1 <= len(p) <= 2:
        raise AtCmdError(SUB_PARA_NUM_MISMATCH, 0, "1 or 2 parameters")
    mode = p.int(0)
    if not 0 <= mode <= CWMODE_MAX:
        raise AtCmdError(SUB_PARA_INVALID, 1, "mode")
    if len(p) == 2 and p.present(1):
        p.int(1, 0, 1)
    ctx.st.extra["cwmode"] = mode


def _cwstate_q(ctx: "Ctx", p: Params) -> None:
    ctx.send(f'+CWSTATE:{ctx.st.extra.get("cwstate", 0)},""\r\n'.encode())   # cwstate_noconfig / no SSID yet
    ctx.info_lines += 1


def _cipmux_q(ctx: "Ctx", p: Params) -> None:
    ctx.send(cformat_d(ctx.profile.fmt("cipmux_query"), "+CIPMUX", ctx.st.extra["cipmux"]))
    ctx.info_lines += 1


def _cipmux_s(ctx: "Ctx", p: Params) -> None:
    if len(p) != 1:
        raise AtCmdError(SUB_PARA_NUM_MISMATCH, 0, "one parameter")
    mux = p.int(0)
    if mux not in (0, 1):
        raise AtCmdError(SUB_PARA_INVALID, 0, "mux")
    ctx.st.extra["cipmux"] = mux


def cformat_d(fmt: str, name: str, value: int) -> bytes:
    """``"%s:%d\\r\\n"``-style formats with a name and one number."""
    return fmt.replace("%s", name, 1).replace("%d", str(value), 1).encode()


def commands(profile: Any) -> list[CommandSpec]:
    out = [CommandSpec("AT+RFPOWER", query=_rf_q, set=_rf_s)]
    if profile.wifi:
        out += [
            CommandSpec("AT+CWMODE", query=_cwmode_q, set=_cwmode_s),
            CommandSpec("AT+CWSTATE", query=_cwstate_q),
            CommandSpec("AT+CWCOUNTRY", query=_country_q, set=_country_s),
            CommandSpec("AT+CIPSTAMAC", query=_sta_q, set=_sta_s),
            CommandSpec("AT+CIPAPMAC", query=_ap_q, set=_ap_s),
        ]
    if "net" in profile.features:
        out.append(CommandSpec("AT+CIPMUX", query=_cipmux_q, set=_cipmux_s))
    return out


__all__ = ["commands", "init_wifi", "mac_text", "mac_offset"]
