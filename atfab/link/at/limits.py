"""What an ``AT+SYSMFG`` write can carry (ground truth §6), checked before anything is sent.

* strings (type 7) and blobs (type 8): ``<value>`` is the length, **1..8191** bytes
  (``firmware.sysmfg_value_max``), else the module answers ERROR before any prompt; a string
  also fits an NVS string (``firmware.nvs_string_max`` bytes with its NUL) and holds no NUL;
* numbers (types 1–6): the firmware does **not** range-check, it truncates to the type's width
  (u8 300 is stored as 44), so the client refuses a value outside the type's range instead of
  letting the module store another number.
"""

from __future__ import annotations

from pathlib import Path

from ...core.errors import InputError
from ...core.firmware import FirmwareProfile

#: Value ranges of the numeric SYSMFG types (1 u8, 2 i8, 3 u16, 4 i16, 5 u32, 6 i32).
NUMERIC_RANGES: dict[int, tuple[int, int]] = {
    1: (0, 0xFF), 2: (-0x80, 0x7F), 3: (0, 0xFFFF), 4: (-0x8000, 0x7FFF),
    5: (0, 0xFFFFFFFF), 6: (-0x80000000, 0x7FFFFFFF),
}


def sysmfg_length_problem(length: int, firmware: FirmwareProfile) -> str | None:
    """Why a string/blob of ``length`` bytes cannot be written with AT+SYSMFG (None: it can)."""
    top = firmware.sysmfg_value_max
    if 1 <= length <= top:
        return None
    return (f"{length} bytes: AT+SYSMFG writes 1..{top} bytes per string or blob "
            "(the module answers ERROR before the prompt)")


def check_sysmfg_length(length: int, firmware: FirmwareProfile, *, file: str | Path | None = None,
                        field: str | None = None) -> None:
    """:class:`InputError` (one line, naming ``file``/``field``) when ``length`` bytes cannot be written."""
    problem = sysmfg_length_problem(length, firmware)
    if problem is not None:
        raise InputError(problem, file=str(file) if file is not None else None, field=field)


def truncated(value: int, type_number: int) -> int:
    """What the firmware stores for numeric ``value`` of SYSMFG type ``type_number`` (it truncates)."""
    lo, hi = NUMERIC_RANGES[type_number]
    bits = (hi - lo + 1).bit_length() - 1
    v = value & ((1 << bits) - 1)
    return v - (1 << bits) if lo < 0 and v > hi else v


__all__ = ["NUMERIC_RANGES", "sysmfg_length_problem", "check_sysmfg_length", "truncated"]
