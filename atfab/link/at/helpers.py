"""Typed AT command helpers (mixed into :class:`atfab.link.at.client.AtClient`): return data, never print.

Numbers go out in decimal and strings quoted/escaped (§1.1); replies are parsed by
:mod:`atfab.link.at.parse`. Helpers resend after ``busy p...`` up to the client's ``busy_retries``.
What a helper needs of the client underneath is the :class:`AtLink` protocol (its ``self`` type).
"""

from __future__ import annotations

from typing import Any, Protocol

from ...core.errors import DeviceError, InputError
from ...core.firmware import FirmwareProfile
from .errors import AtBusy, AtError, AtResponseError
from .framing import Reply
from .limits import check_sysmfg_length
from .parse import (
    SYSMFG_RANGES, CmdInfo, Country, GattsChar, GattsService, Gmr, SysflashEntry, SysmfgKey, UartConfig,
    build_command, parse_cmd_line, parse_country, parse_gatts_char, parse_gatts_service, parse_gmr, parse_mac,
    parse_rfpower, parse_single_int, parse_sysflash_entry, parse_sysmfg_key, parse_sysmfg_namespace,
    parse_sysmfg_numeric, parse_uart, type_number,
)

NVS_NAME_MAX = 15
DEFAULT_CHUNK = 4096


def longest_payload(firmware: FirmwareProfile) -> int:
    """The longest write payload atfab sends this firmware (one AT+SYSMFG value, one AT+SYSFLASH chunk):
    what :meth:`atfab.link.at.client.AtClient.settle` sends to end a write an earlier contact cut."""
    return max(int(firmware.sysmfg_value_max or 0), DEFAULT_CHUNK)

_PARITY = {0: "N", 1: "O", 2: "E"}
_STOPBITS = {1: 1, 2: 1.5, 3: 2}


def _check_name(value: str, field_name: str) -> None:
    if not value or len(value.encode("utf-8")) > NVS_NAME_MAX:
        raise InputError(f"must be 1..{NVS_NAME_MAX} characters, got {value!r}", field=field_name)


def _check_range(value: object, lo: int, hi: int, field_name: str) -> int:
    """``value`` when it is an integer in ``lo..hi``, else InputError."""
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise InputError(f"must be an integer in {lo}..{hi}, got {value!r}", field=field_name)
    return value


def _one(reply: Reply, prefix: str) -> str:
    lines = [ln for ln in reply.lines if ln.startswith(prefix)]
    if len(lines) != 1:
        raise AtResponseError(reply.command, f"expected one {prefix} line, got {len(lines)}", reply.lines)
    return lines[0]


class AtLink(Protocol):
    """What the helpers use of the client they are mixed into (:class:`~atfab.link.at.client.AtClient`)."""

    firmware: FirmwareProfile
    port: Any                       # a pyserial port (or anything with its attributes)
    timeout: float
    echo: bool

    def call(self, command: str, *, timeout: float | None = None, info: tuple[str, ...] | None = None,
             raw: str | None | bool = True, raw_length: int | None = None) -> Reply: ...

    def write_with_prompt(self, command: str, data: bytes, *, timeout: float | None = None) -> Reply: ...

    def wait_ready(self, timeout: float = 5.0) -> None: ...


def _cmd_list(link: AtLink) -> list[CmdInfo]:
    return [parse_cmd_line(ln) for ln in link.call("AT+CMD?").lines]


def _apply_host_uart(port: Any, cfg: UartConfig) -> None:
    try:
        port.baudrate = cfg.baud
        port.bytesize = cfg.databits
        port.stopbits = _STOPBITS[cfg.stopbits]
        port.parity = _PARITY[cfg.parity]
        port.rtscts = cfg.flow == 3
    except (ValueError, OSError) as exc:
        raise DeviceError(f"cannot switch the host port to {cfg}: {exc}") from exc


def _set_uart(link: AtLink, name: str, cfg: UartConfig, switch_host: bool) -> None:
    _check_range(cfg.baud, 80, 5_000_000, "baud")
    _check_range(cfg.databits, 5, 8, "databits")
    _check_range(cfg.stopbits, 1, 3, "stopbits")
    _check_range(cfg.parity, 0, 2, "parity")
    _check_range(cfg.flow, 0, 3, "flow")
    link.call(build_command(name, cfg.baud, cfg.databits, cfg.stopbits, cfg.parity, cfg.flow))
    if switch_host:
        _apply_host_uart(link.port, cfg)


class AtCommands:
    """The typed helpers; ``self`` is an :class:`AtLink` (the client supplies the transport)."""

    # -- basics -----------------------------------------------------------------------------------
    def at(self: AtLink) -> None:
        """``AT`` → OK (liveness)."""
        self.call("AT")

    def echo_off(self: AtLink) -> None:
        """``ATE0`` (its own echo, if any, is tolerated)."""
        self.call("ATE0")
        self.echo = False

    def echo_on(self: AtLink) -> None:
        """``ATE1``."""
        self.call("ATE1")
        self.echo = True

    def gmr(self: AtLink) -> Gmr:
        """``AT+GMR`` → versions and the module name from mfg_nvs (§2.4)."""
        reply = self.call("AT+GMR")
        return parse_gmr(reply.lines)

    def cmd_list(self: AtLink) -> list[CmdInfo]:
        """``AT+CMD?`` → registered commands (§2.5)."""
        return _cmd_list(self)

    def has_command(self: AtLink, name: str) -> bool:
        """True when ``AT+CMD?`` lists ``name`` (e.g. ``"AT+SYSMFG"``)."""
        return any(c.name.upper() == name.upper() for c in _cmd_list(self))

    def syslog(self: AtLink) -> bool:
        """``AT+SYSLOG?`` → whether ``ERR CODE:`` lines are printed."""
        return parse_single_int(_one(self.call("AT+SYSLOG?"), "+SYSLOG:"), "+SYSLOG:") == 1

    def set_syslog(self: AtLink, on: bool) -> None:
        """``AT+SYSLOG=<0|1>``."""
        self.call(build_command("AT+SYSLOG", int(bool(on))))

    # -- UART ---------------------------------------------------------------------------------------------
    def uart_cur(self: AtLink) -> UartConfig:
        """``AT+UART_CUR?`` (actual hardware values; baud may deviate by clock division)."""
        return parse_uart(_one(self.call("AT+UART_CUR?"), "+UART_CUR:"), "+UART_CUR:")

    def uart_def(self: AtLink) -> UartConfig:
        """``AT+UART_DEF?`` (the saved configuration)."""
        return parse_uart(_one(self.call("AT+UART_DEF?"), "+UART_DEF:"), "+UART_DEF:")

    def apply_host_uart(self: AtLink, cfg: UartConfig) -> None:
        """Switch the host side of the port to ``cfg`` (after the module said OK at the old baud)."""
        _apply_host_uart(self.port, cfg)

    @property
    def host_baud(self: AtLink) -> int:
        """The rate the host side of the port runs at."""
        return int(self.port.baudrate)

    def set_uart_cur(self: AtLink, baud: int, databits: int = 8, stopbits: int = 1, parity: int = 0, flow: int = 0,
                     *, switch_host: bool = True) -> None:
        """``AT+UART_CUR=…``: OK comes at the old baud, then the host port switches."""
        _set_uart(self, "AT+UART_CUR", UartConfig(baud, databits, stopbits, parity, flow), switch_host)

    def set_uart_def(self: AtLink, baud: int, databits: int = 8, stopbits: int = 1, parity: int = 0, flow: int = 0,
                     *, switch_host: bool = True) -> None:
        """``AT+UART_DEF=…`` (saved and applied): OK at the old baud, then the host port switches."""
        _set_uart(self, "AT+UART_DEF", UartConfig(baud, databits, stopbits, parity, flow), switch_host)

    # -- RF / identity ---------------------------------------------------------------------------------
    def rf_power(self: AtLink) -> list[int]:
        """``AT+RFPOWER?`` → ``[wifi]`` or ``[wifi, adv, scan, conn]`` (0.25 dBm units, §6.1)."""
        return parse_rfpower(_one(self.call("AT+RFPOWER?"), "+RFPOWER:"), fields=self.firmware.rfpower_fields)

    def set_rf_power(self: AtLink, wifi: int, ble: tuple[int, int, int] | None = None) -> None:
        """``AT+RFPOWER=<wifi>[,<adv>,<scan>,<conn>]`` (range checked against the firmware profile)."""
        fw = self.firmware
        _check_range(wifi, fw.rfpower_min, fw.rfpower_max, "wifi_power")
        params: list[int] = [wifi]
        if ble is not None:
            if fw.rfpower_fields < 4:
                raise InputError("this firmware takes only the Wi-Fi power", field="ble_power")
            if len(ble) != 3:
                raise InputError("needs three BLE values (adv, scan, conn)", field="ble_power")
            for name, v in zip(("adv", "scan", "conn"), ble):
                _check_range(v, fw.rfpower_ble_min, fw.rfpower_ble_max, f"ble_power.{name}")
            params += list(ble)
        self.call(build_command("AT+RFPOWER", *params))

    def country(self: AtLink) -> Country:
        """``AT+CWCOUNTRY?`` (§6.2)."""
        return parse_country(_one(self.call("AT+CWCOUNTRY?"), "+CWCOUNTRY:"))

    def sta_mac(self: AtLink) -> bytes:
        """``AT+CIPSTAMAC?`` → 6 bytes."""
        return parse_mac(_one(self.call("AT+CIPSTAMAC?"), "+CIPSTAMAC:"), "+CIPSTAMAC:", command="AT+CIPSTAMAC?")

    def ap_mac(self: AtLink) -> bytes:
        """``AT+CIPAPMAC?`` → 6 bytes."""
        return parse_mac(_one(self.call("AT+CIPAPMAC?"), "+CIPAPMAC:"), "+CIPAPMAC:", command="AT+CIPAPMAC?")

    # -- SYSFLASH -------------------------------------------------------------------------------------------
    def sysflash_partitions(self: AtLink) -> list[SysflashEntry]:
        """``AT+SYSFLASH?`` → the at_customize entries (§4.1)."""
        return [parse_sysflash_entry(ln) for ln in self.call("AT+SYSFLASH?").lines]

    def sysflash_read(self: AtLink, partition: str, offset: int, length: int, *, chunk: int = DEFAULT_CHUNK) -> bytes:
        """``AT+SYSFLASH=2,…`` in ``chunk``-byte pieces → exactly ``length`` bytes (or an error)."""
        _check_range(offset, 0, 0xFFFFFFFF, "offset")
        _check_range(length, 0, 0xFFFFFFFF, "length")
        out = bytearray()
        pos = offset
        while len(out) < length:
            n = min(chunk, length - len(out))
            cmd = build_command("AT+SYSFLASH", 2, partition, pos, n)
            reply = self.call(cmd, raw="sysflash", raw_length=n)
            if len(reply.raws) != 1:
                raise AtResponseError(cmd, "no +SYSFLASH:<len>, payload in the reply", reply.lines)
            data = reply.raws[0].data
            if len(data) != n:
                raise AtResponseError(cmd, f"module sent {len(data)} bytes, asked for {n}", reply.lines)
            out += data
            pos += n
        return bytes(out)

    def sysflash_erase(self: AtLink, partition: str, offset: int | None = None, length: int | None = None) -> None:
        """``AT+SYSFLASH=0,"<part>"[,<offset>,<length>]`` (whole partition when both omitted)."""
        if (offset is None) != (length is None):
            raise InputError("give both offset and length, or neither (whole partition)", field="length")
        if offset is None:
            cmd = build_command("AT+SYSFLASH", 0, partition)
        else:
            _check_range(offset, 0, 0xFFFFFFFF, "offset")
            _check_range(length, 1, 0xFFFFFFFF, "length")
            cmd = build_command("AT+SYSFLASH", 0, partition, offset, length)
        self.call(cmd, timeout=self.timeout + 5.0)

    def sysflash_write(self: AtLink, partition: str, offset: int, data: bytes, *, chunk: int = DEFAULT_CHUNK) -> None:
        """``AT+SYSFLASH=1,…`` per ``chunk``: wait for ``>``, send the bytes, read OK. Erase first."""
        _check_range(offset, 0, 0xFFFFFFFF, "offset")
        for i in range(0, len(data), chunk):
            piece = bytes(data[i:i + chunk])
            cmd = build_command("AT+SYSFLASH", 1, partition, offset + i, len(piece))
            self.write_with_prompt(cmd, piece)

    # -- SYSMFG ----------------------------------------------------------------------------------------------
    def sysmfg_namespaces(self: AtLink) -> list[str]:
        """``AT+SYSMFG?`` → namespaces of mfg_nvs (§5.1)."""
        return [parse_sysmfg_namespace(ln) for ln in self.call("AT+SYSMFG?").lines]

    def sysmfg_keys(self: AtLink, namespace: str) -> list[SysmfgKey]:
        """``AT+SYSMFG=1,"<ns>"`` → ``[(key, type name)]`` in the firmware's order."""
        _check_name(namespace, "namespace")
        cmd = build_command("AT+SYSMFG", 1, namespace)
        out = []
        for ln in self.call(cmd, raw=None).lines:
            ns, key = parse_sysmfg_key(ln, command=cmd)
            if ns != namespace:
                raise AtResponseError(cmd, f"listed namespace {ns!r}, asked for {namespace!r}")
            out.append(key)
        return out

    def sysmfg_read(self: AtLink, namespace: str, key: str, offset: int | None = None,
                    length: int | None = None) -> int | str | bytes:
        """``AT+SYSMFG=1,"<ns>","<key>"[,<offset>,<length>]`` → int (types 1–6), str (7), bytes (8)."""
        _check_name(namespace, "namespace")
        _check_name(key, "key")
        if (offset is None) != (length is None):
            raise InputError("give both offset and length, or neither", field="length")
        params: list[Any] = [1, namespace, key]
        if offset is not None:
            _check_range(offset, 0, 0xFFFFFFFF, "offset")
            _check_range(length, 1, 0xFFFFFFFF, "length")
            params += [offset, length]
        cmd = build_command("AT+SYSMFG", *params)
        reply = self.call(cmd, raw="sysmfg", raw_length=length)
        if reply.raws:
            item = reply.raws[0]
            ns, k, t, n = item.fields[0], item.fields[1], int(item.fields[2]), int(item.fields[3])
            if (ns, k) != (namespace, key):
                raise AtResponseError(cmd, f"reply is for {ns!r}/{k!r}")
            if length is not None and n != length:
                raise AtResponseError(cmd, f"module sent {n} bytes, asked for {length}")
            if t == 7:
                return item.data.decode("utf-8", "surrogateescape")
            return item.data
        values = [ln for ln in reply.lines]
        if len(values) != 1:
            raise AtResponseError(cmd, f"expected one value line, got {len(values)}", reply.lines)
        ns, k, _t, value = parse_sysmfg_numeric(values[0], numeric_length=self.firmware.sysmfg_numeric_length,
                                                command=cmd)
        if (ns, k) != (namespace, key):
            raise AtResponseError(cmd, f"reply is for {ns!r}/{k!r}")
        return value

    def sysmfg_write(self: AtLink, namespace: str, key: str, type: str | int, value: int | str | bytes) -> None:
        """``AT+SYSMFG=2,…``: numbers inline; strings (UTF-8) and blobs after the ``>`` prompt."""
        _check_name(namespace, "namespace")
        _check_name(key, "key")
        t = type_number(type)
        if t in SYSMFG_RANGES:   # the firmware truncates, never range-checks: refuse what it would change
            lo, hi = SYSMFG_RANGES[t]
            number = _check_range(value, lo, hi, f"{namespace}.{key}")
            self.call(build_command("AT+SYSMFG", 2, namespace, key, t, number))
            return
        if t == 7:
            if not isinstance(value, str):
                raise InputError("a string value must be text", field=f"{namespace}.{key}")
            data = value.encode("utf-8", "surrogateescape")
            if b"\0" in data or len(data) + 1 > self.firmware.nvs_string_max:
                raise InputError(f"string must be under {self.firmware.nvs_string_max} bytes without NUL",
                                 field=f"{namespace}.{key}")
        else:
            if not isinstance(value, (bytes, bytearray, memoryview)):
                raise InputError("a blob value must be bytes", field=f"{namespace}.{key}")
            data = bytes(value)
        check_sysmfg_length(len(data), self.firmware, field=f"{namespace}.{key}")   # ERROR before the prompt
        cmd = build_command("AT+SYSMFG", 2, namespace, key, t, len(data))
        self.write_with_prompt(cmd, data)

    def sysmfg_erase(self: AtLink, namespace: str, key: str | None = None) -> None:
        """``AT+SYSMFG=0,"<ns>"[,"<key>"]``."""
        _check_name(namespace, "namespace")
        if key is not None:
            _check_name(key, "key")
        self.call(build_command("AT+SYSMFG", 0, namespace, key), timeout=self.timeout + 2.0)

    # -- BLE -------------------------------------------------------------------------------------------------
    def ble_init(self: AtLink, role: int) -> None:
        """``AT+BLEINIT=<role>`` (0 deinit, 1 client, 2 server, 3 dual)."""
        _check_range(role, 0, 3, "role")
        self.call(build_command("AT+BLEINIT", role))

    def ble_role(self: AtLink) -> int:
        """``AT+BLEINIT?`` → current role (0 when not initialised)."""
        return parse_single_int(_one(self.call("AT+BLEINIT?"), "+BLEINIT:"), "+BLEINIT:")

    def ble_addr(self: AtLink) -> bytes:
        """``AT+BLEADDR?`` → 6 bytes (quoted or not)."""
        return parse_mac(_one(self.call("AT+BLEADDR?"), "+BLEADDR:"), "+BLEADDR:", command="AT+BLEADDR?")

    def gatts_create_and_start(self: AtLink) -> None:
        """``AT+BLEGATTSSRVCRE`` + ``AT+BLEGATTSSRVSTART`` where services are not automatic (ESP32/C3)."""
        if not self.firmware.gatts_auto_create:
            self.call("AT+BLEGATTSSRVCRE")
            self.call("AT+BLEGATTSSRVSTART")

    def gatts_services(self: AtLink) -> list[GattsService]:
        """``AT+BLEGATTSSRV?`` → ``[(srv_index, start, uuid, primary)]``."""
        return [parse_gatts_service(ln) for ln in self.call("AT+BLEGATTSSRV?").lines]

    def gatts_chars(self: AtLink) -> list[GattsChar]:
        """``AT+BLEGATTSCHAR?`` → char/desc lines (C2 style without property, or full style)."""
        return [parse_gatts_char(ln) for ln in self.call("AT+BLEGATTSCHAR?").lines]

    # -- resets ----------------------------------------------------------------------------------------------
    def restart(self: AtLink, wait_ready: bool = True, timeout: float = 5.0) -> None:
        """``AT+RST`` → OK, then (optionally) wait for ``ready``."""
        self.call("AT+RST")
        if wait_ready:
            self.wait_ready(timeout)

    def restore(self: AtLink, wait_ready: bool = True, timeout: float = 5.0) -> None:
        """``AT+RESTORE`` (erase system NVS settings, reboot), then (optionally) wait for ``ready``."""
        self.call("AT+RESTORE", timeout=self.timeout + 5.0)
        if wait_ready:
            self.wait_ready(timeout)

    def enter_download_mode(self: AtLink) -> str:
        """Reboot into ROM download mode with the firmware's commands (§2.3), falling back on ERROR.

        Returns the command that worked.
        """
        commands = tuple(self.firmware.download_mode_commands)
        if not commands:
            raise DeviceError("this firmware has no AT command for download mode; use the boot strap pins")
        last: AtError | None = None
        for cmd in commands:
            try:
                self.call(cmd)
                return cmd
            except AtBusy:
                raise
            except AtError as exc:
                last = exc
        assert last is not None
        raise last


__all__ = ["AtCommands", "DEFAULT_CHUNK", "longest_payload"]
