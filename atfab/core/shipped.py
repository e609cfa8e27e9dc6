"""Where the folders atfab ships beside its code (``partitions/``, ``recipes/``) are found.

In a checkout (and an editable install) they are the repository's top-level folders. A wheel
carries copies under ``atfab/_shipped/`` (``setup.py`` puts them there), so a station that ran
``pip install atfab`` finds the same module profiles and recipes.
"""

from __future__ import annotations

from pathlib import Path

#: Folders shipped with atfab (top level of the repository).
SHIPPED = ("partitions", "recipes")
#: Where a built wheel keeps them, relative to the ``atfab`` package.
PACKAGED = "_shipped"

_PACKAGE = Path(__file__).resolve().parents[1]   # the ``atfab`` package


def shipped_dir(name: str, package: Path = _PACKAGE) -> Path:
    """The shipped folder ``name`` (one of :data:`SHIPPED`): the checkout's, else the wheel's copy.

    The checkout's path is returned when neither exists, so an error names the expected place.
    """
    if name not in SHIPPED:
        raise ValueError(f"{name!r} is not a shipped folder ({', '.join(SHIPPED)})")
    checkout = package.parent / name
    if checkout.is_dir():
        return checkout
    packaged = package / PACKAGED / name
    return packaged if packaged.is_dir() else checkout


__all__ = ["shipped_dir", "SHIPPED", "PACKAGED"]
