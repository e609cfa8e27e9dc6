"""ESP-IDF NVS partitions: binary format, a firmware-like reader and an in-place editor (§8.6)."""

from .editor import NvsEditor
from .format import SYSMFG_TYPE_NAMES, SYSMFG_TYPES, NvsFull
from .reader import NvsEntry, NvsImage, read_nvs

__all__ = ["NvsEntry", "NvsImage", "NvsFull", "read_nvs", "SYSMFG_TYPES", "SYSMFG_TYPE_NAMES", "NvsEditor"]

