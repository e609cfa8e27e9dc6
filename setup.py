"""Build hook: a wheel carries the top-level ``partitions/`` and ``recipes/`` folders.

They are copied to ``atfab/_shipped/`` in the build (``atfab.core.shipped`` finds them there), so a
non-editable install has the module profiles and recipes a checkout has. All other metadata is
in pyproject.toml.
"""

import runpy
import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
_SHIPPED = runpy.run_path(str(ROOT / "atfab" / "core" / "shipped.py"))   # the one list of folders and their place


class BuildPyWithShipped(build_py):
    """``build_py`` that also copies the shipped folders into the built package."""

    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):
            return   # an editable install reads them from the checkout
        for name in _SHIPPED["SHIPPED"]:
            target = Path(self.build_lib) / "atfab" / _SHIPPED["PACKAGED"] / name
            shutil.rmtree(target, ignore_errors=True)
            shutil.copytree(ROOT / name, target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))


setup(cmdclass={"build_py": BuildPyWithShipped})
