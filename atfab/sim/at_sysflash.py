"""``AT+SYSFLASH`` of the virtual AT firmware (§4): raw access to the at_customize partitions.

* Query: one ``+SYSFLASH:"<name>",<type>,<subtype>,0x<addr>,0x<size>`` line per entry of the
  secondary table (decimal type/subtype, lower-case hex without padding). No readable
  at_customize table -> ERROR.
* ``=0,"<part>"`` erases the whole partition; ``=0,"<part>",<off>,<len>`` erases a range whose
  offset and length are multiples of 4096 (G1 rule, kept in G3).
* ``=1,"<part>",<off>,<len>``: prompt per ``firmware.sysflash_write_prompt``, exactly ``len``
  raw bytes, programmed into NOR flash *without* erasing (writing over unerased data corrupts,
  like the chip), then OK.
* ``=2,"<part>",<off>,<len>``: ``+SYSFLASH:<len>,<bytes>`` + ``firmware.raw_read_trailer``.
* Unknown partition, ranges outside the partition, a zero length -> ERROR.
Faults: ``error_next_write`` / ``error_after_writes`` answer ERROR after the payload (nothing written);
``corrupt_next_read`` flips one byte of the next read's payload.
"""

from __future__ import annotations

from typing import Any

from .at_command import CommandSpec, Ctx
from .at_parser import Params, exec_fail, invalid


SECTOR = 4096


def corrupt(data: bytes) -> bytes:
    """``data`` with one byte (the middle one) flipped: what ``corrupt_next_read`` does."""
    if not data:
        return data
    buf = bytearray(data)
    buf[len(buf) // 2] ^= 0x01
    return bytes(buf)


def take_fault(faults: Any, name: str) -> bool:
    """Consume a one-shot boolean fault."""
    if getattr(faults, name, False):
        setattr(faults, name, False)
        return True
    return False


def take_write_error(faults: Any) -> bool:
    """Whether this write answers ERROR: ``error_next_write``, or ``error_after_writes`` run out."""
    if take_fault(faults, "error_next_write"):
        return True
    left = getattr(faults, "error_after_writes", None)
    if left is None:
        return False
    if left <= 0:
        faults.error_after_writes = None
        return True
    faults.error_after_writes = left - 1
    return False


def _table(ctx: "Ctx") -> Any:
    table = ctx.boot.secondary
    if table is None:
        raise exec_fail("no at_customize partition table")
    return table


def _query(ctx: "Ctx", p: Params) -> None:
    for part in _table(ctx).entries:
        ctx.info(f'+SYSFLASH:"{part.name}",{part.type},{part.subtype},0x{part.offset:x},0x{part.size:x}')


def _set(ctx: "Ctx", p: Params) -> None:
    p.count(2, 4)
    op = p.int(0, 0, 2)
    name = p.str(1, 16, min_len=1)
    part = _table(ctx).find(name)
    if part is None:
        raise invalid(1, f"no partition {name!r}")
    flash = ctx.host.flash
    if op == 0 and len(p) == 2:
        flash.erase(part.offset, part.size)
        return
    p.count(4)
    off = p.int(2, 0)
    length = p.int(3, 1)
    if off + length > part.size:
        raise invalid(3, "range outside the partition")
    addr = part.offset + off
    if op == 0:
        if off % SECTOR:
            raise invalid(2, "offset not 4 KB aligned")
        if length % SECTOR:
            raise invalid(3, "length not 4 KB aligned")
        flash.erase(addr, length)
    elif op == 1:
        ctx.prompt(ctx.profile.sysflash_write_prompt)
        data = ctx.read_payload(length)
        if take_write_error(ctx.faults):
            raise exec_fail("fault: write refused")
        flash.program(addr, data)
    else:
        data = flash.read(addr, length)
        if take_fault(ctx.faults, "corrupt_next_read"):
            data = corrupt(data)
        ctx.info_raw(f"+SYSFLASH:{length},", data, ctx.profile.raw_read_trailer)


def commands(profile: Any) -> list[CommandSpec]:
    return [CommandSpec("AT+SYSFLASH", query=_query, set=_set)]


__all__ = ["commands", "corrupt", "take_fault", "take_write_error"]
