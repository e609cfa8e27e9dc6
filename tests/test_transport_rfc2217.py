"""``rfc2217://`` end to end: flasher, AT client and CLI through an RFC 2217 server in front of a
virtual module (tests/rfc2217_bridge.py runs pyserial's own PortManager)."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from atfab.link.at.client import AtClient
from atfab.image.build import build
from atfab.cli import main
from atfab.core.errors import DeviceError
from atfab.image.flash_set import load_flash_set
from atfab.link.flasher import Flasher
from atfab.sim.module import VirtualModule
from atfab.link.transport import open_port
from atfab.link.url_ports import Rfc2217Port
from tests.conftest import run_with_timeout
from tests.rfc2217_bridge import Rfc2217Bridge
from tests.sim_at_support import build_flash, c2_profile

# pyserial 3.5's RFC 2217 client calls Thread.setDaemon/setName (deprecated in Python 3.10)
pytestmark = pytest.mark.filterwarnings("ignore:set(Daemon|Name)\\(\\) is deprecated:DeprecationWarning")

T = 30.0  # seconds: bound for any one conversation through the bridge
# binary payload with every byte value: 0xFF is the telnet IAC byte (doubled on the wire), CR LF
# and ">"/"OK" lines inside the data must not end the reply early
BLOB = b">\r\nOK\r\n\xff\xff\xfe\xfd" + bytes(range(256)) * 2 + b"\r\nERROR\r\n\xff"


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("rfc2217") / "unit"
    build("esp32c2-4mb", out, synthetic_firmware="v3.3.0.0")
    return out


@pytest.fixture
def at_module():
    """A module whose flash already holds a built AT image (serves AT commands at once)."""
    module = VirtualModule(flash=build_flash(c2_profile()), firmware=c2_profile().firmware).start()
    try:
        yield module
    finally:
        module.stop()


def bridge_to(url: str) -> Rfc2217Bridge:
    return Rfc2217Bridge(url).start()


def test_flasher_over_rfc2217_writes_then_skips(virtual_module, built):
    fs = load_flash_set(built)
    with bridge_to(virtual_module.flash_url) as bridge:
        info = run_with_timeout(Flasher(bridge.url).chip_info, T)
        assert info.chip == "ESP32-C2" and info.mac == virtual_module.mac.hex(":")

        first = run_with_timeout(Flasher(bridge.url, baud=460800).flash, T, fs)
        for region in fs.regions:
            assert virtual_module.flash.read(region.offset, len(region.data)) == region.data, region.name
        assert first.stub is True and first.baud == 460800
        assert {r.name for r in first.regions if r.action == "written"} >= {"esp-at.bin", "mfg_nvs.bin"}

        again = run_with_timeout(Flasher(bridge.url, baud=460800).flash, T, fs)
        assert again.bytes_written == 0 and {r.action for r in again.regions} == {"skipped"}
        assert bridge.connections_served == 3


def test_flasher_enters_download_mode_over_an_rfc2217_at_port(at_module, built):
    """A board without auto-reset: AT+RST=1 through one bridge, then esptool through the other."""
    lines: list[str] = []
    with bridge_to(at_module.flash_url) as flash_bridge, bridge_to(at_module.at_url) as at_bridge:
        flasher = Flasher(flash_bridge.url, at_port=at_bridge.url, on_line=lambda _kind, line: lines.append(line))
        result = run_with_timeout(flasher.flash, T, load_flash_set(built))
    assert result.chip.mac == at_module.mac.hex(":")
    assert any("AT+RST=1" in line for line in lines)


def test_nothing_listening_is_a_device_error():
    with bridge_to("socket://127.0.0.1:9") as bridge:     # the bridge answers, its target does not
        with pytest.raises(DeviceError):
            run_with_timeout(open_port, T, bridge.url, env={})
    with pytest.raises(DeviceError):
        run_with_timeout(open_port, T, "rfc2217://127.0.0.1:9", env={})


def test_at_client_over_rfc2217(at_module):
    with bridge_to(at_module.at_url) as bridge:
        port = run_with_timeout(open_port, T, bridge.url, env={})
        assert isinstance(port, Rfc2217Port)
        client = AtClient(port, firmware=at_module.firmware, timeout=3.0)
        try:
            gmr = run_with_timeout(client.gmr, T)
            assert gmr.bin_version == "v3.3.0.0" and gmr.chip == "ESP32C2"
            # factory data read raw: a string from mfg_nvs
            name = run_with_timeout(client.sysmfg_read, T, "factory_param", "module_name")
            assert name == c2_profile().factory_param["module_name"]
            # ">" prompt write of binary data, then a raw read of it (whole and a slice)
            run_with_timeout(client.sysmfg_write, T, "client_cert", "client_cert.0", "blob", BLOB)
            assert run_with_timeout(client.sysmfg_read, T, "client_cert", "client_cert.0") == BLOB
            assert run_with_timeout(client.sysmfg_read, T, "client_cert", "client_cert.0", 5, 300) == BLOB[5:305]
            # the same bytes through AT+SYSFLASH (its own prompt style)
            run_with_timeout(client.sysflash_erase, T, "fs_storage", 0, 4096)
            run_with_timeout(client.sysflash_write, T, "fs_storage", 0, BLOB)
            assert run_with_timeout(client.sysflash_read, T, "fs_storage", 0, len(BLOB)) == BLOB
        finally:
            run_with_timeout(client.close, T)


def test_cli_at_over_rfc2217(at_module):
    with bridge_to(at_module.at_url) as bridge:
        r = run_with_timeout(CliRunner().invoke, T, main, ["at", "--port", bridge.url, "AT+GMR"],
                             catch_exceptions=False)
        assert r.exit_code == 0, r.output
        assert "v3.3.0.0" in r.stdout and r.stdout.rstrip().endswith("OK")


def test_timeouts_stay_local_line_settings_are_negotiated(at_module):
    """Changing a timeout sends nothing to the server; a baud change is negotiated (and acknowledged)."""
    with bridge_to(at_module.at_url) as bridge:
        port = run_with_timeout(open_port, T, bridge.url, env={})
        sent: list[bytes] = []
        real = port.rfc2217_send_subnegotiation
        port.rfc2217_send_subnegotiation = lambda option, value=b"": (sent.append(option), real(option, value))[1]
        try:
            for t in (0.01, 2.0, None, 0.05):
                port.timeout = t
            port.write_timeout = 1.0
            assert sent == []
            run_with_timeout(setattr, T, port, "baudrate", 921600)
            assert sent and all(o.active for o in port._rfc2217_port_settings.values())
        finally:
            run_with_timeout(port.close, T)
