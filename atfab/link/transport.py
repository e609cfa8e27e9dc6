"""Open serial ports and pyserial URLs; list ports and select one the way a production line needs.

A *selector* names one port:

* a device path or pyserial URL: ``/dev/ttyUSB0``, ``COM3``, ``socket://host:port``, ``rfc2217://…``
* ``serial:<USB serial number>`` (e.g. ``serial:5A6B0012``)
* ``location:<USB location>`` (e.g. ``location:1-1.2``; matches ``1-1.2`` and ``1-1.2:1.0``)
* ``usb:<VID>:<PID>`` in hex (e.g. ``usb:303a:1001``), when exactly one such port is attached

With no selector, ``$ESPPORT`` (then ``$ESPTOOL_PORT``) is used like esptool/idf.py do, and the
baud comes from ``$ESPBAUD`` (then ``$ESPTOOL_BAUD``) when none is given.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import serial
import serial.tools.list_ports

from ..core.errors import DeviceError, InputError
from .url_ports import Rfc2217Port, SocketPort

DEFAULT_BAUD = 115200
PORT_ENV = ("ESPPORT", "ESPTOOL_PORT")
BAUD_ENV = ("ESPBAUD", "ESPTOOL_BAUD")


@dataclass(frozen=True)
class PortInfo:
    """One attached serial port (USB fields are None for non-USB ports)."""

    device: str
    serial_number: str | None = None
    location: str | None = None
    vid: int | None = None
    pid: int | None = None
    description: str | None = None

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["vid"] = f"{self.vid:04x}" if self.vid is not None else None
        d["pid"] = f"{self.pid:04x}" if self.pid is not None else None
        return d

    def label(self) -> str:
        """Short human description: device plus the USB identity that is known."""
        parts = [self.device]
        if self.serial_number:
            parts.append(f"serial={self.serial_number}")
        if self.location:
            parts.append(f"location={self.location}")
        if self.vid is not None and self.pid is not None:
            parts.append(f"usb={self.vid:04x}:{self.pid:04x}")
        return " ".join(parts)


def list_ports() -> list[PortInfo]:
    """The serial ports the OS reports, sorted by device name."""
    out = []
    for p in serial.tools.list_ports.comports():
        out.append(PortInfo(
            device=p.device,
            serial_number=p.serial_number or None,
            location=p.location or None,
            vid=p.vid,
            pid=p.pid,
            description=p.description if p.description and p.description != "n/a" else None,
        ))
    return sorted(out, key=lambda p: p.device)


def is_url(text: str) -> bool:
    """True for pyserial URLs (``scheme://…``), which are opened without listing ports."""
    return "://" in text


def _parse_vidpid(text: str, selector: str) -> tuple[int, int]:
    try:
        vid_s, pid_s = text.split(":")
        return int(vid_s, 16), int(pid_s, 16)
    except ValueError:
        raise InputError(f"expected usb:VID:PID in hex, got {selector!r}", field="port") from None


def _location_matches(location: str | None, wanted: str) -> bool:
    if not location:
        return False
    return location == wanted or location.startswith(wanted + ":")


def _only_one(matches: list[PortInfo], selector: str, ports: Sequence[PortInfo]) -> str:
    if len(matches) == 1:
        return matches[0].device
    if not matches:
        known = "; ".join(p.label() for p in ports) or "no ports attached"
        raise InputError(f"no port matches {selector!r} (attached: {known})", field="port")
    names = "; ".join(p.label() for p in matches)
    raise InputError(f"{selector!r} matches {len(matches)} ports: {names}", field="port")


def resolve_port(selector: str | None, *, ports: Sequence[PortInfo] | None = None,
                 env: Mapping[str, str] | None = None) -> str:
    """The device path or URL that ``selector`` names (see the module docstring).

    ``ports`` defaults to :func:`list_ports` (only listed when the selector needs it);
    ``env`` defaults to ``os.environ``. :class:`InputError` when nothing or several ports match.
    """
    env = os.environ if env is None else env
    if not selector:
        for name in PORT_ENV:
            if env.get(name):
                selector = env[name]
                break
        else:
            raise InputError("no port given: use --port (device, URL, serial:…, location:…) or set ESPPORT",
                             field="port")
    selector = selector.strip()
    kind, sep, value = selector.partition(":")
    if is_url(selector) or not sep or kind not in ("serial", "location", "usb"):
        return selector
    if not value:
        raise InputError(f"empty value in {selector!r}", field="port")
    ports = list_ports() if ports is None else list(ports)
    if kind == "serial":
        matches = [p for p in ports if p.serial_number == value]
        if not matches:
            matches = [p for p in ports if p.serial_number and p.serial_number.lower() == value.lower()]
    elif kind == "location":
        matches = [p for p in ports if _location_matches(p.location, value)]
    else:
        vid, pid = _parse_vidpid(value, selector)
        matches = [p for p in ports if p.vid == vid and p.pid == pid]
    return _only_one(matches, selector, ports)


def selector_from_options(port: str | None = None, usb_serial: str | None = None,
                          location: str | None = None) -> str | None:
    """Combine ``--port`` / ``--usb-serial`` / ``--location`` into one selector (at most one given)."""
    given = [(n, v) for n, v in (("port", port), ("usb-serial", usb_serial), ("location", location)) if v]
    if len(given) > 1:
        raise InputError("give only one of --port, --usb-serial, --location", field=given[1][0])
    if usb_serial:
        return f"serial:{usb_serial}"
    if location:
        return f"location:{location}"
    return port


def resolve_baud(baud: int | None, *, env: Mapping[str, str] | None = None, default: int = DEFAULT_BAUD) -> int:
    """``baud`` or ``$ESPBAUD``/``$ESPTOOL_BAUD`` or ``default``; a bad value is an InputError."""
    env = os.environ if env is None else env
    if baud is None:
        for name in BAUD_ENV:
            text = env.get(name)
            if text:
                try:
                    baud = int(text)
                except ValueError:
                    raise InputError(f"not a baud rate: {text!r}", field=name) from None
                break
        else:
            baud = default
    if baud <= 0:
        raise InputError(f"baud rate must be positive, got {baud}", field="baud")
    return baud


def port_for_url(url: str, **settings: Any) -> serial.SerialBase:
    """A closed pyserial port object for ``url`` (like ``serial_for_url(..., do_not_open=True)``).

    ``socket://`` URLs get a :class:`SocketPort`, ``rfc2217://`` URLs an :class:`Rfc2217Port`;
    everything else what pyserial chooses.
    """
    if url.startswith("socket://"):
        settings.pop("exclusive", None)
        port = SocketPort(None, **settings)
        port.port = url
        return port
    if url.startswith("rfc2217://"):
        settings.pop("exclusive", None)
        rport = Rfc2217Port(None, **settings)
        rport.port = url
        return rport
    return serial.serial_for_url(url, do_not_open=True, **settings)


def open_port(selector: str | None = None, baud: int | None = None, *, timeout: float = 0.05,
              write_timeout: float | None = 10.0, exclusive: bool = True,
              ports: Sequence[PortInfo] | None = None,
              env: Mapping[str, str] | None = None) -> serial.SerialBase:
    """Open the port ``selector`` names at ``baud`` (8N1, no flow control), timeouts set.

    ``exclusive`` locks local devices where the OS supports it (not URLs). A selector that
    matches nothing or several ports is an :class:`InputError`; a port that cannot be opened a
    :class:`DeviceError`.
    """
    device = resolve_port(selector, ports=ports, env=env)
    rate = resolve_baud(baud, env=env)
    kwargs: dict[str, Any] = {"baudrate": rate, "timeout": timeout, "write_timeout": write_timeout}
    try:
        port = port_for_url(device, **kwargs)
    except ValueError as exc:
        raise InputError(f"cannot use {device!r}: {exc}", field="port") from None
    except (serial.SerialException, OSError) as exc:
        raise DeviceError(f"cannot open {device}: {exc}") from exc
    if exclusive and not is_url(device) and os.name == "posix":
        try:
            port.exclusive = True
        except (ValueError, AttributeError, serial.SerialException):
            pass
    try:
        port.open()
    except (serial.SerialException, OSError) as exc:
        raise DeviceError(f"cannot open {device}: {exc}") from exc
    except ValueError as exc:
        raise InputError(f"cannot use {device!r}: {exc}", field="port") from None
    return port


__all__ = ["PortInfo", "list_ports", "resolve_port", "resolve_baud", "selector_from_options", "open_port",
           "port_for_url", "SocketPort", "Rfc2217Port",
           "is_url", "DEFAULT_BAUD"]
