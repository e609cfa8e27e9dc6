"""``AT+SYSFLASH`` of the virtual AT firmware (§4): raw access to the at_customize partitions.

* Query: one ``+SYSFLASH:"<name>",<type>,<subtype>,0x<addr>,0x<size>`` line per entry of the
  secondary table (decimal type/subtype, lower-case hex without padding). No readable
  at_customize table -> ERROR.
* Set (ground truth §5): op 0..2 (else ERROR, no code); lookup by name only; unknown
  partition -> ``ERR CODE:0x010a0000``. ``=0,"<part>"`` erases the whole partition;
  ``=0,"<part>",<off>,<len>``: offset and length multiples of 4096 (``0x010a0001``), no bounds
  check (beyond the chip: ``0x010a0002``).
* ``=1,"<part>",<off>,<len>``: a range beyond the partition prints ``0x010a0001`` and carries
  on; the prompt is the single byte ``>`` (``firmware.sysflash_prompt``); exactly ``len`` raw
  bytes, programmed into NOR flash *without* erasing (writing over unerased data corrupts,
  like the chip); the out-of-partition write then fails (``0x010a0003``).
* ``=2,"<part>",<off>,<len>``: ``+SYSFLASH:<len>,<bytes>`` then the result code at once (no CR
  LF, ``firmware.sysflash_read_trailer``); ``len`` 0 is allowed.
Faults: ``error_next_write`` / ``error_after_writes`` answer ERROR after the payload (nothing written);
``corrupt_next_read`` flips one byte of the next read's payload; ``power_loss_after_flash_ops`` /
``drop_after_flash_ops`` cut power / the AT link once N erases+writes were carried out (before the
reply); ``drop_in_flash_write`` drops the link halfway through a write's payload. A write whose link
drops before its payload is complete keeps waiting: the next link's first bytes complete it (a UART
has no connections), then it is written and answered; a power loss ends it, nothing written.
"""

from __future__ import annotations

from typing import Any

from .at_command import CommandSpec, Ctx, StopServing
from .link import LinkClosed
from .at_parser import SUB_CMD_EXEC_FAIL, Params, err_code, exec_fail, invalid


SECTOR = 4096


def corrupt(data: bytes, shift: int = 0) -> bytes:
    """``data`` with one byte (the middle one, ``shift`` further on) flipped: what ``corrupt_next_read`` does."""
    if not data:
        return data
    buf = bytearray(data)
    buf[(len(buf) // 2 + shift) % len(buf)] ^= 0x01
    return bytes(buf)


def corrupt_read(faults: Any, data: bytes) -> bytes:
    """``data`` as the next raw read returns it under ``corrupt_next_read`` / ``corrupt_next_reads``."""
    if take_fault(faults, "corrupt_next_read"):
        return corrupt(data)
    left = getattr(faults, "corrupt_next_reads", 0)
    if left > 0:
        faults.corrupt_next_reads = left - 1
        return corrupt(data, left)
    return data


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


def countdown(faults: Any, name: str) -> bool:
    """Count one event for the N-th-from-now fault ``name``; True (and cleared) when it fires."""
    left = getattr(faults, name, None)
    if left is None:
        return False
    if left > 1:
        setattr(faults, name, left - 1)
        return False
    setattr(faults, name, None)
    return True


def _carried_out(ctx: "Ctx") -> None:
    """An erase or write reached the flash: power loss / link drop faults that wait for it."""
    if countdown(ctx.faults, "power_loss_after_flash_ops"):
        ctx.host.power_loss()
        raise StopServing("state")
    if countdown(ctx.faults, "drop_after_flash_ops"):
        ctx.link.close()
        raise LinkClosed("fault: link dropped after an AT+SYSFLASH operation")


def _table(ctx: "Ctx") -> Any:
    table = ctx.boot.secondary
    if table is None:
        raise exec_fail("no at_customize partition table")
    return table


def _query(ctx: "Ctx", p: Params) -> None:
    for part in _table(ctx).entries:
        ctx.info(f'+SYSFLASH:"{part.name}",{part.type},{part.subtype},0x{part.offset:x},0x{part.size:x}')


def _set(ctx: "Ctx", p: Params) -> None:
    op = p.int(0)
    if not 0 <= op <= 2:
        raise invalid(0, "operation")
    name = p.str(1)
    part = _table(ctx).find(name)
    if part is not None and ctx.profile.sysflash_lookup == "type_0x40" and part.type != 0x40:
        part = None                      # v1.0..v2.1 look up type-0x40 entries only (fatfs is not found)
    if part is None:
        raise exec_fail(f"no partition {name!r}", ext=0)
    flash = ctx.host.flash
    if op == 0 and len(p) == 2:
        flash.erase(part.offset, part.size)
        _carried_out(ctx)
        return
    p.count(4)
    off = p.int(2)
    length = p.int(3)
    if off < 0 or length < 0:
        raise invalid(2, "negative offset or length")
    addr = part.offset + off
    if op == 0:
        if off % SECTOR or length % SECTOR:
            raise exec_fail("offset/length not 4 KB aligned", ext=1)
        if addr + length > flash.size:
            raise exec_fail("erase outside the flash", ext=2)
        flash.erase(addr, length)
        _carried_out(ctx)
        return
    inside = off + length <= part.size
    if not inside:                     # printed, then the core carries on (ground truth §5)
        ctx.err_code(err_code(SUB_CMD_EXEC_FAIL, 1))
    if op == 1:
        ctx.send(ctx.profile.sysflash_prompt)

        def write(c: "Ctx", data: bytes) -> None:
            if take_write_error(c.faults) or not inside:
                raise exec_fail("write refused", ext=3)
            c.host.flash.program(addr, data)
            _carried_out(c)

        cut = length // 2 if length >= 2 and countdown(ctx.faults, "drop_in_flash_write") else None
        write(ctx, ctx.payload_across_links(length, write, cut_at=cut))
        return
    if not inside:
        raise exec_fail("read outside the partition", ext=2)
    data = corrupt_read(ctx.faults, flash.read(addr, length))
    ctx.info_raw(f"+SYSFLASH:{length},", data, ctx.profile.sysflash_read_trailer)


def commands(profile: Any) -> list[CommandSpec]:
    return [CommandSpec("AT+SYSFLASH", query=_query, set=_set)]


__all__ = ["commands", "corrupt", "countdown", "take_fault", "take_write_error"]
