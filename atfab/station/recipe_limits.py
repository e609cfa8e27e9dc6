"""``atfab check``: every PKI object of a recipe fits one ``AT+SYSMFG`` write (1..8191 bytes,
ground truth §6). esp-at's NVS build takes larger blobs, but such a unit could never have that
certificate or CA rotated or customised over AT again, so the recipe is refused up front."""

from __future__ import annotations

from cryptography.hazmat.primitives import serialization

from ..image.profiles import ModuleProfile
from ..link.at.limits import sysmfg_length_problem
from ..pki.slots import SlotPlan
from .recipe_checks import PKI_SIZE_ESTIMATE, Context
from .recipe_spec import PkiSpec


def sysmfg_sizes(ctx: Context, profile: ModuleProfile, pki: PkiSpec, plan: SlotPlan) -> None:
    """A problem line per static file, and per unit item of the estimated size, over the limit."""
    fw = profile.firmware
    if profile.mfg_nvs is None or not fw.has_command("AT+SYSMFG"):
        return
    for (ns, index), item in plan.static.items():
        problem = sysmfg_length_problem(len(item.data), fw)
        if problem is not None:
            ctx.bad("pki.slot", f"{ns}.{index} ({item.name}) is {problem}",
                    file=item.path or plan.origins.get((ns, index)) or None)
    cert_n, key_n = PKI_SIZE_ESTIMATE.get(pki.identity.key_type, PKI_SIZE_ESTIMATE["rsa-4096"])
    chain = sum(len(c.public_bytes(serialization.Encoding.PEM)) for c in plan.factory_ca if c.issuer != c.subject)
    for ns, index, kind in plan.unit_items:
        size = cert_n + chain if kind == "cert" else key_n
        problem = sysmfg_length_problem(size, fw)
        if problem is not None:
            ctx.bad("pki.slot", f"the unit {kind} {ns}.{index} (about {size} bytes with the CA chain) would be {problem}")


__all__ = ["sysmfg_sizes"]
