"""The ``atfab`` command line: parses arguments, calls the library, maps errors to exit codes.

Commands live in :mod:`atfab.commands`; this module only assembles them and owns the one place
where an exception becomes a message and an exit code.
"""

from __future__ import annotations

import importlib
import sys

import click

from . import __version__
from .core.errors import AtfabError, exit_code_for

#: (module under atfab.commands, attribute) of every command, in help order.
COMMANDS: list[tuple[str, str]] = [
    ("build", "build"),
    ("inspect", "inspect"),
    ("sim", "sim"),
    ("device", "ports"),
    ("device", "at"),
    ("flash", "flash"),
    ("flash", "verify"),
    ("pki", "ca"),
    ("pki", "gatt"),
    ("station", "check"),
    ("station", "run"),
    ("station", "demo"),
    ("station", "report"),
    ("station", "ledger"),
    ("rotate", "rotate"),
    ("customize", "customize"),
]


class AtfabGroup(click.Group):
    """Root group: turns atfab's typed errors into one line on stderr and an exit code."""

    def invoke(self, ctx: click.Context):  # type: ignore[override]
        try:
            return super().invoke(ctx)
        except AtfabError as exc:
            click.echo(f"atfab: error: {exc}", err=True)
            ctx.exit(exit_code_for(exc))
        except KeyboardInterrupt:
            click.echo("atfab: aborted", err=True)
            ctx.exit(exit_code_for(KeyboardInterrupt()))


@click.group(cls=AtfabGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="atfab")
def main() -> None:
    """Provision and manufacture Espressif modules running ESP-AT firmware."""


def _register() -> None:
    for module_name, attr in COMMANDS:
        module = importlib.import_module(f"atfab.commands.{module_name}")
        main.add_command(getattr(module, attr))


_register()

if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
