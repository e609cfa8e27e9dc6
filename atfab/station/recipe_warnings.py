"""Things ``atfab check`` tells the user about a valid recipe without refusing it (one line each).

* ``factory_param.module_name`` not in the firmware's compiled-in module-name table: ``AT+GMR``
  will print table entry 0 instead (ground truth §2); verification expects what is printed, so the
  unit still passes, but the name the recipe asks for never shows on the module.

(A recipe baud other than the boot rate of a firmware that reads its UART from no factory partition
needs no warning: the station finds the unit at the profile's ``uart_boot_baud`` and follows it to
the recipe's rate after configure, :func:`atfab.station.runner._find_rate`.)
"""

from __future__ import annotations

from ..core.firmware import FirmwareProfile
from ..verify.expected import firmware_of_app, module_name_warning
from .recipe_spec import Recipe


def recipe_firmware(recipe: Recipe) -> FirmwareProfile:
    """The firmware profile of the release the recipe flashes (its synthetic version, else the profile's)."""
    fw = recipe.profile.firmware
    if recipe.firmware.kind == "synthetic" and recipe.firmware.version:
        return firmware_of_app(fw, {"version": recipe.firmware.version})
    return fw


def recipe_warnings(recipe: Recipe) -> list[str]:
    """``FILE: FIELD: warning: what`` lines for ``recipe`` (empty when there is nothing to say)."""
    out: list[str] = []
    if recipe.profile.nonos is None:
        line = module_name_warning(recipe_firmware(recipe), recipe.factory_param.get("module_name"))
        if line is not None:
            out.append(f"{recipe.path}: factory_param.module_name: warning: {line}")
    return out


__all__ = ["recipe_warnings", "recipe_firmware"]
