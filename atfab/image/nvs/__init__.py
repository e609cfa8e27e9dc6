"""ESP-IDF NVS partitions: binary format, a firmware-like reader and an in-place editor (§8.6)."""

from .format import SYSMFG_TYPE_NAMES, SYSMFG_TYPES, NvsFull
from .reader import NvsEntry, NvsImage, read_nvs

__all__ = ["NvsEntry", "NvsImage", "NvsFull", "read_nvs", "SYSMFG_TYPES", "SYSMFG_TYPE_NAMES", "NvsEditor"]


def __getattr__(name: str):  # lazy: the editor imports the reader
    if name == "NvsEditor":
        from .editor import NvsEditor
        return NvsEditor
    raise AttributeError(name)
