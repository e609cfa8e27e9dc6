"""Port selection and opening (transport.py)."""

from __future__ import annotations

import socket

import pytest

from atfab.core.errors import DeviceError, InputError
from atfab.link.transport import PortInfo, open_port, resolve_baud, resolve_port, selector_from_options

PORTS = [
    PortInfo("/dev/ttyUSB0", "A1B2", "1-1.2:1.0", 0x303A, 0x1001, "USB JTAG"),
    PortInfo("/dev/ttyUSB1", "C3D4", "1-1.3:1.0", 0x10C4, 0xEA60, "CP2102"),
    PortInfo("/dev/ttyUSB2", "DUAL", "1-1.4:1.0", 0x0403, 0x6010, "FT2232 A"),
    PortInfo("/dev/ttyUSB3", "DUAL", "1-1.4:1.1", 0x0403, 0x6010, "FT2232 B"),
    PortInfo("/dev/ttyS0"),
]


def test_selectors():
    assert resolve_port("/dev/ttyUSB7", ports=PORTS, env={}) == "/dev/ttyUSB7"
    assert resolve_port("socket://127.0.0.1:1", ports=[], env={}) == "socket://127.0.0.1:1"
    assert resolve_port("serial:C3D4", ports=PORTS, env={}) == "/dev/ttyUSB1"
    assert resolve_port("serial:a1b2", ports=PORTS, env={}) == "/dev/ttyUSB0"
    assert resolve_port("location:1-1.2", ports=PORTS, env={}) == "/dev/ttyUSB0"
    assert resolve_port("location:1-1.4:1.1", ports=PORTS, env={}) == "/dev/ttyUSB3"
    assert resolve_port("usb:10c4:ea60", ports=PORTS, env={}) == "/dev/ttyUSB1"
    assert resolve_port(None, ports=PORTS, env={"ESPPORT": "serial:A1B2"}) == "/dev/ttyUSB0"


def test_selector_errors_name_the_candidates():
    with pytest.raises(InputError, match="no port matches 'serial:NOPE'.*C3D4"):
        resolve_port("serial:NOPE", ports=PORTS, env={})
    with pytest.raises(InputError, match="matches 2 ports.*ttyUSB2.*ttyUSB3"):
        resolve_port("serial:DUAL", ports=PORTS, env={})
    with pytest.raises(InputError, match="matches 2 ports"):
        resolve_port("location:1-1.4", ports=PORTS, env={})
    with pytest.raises(InputError, match="no port given"):
        resolve_port(None, ports=PORTS, env={})
    with pytest.raises(InputError):
        resolve_port("usb:zz", ports=PORTS, env={})
    with pytest.raises(InputError, match="only one"):
        selector_from_options("/dev/x", "A1B2", None)
    assert selector_from_options(None, "A1B2", None) == "serial:A1B2"
    assert selector_from_options(None, None, "1-1") == "location:1-1"


def test_baud_from_env():
    assert resolve_baud(None, env={}) == 115200
    assert resolve_baud(None, env={"ESPBAUD": "921600"}) == 921600
    assert resolve_baud(460800, env={"ESPBAUD": "921600"}) == 460800
    with pytest.raises(InputError):
        resolve_baud(None, env={"ESPBAUD": "fast"})


def test_open_socket_url_and_failures(tmp_path):
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    try:
        port = open_port(f"socket://127.0.0.1:{srv.getsockname()[1]}", env={})
        conn, _ = srv.accept()
        conn.settimeout(5)
        port.write(b"AT\r\n")
        assert conn.recv(10) == b"AT\r\n"
        assert port.timeout is not None and port.baudrate == 115200
        port.close()
        conn.close()
    finally:
        srv.close()
    with pytest.raises(DeviceError):
        open_port(str(tmp_path / "no-such-tty"), env={})
    with pytest.raises(InputError):
        open_port("bogus://x", env={})
