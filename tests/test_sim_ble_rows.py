"""The simulator's own reading of ble_data rows (ground truth §10, C2 NimBLE): 0x2801 is no
service, an optional 8th field on the value row overrides the 0x2803 flag, 0x2902 rows are skipped,
a row of 100 bytes or more leaves the server without services."""

from __future__ import annotations

from atfab.image.profiles import load_profile
from atfab.sim.at_boot import nvs_editor
from tests.sim_at_support import FakeHost, Session, build_flash

OK = b"\r\nOK\r\n"
ERROR = b"\r\nERROR\r\n"
ROWS = [
    "0,16,0x2800,0x01,2,2,A002",
    "1,16,0x2803,0x01,1,1,02",
    "2,16,0xC300,0x01,1,1,30,1A",            # 8th field: flag 0x1a instead of 0x02
    "3,16,0x2902,0x11,2,2,0000",             # CCCD: skipped on NimBLE
    "4,16,0x2801,0x01,2,2,A003",             # not a service here: a characteristic value row
    "5,16,0x2803,0x01,1,1,08",
    "6,16,0xC301,0x01,1,1,30",
]


def _session(rows):
    ble = load_profile("esp32c2-2mb-ble").for_release("v5.0.1.0")
    flash = build_flash(ble, release="v5.0.1.0")
    ed = nvs_editor(flash, ble.mfg_nvs)
    ed.erase_namespace("ble_data")
    for i, row in enumerate(rows):
        ed.set("ble_data", f"cfg{i}", "string", row)
    s = Session(FakeHost(flash=flash, firmware=ble.firmware))
    assert s.cmd("ATE0").endswith(OK) and s.cmd("AT+BLEINIT=2") == OK
    return s


def test_2801_flag_override_and_cccd():
    s = _session(ROWS)
    try:
        assert s.cmd("AT+BLEGATTSSRV?") == b"+BLEGATTSSRV:1,1,0xA002,1\r\n" + OK
        assert s.cmd("AT+BLEGATTSCHAR?") == (b'+BLEGATTSCHAR:"char",1,1,0xC300,0x1a\r\n'
                                             b'+BLEGATTSCHAR:"char",1,2,0x2801,0x00\r\n'
                                             b'+BLEGATTSCHAR:"char",1,3,0xC301,0x08\r\n' + OK)
    finally:
        s.close()


def test_row_longer_than_the_core_buffer():
    s = _session(ROWS[:2] + ["2,16,0xC300,0x01,90,90," + "A" * 90])
    try:
        # what the core then answers is not in the ground truth ("not safe"); the sim lists nothing
        assert b"+BLEGATTSSRV:" not in s.cmd("AT+BLEGATTSSRV?")
    finally:
        s.close()
