"""Certificate rotation on deployed modules over AT+SYSMFG (``atfab rotate``, docs/rotation.md).

:mod:`~atfab.rotation.fleet` runs a fleet, :mod:`~atfab.rotation.device` reads and writes slot
items, :mod:`~atfab.rotation.journal` resolves interrupted rotations from the ledger journal,
:mod:`~atfab.rotation.inventory` reads inventory files, :mod:`~atfab.rotation.results` holds
the result types.
"""

from .fleet import ROTATION_SCHEMA, RotateOptions, plan_rotation, rotate_fleet
from .results import FleetResult, ModuleResult, SlotResult

__all__ = ["ROTATION_SCHEMA", "RotateOptions", "plan_rotation", "rotate_fleet", "FleetResult", "ModuleResult",
           "SlotResult"]
