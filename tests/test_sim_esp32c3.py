"""The virtual ESP32-C3 (QFN32, external flash, as on a WROOM-02 / an esp-at C3 module) driven by the real
esptool 5.6 (``targets/esp32c3.py``): detection by GET_SECURITY_INFO chip id 5, eFuse BLOCK1 MAC,
package and revision words, the stub, flash id. The end-to-end build -> flash -> verify of the
esp32c3-at-v2 profile is in tests/test_e2e_legacy.py."""

from __future__ import annotations

import pytest
from esptool import cmds

from atfab.sim.module import VirtualModule
from tests.conftest import run_with_timeout
from tests.sim_at_support import StandInFirmware

T = 30


@pytest.mark.parametrize("revision", [(0, 4), (1, 9)])
def test_detect_mac_revision_security_info_and_stub(revision):
    module = VirtualModule(chip="esp32c3", seed="c3-tests", chip_revision=revision,
                           firmware_factory=StandInFirmware).start()

    def work():
        esp = cmds.detect_chip(module.flash_url)
        try:
            info = esp.get_security_info()
            found = (esp.CHIP_NAME, esp.get_chip_description(), esp.get_chip_features(), bytes(esp.read_mac()),
                     esp.get_crystal_freq(), info["chip_id"], esp.get_flash_encryption_enabled(),
                     esp.get_secure_boot_enabled())
            stub = cmds.run_stub(esp)
            cmds.attach_flash(stub)
            return found, stub.IS_STUB, bytes(stub.read_mac()), stub.flash_id(), cmds.detect_flash_size(stub)
        finally:
            esp._port.close()

    try:
        found, is_stub, stub_mac, flash_id, size = run_with_timeout(work, T)
    finally:
        module.stop()
    name, desc, features, mac, xtal, chip_id, encrypted, secure = found
    assert (name, desc) == ("ESP32-C3", f"ESP32-C3 (QFN32) (revision v{revision[0]}.{revision[1]})")
    assert features == ["Wi-Fi", "BT 5 (LE)", "Single Core", "160MHz"]          # no embedded flash
    assert mac == stub_mac == module.mac and xtal == 40 and chip_id == 5
    assert not encrypted and not secure
    assert is_stub and flash_id == 0x1640C8 and size == "4MB"
