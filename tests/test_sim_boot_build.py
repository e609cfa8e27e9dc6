"""The virtual module boots what was flashed (issue 13): the app's own description picks the
firmware build it serves; no valid second-stage bootloader, no boot."""

from __future__ import annotations

from atfab.core.firmware import feature_marker
from atfab.image.appimage import make_app_image, read_app_info
from atfab.image.build import synthetic_firmware_files
from atfab.image.profiles import load_profile
from atfab.sim.at_build import identify
from tests.sim_at_support import FakeHost, Session, build_flash, c2_profile

OK = b"\r\nOK\r\n"
ERROR = b"\r\nERROR\r\n"


def _session(flash, firmware=None) -> Session:
    return Session(FakeHost(flash=flash, firmware=firmware or c2_profile().firmware))


def test_flashed_app_not_module_profile_chooses_the_command_set():
    """Started as esp32c2-4mb (v4.1.0.0, Wi-Fi + BluFi, no BLE commands) but flashed with esp-at
    v5.0.1.0's ESP32C2-2MB-BLE build: the BLE set and v5.0.1 discovery lines answer, Wi-Fi does not."""
    ble = load_profile("esp32c2-2mb-ble")
    s = _session(build_flash(ble.for_release("v5.0.1.0"), release="v5.0.1.0"))
    try:
        assert s.fw.profile.release == "v5.0.1.0" and s.fw.profile.ble and not s.fw.profile.wifi
        assert "v5.0.1.0" in s.fw.boot_log[-1]
        assert s.cmd("ATE0").endswith(OK)
        assert s.cmd("AT+BLEINIT=2") == OK
        assert s.cmd("AT+BLEGATTSSRV?").startswith(b"+BLEGATTSSRV:1,1,0xA002,1\r\n+BLEGATTSSRV:2,1,")
        assert s.cmd("AT+BLEGATTSCHAR?").startswith(b'+BLEGATTSCHAR:"char",1,1,0xC300,0x02\r\n')
        assert s.cmd("AT+CWMODE?") == ERROR
    finally:
        s.close()


def test_same_module_other_release():
    """The same layout flashed with v4.1.0.0 then v5.0.1.0: each boot serves its own release."""
    c2 = c2_profile()
    for release, prefix in (("v4.1.0.0", b"AT version:4.1.0.0("), ("v5.0.1.0", b"AT version:4.2.0.0-dev(3258eee")):
        s = _session(build_flash(c2.for_release(release), release=release))
        try:
            assert s.fw.profile.release == release
            assert s.cmd("ATE0").endswith(OK)
            assert s.cmd("AT+GMR").startswith(prefix)
        finally:
            s.close()


def test_app_markers_name_the_build_features():
    c2 = c2_profile()
    _off, data = synthetic_firmware_files(c2, version=c2.firmware.release)["app"]
    ident = identify(read_app_info(data), data)
    marked = {f for f in c2.firmware.features if feature_marker(c2.firmware.release, f)}
    assert ident.release == c2.firmware.release and set(ident.features) == marked


def test_unrecognised_app_keeps_the_at_port_silent():
    flash = build_flash(app=False)
    c2 = c2_profile()
    flash.program(c2.app_offset, make_app_image(chip="esp32c2", version="my-own-app 1.0", at_core="1.0(nothing)",
                                               idf_ver="v5.1"))
    s = _session(flash)
    try:
        assert s.boot_out == b"" and not s.fw.running
        assert "not recognised" in s.fw.boot_log[-1]
        s.send(b"AT\r\n")
        assert s.quiet() == b""
    finally:
        s.close()


def test_no_bootloader_no_boot():
    s = _session(build_flash(bootloader=False))
    try:
        assert s.boot_out == b"" and not s.fw.running
        assert s.fw.rom_log.startswith(b"invalid header: 0xffffffff\r\ninvalid header: 0xffffffff\r\n")
        s.send(b"AT\r\n")
        assert s.quiet() == b""
    finally:
        s.close()


def test_corrupt_bootloader_no_boot():
    flash = build_flash()
    data = bytearray(flash.read(0, 0x8000))
    flash.erase(0, 0x8000)
    data[40] ^= 0xFF                       # inside the first segment: the checksum no longer holds
    flash.program(0, bytes(data))
    s = _session(flash)
    try:
        assert s.boot_out == b""
        assert s.fw.rom_log.startswith(b"invalid header: 0x")
        assert "checksum" in s.fw.boot_log[0] or "invalid" in s.fw.boot_log[0]
    finally:
        s.close()
