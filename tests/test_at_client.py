"""AtClient against a real VirtualModule (AT firmware over socket://): data, faults, transcript, CLI."""

from __future__ import annotations

import functools
import hashlib
import threading
import time

import pytest

from atfab.core.firmware import firmware_profile
from click.testing import CliRunner

from atfab.link.at.client import AtClient
from atfab.link.at.errors import AtBusy, AtError, AtTimeout, LinkLost, ModuleRestarted
from atfab.link.at.parse import GattsChar, SysflashEntry, SysmfgKey, UartConfig
from atfab.cli import main
from atfab.sim.module import VirtualModule
from atfab.link.transport import open_port
from tests.conftest import run_with_timeout
from tests.sim_at_support import build_flash, c2_profile, changed

GUARD = 30.0
SECRET = b"-----BEGIN PRIVATE KEY" b"-----\r\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC-not-a-real-key\r\n-----END PRIVATE KEY" b"-----\r\n"
CERT = b"-----BEGIN CERTIFICATE-----\r\n" + bytes(range(256)) * 4 + b"\r\n-----END CERTIFICATE-----\r\n"


def guarded(fn):
    """Run the test body in a thread; a hang fails the test after GUARD seconds."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        return run_with_timeout(fn, GUARD, *args, **kwargs)
    return wrapper


def start_module(**fw_changes) -> VirtualModule:
    profile = c2_profile()
    base = profile.for_release("v3.3.0.0").firmware          # the build build_flash() flashes
    fw = changed(base, **fw_changes) if fw_changes else base
    return VirtualModule(flash=build_flash(profile), firmware=fw).start()


def connect(module: VirtualModule, **kwargs) -> AtClient:
    kwargs.setdefault("timeout", 2.0)
    return AtClient(open_port(module.at_url, env={}), firmware=module.firmware, **kwargs)


@pytest.fixture
def module():
    m = start_module()
    try:
        yield m
    finally:
        m.stop()


@pytest.fixture
def client(module):
    c = connect(module)
    try:
        yield c
    finally:
        c.close()


# -- data ----------------------------------------------------------------------------------------
@guarded
def test_typed_helpers_return_module_data(module, client):
    profile = c2_profile()
    client.at()
    gmr = client.gmr()  # echo still on: stripped
    assert gmr.module_name == profile.factory_param["module_name"] and gmr.bin_version == "v3.3.0.0"
    assert gmr.sdk_version == "v5.0.6-dirty" and gmr.chip == "ESP32C2" and len(gmr.lines) == 4
    client.echo_off()
    assert client.has_command("AT+SYSMFG") and client.cmd_list()[0].name == "AT"
    assert client.uart_def() == UartConfig(115200, 8, 1, 0, module.firmware.uart_default_flow_control)
    assert abs(client.uart_cur().baud - 115200) < 115200 * 0.02
    assert client.rf_power() == [profile.factory_param["max_tx_power"], 0, 0, 0]   # BluFi build: 4 fields
    assert client.country().code == profile.factory_param["country_code"]
    assert client.sta_mac() == module.mac
    assert client.ap_mac() == module.mac[:5] + bytes([(module.mac[5] + 1) & 0xFF])
    assert client.sysflash_partitions() == [
        SysflashEntry(p.name, p.type, p.subtype, p.offset, p.size) for p in profile.at_customize.entries]
    assert client.sysmfg_namespaces()[:2] == ["factory_param", "ble_data"]
    keys = client.sysmfg_keys("factory_param")
    assert SysmfgKey("uart_baudrate", "i32") in keys and SysmfgKey("module_name", "string") in keys
    for key, _type in keys:
        assert client.sysmfg_read("factory_param", key) == profile.factory_param[key]
    assert client.sysmfg_read("factory_param", "module_name", 1, 3) == profile.factory_param["module_name"][1:4]
    assert list(client.urcs) == []


@guarded
def test_sysmfg_write_read_erase_all_types(client):
    client.sysmfg_write("my_app", "u8", "u8", 255)
    client.sysmfg_write("my_app", "i32", 6, -5000)
    client.sysmfg_write("my_app", "text", "string", 'comma, "quote" \\ and\r\nCRLF')
    client.sysmfg_write("client_cert", "client_cert.0", "blob", CERT)
    assert client.sysmfg_read("my_app", "u8") == 255
    assert client.sysmfg_read("my_app", "i32") == -5000
    assert client.sysmfg_read("my_app", "text") == 'comma, "quote" \\ and\r\nCRLF'
    assert client.sysmfg_read("client_cert", "client_cert.0") == CERT
    assert client.sysmfg_read("client_cert", "client_cert.0", 10, 100) == CERT[10:110]
    client.sysmfg_erase("my_app", "text")
    assert [k.key for k in client.sysmfg_keys("my_app")] == ["u8", "i32"]
    client.sysmfg_erase("my_app")
    with pytest.raises(AtError):
        client.sysmfg_keys("my_app")
    with pytest.raises(AtError):
        client.sysmfg_read("my_app", "u8")


@guarded
def test_sysflash_erase_write_read_exact(module, client):
    part = {e.name: e for e in client.sysflash_partitions()}["fs_storage"]
    data = (b"\r\nOK\r\n>" + bytes(range(256))) * 40   # framing bytes inside the payload
    client.sysflash_erase("fs_storage")
    client.sysflash_write("fs_storage", 0, data)
    assert module.flash.read(part.offset, len(data)) == data
    assert client.sysflash_read("fs_storage", 0, len(data)) == data
    client.sysflash_erase("fs_storage", 0, 4096)
    assert client.sysflash_read("fs_storage", 0, 16) == b"\xff" * 16
    assert client.sysflash_read("fs_storage", 4096, 8) == data[4096:4104]


@pytest.mark.parametrize("flash_prompt,mfg_prompt", [("ok_prompt", "bare_prompt"), ("bare_prompt", "ok_prompt")])
@guarded
def test_both_prompt_styles(flash_prompt, mfg_prompt):
    m = start_module(sysflash_write_prompt=flash_prompt, sysmfg_write_prompt=mfg_prompt)
    try:
        c = connect(m)
        c.sysflash_erase("fs_storage")
        c.sysflash_write("fs_storage", 0, b"abc\r\n")
        c.sysmfg_write("ns", "blob", "blob", b">\r\nOK\r\n")
        assert c.sysflash_read("fs_storage", 0, 5) == b"abc\r\n"
        assert c.sysmfg_read("ns", "blob") == b">\r\nOK\r\n"
        c.close()
    finally:
        m.stop()


@guarded
def test_command_lines_and_cli_style_display(client):
    assert client.command("AT+UART_DEF?")[0].startswith("+UART_DEF:115200,")
    lines = client.command('AT+SYSMFG=1,"factory_param","module_name"')
    assert lines == ['+SYSMFG:"factory_param","module_name",7,11,ESP32C2-4MB']
    client.sysmfg_write("client_key", "client_key.0", "blob", SECRET)
    shown = client.command('AT+SYSMFG=1,"client_key","client_key.0"')
    assert "redacted" in shown[0] and b"PRIVATE" not in shown[0].encode()


# -- transcript --------------------------------------------------------------------------------------
@guarded
def test_transcript_redacts_private_keys(client):
    client.sysmfg_write("client_key", "client_key.0", "blob", SECRET)
    client.sysmfg_write("my_ns", "pem_as_string", "string", SECRET.decode())
    client.sysmfg_write("client_cert", "client_cert.0", "blob", CERT)
    assert client.sysmfg_read("client_key", "client_key.0") == SECRET
    assert client.sysmfg_read("my_ns", "pem_as_string") == SECRET.decode()
    client.sysflash_erase("fs_storage")
    client.sysflash_write("fs_storage", 0, SECRET)
    assert client.sysflash_read("fs_storage", 0, len(SECRET)) == SECRET
    text = "\n".join(f"{e.direction} {e.kind} {e.text}" for e in client.transcript)
    assert "PRIVATE KEY" not in text and "MIIEvQ" not in text and "not-a-real-key" not in text
    assert text.count("<redacted") >= 6
    cert_digest = hashlib.sha256(CERT).hexdigest()
    assert f"<{len(CERT)} bytes sha256={cert_digest}>" in text     # summarised, not dumped
    assert "BEGIN CERTIFICATE" not in text
    assert all(e.direction in ("tx", "rx", "note") and e.time > 0 for e in client.transcript)
    assert any(e.direction == "tx" and e.text == f'AT+SYSMFG=2,"client_cert","client_cert.0",8,{len(CERT)}' for e in client.transcript)


# -- faults ----------------------------------------------------------------------------------------------
@guarded
def test_busy_is_retried_then_typed(module, client):
    module.faults.busy_next = 2
    assert client.uart_def().baud == 115200           # two busy answers, third attempt works
    assert any("busy: retry 2/3" in e.text for e in client.transcript)
    module.faults.busy_next = 5
    client.busy_retries = 1
    with pytest.raises(AtBusy):
        client.at()
    module.faults.busy_next = 0
    client.set_syslog(True)
    module.faults.busy_next = 1
    with pytest.raises(AtBusy) as exc:
        client.exchange("AT")
    assert exc.value.code == 0x010B0000
    client.at()


@guarded
def test_garbage_and_urcs_between_info_and_ok(module, client):
    module.faults.garbage_between_lines = b"\x00\xfe~~noise~~"
    module.faults.urc_between_lines = "WIFI CONNECTED"
    assert client.uart_def().baud == 115200
    # garbage without CR LF runs into the URC line: both end up queued, the data is right
    assert any("noise" in u and u.endswith("WIFI CONNECTED") for u in client.urcs)
    module.faults.garbage_between_lines = b"\x00\xfe~~noise~~"
    reply = client.exchange("AT+UART_DEF?")
    assert reply.lines[0].startswith("+UART_DEF:115200,") and reply.urcs == ["\x00\ufffd~~noise~~"]
    client.sysmfg_write("client_cert", "client_cert.0", "blob", CERT)
    client.urcs.clear()
    module.faults.garbage_between_lines = b"\r\n+BLECONN:0,\"aa:bb\"\r\nXX\r\n"
    module.faults.urc_between_lines = "+STA_CONNECTED:\"11:22:33:44:55:66\""
    assert client.sysmfg_read("client_cert", "client_cert.0") == CERT
    assert '+BLECONN:0,"aa:bb"' in client.urcs and '+STA_CONNECTED:"11:22:33:44:55:66"' in client.urcs
    assert client.gmr().module_name == "ESP32C2-4MB"


@guarded
def test_link_drop_mid_reply_is_link_lost(module):
    c = connect(module)
    module.faults.at.drop_after_tx = 20     # bytes since connect: inside the first GMR line
    with pytest.raises(LinkLost):
        c.gmr()
    c.close()
    c = connect(module)                      # one-shot: a new connection works
    assert c.gmr().module_name == "ESP32C2-4MB"
    c.close()
    c = connect(module)
    module.faults.at.drop_after_tx = 200     # echo + header are ~50 bytes: inside the raw payload
    with pytest.raises(LinkLost):
        c.sysflash_read("mfg_nvs", 0, 4096)
    c.close()


@guarded
def test_stalled_reply_times_out_with_bytes_seen(module, client):
    client.timeout = 0.3
    module.faults.stall_reply_seconds = 1.0
    t0 = time.monotonic()
    with pytest.raises(AtTimeout) as exc:
        client.gmr()
    assert exc.value.command == "AT+GMR" and exc.value.elapsed >= 0.3
    assert b"AT+GMR\r\n".startswith(exc.value.seen)   # the firmware holds back the echo too
    time.sleep(max(0.0, 1.2 - (time.monotonic() - t0)))   # let the stale reply arrive
    client.timeout = 2.0
    assert client.gmr().module_name == "ESP32C2-4MB"      # resync dropped the stale reply


class _LaggingPort:
    """A host port that hands over nothing it received until ``release`` (a slow USB adapter)."""

    def __init__(self, port) -> None:
        self._port, self.release = port, 0.0

    def __getattr__(self, name):
        return getattr(self._port, name)

    def __setattr__(self, name, value):
        if name in ("_port", "release"):
            object.__setattr__(self, name, value)
        else:
            setattr(self._port, name, value)

    @property
    def in_waiting(self) -> int:
        return 0 if time.monotonic() < self.release else self._port.in_waiting

    def read(self, n: int = 1) -> bytes:
        if time.monotonic() < self.release:
            time.sleep(self._port.timeout or 0.0)
            return b""
        return self._port.read(n)


@guarded
def test_late_ok_is_not_taken_for_the_next_commands_answer(module):
    """A command's OK reaches the host late, after its timeout; the next write is refused. The client
    must say so, not read the late OK as the refusal's answer (resync probes until it is in step)."""
    port = _LaggingPort(open_port(module.at_url, env={}))
    client = AtClient(port, firmware=module.firmware, timeout=0.3)
    try:
        port.release = time.monotonic() + 1.0
        with pytest.raises(AtTimeout):
            client.set_syslog(False)                    # answered at once; the host sees it 1 s later
        module.faults.error_next_write = True
        client.timeout = 3.0
        with pytest.raises(AtError) as info:
            client.sysmfg_write("factory_param", "max_tx_power", "u8", 60)
        assert "AT+SYSMFG" in info.value.command
        assert client.sysmfg_read("factory_param", "max_tx_power") != 60   # the refused write left it alone
        assert any("resync discarded" in e.text for e in client.transcript if e.kind == "note")
    finally:
        client.close()


@guarded
def test_link_stall_mid_payload_reports_the_bytes_seen(module):
    c = connect(module, timeout=0.3)
    cmd = 'AT+SYSFLASH=2,"mfg_nvs",0,64'
    expected = b"%s\r\n+SYSFLASH:64," % cmd.encode() + module.flash.read(c2_profile().mfg_nvs.offset, 10)
    module.faults.at.stall_seconds = 1.0
    module.faults.at.stall_after_tx = len(expected)
    with pytest.raises(AtTimeout) as exc:
        c.sysflash_read("mfg_nvs", 0, 64)
    assert exc.value.seen == expected and not exc.value.redacted
    c.close()


@guarded
def test_link_stall_inside_raw_key_read_is_redacted_timeout(module, client):
    client.sysmfg_write("client_key", "client_key.0", "blob", SECRET)
    client.close()
    c = connect(module, timeout=0.3)
    cmd = 'AT+SYSMFG=1,"client_key","client_key.0"'
    header = f'+SYSMFG:"client_key","client_key.0",8,{len(SECRET)},'
    module.faults.at.stall_seconds = 1.0
    module.faults.at.stall_after_tx = len(cmd) + 2 + len(header) + 10   # echo, header, 10 key bytes
    with pytest.raises(AtTimeout) as exc:
        c.sysmfg_read("client_key", "client_key.0")
    assert exc.value.redacted and exc.value.seen == b"" and exc.value.seen_count == len(cmd) + 2 + len(header) + 10
    assert "PRIVATE" not in str(exc.value) and "PRIVATE" not in str(c.transcript)
    c.close()


@guarded
def test_corrupt_raw_read_returns_exact_length(module, client):
    part = {e.name: e for e in client.sysflash_partitions()}["mfg_nvs"]
    module.faults.corrupt_next_read = True
    data = client.sysflash_read("mfg_nvs", 0, 2048)
    assert len(data) == 2048 and data != module.flash.read(part.offset, 2048)
    client.sysmfg_write("client_cert", "client_cert.0", "blob", CERT)
    module.faults.corrupt_next_read = True
    got = client.sysmfg_read("client_cert", "client_cert.0")
    assert len(got) == len(CERT) and hashlib.sha256(got).digest() != hashlib.sha256(CERT).digest()
    assert client.sysmfg_read("client_cert", "client_cert.0") == CERT


@guarded
def test_error_on_write_has_code_with_syslog(module, client):
    module.faults.error_next_write = True
    with pytest.raises(AtError) as exc:
        client.sysmfg_write("client_cert", "client_cert.0", "blob", CERT)
    assert exc.value.code is None and not isinstance(exc.value, AtBusy)
    client.set_syslog(True)
    module.faults.error_next_write = True
    with pytest.raises(AtError) as exc:
        client.sysmfg_write("my_app", "n", "u16", 7)
    assert exc.value.code is None              # SYSMFG prints no ERR CODE (ground truth §6)
    client.sysflash_erase("fs_storage")
    module.faults.error_next_write = True
    with pytest.raises(AtError) as exc:
        client.sysflash_write("fs_storage", 0, b"x" * 100)
    assert exc.value.code == 0x010A0003        # esp_partition_write failed (ground truth §5)
    client.sysmfg_write("my_app", "n", "u16", 7)
    assert client.sysmfg_read("my_app", "n") == 7
    with pytest.raises(AtError) as exc:
        client.exchange("AT+NOSUCH")
    assert exc.value.code == 0x01090000 and "ERR CODE:0x01090000" in str(exc.value)


@guarded
def test_power_loss_between_writes(module, client):
    module.faults.power_loss_after_writes = 2
    client.sysmfg_write("my_app", "a", "u8", 1)
    with pytest.raises((LinkLost, AtTimeout)):
        client.sysmfg_write("my_app", "b", "u8", 2)
    client.close()
    assert module.wait_state("at", 5.0)
    c = connect(module)
    assert c.sysmfg_read("my_app", "a") == 1 and c.sysmfg_read("my_app", "b") == 2
    c.close()


# -- resets, UART, BLE ---------------------------------------------------------------------------------
@guarded
def test_restart_restore_and_download_mode(module, client):
    client.echo_off()
    client.restart()
    assert client.echo is True and client.gmr().module_name == "ESP32C2-4MB"   # echo back on: tolerated
    client.restore()
    assert client.enter_download_mode() == "AT+RST=1"
    assert module.wait_state("download", 5.0)


def _boot_later(module: VirtualModule, delay: float) -> threading.Thread:
    t = threading.Thread(target=lambda: (time.sleep(delay), module.power_cycle()), daemon=True)
    t.start()
    return t


@guarded
def test_command_lost_in_a_boot_is_resent_once(module, client):
    """A command that reaches the module while it boots is dropped; ``ready`` then means: send it again."""
    module.enter_download_mode()               # the AT port is deaf, as while esptool flashes
    booter = _boot_later(module, 0.3)
    assert client.gmr().module_name == "ESP32C2-4MB"
    booter.join(5)
    notes = [e.text for e in client.transcript if e.kind == "note"]
    assert any("restarted before replying: resend 1/1" in n for n in notes)

    client.boot_retries = 0
    module.enter_download_mode()
    booter = _boot_later(module, 0.3)
    with pytest.raises(ModuleRestarted):
        client.exchange("AT+GMR")
    booter.join(5)


@guarded
def test_wait_alive_rides_out_a_boot(module, client):
    from atfab.verify.unit import wait_alive
    module.enter_download_mode()
    booter = _boot_later(module, 0.3)
    client.boot_retries = 0                    # wait_alive itself must take the restart as "not yet"
    wait_alive(client, timeout=5.0)
    booter.join(5)
    assert client.gmr().module_name == "ESP32C2-4MB"


@guarded
def test_download_mode_falls_back_on_error():
    m = start_module()
    try:
        c = connect(m)
        c.firmware = changed(c.firmware, download_mode_commands=("AT+RST=9", "AT+RST=1,1", "AT+RST=1"))
        assert c.enter_download_mode() == "AT+RST=1"      # =9 and =1,1 answer ERROR (ground truth §3)
        assert m.wait_state("download", 5.0)
        c.close()
    finally:
        m.stop()


@guarded
def test_set_uart_def_switches_host(client):
    client.set_uart_def(230400, flow=0)
    assert client.port.baudrate == 230400
    assert client.uart_def() == UartConfig(230400, 8, 1, 0, 0)


@pytest.mark.parametrize("style", ["c2", "full"])
@guarded
def test_ble_gatt_discovery(style):
    # "full": the Bluedroid (ESP32/C3) discovery formats of the firmware data, with their desc lines
    bluedroid = {} if style == "c2" else {
        "formats": [list(kv) for kv in firmware_profile("v4.1.0.0", "esp32c3").formats], "ble_stack": "bluedroid"}
    m = start_module(ble=True, gattschar_style=style, gatts_auto_create=(style == "c2"), **bluedroid)
    try:
        c = connect(m)
        c.ble_init(2)
        assert c.ble_role() == 2
        c.gatts_create_and_start()
        services = c.gatts_services()
        assert [s.uuid.upper() for s in services] == ["0XA002", "0XA003"] and all(s.primary for s in services)
        chars = c.gatts_chars()
        assert chars[0].kind == "char" and chars[0].uuid.upper() == "0XC300"
        if style == "c2":
            assert all(ch.kind == "char" and ch.prop is None for ch in chars)
        else:
            assert chars[0].prop == 0x02 and GattsChar("desc", 1, 1, "0x2901", None, 1) in chars
        assert len(c.ble_addr()) == 6
        c.close()
    finally:
        m.stop()


# -- CLI ------------------------------------------------------------------------------------------------
def _cli(args, input=None, env=None):
    return run_with_timeout(CliRunner().invoke, GUARD, main, args, input=input, env=env)


def test_cli_at_commands_json_and_errors(module):
    r = _cli(["at", "--port", module.at_url, "AT+GMR", "AT+UART_DEF?"])
    assert r.exit_code == 0, r.output
    assert "Bin version:v3.3.0.0(ESP32C2-4MB)" in r.output and "+UART_DEF:115200" in r.output
    r = _cli(["at", "--port", module.at_url, "--json", 'AT+SYSMFG=1,"factory_param","country_code"'])
    assert r.exit_code == 0, r.output
    assert '"lines"' in r.output and "country_code\\\",7,2,CN" in r.output
    r = _cli(["at", "--port", module.at_url, "AT", "AT+NOSUCH"])
    assert r.exit_code == 3 and "AT+NOSUCH" in r.output and "ERROR" in r.output
    r = _cli(["at", "--port", "serial:NO-SUCH-SERIAL", "AT"])
    assert r.exit_code == 2
    module.faults.urc_between_lines = "WIFI CONNECTED"
    r = _cli(["at", "AT+UART_DEF?"], env={"ESPPORT": module.at_url})
    assert r.exit_code == 0 and "[urc] WIFI CONNECTED" in r.output, r.output


def test_cli_interactive(module):
    r = _cli(["at", "--port", module.at_url, "--interactive"], input="AT\nAT+NOSUCH\nAT+UART_DEF?\n")
    assert r.exit_code == 0, r.output
    assert "ERROR" in r.output and "+UART_DEF:115200" in r.output and r.output.count("OK") >= 2


@pytest.mark.parametrize("changes", [
    {"sysmfg_numeric_length": "type_size"},
    {"raw_read_trailer": b""},
    {"echo_default": False, "ate0_echoed": False},
    {"mac_quoted": False, "busy_text": "busy p..."},
])
@guarded
def test_firmware_variants(changes):
    m = start_module(**changes)
    try:
        c = connect(m)
        c.echo_off()
        assert c.sysmfg_read("factory_param", "uart_baudrate") == 115200
        assert c.sysmfg_read("factory_param", "module_name") == "ESP32C2-4MB"
        assert len(c.sysflash_read("mfg_nvs", 0, 100)) == 100 and c.sta_mac() == m.mac
        m.faults.busy_next = 1
        assert c.gmr().module_name == "ESP32C2-4MB"
        c.close()
    finally:
        m.stop()
