"""A pool of virtual modules started and stopped together (``atfab sim``, station tests)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..core.errors import InputError
from .chip import CHIPS, MB
from .flash import FlashError
from .module import FirmwareFactory, VirtualModule


class ModulePool:
    """``count`` virtual modules named ``module-<i>``; a context manager that starts/stops them.

    Module ``i`` gets the MAC derived from ``f"{seed}:{i}"`` (stable across runs) and, with
    ``state_dir``, the flash file ``<state_dir>/module-<i>.flash``. ``module_kwargs`` go to
    every :class:`VirtualModule` (``chip_revision``, ``faults`` is per module so not here).
    """

    def __init__(self, count: int, *, chip: str = "esp32c2", flash_size: int = 4 * MB,
                 baud: int | None = None, state_dir: str | Path | None = None, seed: object = 0,
                 firmware=None, firmware_factory: FirmwareFactory | None = None,
                 **module_kwargs: Any) -> None:
        if count < 1:
            raise InputError("must be at least 1", field="count")
        if chip not in CHIPS:
            raise InputError(f"no virtual module for chip {chip!r} (available: {', '.join(CHIPS)})",
                             field="chip")
        self.modules: list[VirtualModule] = []
        try:
            for i in range(count):
                self.modules.append(VirtualModule(
                    chip=chip, flash_size=flash_size, seed=f"{seed}:{i}", baud=baud, state_dir=state_dir,
                    name=f"module-{i}", firmware=firmware, firmware_factory=firmware_factory, **module_kwargs))
        except (ValueError, FlashError) as exc:   # revision, flash size, MAC, flash file of another size
            self.stop()
            raise InputError(str(exc), field="module") from None
        self._started = False

    def start(self) -> "ModulePool":
        """Start every module (stops those already started if one fails)."""
        try:
            for m in self.modules:
                m.start()
        except BaseException:
            self.stop()
            raise
        self._started = True
        return self

    def stop(self) -> None:
        """Stop every module."""
        for m in self.modules:
            m.stop()
        self._started = False

    def describe(self) -> list[dict]:
        """One dict per module: index, name, mac, flash_url, at_url, ..."""
        return [{"index": i, **m.describe()} for i, m in enumerate(self.modules)]

    def __len__(self) -> int:
        return len(self.modules)

    def __getitem__(self, i: int) -> VirtualModule:
        return self.modules[i]

    def __iter__(self):
        return iter(self.modules)

    def __enter__(self) -> "ModulePool":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


__all__ = ["ModulePool"]
