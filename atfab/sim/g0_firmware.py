"""ESP8266 NONOS AT (generation G0: v0.21 and the NONOS AT 1.x line) on a virtual ESP8266: boots from
the flashed bytes and serves the release the flashed user1.bin names.

UART0 is both the download port and the AT port (reference §0, §3.4); the module's AT endpoint
stands for UART0 while the chip runs from flash. At boot:

* the ROM reads ``boot.bin`` at 0x0 (an ESP8266 "v1" image; esptool's parser checks it) and prints
  its boot log at 74880 baud (``ets Jan  8 2013,rst cause:…``, one ``load``/``tail``/``chksum``
  group per segment, then ``csum``: the shape of the log in the v0.21 manual's Q&A, values from
  the flashed image). A missing or corrupt boot.bin stops there;
* the second stage starts ``user1.bin`` at 0x1000 (a "v2" image: magic 0xEA, checked with its
  CRC by esptool's parser) and the SDK prints its version and Wi-Fi mode line, still at 74880;
* the AT application takes UART0 at the baud saved by ``AT+UART=`` / ``AT+UART_DEF=`` (115200 on
  a fresh or factory-initialised module) and then answers commands; whether it prints ``ready`` is
  the release's ``ready`` format (empty for 0.21: the manual is silent; 1.x: user_init prints it).

Which release answers is read from the flashed user1.bin (its ``AT version:`` string:
:func:`~atfab.core.firmware.catalog.release_of_version`), not from the module profile; a real build
whose version is printed from numbers falls back to the profile's release. A 1.x release also reads
its flash map from the header byte esptool wrote at 0x0 (``[release.g0_maps]``, keyed by esptool's
size name): a map the release has no build for stops after ``system_partition_table_regist fail``,
as the SDK's user_pre_init does.

The host listens at the AT baud, so everything printed at 74880 reaches it as the noise a real
receiver makes of it (:func:`atfab.sim.uart_noise.resample`).

What the app keeps: ``AT+UART=`` (v0.21, 1.x) and ``AT+UART_DEF=`` (1.x) store the five values in the
flash user parameter area (the map's ``at_parameter`` area; its sector ``blank.bin`` erases "to factory
initialize": 0x3E000 on the 512 KB map, 0x7E000 on 1.x's 8Mbit map, 0xFE000 on 16Mbit-C1).
``AT+UART_CUR=`` changes the port only. Neither manual nor SDK documents the area's layout; this model
writes one record of its own in that sector (``ATFABG0U`` + five little-endian u32), so that what was
saved survives a reset and an erase or a ``blank.bin`` really resets it. ``AT+UART_CUR?`` prints what
the UART divider makes of the baud (80 MHz / (80 MHz // baud): 115200 -> 115273), ``AT+UART_DEF?``
what is stored (release data ``g0_uart_query_source``).
"""

from __future__ import annotations

import struct
import threading
from dataclasses import dataclass, field

from ..core.errors import InputError
from ..core.firmware import FirmwareProfile
from ..core.firmware.catalog import firmware_profile, release_data, release_of_version
from ..image.nonos import BOOT_OFFSET, USER1_OFFSET, NonosApp, read_boot, read_user1, size_name_of
from .host import ModuleHost
from .link import Link, LinkClosed
from .uart_noise import resample

OK = b"\r\nOK\r\n"
ERROR = b"\r\nERROR\r\n"
POLL = 0.05
MAX_LINE = 256
_UART_RECORD = b"ATFABG0U"
_ESP_CHECKSUM_MAGIC = 0xEF
#: The ESP8266 UART clock (ESP8266_NONOS_SDK lib/libat.a at_ipCmd.o:at_queryCmdUart literal 80000000).
UART_CLOCK = 80_000_000
_PARAM_AREA = 0x3000                    # at_parameter: 3 sectors (examples/at/user/user_main.c:158)


def _release_fact(firmware: FirmwareProfile, key: str, default: object) -> object:
    """A G0 fact of the release's data (``g0_*`` keys of ``[release]``; only G0 builds have them)."""
    return release_data(firmware.release)["release"].get(key, default)


@dataclass
class G0Uart:
    baud: int = 115200
    databits: int = 8
    stopbits: int = 1
    parity: int = 0
    flow: int = 0

    def pack(self) -> bytes:
        return _UART_RECORD + struct.pack("<5I", self.baud, self.databits, self.stopbits, self.parity, self.flow)


@dataclass
class G0State:
    app: NonosApp
    uart: G0Uart
    echo: bool = True
    cwmode: int = 2          # NONOS SDK default: softAP (the manual's log shows sta + softAP after a CWMODE=3)
    cipmux: int = 0
    rfpower: int | None = None
    extra: dict = field(default_factory=dict)


class G0Firmware:
    """The NONOS AT v0.21 interpreter of one virtual ESP8266 (see the module docstring)."""

    def __init__(self, host: ModuleHost) -> None:
        self.host = host
        self.fw = host.firmware            # until a boot finds the flashed release
        self.state: G0State | None = None
        self.errors: list[BaseException] = []
        self._lock = threading.RLock()
        self._rom_baud = int(_release_fact(self.fw, "g0_rom_log_baud", 74880))   # type: ignore[arg-type]
        self._param = int(_release_fact(self.fw, "g0_user_param_offset", 0x3E000))  # type: ignore[arg-type]
        #: Wire time of the last boot's 74880-baud logs: a real receiver gets the app's first byte
        #: (``ready``) no sooner (the module waits this long before the boot output on a shared UART0).
        self.boot_seconds = 0.0
        self.boot_segments: tuple[tuple[bytes, int], ...] = ()

    def _serve_release(self, app: NonosApp) -> FirmwareProfile:
        """The profile of the release the flashed app names (its AT version), else the module's."""
        release = release_of_version(self.host.firmware.chip, "G0", app.at_version) if app.at_version else None
        if release is None:
            if app.at_version:
                self.errors.append(RuntimeError(f"flashed NONOS AT {app.at_version}: no release has it"))
            return self.host.firmware
        if release == self.host.firmware.release:
            return self.host.firmware
        return firmware_profile(release, self.host.firmware.chip)

    def _map_param(self, fw: FirmwareProfile, boot) -> int | None:
        """The user parameter sector of the flash map the boot header says (None: the release has no
        build for that map); the release's fixed offset when its data has no maps."""
        maps = _release_fact(fw, "g0_maps", None)
        fixed = int(_release_fact(fw, "g0_user_param_offset", 0x3E000))  # type: ignore[arg-type]
        if not maps:
            return fixed
        found = maps.get(size_name_of(boot.flash_size_freq) or "")  # type: ignore[union-attr]
        if found is None:
            return None if _release_fact(fw, "g0_partition_fail", "") else fixed
        area = int(found["at_parameter"])
        return next((b for b in found["blank"] if area <= b < area + _PARAM_AREA), area)

    # -- boot ---------------------------------------------------------------------------------
    def _default_uart(self) -> G0Uart:
        return G0Uart(*_release_fact(self.fw, "g0_uart_default", [115200, 8, 1, 0, 0]))  # type: ignore[misc]

    def _saved_uart(self) -> G0Uart:
        rec = self.host.flash.read(self._param, len(_UART_RECORD) + 20)
        if not rec.startswith(_UART_RECORD):
            return self._default_uart()
        return G0Uart(*struct.unpack_from("<5I", rec, len(_UART_RECORD)))

    def _rom_log(self, boot) -> bytes:
        lines = [b"\r\n ets Jan  8 2013,rst cause:2, boot mode:(3,6)\r\n\r\n"]
        if boot is None:
            return b"".join(lines)
        chk = _ESP_CHECKSUM_MAGIC
        for i, seg in enumerate(boot.segments):
            data = bytes(seg.data)
            for b in data:
                chk ^= b
            lines.append(f"load 0x{seg.addr:08x}, len {len(data)}, room {16 if i == 0 else 8} \r\n"
                         f"tail {len(data) % 8}\r\nchksum 0x{chk:02x}\r\n".encode())
        lines.append(f"csum 0x{boot.checksum:02x}\r\n\r\n".encode())
        return b"".join(lines)

    def boot(self) -> bytes:
        """Boot from flash; what the AT port receives (noise from the 74880-baud logs, then the app)."""
        with self._lock:
            self.state = None
            flash = self.host.flash
            try:
                boot = read_boot(flash.read(BOOT_OFFSET, USER1_OFFSET - BOOT_OFFSET))
            except InputError:
                boot = None
            log = self._rom_log(boot)
            app: NonosApp | None = None
            if boot is not None:
                log += b"jump to run user1 @ 1000\r\n\r\n"
                try:
                    app = read_user1(flash.read(USER1_OFFSET, min(flash.size - USER1_OFFSET, 0x7B000)))
                except InputError:
                    app = None
            param: int | None = self._param
            if app is not None:
                self.fw = self._serve_release(app)
                param = self._map_param(self.fw, boot)
                sdk = app.sdk_version or self.fw.sdk_version
                sdk_line = str(_release_fact(self.fw, "g0_boot_sdk_line", "SDK version:%s\r\n"))
                log += (sdk_line % sdk).encode()
                if param is None:
                    log += str(_release_fact(self.fw, "g0_partition_fail", "")).encode()
                    app = None
            if param is not None:
                self._param = param
            uart = self._saved_uart()
            if app is not None:
                m = self.host.mac
                ap = bytes([m[0] | 0x02, *m[1:]])
                log += f"mode : softAP({ap.hex(':')})\r\n".encode()
                self.state = G0State(app=app, uart=uart)
            self.host.set_at_baud(uart.baud)
            noise = resample(log, self._rom_baud, uart.baud)
            self.boot_seconds = len(log) * 10 / self._rom_baud
            ready = dict(self.fw.formats).get("ready", "").encode() if self.state is not None else b""
            #: The same output as sent: the logs at the ROM's rate, then the app's at the UART's.
            self.boot_segments = tuple((data, baud) for data, baud in ((log, self._rom_baud), (ready, uart.baud))
                                       if data)
            return noise + ready

    @property
    def running(self) -> bool:
        return self.state is not None

    # -- serving ------------------------------------------------------------------------------
    def serve(self, link: Link, token: int) -> str:
        buf = bytearray()
        try:
            while True:
                if self.host.state_token != token:
                    return "state"
                if self.state is None:
                    link.recv(4096, POLL)
                    continue
                end = buf.find(b"\r\n")
                if end < 0:
                    if len(buf) > MAX_LINE:
                        buf.clear()
                    buf += link.recv(4096, POLL)
                    continue
                line, rest = bytes(buf[:end]), bytes(buf[end + 2:])
                buf.clear()
                if rest:
                    link.unread(rest)
                if not line:
                    continue
                result = self._run(link, line)
                if result is not None:
                    return result
        except LinkClosed:
            return "closed"

    def _run(self, link: Link, line: bytes) -> str | None:
        st = self.state
        assert st is not None
        if st.echo:
            link.send(line + b"\r\n")
        text = line.decode("latin-1")
        name, form, params = _parse(text)
        if not self.fw.has_command(name, form):
            link.send(ERROR)
            return None
        handler = getattr(self, "_" + name.replace("+", "_").lower() + "_" + form, None)
        if handler is None:               # in the v0.21 command set, not modelled here
            self.errors.append(NotImplementedError(f"{name} {form} is not modelled"))
            link.send(ERROR)
            return None
        try:
            return handler(link, params)
        except ValueError:
            link.send(ERROR)
            return None

    # -- commands -----------------------------------------------------------------------------
    def _at_exec(self, link: Link, params: list[str]) -> None:
        link.send(OK)

    def _ate0_exec(self, link: Link, params: list[str]) -> None:
        assert self.state is not None
        self.state.echo = False
        link.send(OK)

    def _ate1_exec(self, link: Link, params: list[str]) -> None:
        assert self.state is not None
        self.state.echo = True
        link.send(OK)

    def _at_gmr_exec(self, link: Link, params: list[str]) -> None:
        """The release's GMR lines: AT version (v0.21 a string; 1.x four numbers and libat's build
        stamp), SDK version, then (1.x) the custom info the flashed image registered, then OK."""
        assert self.state is not None
        formats = dict(self.fw.formats)
        app = self.state.app
        version = app.at_version or self.fw.core_version   # a real build: the release's
        fmt = formats["gmr_at_version"]
        if "%d" in fmt:
            out = fmt % (*(int(p) for p in version.split(".")), self.fw.core_date, self.fw.core_time)
        else:
            out = fmt % version
        out += formats["gmr_sdk"] % (app.sdk_version or self.fw.sdk_version)
        if formats.get("gmr_compile") and app.custom_info:
            out += app.custom_info          # no CR LF of its own: OK's leading CR LF ends the line
        link.send(out.encode() + OK)

    def _at_rst_exec(self, link: Link, params: list[str]) -> str | None:
        link.send(OK)
        link.send(self.boot())
        return None

    def _at_restore_exec(self, link: Link, params: list[str]) -> str | None:
        self.host.flash.erase(self._param, 0x1000)
        link.send(OK)
        link.send(self.boot())
        return None

    def _uart_values(self, params: list[str]) -> G0Uart:
        if len(params) != 5:
            raise ValueError("AT+UART takes 5 values")
        baud, databits, stopbits, parity, flow = (int(p) for p in params)
        lo, hi = _release_fact(self.fw, "g0_uart_baud", [110, 4608000])  # type: ignore[misc]
        if not (lo <= baud <= hi and 5 <= databits <= 8 and 1 <= stopbits <= 3 and 0 <= parity <= 2
                and 0 <= flow <= 3):
            raise ValueError("out of range")
        return G0Uart(baud, databits, stopbits, parity, flow)

    def _apply_uart(self, link: Link, new: G0Uart, *, save: bool) -> None:
        if save:
            self.host.flash.erase(self._param, 0x1000)
            self.host.flash.program(self._param, new.pack())
        link.send(OK)                        # at the old settings, then the UART switches
        assert self.state is not None
        self.state.uart = new
        self.host.set_at_baud(new.baud)

    def _at_uart_set(self, link: Link, params: list[str]) -> None:
        """v0.21 and 1.x ``AT+UART=``: set and store (1.x: the same handler as UART_DEF)."""
        self._apply_uart(link, self._uart_values(params), save=True)

    def _at_uart_def_set(self, link: Link, params: list[str]) -> None:
        self._apply_uart(link, self._uart_values(params), save=True)

    def _at_uart_cur_set(self, link: Link, params: list[str]) -> None:
        self._apply_uart(link, self._uart_values(params), save=False)

    def _uart_line(self, name: str, u: G0Uart) -> bytes:
        return (self.fw.fmt("uart_query") % (name, u.baud, u.databits, u.stopbits, u.parity, u.flow)).encode()

    def _uart_cur(self) -> G0Uart:
        assert self.state is not None
        u = self.state.uart
        baud = u.baud
        if _release_fact(self.fw, "g0_uart_query_source", "") == "clock_divider":
            baud = UART_CLOCK // (UART_CLOCK // baud)
        return G0Uart(baud, u.databits, u.stopbits, u.parity, u.flow)

    def _at_uart_query(self, link: Link, params: list[str]) -> None:
        link.send(self._uart_line("+UART", self._uart_cur()) + OK)

    def _at_uart_cur_query(self, link: Link, params: list[str]) -> None:
        link.send(self._uart_line("+UART_CUR", self._uart_cur()) + OK)

    def _at_uart_def_query(self, link: Link, params: list[str]) -> None:
        link.send(self._uart_line("+UART_DEF", self._saved_uart()) + OK)

    def _at_rfpower_set(self, link: Link, params: list[str]) -> None:
        """1.x ``AT+RFPOWER=<0..82>`` (0.25 dBm; set only, not stored: system_phy_set_max_tpw)."""
        lo, hi = _release_fact(self.fw, "g0_rfpower_range", [0, 82])  # type: ignore[misc]
        if len(params) != 1 or not params[0].isdigit() or not lo <= int(params[0]) <= hi:
            raise ValueError("rfpower")
        assert self.state is not None
        self.state.rfpower = int(params[0])
        link.send(OK)

    def _at_cwmode_query(self, link: Link, params: list[str]) -> None:
        assert self.state is not None
        link.send(f"+CWMODE:{self.state.cwmode}\r\n".encode() + OK)

    def _at_cwmode_test(self, link: Link, params: list[str]) -> None:
        link.send(b"+CWMODE:(1-3)\r\n" + OK)

    def _at_cwmode_set(self, link: Link, params: list[str]) -> None:
        if len(params) != 1 or params[0] not in ("1", "2", "3"):
            raise ValueError("mode")
        assert self.state is not None
        self.state.cwmode = int(params[0])
        link.send(OK)

    def _at_cipmux_query(self, link: Link, params: list[str]) -> None:
        assert self.state is not None
        link.send(f"+CIPMUX:{self.state.cipmux}\r\n".encode() + OK)

    def _at_cipmux_set(self, link: Link, params: list[str]) -> None:
        if len(params) != 1 or params[0] not in ("0", "1"):
            raise ValueError("mux")
        assert self.state is not None
        self.state.cipmux = int(params[0])
        link.send(OK)

    def _mac_line(self, name: str, mac: bytes) -> bytes:
        return f'{name}:"{mac.hex(":")}"\r\n'.encode()

    def _at_cipstamac_query(self, link: Link, params: list[str]) -> None:
        link.send(self._mac_line("+CIPSTAMAC", self.host.mac) + OK)

    def _at_cipapmac_query(self, link: Link, params: list[str]) -> None:
        m = self.host.mac
        link.send(self._mac_line("+CIPAPMAC", bytes([m[0] | 0x02, *m[1:]])) + OK)


def _parse(text: str) -> tuple[str, str, list[str]]:
    """``AT+X=?`` test, ``AT+X?`` query, ``AT+X=a,b`` set, ``AT+X`` exec (names upper-cased)."""
    if text.endswith("=?"):
        return text[:-2].upper(), "test", []
    if text.endswith("?"):
        return text[:-1].upper(), "query", []
    if "=" in text:
        name, _, rest = text.partition("=")
        return name.upper(), "set", [p.strip().strip('"') for p in rest.split(",")]
    return text.upper(), "exec", []


__all__ = ["G0Firmware"]
