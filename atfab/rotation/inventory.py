"""The modules ``atfab rotate`` works on: ``--port`` options or an inventory file (CSV or TOML).

CSV (header row required; ``#`` lines and blank lines are skipped)::

    port,mac,serial,name
    /dev/ttyUSB0,24:0a:c4:00:00:01,C2D-000001,bench-1
    socket://127.0.0.1:4001,,,

TOML::

    [[module]]
    port = "/dev/ttyUSB0"        # device, pyserial URL, serial:<usb serial>, location:<usb path>
    mac = "24:0a:c4:00:00:01"    # optional: refuse the unit if its MAC differs
    serial = "C2D-000001"        # optional: refuse the unit if the ledger gives another serial
    name = "bench-1"             # optional: label in the summary

Format reference: docs/rotation.md.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..core.errors import InputError
from ..core.inputs import CSV_LIMIT, parse_toml, read_text
from ..core.mac import normalize_mac
from ..core.tomlfile import check_fields

COLUMNS = ("port", "mac", "serial", "name")


@dataclass(frozen=True)
class RotateTarget:
    """One module to rotate: its port and what it is expected to be."""

    port: str
    mac: str | None = None
    serial: str | None = None
    name: str | None = None

    @property
    def label(self) -> str:
        return self.name or self.port


def targets_from_ports(ports: Iterable[str]) -> list[RotateTarget]:
    """Targets for ``--port`` values (no expectations)."""
    out = [RotateTarget(p.strip()) for p in ports if p and p.strip()]
    _no_duplicates(out, source=None)
    return out


def _no_duplicates(targets: list[RotateTarget], source: str | None) -> None:
    seen: set[str] = set()
    for i, t in enumerate(targets):
        if t.port in seen:
            raise InputError(f"port {t.port!r} is listed twice (module {i + 1})", file=source, field="port")
        seen.add(t.port)


def _target(values: dict[str, Any], *, source: str, where: str | None, line: int | None) -> RotateTarget:
    def name(key: str) -> str:
        return f"{where}.{key}" if where else key

    clean: dict[str, str | None] = {}
    for key in COLUMNS:
        value = values.get(key)
        if value is not None and not isinstance(value, str):
            raise InputError(f"must be text, not {value!r}", file=source, field=name(key), line=line)
        clean[key] = value.strip() if isinstance(value, str) and value.strip() else None
    if clean["port"] is None:
        raise InputError("a module needs a port", file=source, field=name("port"), line=line)
    try:
        mac = normalize_mac(clean["mac"], source=source, field=name("mac")) if clean["mac"] else None
    except InputError as exc:
        raise InputError(exc.message, file=source, field=name("mac"), line=line) from None
    return RotateTarget(clean["port"], mac, clean["serial"], clean["name"])  # type: ignore[arg-type]


def _from_csv(text: str, source: str) -> list[RotateTarget]:
    lines = [(n, ln) for n, ln in enumerate(text.splitlines(), 1) if ln.strip() and not ln.lstrip().startswith("#")]
    if not lines:
        raise InputError("inventory lists no modules", file=source)
    rows = list(csv.reader(io.StringIO("\n".join(ln for _, ln in lines))))
    header = [h.strip().lower() for h in rows[0]]
    for h in header:
        if h not in COLUMNS:
            raise InputError(f"unknown column (known: {', '.join(COLUMNS)})", file=source, field=h or "<empty>",
                             line=lines[0][0])
    if "port" not in header:
        raise InputError("the header row needs a port column", file=source, field="port", line=lines[0][0])
    out = []
    for (line, _), row in zip(lines[1:], rows[1:]):
        if len(row) > len(header):
            raise InputError(f"{len(row)} fields, the header has {len(header)}", file=source, line=line)
        values = dict(zip(header, row))
        out.append(_target(values, source=source, where=None, line=line))
    return out


def _from_toml(text: str, source: str) -> list[RotateTarget]:
    data = parse_toml(text, file=source, field="")
    for key in data:
        if key != "module":
            raise InputError("unknown table (an inventory has [[module]] entries only)", file=source, field=key)
    modules = data.get("module", [])
    if not isinstance(modules, list):
        raise InputError("must be an array of tables [[module]]", file=source, field="module")
    out = []
    for i, m in enumerate(modules):
        where = f"module[{i}]"
        if not isinstance(m, dict):
            raise InputError("must be a table", file=source, field=where)
        check_fields(m, COLUMNS, file=source, where=where)
        out.append(_target(m, source=source, where=where, line=None))
    return out


def load_inventory(path: str | Path) -> list[RotateTarget]:
    """Targets from an inventory file: ``.toml`` as TOML, anything else as CSV."""
    p = Path(path)
    source = str(p)
    if not p.exists() and not p.is_symlink():
        raise InputError("no such inventory file", file=source)
    text = read_text(p, "inventory", limit=CSV_LIMIT, field="")
    targets = _from_toml(text, source) if p.suffix.lower() == ".toml" else _from_csv(text, source)
    if not targets:
        raise InputError("inventory lists no modules", file=source)
    _no_duplicates(targets, source)
    return targets


__all__ = ["RotateTarget", "targets_from_ports", "load_inventory", "COLUMNS"]
