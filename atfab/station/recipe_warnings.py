"""Things ``atfab check`` tells the user about a valid recipe without refusing it (one line each).

* ``factory_param.module_name`` not in the firmware's compiled-in module-name table: ``AT+GMR``
  will print table entry 0 instead (ground truth §2); verification expects what is printed, so the
  unit still passes, but the name the recipe asks for never shows on the module.
* ``factory_param.uart_baudrate`` other than the firmware's boot default on a module whose firmware
  does not take its baud from a factory partition (G0 NONOS AT, esp32-at v1.0/v1.1): the station
  opens the AT port at the recipe's baud from the start, but a fresh unit answers at the default
  until the configure step stores the recipe's, so on a real line its first boot is not heard.
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
    baud = recipe.factory_param.get("uart_baudrate")
    default = 115200
    boots_at_default = recipe.profile.nonos is not None or (recipe.profile.legacy and
                                                            not recipe.profile.firmware.factory_param_layout)
    if boots_at_default and isinstance(baud, int) and baud != default:
        out.append(f"{recipe.path}: factory_param.uart_baudrate: warning: the station listens at {baud} baud, but a "
                   f"fresh {recipe.profile.name} unit answers at {default} until the configure step stores {baud} "
                   "(its firmware reads no factory partition): on a real line its first boot is not heard")
    return out


__all__ = ["recipe_warnings", "recipe_firmware"]
