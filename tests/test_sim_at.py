"""Virtual AT firmware: framing, basic commands, UART, RF/MAC and BLE, byte-exact against §1-§7."""

from __future__ import annotations


import pytest

from atfab.image.profiles import load_profile

from atfab.sim.at_parser import AtCmdError, parse_line, split_params
from atfab.sim.at_uart import actual_baud
from tests.sim_at_support import MAC, FakeHost, Session, build_flash, c2_profile, new_host

OK = b"\r\nOK\r\n"
ERROR = b"\r\nERROR\r\n"


@pytest.fixture
def sess():
    s = Session(new_host())
    yield s
    s.close()


@pytest.fixture
def quiet_sess():
    """Session with echo off."""
    s = Session(new_host())
    assert s.cmd("ATE0") == b"ATE0\r\n" + OK
    yield s
    s.close()


# -- parser --------------------------------------------------------------------------------------
def test_parse_forms_and_params():
    assert parse_line(b"AT").name == "AT"
    assert parse_line(b"AT+CMD?").form == "query"
    assert parse_line(b"AT+UART_CUR=?").form == "test"
    line = parse_line(b'AT+SYSMFG=2,"a\\"b\\,c\\\\",,0x1F,-3')
    assert line.form == "set"
    f = line.params.fields
    assert (f[1].text, f[1].quoted) == ('a"b,c\\', True)
    assert f[2].empty
    assert line.params.int(3) == 31 and line.params.int(4) == -3
    assert split_params('1,"x",') [-1].empty
    assert parse_line(b"at+gmr").name == "AT+GMR"           # prefix and name are case-blind (ground truth §0)
    with pytest.raises(AtCmdError) as e:
        parse_line(b"xt")
    assert e.value.code == 0x01030000
    with pytest.raises(AtCmdError) as e:
        parse_line(b"AT+GMR ")                                 # trailing garbage: no such command
    assert e.value.code == 0x01090000
    assert line.params.int(3) == 31
    with pytest.raises(AtCmdError):
        parse_line(b"AT+SYSLOG=+1").params.int(0)              # no '+' sign
    with pytest.raises(AtCmdError):
        split_params('"unterminated')


# -- framing ---------------------------------------------------------------------------------------
def test_boot_prints_ready_and_sets_baud(sess):
    assert sess.boot_out == b"\r\nready\r\n"
    assert sess.host.bauds == [115200]


def test_echo_and_ate0(sess):
    assert sess.cmd("AT") == b"AT\r\n" + OK
    assert sess.cmd("ATE0") == b"ATE0\r\n" + OK
    assert sess.cmd("AT") == OK
    assert sess.cmd("ATE1") == OK
    assert sess.cmd("AT") == b"AT\r\n" + OK


def test_ate0_not_echoed_when_profile_says_so():
    s = Session(new_host(ate0_echoed=False))
    try:
        assert s.cmd("ATE0") == OK
    finally:
        s.close()


def test_errors_and_syslog(quiet_sess):
    s = quiet_sess
    assert s.cmd("AT+FAKE") == ERROR
    assert s.cmd("AT+SYSLOG?") == b"+SYSLOG:0\r\n" + OK
    assert s.cmd("AT+SYSLOG=1") == OK
    assert s.cmd("AT+FAKE") == b"ERR CODE:0x01090000\r\n" + ERROR
    # ground truth §0: only the parser, the parameter accessors, SYSFLASH and busy have codes
    assert s.cmd("xt") == b"ERR CODE:0x01030000\r\n" + ERROR
    assert s.cmd("at") == OK
    assert s.cmd("AT+GMR?") == ERROR                           # form without handler: no code
    assert s.cmd("AT+SYSLOG=2") == ERROR                       # range check: no code
    assert s.cmd("AT+SYSLOG=x") == b"ERR CODE:0x01080000\r\n" + ERROR
    assert s.cmd('AT+SYSLOG=1,"x"') == ERROR                   # count check: no code
    assert s.cmd("AT+" + "A" * 300) == b"ERR CODE:0x01030000\r\n" + ERROR
    assert s.cmd("AT") == OK


def test_bare_crlf_is_error(quiet_sess):
    quiet_sess.send(b"\r\n")                                 # ground truth §0: parsed, NO_AT -> ERROR
    assert quiet_sess.read_until(ERROR) == ERROR
    assert quiet_sess.cmd("AT") == OK


def test_gmr_lines(quiet_sess):
    assert quiet_sess.cmd("AT+GMR") == (
        b"AT version:3.3.0.0(3b13d04 - ESP32C2 - May  8 2024 08:21:45)\r\n"
        b"SDK version:v5.0.6-dirty\r\n"
        b"compile time(be332568):May  8 2024 08:50:59\r\n"
        b"Bin version:v3.3.0.0(ESP32C2-4MB)\r\n" + OK
    )


def test_cmd_list(quiet_sess):
    out = quiet_sess.cmd("AT+CMD?").decode()
    lines = out.split("\r\n")
    assert lines[0] == '+CMD:0,"AT",0,0,0,1'
    assert lines[1] == '+CMD:1,"ATE0",0,0,0,1'
    assert '+CMD:3,"AT+RST",0,0,1,1' in lines
    assert any(line.endswith('"AT+SYSFLASH",0,1,1,0') for line in lines)
    assert any('"AT+SYSMFG",0,1,1,0' in line for line in lines)
    assert not any("BLE" in line for line in lines)


def test_busy_when_bytes_arrive_during_a_command(quiet_sess):
    s = quiet_sess
    s.send(b"AT+GMR\r\nAT\r\n")
    out = s.read_until(OK)
    assert out.endswith(b"Bin version:v3.3.0.0(ESP32C2-4MB)\r\n\r\nbusy p...\r\n" + OK)
    assert s.cmd("AT") == OK


def test_at_rst_arriving_while_busy_forces_a_restart(quiet_sess):
    """Ground truth "Busy": a line that arrives while a command runs and holds ``AT+RST\\r\\n`` is
    not answered busy: the core prints ``Will force to restart!!!`` and restarts (no OK of the
    running command); the module boots again (echo back on)."""
    s = quiet_sess
    boots = s.host.boot_count if hasattr(s.host, "boot_count") else None
    s.send(b"AT+GMR\r\nAT+RST\r\n")
    out = s.read_until(b"\r\nready\r\n")
    assert out.endswith(b"Bin version:v3.3.0.0(ESP32C2-4MB)\r\n\r\nWill force to restart!!!\r\n\r\nready\r\n")
    assert b"OK" not in out and b"busy" not in out
    assert s.cmd("AT") == b"AT\r\n" + OK                 # a fresh boot: echo is on again
    if boots is not None:
        assert s.host.boot_count >= boots


def test_busy_next_fault(quiet_sess):
    s = quiet_sess
    s.host.faults.busy_next = 1
    s.send(b"AT\r\n")
    assert s.read_until(b"busy p...\r\n") == b"\r\nbusy p...\r\n"        # leading CR LF (ground truth §0)
    assert s.cmd("AT+SYSLOG=1") == OK
    s.host.faults.busy_next = 1
    s.send(b"AT\r\n")
    assert s.read_until(b"busy p...\r\n") == b"ERR CODE:0x010b0000\r\n\r\nbusy p...\r\n"
    assert s.cmd("AT") == OK


def test_garbage_urc_and_stall_between_lines(quiet_sess):
    s = quiet_sess
    s.host.faults.garbage_between_lines = b"\x00\xfe junk"
    s.host.faults.urc_between_lines = "WIFI DISCONNECT"
    assert s.cmd("AT+SYSSTORE?") == b"+SYSSTORE:1\r\n\x00\xfe junkWIFI DISCONNECT\r\n" + OK
    assert s.cmd("AT+SYSSTORE?") == b"+SYSSTORE:1\r\n" + OK
    s.host.faults.stall_reply_seconds = 0.05
    assert s.cmd("AT") == OK
    assert s.host.faults.stall_reply_seconds == 0


def test_sysstore_sysmsg(quiet_sess):
    s = quiet_sess
    assert s.cmd("AT+SYSSTORE=0") == OK
    assert s.cmd("AT+SYSSTORE?") == b"+SYSSTORE:0\r\n" + OK
    assert s.cmd("AT+SYSMSG=3") == OK
    assert s.cmd("AT+SYSMSG?") == b"+SYSMSG:3" + OK                  # "%s:%d": no CR LF (ground truth §8)
    assert s.cmd("AT+SYSMSG=8") == ERROR


def test_rst_reboots_and_forgets_ram_state(quiet_sess):
    s = quiet_sess
    assert s.cmd("AT+SYSLOG=1") == OK
    s.send(b"AT+RST\r\n")
    assert s.read_until(b"ready\r\n") == OK + b"\r\nready\r\n"
    assert s.cmd("AT") == b"AT\r\n" + OK          # echo back on
    assert s.cmd("AT+SYSLOG?") == b"AT+SYSLOG?\r\n+SYSLOG:0\r\n" + OK


@pytest.mark.parametrize("line", ["AT+RST=1"])
def test_rst_download_mode(line):
    s = Session(new_host())
    try:
        assert s.cmd(line) == line.encode() + b"\r\n" + OK
        assert s.wait_result() == "state"
        assert s.host.events == ["download"]
        assert s.quiet() == b""
    finally:
        s.sock.close()


def test_rst_zero_and_bad_mode(quiet_sess):
    s = quiet_sess
    assert s.cmd("AT+RST=2") == ERROR
    s.send(b"AT+RST=0\r\n")
    assert s.read_until(b"ready\r\n") == OK + b"\r\nready\r\n"


def test_rst_set_form_absent_without_download_commands():
    s = Session(new_host(download_mode_commands=()))
    try:
        assert s.cmd("AT+RST=1") == b"AT+RST=1\r\n" + ERROR
    finally:
        s.close()


def test_state_change_ends_serve(sess):
    sess.host.state_token += 1
    assert sess.wait_result() == "state"
    sess.sock.close()


def test_link_close_ends_serve():
    s = Session(new_host())
    assert s.cmd("AT") == b"AT\r\n" + OK
    assert s.close() == "closed"


# -- UART ----------------------------------------------------------------------------------------------
def test_actual_baud_quantisation():
    assert actual_baud(115200, 40_000_000) == 115211
    assert actual_baud(115200, 80_000_000) == 115201
    assert abs(actual_baud(921600, 40_000_000) - 921600) / 921600 < 0.02
    assert actual_baud(80, 40_000_000) > 0


def test_uart_queries_fresh_module(quiet_sess):
    s = quiet_sess
    assert s.cmd("AT+UART_DEF?") == b"+UART_DEF:115200,8,1,0,1\r\n" + OK
    assert s.cmd("AT+UART_CUR?") == b"+UART_CUR:115211,8,1,0,1\r\n" + OK
    assert s.cmd("AT+UART?") == b"+UART:115211,8,1,0,1\r\n" + OK


def test_uart_cur_is_ram_only(quiet_sess):
    s = quiet_sess
    assert s.cmd("AT+UART_CUR=921600,8,1,0,0") == OK
    assert s.cmd("AT") == OK                     # the switch happens right after OK was sent
    assert s.host.bauds[-1] == 921600
    assert s.cmd("AT+UART_CUR?").startswith(b"+UART_CUR:9")
    assert s.cmd("AT+UART_DEF?") == b"+UART_DEF:115200,8,1,0,1\r\n" + OK
    for bad in ("AT+UART_CUR=79,8,1,0,0", "AT+UART_CUR=115200,9,1,0,0", "AT+UART_CUR=115200,8,4,0,0",
                "AT+UART_CUR=115200,8,1,3,0", "AT+UART_CUR=115200,8,1,0,4", "AT+UART_CUR=115200,8,1,0"):
        assert s.cmd(bad) == ERROR, bad


def test_uart_def_persists_across_rst_and_restore_reseeds():
    host = new_host()
    s = Session(host)
    try:
        assert s.cmd("ATE0") == b"ATE0\r\n" + OK
        assert s.cmd("AT+UART_DEF=921600,7,3,1,3") == OK
        assert s.cmd("AT") == OK
        assert host.bauds[-1] == 921600
        s.send(b"AT+RST\r\n")
        s.read_until(b"ready\r\n")
        assert host.bauds[-1] == 921600
        assert s.cmd("ATE0") == b"ATE0\r\n" + OK
        assert s.cmd("AT+UART_DEF?") == b"+UART_DEF:921600,7,3,1,3\r\n" + OK
        s.send(b"AT+RESTORE\r\n")
        assert s.read_until(b"ready\r\n") == OK + b"\r\nready\r\n"
        assert host.bauds[-1] == 115200
        assert s.cmd("ATE0") == b"ATE0\r\n" + OK
        assert s.cmd("AT+UART_DEF?") == b"+UART_DEF:115200,8,1,0,1\r\n" + OK
    finally:
        s.close()


def test_uart_def_is_stored_as_reference_says():
    from atfab.image.nvs.reader import read_nvs

    profile = c2_profile()
    host = new_host()
    s = Session(host)
    try:
        assert s.cmd("AT+UART_DEF=230400,8,1,2,0").endswith(OK)
    finally:
        s.close()
    nvs = profile.primary.find("nvs")
    image = read_nvs(host.flash.read(nvs.offset, nvs.size))
    got = {e.key: (e.type, e.value) for e in image.keys("UART")}
    assert got == {"rate": ("i32", 230400), "databits": ("i8", 3), "stopbits": ("i8", 1),
                   "parity": ("i8", 2), "flow_ctrl": ("i8", 0)}


def test_factory_baud_seeds_uart_def():
    from tests.sim_at_support import default_content

    profile = c2_profile()
    host = new_host(build_flash(profile, content=default_content(profile, uart_baudrate=460800)))
    s = Session(host)
    try:
        assert host.bauds == [460800]
        assert s.cmd("AT+UART_DEF?").endswith(b"+UART_DEF:460800,8,1,0,1\r\n" + OK)
    finally:
        s.close()


# -- RF / MAC ---------------------------------------------------------------------------------------
def test_rfpower_c2(quiet_sess):
    s = quiet_sess
    # ESP32C2-4MB has BluFi: the BLE getter is registered, 4 fields (ground truth §7)
    assert s.cmd("AT+RFPOWER?") == b"+RFPOWER:78,0,0,0\r\n" + OK
    assert s.cmd("AT+RFPOWER=84") == OK
    assert s.cmd("AT+RFPOWER?") == b"+RFPOWER:84,0,0,0\r\n" + OK
    assert s.cmd("AT+RFPOWER=85") == ERROR
    assert s.cmd("AT+RFPOWER=39") == ERROR
    assert s.cmd("AT+RFPOWER=60,0,0,0") == ERROR


def test_rfpower_esp32_style():
    wroom = load_profile("esp32-wroom-32")          # the sim serves what is flashed: an ESP32 build
    s = Session(FakeHost(flash=build_flash(wroom, release=wroom.firmware.release), firmware=wroom.firmware,
                         chip="esp32"))
    try:
        assert s.cmd("ATE0").endswith(OK)
        assert s.cmd("AT+RFPOWER?") == b"+RFPOWER:78,0,0,0\r\n" + OK
        assert s.cmd("AT+RFPOWER=43") == OK
        assert s.cmd("AT+RFPOWER?") == b"+RFPOWER:34,0,0,0\r\n" + OK
        assert s.cmd("AT+RFPOWER=78,1,1,1") == ERROR         # BLE not initialised
        assert s.cmd("AT+BLEINIT=1") == OK
        assert s.cmd("AT+RFPOWER=70,3,1,2") == OK
        assert s.cmd("AT+RFPOWER?") == b"+RFPOWER:66,3,3,3\r\n" + OK
    finally:
        s.close()


def test_cwcountry(quiet_sess):
    s = quiet_sess
    assert s.cmd("AT+CWCOUNTRY?") == b'+CWCOUNTRY:1,"CN",1,13\r\n' + OK   # boot applies policy MANUAL
    assert s.cmd('AT+CWCOUNTRY=1,"US",1,11') == OK
    assert s.cmd("AT+CWCOUNTRY?") == b'+CWCOUNTRY:1,"US",1,11\r\n' + OK
    assert s.cmd('AT+CWCOUNTRY=1,"US",5,11') == ERROR


def test_macs(quiet_sess):
    s = quiet_sess
    assert s.cmd("AT+CIPSTAMAC?") == b'+CIPSTAMAC:"24:d7:eb:0a:1b:2c"\r\n' + OK
    assert s.cmd("AT+CIPAPMAC?") == b'+CIPAPMAC:"24:d7:eb:0a:1b:2d"\r\n' + OK
    assert s.cmd('AT+CIPSTAMAC="25:00:00:00:00:01"') == ERROR   # multicast bit
    assert s.cmd('AT+CIPSTAMAC="1a:fe:35:98:d3:7b"') == OK
    assert s.cmd("AT+CIPSTAMAC?") == b'+CIPSTAMAC:"1a:fe:35:98:d3:7b"\r\n' + OK
    assert MAC.hex() == "24d7eb0a1b2c"


def test_mac_unquoted_profile():
    s = Session(new_host(mac_quoted=False))
    try:
        assert s.cmd("AT+CIPSTAMAC?").endswith(b"+CIPSTAMAC:24:d7:eb:0a:1b:2c\r\n" + OK)
    finally:
        s.close()


# -- BLE ---------------------------------------------------------------------------------------------------
C2_CHARS = [f'+BLEGATTSCHAR:"char",1,{i + 1},0xC30{i}' for i in range(8)] + [
    '+BLEGATTSCHAR:"char",2,1,0xC400', '+BLEGATTSCHAR:"char",2,2,0xC401']


def test_ble_commands_absent_on_c2_wifi_build(quiet_sess):
    s = quiet_sess
    assert s.cmd("AT+SYSLOG=1") == OK
    assert s.cmd("AT+BLEINIT=2") == b"ERR CODE:0x01090000\r\n" + ERROR
    assert s.cmd("AT+BLEGATTSSRV?") == b"ERR CODE:0x01090000\r\n" + ERROR


def test_ble_c2_auto_create():
    s = Session(new_host(ble=True, wifi=False))
    try:
        assert s.cmd("ATE0").endswith(OK)
        assert s.cmd("AT+BLEINIT?") == b"+BLEINIT:0\r\n" + OK
        assert s.cmd("AT+BLEGATTSSRV?") == ERROR
        assert s.cmd("AT+BLEADDR?") == ERROR
        assert s.cmd("AT+BLEINIT=2") == OK
        assert s.cmd("AT+BLEINIT=2") == OK                   # same role again: OK (ground truth §10)
        assert s.cmd("AT+BLEINIT=1") == ERROR
        # v4.1.0.0 (the default release): "1,<index>" (ground truth §10)
        assert s.cmd("AT+BLEGATTSSRV?") == b"+BLEGATTSSRV:1,1,0xA002,1\r\n+BLEGATTSSRV:1,2,0xA003,1\r\n" + OK
        assert s.cmd("AT+BLEGATTSCHAR?") == ("\r\n".join(C2_CHARS) + "\r\n").encode() + OK
        assert s.cmd("AT+BLEADDR?") == b'+BLEADDR:"24:d7:eb:0a:1b:2e"' + OK    # no CR LF (ground truth §9)
        assert s.cmd("AT+BLEGATTSSRVCRE") == ERROR          # no such command when auto-created
        assert s.cmd("AT+CIPSTAMAC?") == ERROR              # BLE-only build
    finally:
        s.close()


def test_ble_full_style_needs_srvcre():
    mini = load_profile("esp32c3-mini-1")           # the sim serves what is flashed: a C3 build
    s = Session(FakeHost(flash=build_flash(mini, release=mini.firmware.release), firmware=mini.firmware,
                         chip="esp32c3"))
    try:
        assert s.cmd("ATE0").endswith(OK)
        assert s.cmd("AT+BLEINIT=2") == OK
        assert s.cmd("AT+BLEGATTSSRV?") == ERROR
        assert s.cmd("AT+BLEGATTSSRVCRE") == OK
        assert s.cmd("AT+BLEGATTSSRV?") == b"+BLEGATTSSRV:1,0,0xA002,1\r\n+BLEGATTSSRV:2,0,0xA003,1\r\n" + OK
        assert s.cmd("AT+BLEGATTSSRVSTART") == OK
        assert s.cmd("AT+BLEGATTSSRV?").startswith(b"+BLEGATTSSRV:1,1,0xA002,1\r\n")
        out = s.cmd("AT+BLEGATTSCHAR?").decode().split("\r\n")
        assert out[:3] == ['+BLEGATTSCHAR:"char",1,1,0xC300,0x02', '+BLEGATTSCHAR:"desc",1,1,1,0x2901',
                           '+BLEGATTSCHAR:"char",1,2,0xC301,0x02']
        assert '+BLEGATTSCHAR:"char",1,5,0xC304,0x08' in out
        assert '+BLEGATTSCHAR:"desc",1,6,1,0x2902' in out
        assert s.cmd("AT+BLEINIT=0") == OK
        assert s.cmd("AT+BLEINIT?") == b"+BLEINIT:0\r\n" + OK
    finally:
        s.close()
