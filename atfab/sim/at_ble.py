"""BLE commands of the virtual AT firmware (§7, §6.3), present only when ``firmware.ble``
(ESP32-C2 Wi-Fi builds have none: those commands answer ERROR 0x01090000).

* ``AT+BLEINIT=<role>`` (0 deinit, 1 client, 2 server, 3 dual); changing the role needs
  ``AT+BLEINIT=0`` first (initialising again while initialised -> ERROR). ``AT+BLEINIT?`` ->
  ``+BLEINIT:<role>``.
* Server roles read the GATT table from mfg_nvs ``ble_data/cfg0, cfg1, ...`` (consecutive keys,
  §8.3) when BLE is initialised, so ble_data edits take effect on the next init. With
  ``firmware.gatts_auto_create`` the services are created and started at init; a table that is
  missing or invalid then leaves the server without services (init still OK). Otherwise
  ``AT+BLEGATTSSRVCRE`` creates them (ERROR for a missing/invalid table) and
  ``AT+BLEGATTSSRVSTART[=<srv_index>]`` starts them.
* Discovery: the simulator's own reading of the rows (:func:`sim_discover`, ground truth §10:
  0x2801 is no service, an 8th field overrides the flag, rows of 100 bytes or more are unusable),
  printed with the release's formats (``gattssrv``/``gattschar``/``gattsdesc``/``*_uuid128``); ``AT+BLEGATTSSRV?`` shows ``<start>`` = 1 once started.
* ``AT+BLEADDR?`` (after init): the public address (base MAC + ``firmware.bt_mac_offset``), or
  the random address once ``AT+BLEADDR=1,"<addr>"`` set one; quoted per
  ``firmware.bleaddr_quoted``. Not persisted.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from .at_boot import NVS_ERRORS, read_nvs_region
from .at_command import CommandSpec, Ctx, RunState
from .at_parser import Params, exec_fail, invalid
from .at_wifi import mac_offset, mac_text, parse_mac

_CFG = re.compile(r"cfg(\d+)$")


def init_ble(st: "RunState", host: Any) -> None:
    st.extra.update(ble_role=0, ble_services=None, ble_started=set(), ble_random=None, ble_addr_type=0)


#: Stack buffer a ble_data row is read into (at_nimble_ble, ground truth §10): longer rows are unusable.
ROW_BUFFER = 100
PRIMARY, CHAR_DECL, CCCD = 0x2800, 0x2803, 0x2902


@dataclass
class SimChar:
    srv_index: int
    char_index: int
    uuid: str
    prop: int
    descriptors: list[str] = field(default_factory=list)


@dataclass
class SimService:
    srv_index: int
    uuid: str
    primary: bool = True
    chars: list[SimChar] = field(default_factory=list)


def load_rows(ctx: "Ctx") -> list[list[str]] | None:
    """The ble_data rows now in mfg_nvs (``cfg0``, ``cfg1`` ... until the first missing key) split
    into fields; None when there are none or one does not fit the core's buffers."""
    boot = ctx.boot
    if boot.mfg is None or not boot.mfg_ok:
        return None
    try:
        image = read_nvs_region(ctx.host.flash, boot.mfg, "mfg_nvs")
    except NVS_ERRORS:
        return None
    rows = []
    i = 0
    while True:
        e = image.get("ble_data", f"cfg{i}")
        if e is None or not isinstance(e.value, str):
            break
        if len(e.value.encode()) >= ROW_BUFFER:
            return None
        fields_ = e.value.split(",")
        if len(fields_) < 7:
            return None
        rows.append(fields_)
        i += 1
    return rows or None


def _hex(text: str) -> int | None:
    t = text.strip()
    t = t[2:] if t[:2].lower() == "0x" else t
    try:
        return int(t, 16)
    except ValueError:
        return None


def _uuid_text(value: str) -> str:
    t = value.strip()
    t = t[2:] if t[:2].lower() == "0x" else t
    return "0x" + t.upper()


def sim_discover(rows: list[list[str]], *, nimble: bool = True) -> list[SimService] | None:
    """The services the core builds from ``rows`` (ground truth §10, the simulator's own reading):
    0x2800 starts a service (UUID = its value); 0x2803 sets the next characteristic's flag (hex of
    its value); an optional 8th field on the value row overrides it; 0x2902 rows are skipped (NimBLE
    adds the CCCD); other 0x29xx rows are descriptors; every other row, 0x2801 included, is a
    characteristic value row. None when a UUID is not hex. ``nimble`` False (Bluedroid, ESP32/C3):
    0x2801 starts a (secondary) service and 0x2902 rows are descriptors."""
    services: list[SimService] = []
    flag = 0
    for row in rows:
        uuid = _hex(row[2])
        if uuid is None:
            return None
        if uuid == PRIMARY or (uuid == 0x2801 and not nimble):
            services.append(SimService(len(services) + 1, _uuid_text(row[6]), uuid == PRIMARY))
            continue
        if uuid == CHAR_DECL:
            flag = _hex(row[6]) or 0
            continue
        if uuid == CCCD and nimble:
            continue
        if not services:
            continue
        srv = services[-1]
        if 0x2900 <= uuid <= 0x29FF:
            if srv.chars:
                srv.chars[-1].descriptors.append(_uuid_text(row[2]))
            continue
        prop = flag
        if len(row) >= 8 and _hex(row[7]) is not None:
            prop = _hex(row[7]) or 0
        srv.chars.append(SimChar(srv.srv_index, len(srv.chars) + 1, _uuid_text(row[2]), prop))
        flag = 0
    return services


def _create(ctx: "Ctx") -> bool:
    rows = load_rows(ctx)
    services = sim_discover(rows, nimble=ctx.profile.ble_stack != "bluedroid") if rows is not None else None
    if services is None:
        return False
    ctx.st.extra["ble_services"] = services
    ctx.st.extra["ble_started"] = set()
    return True


def _role(ctx: "Ctx") -> int:
    return int(ctx.st.extra.get("ble_role", 0))


def _init_q(ctx: "Ctx", p: Params) -> None:
    ctx.info(f"+BLEINIT:{_role(ctx)}")


def _init_s(ctx: "Ctx", p: Params) -> None:
    p.count(1)
    role = p.int(0, 0, 3)
    ex = ctx.st.extra
    if role == 0:
        ex.update(ble_role=0, ble_services=None, ble_started=set(), rf_ble=None)
        return
    if _role(ctx) == role:             # same role again: OK, address type back to public (§10)
        ex["ble_addr_type"] = 0
        return
    if _role(ctx):
        raise exec_fail("BLE already initialised with another role")
    ex["ble_role"] = role
    ex["ble_services"] = None
    if role in (2, 3) and ctx.profile.gatts_auto_create and _create(ctx):
        ex["ble_started"] = {s.srv_index for s in ex["ble_services"]}


def _need_server(ctx: "Ctx") -> list[Any]:
    if _role(ctx) not in (2, 3):
        raise exec_fail("not a GATT server")
    services = ctx.st.extra.get("ble_services")
    if services is None:
        raise exec_fail("no services created")
    return services


def _srvcre(ctx: "Ctx", p: Params) -> None:
    if _role(ctx) not in (2, 3):
        raise exec_fail("not a GATT server")
    if ctx.st.extra.get("ble_services") is not None:
        raise exec_fail("services already created")
    if not _create(ctx):
        raise exec_fail("ble_data table missing or invalid")


def _srvstart(ctx: "Ctx", p: Params) -> None:
    services = _need_server(ctx)
    ctx.st.extra["ble_started"] = {s.srv_index for s in services}


def _srvstart_one(ctx: "Ctx", p: Params) -> None:
    services = _need_server(ctx)
    p.count(1)
    idx = p.int(0, 1, max(1, len(services)))
    if idx > len(services):
        raise invalid(0)
    ctx.st.extra["ble_started"].add(idx)


_CONV = re.compile(r"%(0?\d*)([sdxXuU])")


def cformat(fmt: str, *args: Any) -> str:
    """``fmt`` (a C format of the firmware data) with ``args``; a ``str`` argument of a number
    conversion is put in as it is (``0x%04X`` / ``0x%U`` get the UUID's upper-case hex digits)."""
    it = iter(args)

    def one(m: re.Match[str]) -> str:
        value = next(it)
        spec, conv = m.group(1), m.group(2)
        if isinstance(value, str) or conv in "sU":
            return str(value)
        return format(value, spec + ({"d": "d", "u": "d"}.get(conv, conv)))

    return _CONV.sub(one, fmt)


def _uuid_digits(text: str) -> str:
    return text[2:].upper() if text[:2].lower() == "0x" else text.upper()


def _gatt_fmt(ctx: "Ctx", name: str, uuid_hex: str) -> str:
    fw = ctx.profile
    if len(uuid_hex) > 4 and fw.has_fmt(f"{name}_uuid128"):
        return fw.fmt(f"{name}_uuid128")
    return fw.fmt(name)


def _srv_q(ctx: "Ctx", p: Params) -> None:
    started = ctx.st.extra.get("ble_started", set())
    for s in _need_server(ctx):
        uuid = _uuid_digits(s.uuid)
        fmt = _gatt_fmt(ctx, "gattssrv", uuid)
        if len(_CONV.findall(fmt)) == 3:       # NimBLE: "1,<index>" (v3.3-v4.1) or "<index>,1" (v5.0.1+)
            line = cformat(fmt, "+BLEGATTSSRV", s.srv_index, uuid)
        else:                                  # Bluedroid: index, start, uuid
            line = cformat(fmt, "+BLEGATTSSRV", s.srv_index, 1 if s.srv_index in started else 0, uuid)
        ctx.send(line.encode())
        ctx.info_lines += 1


def _char_q(ctx: "Ctx", p: Params) -> None:
    fw = ctx.profile
    for s in _need_server(ctx):
        for c in s.chars:
            uuid = _uuid_digits(c.uuid)
            line = cformat(_gatt_fmt(ctx, "gattschar", uuid), "+BLEGATTSCHAR", s.srv_index, c.char_index, uuid, c.prop)
            ctx.send(line.encode())
            ctx.info_lines += 1
            if fw.has_fmt("gattsdesc"):
                for d, duuid in enumerate(c.descriptors, start=1):
                    ctx.send(cformat(fw.fmt("gattsdesc"), "+BLEGATTSCHAR", s.srv_index, c.char_index, d,
                                     _uuid_digits(duuid)).encode())


def _addr_q(ctx: "Ctx", p: Params) -> None:
    if not _role(ctx):
        raise exec_fail("BLE not initialised")
    ex = ctx.st.extra
    public = mac_offset(ctx.host.mac, ctx.profile.bt_mac_offset)
    addr = ex["ble_random"] if ex.get("ble_addr_type") == 1 and ex.get("ble_random") else public
    text = mac_text(addr)
    ctx.info_raw(f'+BLEADDR:"{text}"', b"", b"")      # no CR LF (ground truth §9)


def _addr_s(ctx: "Ctx", p: Params) -> None:
    if not _role(ctx):
        raise exec_fail("BLE not initialised")
    p.count(1, 2)
    kind = p.int(0, 0, 1)
    ex = ctx.st.extra
    if len(p) == 2:
        addr = parse_mac(p.str(1, 17, min_len=17), 1)
        if kind != 1 or addr[0] & 0xC0 != 0xC0:
            raise invalid(1, "not a static random address")
        ex["ble_random"] = addr
    elif kind == 1 and not ex.get("ble_random"):
        raise invalid(0, "no random address set")
    ex["ble_addr_type"] = kind


def commands(profile: Any) -> list[CommandSpec]:
    if not profile.ble:
        return []
    out = [
        CommandSpec("AT+BLEINIT", query=_init_q, set=_init_s),
        CommandSpec("AT+BLEADDR", query=_addr_q, set=_addr_s),
    ]
    if not profile.gatts_auto_create:
        out += [
            CommandSpec("AT+BLEGATTSSRVCRE", exec=_srvcre),
            CommandSpec("AT+BLEGATTSSRVSTART", set=_srvstart_one, exec=_srvstart),
        ]
    out += [
        CommandSpec("AT+BLEGATTSSRV", query=_srv_q),
        CommandSpec("AT+BLEGATTSCHAR", query=_char_q),
    ]
    return out


__all__ = ["commands", "init_ble", "load_rows"]
