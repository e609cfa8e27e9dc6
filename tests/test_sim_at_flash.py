"""Virtual AT firmware: AT+SYSFLASH, AT+SYSMFG and boot from odd flash contents (§4, §5, §8, §11)."""

from __future__ import annotations

import os

import pytest

from atfab.image.nvs.reader import read_nvs
from atfab.sim.at_boot import nvs_editor
from atfab.sim.flash import NorFlash
from tests.sim_at_support import Session, build_flash, c2_profile, default_content, new_host

OK = b"\r\nOK\r\n"
ERROR = b"\r\nERROR\r\n"


def start(host=None) -> Session:
    s = Session(host or new_host())
    assert s.cmd("ATE0") == b"ATE0\r\n" + OK
    return s


@pytest.fixture
def sess():
    s = start()
    yield s
    s.close()


def mfg_image(host):
    mfg = c2_profile().mfg_nvs
    return read_nvs(host.flash.read(mfg.offset, mfg.size))


# -- SYSFLASH ----------------------------------------------------------------------------------------
def test_sysflash_query_c2_4mb(sess):
    assert sess.cmd("AT+SYSFLASH?") == (
        b'+SYSFLASH:"mfg_nvs",1,2,0x1f000,0x1f000\r\n'
        b'+SYSFLASH:"fs_storage",1,255,0x47000,0x19000\r\n' + OK)


def test_sysflash_write_read_binary_with_crlf(sess):
    s = sess
    payload = b"\r\nOK\r\n\r\nERROR\r\n" + bytes(range(256)) + b"+SYSFLASH:3,\r\n"
    assert s.cmd('AT+SYSFLASH=0,"fs_storage",0,4096') == OK
    s.send(f'AT+SYSFLASH=1,"fs_storage",0,{len(payload)}\r\n'.encode())
    assert s.read_until(b">") == b">"                          # the single byte (ground truth §5)
    s.send(payload)
    assert s.read_until(OK) == OK
    s.send(f'AT+SYSFLASH=2,"fs_storage",0,{len(payload)}\r\n'.encode())
    head = f"+SYSFLASH:{len(payload)},".encode()
    assert s.read_exact(len(head)) == head
    assert s.read_exact(len(payload)) == payload
    assert s.read_until(OK) == OK                              # no CR LF before the result (ground truth §5)
    assert s.host.flash.read(0x47000, len(payload)) == payload


def test_sysflash_write_is_not_erased_first(sess):
    s = sess
    assert s.cmd('AT+SYSFLASH=0,"fs_storage"') == OK
    for data in (b"\x0f\x0f", b"\xf0\xff"):
        s.send(b'AT+SYSFLASH=1,"fs_storage",8,2\r\n')
        s.read_until(b">")
        s.send(data)
        assert s.read_until(OK) == OK
    assert s.host.flash.read(0x47008, 2) == b"\x00\x0f"       # NOR: bits only cleared


def test_sysflash_prompt_comes_from_the_firmware_data():
    s = start(new_host(sysflash_prompt=b"\r\nOK\r\n\r\n>"))
    try:
        s.send(b'AT+SYSFLASH=1,"fs_storage",0,1\r\n')
        assert s.read_until(b">") == b"\r\nOK\r\n\r\n>"
        s.send(b"\x00")
        assert s.read_until(OK) == OK
    finally:
        s.close()


def test_sysflash_errors(sess):
    s = sess
    for bad in ('AT+SYSFLASH=0,"fs_storage",4096,100', 'AT+SYSFLASH=0,"fs_storage",100,4096',
                'AT+SYSFLASH=2,"nope",0,4', 'AT+SYSFLASH=2,"fs_storage",0x18fff,2',
                'AT+SYSFLASH=3,"fs_storage",0,4',
                'AT+SYSFLASH=2,"fs_storage",0', 'AT+SYSFLASH=0,fs_storage'):
        assert s.cmd(bad) == ERROR, bad
    assert s.cmd('AT+SYSFLASH=2,"fs_storage",0x18fff,1').startswith(b"+SYSFLASH:1,\xff")
    assert s.cmd('AT+SYSFLASH=2,"fs_storage",0,0') == b"+SYSFLASH:0," + OK     # length 0 allowed (§5)
    assert s.cmd("AT+SYSLOG=1") == OK
    assert s.cmd('AT+SYSFLASH=2,"nope",0,4') == b"ERR CODE:0x010a0000\r\n" + ERROR
    assert s.cmd('AT+SYSFLASH=0,"fs_storage",100,4096') == b"ERR CODE:0x010a0001\r\n" + ERROR
    assert s.cmd('AT+SYSFLASH=3,"fs_storage",0,4') == ERROR                    # op range: no code


def test_sysflash_faults(sess):
    s = sess
    s.host.faults.corrupt_next_read = True
    out = s.cmd('AT+SYSFLASH=2,"fs_storage",0,4')
    assert out == b"+SYSFLASH:4,\xff\xff\xfe\xff" + OK
    assert s.cmd('AT+SYSFLASH=2,"fs_storage",0,4') == b"+SYSFLASH:4,\xff\xff\xff\xff" + OK
    s.host.faults.error_next_write = True
    s.send(b'AT+SYSFLASH=1,"fs_storage",0,2\r\n')
    s.read_until(b">")
    s.send(b"\x00\x00")
    assert s.read_until(OK, ERROR) == ERROR
    assert s.host.flash.read(0x47000, 2) == b"\xff\xff"


def test_extra_payload_bytes_answer_busy(sess):
    s = sess
    s.send(b'AT+SYSFLASH=1,"fs_storage",0x100,2\r\n')
    s.read_until(b">")
    s.send(b"\x01\x02\r\n")
    assert s.read_until(OK) == b"\r\nbusy p...\r\n" + OK
    assert s.host.flash.read(0x47100, 2) == b"\x01\x02"


# -- SYSMFG reads ----------------------------------------------------------------------------------
def test_sysmfg_namespaces_and_keys(sess):
    s = sess
    assert s.cmd("AT+SYSMFG?") == b'+SYSMFG:"factory_param"\r\n+SYSMFG:"ble_data"\r\n' + OK
    assert s.cmd("AT+SYSMFG=1") == b'+SYSMFG:"factory_param"\r\n+SYSMFG:"ble_data"\r\n' + OK
    lines = s.cmd('AT+SYSMFG=1,"factory_param"').decode().split("\r\n")
    assert lines[:4] == ['+SYSMFG:"factory_param","version",2', '+SYSMFG:"factory_param","module_name",7',
                         '+SYSMFG:"factory_param","max_tx_power",2', '+SYSMFG:"factory_param","country_code",7']
    assert '+SYSMFG:"factory_param","uart_baudrate",6' in lines
    assert '+SYSMFG:"factory_param","sys_store",1' in lines
    assert s.cmd('AT+SYSMFG=1,"nope"') == ERROR


@pytest.mark.parametrize("key,line", [
    ("module_name", b'+SYSMFG:"factory_param","module_name",7,11,ESP32C2-4MB'),
    ("uart_port", b'+SYSMFG:"factory_param","uart_port",2,1,1'),
    ("uart_baudrate", b'+SYSMFG:"factory_param","uart_baudrate",6,6,115200'),
    ("max_tx_power", b'+SYSMFG:"factory_param","max_tx_power",2,2,78'),
    ("country_code", b'+SYSMFG:"factory_param","country_code",7,2,CN'),
    ("sys_store", b'+SYSMFG:"factory_param","sys_store",1,1,1'),
])
def test_sysmfg_read_values(sess, key, line):
    assert sess.cmd(f'AT+SYSMFG=1,"factory_param","{key}"') == line + b"\r\n" + OK


def test_sysmfg_read_ble_row_and_slice(sess):
    s = sess
    assert s.cmd('AT+SYSMFG=1,"ble_data","cfg2"') == b'+SYSMFG:"ble_data","cfg2",7,23,2,16,0xC300,0x01,1,1,30\r\n' + OK
    assert s.cmd('AT+SYSMFG=1,"ble_data","cfg2",2,6') == b'+SYSMFG:"ble_data","cfg2",7,6,16,0xC\r\n' + OK
    assert s.cmd('AT+SYSMFG=1,"ble_data","cfg2",20,4') == ERROR
    assert s.cmd('AT+SYSMFG=1,"factory_param","uart_port",0,1') == ERROR
    assert s.cmd('AT+SYSMFG=1,"ble_data","cfg99"') == ERROR


# -- SYSMFG writes ------------------------------------------------------------------------------------
@pytest.mark.parametrize("tnum,value,length", [(1, 255, 3), (2, -128, 4), (3, 65535, 5), (4, -1, 2),
                                               (5, 4294967295, 10), (6, -2147483648, 11)])
def test_sysmfg_numeric_types(sess, tnum, value, length):
    s = sess
    assert s.cmd(f'AT+SYSMFG=2,"my_app","k{tnum}",{tnum},{value}') == OK
    assert s.cmd(f'AT+SYSMFG=1,"my_app","k{tnum}"') == f'+SYSMFG:"my_app","k{tnum}",{tnum},{length},{value}\r\n'.encode() + OK


@pytest.mark.parametrize("tnum,value,stored", [(1, 256, 0), (1, 300, 44), (1, -1, 255), (2, 128, -128), (2, 200, -56),
                                               (3, 65536, 0), (4, -32769, 32767), (5, -1, 4294967295),
                                               (6, 2147483648, -2147483648)])
def test_sysmfg_numeric_truncated_not_range_checked(sess, tnum, value, stored):
    """Ground truth §6: types 1-6 have no range check, the value is truncated to the width."""
    assert sess.cmd(f'AT+SYSMFG=2,"my_app","k",{tnum},{value}') == OK
    assert sess.cmd('AT+SYSMFG=1,"my_app","k"') == \
        f'+SYSMFG:"my_app","k",{tnum},{len(str(stored))},{stored}\r\n'.encode() + OK


@pytest.mark.parametrize("tnum", [0, 9])
def test_sysmfg_type_out_of_range(sess, tnum):
    assert sess.cmd(f'AT+SYSMFG=2,"my_app","k",{tnum},1') == ERROR


def test_sysmfg_numeric_length_type_size():
    s = start(new_host(sysmfg_numeric_length="type_size"))
    try:
        assert s.cmd('AT+SYSMFG=1,"factory_param","uart_baudrate"').startswith(
            b'+SYSMFG:"factory_param","uart_baudrate",6,4,115200\r\n')
    finally:
        s.close()


def write_raw(s: Session, ns: str, key: str, tnum: int, data: bytes) -> bytes:
    s.send(f'AT+SYSMFG=2,"{ns}","{key}",{tnum},{len(data)}\r\n'.encode())
    assert s.read_until(b">") == b"\r\nOK\r\n\r\n>"           # ok_prompt (§5.4)
    s.send(data)
    return s.read_until(OK, ERROR)


def test_sysmfg_blob_and_string_writes(sess):
    s = sess
    cert = b"-----BEGIN CERTIFICATE-----\r\nMIIB\r\n\r\nOK\r\n-----END CERTIFICATE-----\n" + bytes(range(256)) * 10
    assert write_raw(s, "client_cert", "client_cert.0", 8, cert) == OK
    s.send(b'AT+SYSMFG=1,"client_cert","client_cert.0"\r\n')
    head = f'+SYSMFG:"client_cert","client_cert.0",8,{len(cert)},'.encode()
    assert s.read_exact(len(head)) == head
    assert s.read_exact(len(cert)) == cert
    assert s.read_until(OK) == b"\r\n" + OK
    assert write_raw(s, "factory_param", "module_name", 7, b"MY-MODULE") == OK
    assert s.cmd('AT+SYSMFG=1,"factory_param","module_name"') == \
        b'+SYSMFG:"factory_param","module_name",7,9,MY-MODULE\r\n' + OK
    assert write_raw(s, "factory_param", "module_name", 7, b"x" * 4000) == ERROR   # nvs_set_str: no room for the NUL
    assert write_raw(s, "factory_param", "module_name", 7, b"a\x00b") == ERROR    # a string holding a NUL
    for length in (0, 8192):                                                      # 1..8191, before any prompt
        assert s.cmd(f'AT+SYSMFG=2,"factory_param","module_name",7,{length}') == ERROR
        assert s.cmd(f'AT+SYSMFG=2,"client_cert","client_cert.0",8,{length}') == ERROR
    s.send(b'AT+SYSMFG=1,"client_cert","client_cert.0",10,0\r\n')                # len 0 reads to the end
    head = f'+SYSMFG:"client_cert","client_cert.0",8,{len(cert) - 10},'.encode()
    assert s.read_exact(len(head)) == head and s.read_exact(len(cert) - 10) == cert[10:]
    assert s.read_until(OK) == b"\r\n" + OK
    image = mfg_image(s.host)
    assert image.get("client_cert", "client_cert.0").value == cert
    assert image.get("factory_param", "module_name").value == "MY-MODULE"


def test_sysmfg_write_survives_reboot_and_changes_gmr(sess):
    s = sess
    assert write_raw(s, "factory_param", "module_name", 7, b"TEST-MOD") == OK
    assert s.cmd('AT+SYSMFG=2,"factory_param","max_tx_power",2,60') == OK
    assert s.cmd("AT+GMR").endswith(b"Bin version:v3.3.0.0(ESP32C2-4MB)\r\n" + OK)   # read at boot
    s.send(b"AT+RST\r\n")
    s.read_until(b"ready\r\n")
    assert s.cmd("ATE0").endswith(OK)
    # a custom name is not in the v3.3.0.0 C2 table: entry 0 is printed (ground truth §2)
    assert s.cmd("AT+GMR").endswith(b"Bin version:v3.3.0.0(ESP32C2-2MB)\r\n" + OK)
    assert s.cmd("AT+RFPOWER?") == b"+RFPOWER:60,0,0,0\r\n" + OK


def test_sysmfg_erase(sess):
    s = sess
    assert s.cmd('AT+SYSMFG=2,"my_app","a",6,1') == OK
    assert s.cmd('AT+SYSMFG=2,"my_app","b",6,2') == OK
    assert s.cmd('AT+SYSMFG=0,"my_app","a"') == OK
    assert s.cmd('AT+SYSMFG=0,"my_app","a"') == ERROR
    assert s.cmd('AT+SYSMFG=1,"my_app"') == b'+SYSMFG:"my_app","b",6\r\n' + OK
    assert s.cmd('AT+SYSMFG=0,"my_app"') == OK
    assert s.cmd('AT+SYSMFG=1,"my_app"') == ERROR
    assert b"my_app" not in s.cmd("AT+SYSMFG?")


def test_sysmfg_faults(sess):
    s = sess
    s.host.faults.error_next_write = True
    assert s.cmd('AT+SYSMFG=2,"my_app","a",6,1') == ERROR
    s.host.faults.error_next_write = True
    assert write_raw(s, "my_app", "s", 7, b"abc") == ERROR
    assert s.cmd('AT+SYSMFG=1,"my_app"') == ERROR                       # nothing stored
    assert write_raw(s, "my_app", "s", 7, b"abcd") == OK
    s.host.faults.corrupt_next_read = True
    assert s.cmd('AT+SYSMFG=1,"my_app","s"') == b'+SYSMFG:"my_app","s",7,4,abbd\r\n' + OK
    assert s.cmd('AT+SYSMFG=1,"my_app","s"') == b'+SYSMFG:"my_app","s",7,4,abcd\r\n' + OK


def test_power_loss_between_sysmfg_writes():
    host = new_host()
    s = start(host)
    host.faults.power_loss_after_writes = 2
    assert write_raw(s, "client_cert", "client_cert.0", 8, b"first") == OK
    s.send(b'AT+SYSMFG=2,"client_key","client_key.0",8,6\r\n')
    s.read_until(b">")
    s.send(b"second")
    assert s.wait_result() == "state"
    assert host.events == ["power_loss"]
    assert host.faults.power_loss_after_writes is None
    assert s.quiet() == b""                                            # no OK for the second write
    s.sock.close()
    image = mfg_image(host)
    assert image.get("client_cert", "client_cert.0").value == b"first"
    assert image.get("client_key", "client_key.0").value == b"second"   # committed before power went


# -- boot from odd flash --------------------------------------------------------------------------------
def test_blank_flash_is_silent():
    host = new_host(NorFlash(4 * 1024 * 1024))
    s = Session(host)
    assert s.boot_out == b""
    assert not s.fw.running
    s.send(b"AT\r\n")
    assert s.quiet() == b""
    assert s.close() == "closed"


def test_missing_app_is_silent():
    s = Session(new_host(build_flash(app=False)))
    assert s.boot_out == b""
    s.send(b"AT\r\n")
    assert s.quiet() == b""
    s.close()


def test_app_for_another_chip_is_silent():
    host = new_host()
    host.chip = "esp32c3"
    s = Session(host)
    assert s.boot_out == b""
    s.close()


def test_ota_data_selects_ota_1():
    import zlib

    from atfab.image.appimage import default_at_core, make_app_image

    profile = c2_profile()
    flash = build_flash(profile)
    ota1 = profile.primary.find("ota_1")
    flash.program(ota1.offset, make_app_image(chip="esp32c2", version="v9.9.9.9", idf_ver="v5.1",
                                              at_core=default_at_core("9.9.9.9", "ESP32C2")))
    seq = (2).to_bytes(4, "little")
    rec = seq + b"\xff" * 20 + (2).to_bytes(4, "little") + zlib.crc32(seq, 0xFFFFFFFF).to_bytes(4, "little")
    flash.program(profile.otadata.offset, rec)
    s = start(new_host(flash))
    try:
        assert s.cmd("AT+GMR").endswith(b"Bin version:v9.9.9.9(ESP32C2-4MB)\r\n" + OK)
    finally:
        s.close()


def test_blank_mfg_nvs_defaults():
    host = new_host(build_flash(mfg=False))
    s = start(host)
    try:
        assert s.cmd("AT+GMR").endswith(b"Bin version:v3.3.0.0(ESP32C2-2MB)\r\n" + OK)   # missing: entry 0
        assert s.cmd("AT+UART_DEF?") == b"+UART_DEF:115200,8,1,0,1\r\n" + OK
        assert s.cmd("AT+SYSMFG?") == ERROR                              # nvs_entry_find fails (ground truth §6)
        assert s.cmd('AT+SYSMFG=1,"factory_param","module_name"') == ERROR
        assert s.cmd("AT+RFPOWER?") == b"+RFPOWER:80,0,0,0\r\n" + OK
        assert s.cmd("AT+CWCOUNTRY?") == b'+CWCOUNTRY:0,"01",1,11\r\n' + OK
        assert s.cmd("AT+SYSSTORE?") == b"+SYSSTORE:1\r\n" + OK
        assert write_raw(s, "factory_param", "module_name", 7, b"LATE") == OK
    finally:
        s.close()


def test_corrupt_mfg_nvs_gives_errors():
    profile = c2_profile()
    flash = build_flash(profile, mfg=False)
    flash.program(profile.mfg_nvs.offset, os.urandom(3 * 4096))
    s = start(new_host(flash))
    try:
        assert s.cmd("AT+GMR").endswith(b"(ESP32C2-2MB)\r\n" + OK)
        assert s.cmd("AT+SYSMFG?") == ERROR
        assert s.cmd('AT+SYSMFG=2,"a","b",1,1') == ERROR
        assert s.cmd("AT+SYSFLASH?").startswith(b'+SYSFLASH:"mfg_nvs"')
    finally:
        s.close()


def test_missing_at_customize():
    profile = c2_profile()
    flash = build_flash(profile)
    flash.erase(profile.at_customize_offset, 4096)
    s = start(new_host(flash))
    try:
        assert s.cmd("AT+SYSFLASH?") == OK                # a blank table lists nothing
        assert s.cmd('AT+SYSFLASH=2,"mfg_nvs",0,1') == ERROR
        assert s.cmd("AT+SYSMFG?") == ERROR
        assert s.cmd("AT+GMR").endswith(b"Bin version:v3.3.0.0(ESP32C2-2MB)\r\n" + OK)
    finally:
        s.close()


def test_partial_factory_param():
    profile = c2_profile()
    flash = build_flash(profile)
    editor = nvs_editor(flash, profile.mfg_nvs)
    assert editor.erase_key("factory_param", "module_name") and editor.erase_key("factory_param", "country_code")
    s = start(new_host(flash))
    try:
        assert s.cmd("AT+GMR").endswith(b"Bin version:v3.3.0.0(ESP32C2-2MB)\r\n" + OK)
        assert s.cmd("AT+CWCOUNTRY?") == b'+CWCOUNTRY:0,"01",1,11\r\n' + OK
        assert s.cmd("AT+RFPOWER?") == b"+RFPOWER:78,0,0,0\r\n" + OK
    finally:
        s.close()


def test_sysmsg_persists_with_sysstore(sess):
    s = sess
    assert s.cmd("AT+SYSMSG=5") == OK
    s.send(b"AT+RST\r\n")
    s.read_until(b"ready\r\n")
    assert s.cmd("ATE0").endswith(OK)
    assert s.cmd("AT+SYSMSG?") == b"+SYSMSG:5" + OK
    entry = read_nvs(s.host.flash.read(0x10000, 0xE000)).get("NVM_012", "s_msg")   # system nvs (ground truth §8)
    assert (entry.type, entry.value) == ("i32", 5)
    s.send(b"AT+RESTORE\r\n")
    s.read_until(b"ready\r\n")
    assert s.cmd("ATE0").endswith(OK)
    assert s.cmd("AT+SYSMSG?") == b"+SYSMSG:0" + OK


def test_default_content_builds():
    assert default_content(c2_profile()).ble_rows[0] == "0,16,0x2800,0x01,2,2,A002"


def test_partition_outside_the_chip_does_not_crash():
    from atfab.image.partition_table import Partition, PartitionTable, encode

    profile = c2_profile()
    flash = build_flash(profile)
    entries = list(profile.at_customize.entries) + [Partition("far", 1, 0x81, 0x3FF000, 0x10000)]
    flash.erase(profile.at_customize_offset, 4096)
    flash.program(profile.at_customize_offset, encode(PartitionTable(entries), md5=True))
    s = start(new_host(flash))
    try:
        assert s.cmd('AT+SYSFLASH=2,"far",0x1000,4') == ERROR
        assert s.cmd('AT+SYSFLASH=2,"far",0,4') == b"+SYSFLASH:4,\xff\xff\xff\xff" + OK
    finally:
        s.close()


def test_known_module_name_is_printed():
    s = start(new_host(build_flash(content=default_content(c2_profile(), module_name="ESP32C2-BLE-2MB"))))
    try:
        assert s.cmd("AT+GMR").endswith(b"Bin version:v3.3.0.0(ESP32C2-BLE-2MB)\r\n" + OK)
    finally:
        s.close()


def test_factory_param_with_the_wrong_nvs_type_is_not_applied():
    """Ground truth §11: nvs_get_i8 finds no i8 max_tx_power, the Wi-Fi chain returns early: neither the
    power nor the country code are applied (driver defaults), the rest of the boot goes on."""
    from atfab.sim.at_boot import nvs_editor

    profile = c2_profile()
    flash = build_flash(profile)
    ed = nvs_editor(flash, profile.mfg_nvs)
    ed.erase_key("factory_param", "max_tx_power")
    ed.set("factory_param", "max_tx_power", "i32", 60)
    s = start(new_host(flash))
    try:
        assert s.cmd("AT+RFPOWER?") == b"+RFPOWER:80,0,0,0\r\n" + OK
        assert s.cmd("AT+CWCOUNTRY?") == b'+CWCOUNTRY:0,"01",1,11\r\n' + OK
        assert s.cmd("AT+SYSSTORE?") == b"+SYSSTORE:1\r\n" + OK
    finally:
        s.close()
