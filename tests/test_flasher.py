"""Flasher: esptool Python API against the virtual module (real esptool, socket:// ports)."""

from __future__ import annotations

import json
import socket
import struct
import threading
from pathlib import Path

import pytest
import serial
from esptool.loader import ESPLoader
from esptool.targets import CHIP_DEFS

from atfab.image.build import build
from atfab.core.errors import DeviceError, InputError
from atfab.core.esptool_log import EsptoolSink, routed
from atfab.image.flash_set import load_flash_set
from atfab.link.flasher import Flasher, FlashError, WrongChip, _quiet_bulk_commands
from atfab.sim.module import VirtualModule
from atfab.image.unit_content import Params
from tests.conftest import run_with_timeout
from tests.flash_support import actions, flash_url

T = 60  # seconds: upper bound for any esptool conversation in these tests


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("flash") / "unit"
    build("esp32c2-4mb", out, synthetic_firmware="v3.3.0.0")
    return out


def _flash(module: VirtualModule, folder: Path, **kwargs):
    return flash_url(module.flash_url, folder, **kwargs)


def test_flash_writes_every_region_and_reads_identity(virtual_module, built):
    seen: list[tuple[int, int]] = []
    result = _flash(virtual_module, built, progress=lambda d, t: seen.append((d, t)))
    fs = load_flash_set(built)
    for region in fs.regions:
        assert virtual_module.flash.read(region.offset, len(region.data)) == region.data, region.name
    done = actions(result)
    # ota_data_initial.bin is all 0xFF: an erased flash already holds it
    assert done["ota_data_initial.bin"] == "skipped"
    assert {done[n] for n in ("bootloader.bin", "partition-table.bin", "at_customize.bin", "mfg_nvs.bin",
                                 "esp-at.bin")} == {"written"}
    assert result.chip.chip == "ESP32-C2"
    assert result.chip.mac == virtual_module.mac.hex(":")
    assert result.stub is True
    assert result.flash_size == "4MB"
    # progress: monotonic, ends at the total of what was written
    assert seen and seen[0][0] == 0
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)
    assert seen[-1] == (result.bytes_written, result.bytes_written)
    json.dumps(result.to_dict())  # plain data


def test_reprovision_writes_only_what_changed(virtual_module, built, tmp_path):
    _flash(virtual_module, built)
    again = _flash(virtual_module, built)
    assert set(actions(again).values()) == {"skipped"}
    assert again.bytes_written == 0
    # another unit: same firmware, different factory parameters -> only mfg_nvs differs
    other = tmp_path / "other"
    build("esp32c2-4mb", other, synthetic_firmware="v3.3.0.0", params=Params(factory_param={"max_tx_power": 70}))
    result = _flash(virtual_module, other)
    assert [n for n, a in actions(result).items() if a == "written"] == ["mfg_nvs.bin"]
    mfg = next(r for r in load_flash_set(other).regions if r.name == "mfg_nvs.bin")
    assert virtual_module.flash.read(mfg.offset, len(mfg.data)) == mfg.data
    forced = _flash(virtual_module, other, force=True)
    assert set(actions(forced).values()) == {"written"}


def test_rom_only_no_stub(virtual_module, built):
    result = _flash(virtual_module, built, stub=False, baud=115200)
    assert result.stub is False
    for region in load_flash_set(built).regions:
        assert virtual_module.flash.read(region.offset, len(region.data)) == region.data


def test_chip_info(virtual_module):
    info = run_with_timeout(Flasher(virtual_module.flash_url).chip_info, T)
    assert info.mac == virtual_module.mac.hex(":")
    assert info.chip == "ESP32-C2" and "revision" in info.description
    assert virtual_module.wait_state("at", 5)


def test_wrong_chip_is_input_error(virtual_module, built, tmp_path):
    folder = tmp_path / "c3"
    folder.mkdir()
    for f in built.iterdir():
        (folder / f.name).write_bytes(f.read_bytes())
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["chip"] = "esp32c3"
    (folder / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(WrongChip) as info:
        _flash(virtual_module, folder)
    assert isinstance(info.value, InputError) and info.value.exit_code == 2
    assert "ESP32-C3" in str(info.value) and "ESP32-C2" in str(info.value)
    assert info.value.field == "chip" and info.value.port == virtual_module.flash_url


def test_enter_download_mode_over_at_port(virtual_module, built):
    """Boards without auto-reset: AT+RST=1 on the AT port, then flash without a reset."""
    _flash(virtual_module, built)  # an erased module has no AT firmware to answer
    assert virtual_module.wait_state("at", 5)
    lines: list[str] = []
    result = _flash(virtual_module, built, at_port=virtual_module.at_url,
                    on_line=lambda level, text: lines.append(text))
    assert f"download mode entered with AT+RST=1 on {virtual_module.at_url}" in lines
    assert result.chip.mac == virtual_module.mac.hex(":")
    assert virtual_module.wait_state("at", 5)


def test_load_flash_set_errors(built, tmp_path):
    with pytest.raises(InputError, match="flash_args"):
        load_flash_set(tmp_path)
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "flash_args").write_text("--flash_mode dio\n0x1000 missing.bin\n")
    with pytest.raises(InputError, match="missing.bin"):
        load_flash_set(broken)
    (broken / "a.bin").write_bytes(b"\0" * 0x2000)
    (broken / "b.bin").write_bytes(b"\0" * 16)
    (broken / "flash_args").write_text("0x1000 a.bin\n0x2000 b.bin\n")
    with pytest.raises(InputError, match="overlaps"):
        load_flash_set(broken)
    (broken / "flash_args").write_text("--baud 9600\n0x1000 a.bin\n")
    with pytest.raises(InputError, match="baud"):
        load_flash_set(broken)
    fs = load_flash_set(built)
    assert (fs.flash_mode, fs.flash_freq, fs.flash_size, fs.chip) == ("dio", "60m", "4MB", "esp32c2")


# ------------------------------------------------------------------------------ link trouble


@pytest.fixture
def silent_server():
    """A TCP endpoint that accepts connections and never answers."""
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(4)
    conns: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        lsock.settimeout(0.1)
        while not stop.is_set():
            try:
                conns.append(lsock.accept()[0])
            except OSError:
                continue

    t = threading.Thread(target=accept, daemon=True)
    t.start()
    yield f"socket://127.0.0.1:{lsock.getsockname()[1]}"
    stop.set()
    t.join(2)
    for c in conns:
        c.close()
    lsock.close()


def test_silent_device_fails_connect(silent_server, built):
    flasher = Flasher(silent_server, connect_attempts=1, step_timeout=20)
    with pytest.raises(FlashError) as info:
        run_with_timeout(flasher.flash, T, load_flash_set(built))
    assert info.value.step == "connect" and info.value.port == silent_server
    assert isinstance(info.value, DeviceError) and info.value.exit_code == 3


def test_watchdog_closes_a_blocked_port(silent_server):
    """A read esptool left without timeout is ended by the step watchdog."""
    flasher = Flasher(silent_server)
    ser = serial.serial_for_url(silent_server, timeout=None)

    def blocked_read() -> None:
        with flasher._step("read", ser, 0.3):
            ser.read(1)

    with pytest.raises(FlashError, match="no answer within") as info:
        run_with_timeout(blocked_read, 10)
    assert info.value.step == "read"


def test_link_drop_mid_write_is_a_flash_error(virtual_module, built):
    """The flash connection dies while data is sent (power loss): FlashError naming the step."""
    virtual_module.faults.flash.drop_after_rx = 9_000   # after the stub upload, during the writes
    flasher = Flasher(virtual_module.flash_url, step_timeout=15)
    with pytest.raises(FlashError) as info:
        run_with_timeout(flasher.flash, T, load_flash_set(built), force=True)
    assert info.value.step.startswith(("write", "md5", "run stub")), info.value.step


# ------------------------------------------------------------------------------ per-port output


def test_parallel_ports_keep_their_own_esptool_output(module_pool, built, capsys):
    pool = module_pool(2)
    lines: dict[str, list[str]] = {m.flash_url: [] for m in pool}
    results: dict[str, object] = {}

    def work(module: VirtualModule) -> None:
        flasher = Flasher(module.flash_url, on_line=lambda level, text: lines[module.flash_url].append(text))
        results[module.flash_url] = flasher.flash(load_flash_set(built))

    threads = [threading.Thread(target=work, args=(m,)) for m in pool]
    for t in threads:
        t.start()
    for t in threads:
        t.join(T)
    assert not any(t.is_alive() for t in threads)
    assert len(results) == 2
    urls = list(lines)
    for mine, other in (urls, urls[::-1]):
        text = "\n".join(lines[mine])
        assert "Hash of data verified" in text
        assert other not in text
    out = capsys.readouterr()
    assert "Hash of data verified" not in out.out + out.err


def test_sink_outside_routing_is_untouched():
    sink = EsptoolSink()
    with routed(sink):
        from esptool.logger import log

        log.print("Partial", end="")
        log.print(" line")
        log.warn("careful")
    assert sink.tail() == ["Partial line", "careful"]


# ------------------------------------------------------------------------------ trace-free bulk data


class _FakePort:
    """Enough of a pyserial port for ESPLoader: records writes, answers every command OK."""

    def __init__(self) -> None:
        self.baudrate = 115200
        self.timeout = 3
        self.write_timeout = None
        self.written = bytearray()
        self._rx = bytearray()
        self.port = "fake"

    def write(self, data: bytes) -> int:
        self.written += data
        op = data[2]  # c0 00 <op>
        self._rx += b"\xc0" + struct.pack("<BBHI", 1, op, 4, 0) + b"\x00\x00\x00\x00" + b"\xc0"
        return len(data)

    def inWaiting(self) -> int:
        return len(self._rx)

    def read(self, n: int = 1) -> bytes:
        out, self._rx = bytes(self._rx[:n]), self._rx[n:]
        return out

    def flushInput(self) -> None:
        self._rx.clear()


def test_quiet_bulk_commands_send_the_same_bytes_without_formatting(monkeypatch):
    import esptool.loader as loader

    formatted: list[int] = []
    original_str = loader.HexFormatter.__str__
    monkeypatch.setattr(loader.HexFormatter, "__str__",
                        lambda self: formatted.append(len(self._s)) or original_str(self))
    data = bytes(range(256)) * 64 + b"\xc0\xdb" * 10
    cls = CHIP_DEFS["esp32c2"]
    plain, quiet = cls(_FakePort()), cls(_FakePort())
    _quiet_bulk_commands(quiet)
    plain.flash_defl_block(data, 3)
    plain_formatted = sum(formatted)
    formatted.clear()
    quiet.flash_defl_block(data, 3)
    assert quiet._port.written == plain._port.written
    assert plain_formatted > 2 * len(data)
    assert sum(formatted) < 64            # only the 12-byte reply is formatted by the slip reader
    # non-bulk commands and other loader objects are untouched
    assert "command" not in vars(plain) and ESPLoader.command is loader.ESPLoader.command
    quiet.flash_begin(4096, 0x1000)
    assert quiet._port.written.count(b"\xc0\x00\x02") == 1


def test_silent_at_port_is_a_flash_error(virtual_module, built):
    """An erased module has no AT firmware: AT+RST=1 gets no answer -> FlashError on the AT port."""
    flasher = Flasher(virtual_module.flash_url, at_port=virtual_module.at_url, step_timeout=20)
    with pytest.raises(FlashError) as info:
        run_with_timeout(flasher.flash, T, load_flash_set(built))
    assert info.value.port == virtual_module.at_url and info.value.step == "enter download mode (AT)"


def test_one_session_reads_the_chip_then_writes(virtual_module, built, tmp_path):
    flash_set = load_flash_set(built)
    sessions = virtual_module.session_count

    def unit():
        with Flasher(virtual_module.flash_url, baud=460800).session() as s:
            info = s.chip_info                      # read when the session opened, before any decision
            state = virtual_module.state
            first = s.write(flash_set)
            second = s.write(flash_set)             # same connection: everything is already there
        return info, state, first, second

    info, state, first, second = run_with_timeout(unit, T)
    assert info.mac == virtual_module.mac.hex(":") and state == "download"
    assert first.chip == info and first.stub is True and "written" in actions(first).values()
    assert set(actions(second).values()) == {"skipped"}
    for region in flash_set.regions:
        assert virtual_module.flash.read(region.offset, len(region.data)) == region.data, region.name
    assert virtual_module.wait_state("at", 5)
    assert virtual_module.session_count - sessions == 1     # one ROM loader connection for the unit
    # a set for another chip is refused before anything is sent; the body's error ends the session
    other = tmp_path / "c3"
    other.mkdir()
    for f in built.iterdir():
        (other / f.name).write_bytes(f.read_bytes())
    manifest = json.loads((other / "manifest.json").read_text())
    (other / "manifest.json").write_text(json.dumps({**manifest, "chip": "esp32c3"}))

    def wrong():
        with Flasher(virtual_module.flash_url).session() as s:
            s.write(load_flash_set(other))

    with pytest.raises(WrongChip):
        run_with_timeout(wrong, T)
    assert virtual_module.wait_state("at", 5)
