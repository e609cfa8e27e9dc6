"""The ``atfab`` command line: parses arguments, calls the library, maps errors to exit codes.

Commands live in :mod:`atfab.commands`; this module only assembles them and owns the one place
where an exception becomes a message and an exit code (the codes: :mod:`atfab.core.errors`).
"""

from __future__ import annotations

import importlib
import sys
import traceback
from typing import NoReturn

import click

from . import __version__
from .core.errors import EXIT_INPUT, AtfabError, exit_code_for

#: command name -> (module under atfab.commands, attribute); help lists them by name. A command's module is
#: imported only when that command runs (or ``--help`` lists it): ``atfab batch`` never loads the
#: simulator, ``atfab --version`` loads no command at all.
COMMANDS: dict[str, tuple[str, str]] = {
    "build": ("build", "build"),
    "inspect": ("inspect", "inspect"),
    "sim": ("sim", "sim"),
    "ports": ("device", "ports"),
    "at": ("device", "at"),
    "flash": ("flash", "flash"),
    "verify": ("flash", "verify"),
    "ca": ("pki", "ca"),
    "gatt": ("gatt", "gatt"),
    "check": ("station", "check"),
    "run": ("station", "run"),
    "demo": ("station", "demo"),
    "batch": ("batch", "batch"),
    "report": ("station", "report"),
    "ledger": ("station", "ledger"),
    "rotate": ("rotate", "rotate"),
    "customize": ("customize", "customize"),
}


class AtfabGroup(click.Group):
    """Root group: every error becomes one line on stderr and an exit code.

    atfab's typed errors carry their code; click's usage errors (a bad option, a missing
    argument, an unknown command, a value click refuses) are bad input: one line, exit 2; Ctrl-C
    is 130; anything else is an unexpected error (exit 3, the station or the tool broke), with its
    traceback only under ``atfab --debug``. click's own exits (``--help``, ``--version``) pass through.
    Commands are loaded lazily from :data:`COMMANDS` (click's documented lazy-group pattern).
    """

    def list_commands(self, ctx: click.Context) -> list[str]:  # type: ignore[override]
        return sorted({*COMMANDS, *self.commands})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:  # type: ignore[override]
        if cmd_name not in COMMANDS:
            return super().get_command(ctx, cmd_name)   # one added with add_command
        module_name, attr = COMMANDS[cmd_name]
        command = getattr(importlib.import_module(f"atfab.commands.{module_name}"), attr)
        if command.name != cmd_name:  # pragma: no cover - a wrong COMMANDS row
            raise RuntimeError(f"atfab.commands.{module_name}.{attr} is {command.name!r}, listed as {cmd_name!r}")
        return command

    def make_context(self, info_name, args, parent=None, **extra):  # type: ignore[override]
        try:
            return super().make_context(info_name, args, parent=parent, **extra)
        except click.UsageError as exc:          # atfab's own options and the command name
            _usage_error(exc)

    def invoke(self, ctx: click.Context):  # type: ignore[override]
        try:
            return super().invoke(ctx)
        except click.UsageError as exc:          # a command's options and arguments
            _usage_error(exc)
        except click.Abort:
            click.echo("atfab: error: aborted (no input)", err=True)
            ctx.exit(EXIT_INPUT)
        except AtfabError as exc:
            click.echo(f"atfab: error: {exc}", err=True)
            ctx.exit(exit_code_for(exc))
        except KeyboardInterrupt:
            click.echo("atfab: aborted", err=True)
            ctx.exit(exit_code_for(KeyboardInterrupt()))
        except (click.exceptions.Exit, click.ClickException):
            raise
        except Exception as exc:  # noqa: BLE001 - the one place an unexpected error is reported
            if ctx.params.get("debug"):
                traceback.print_exc(file=sys.stderr)
            text = " ".join(str(exc).split())
            hint = "" if ctx.params.get("debug") else " (atfab --debug shows the traceback)"
            click.echo(f"atfab: error: unexpected {type(exc).__name__}{': ' + text if text else ''}{hint}", err=True)
            ctx.exit(exit_code_for(exc))


def _usage_error(exc: click.UsageError) -> NoReturn:
    """One line for a usage error (``atfab: error: <command>: <what>``), then exit 2; a group
    called without a command shows its help, as click does."""
    if isinstance(exc, click.exceptions.NoArgsIsHelpError):
        raise exc
    command = exc.ctx.command_path if exc.ctx is not None else "atfab"
    text = " ".join(exc.format_message().split())
    click.echo(f"atfab: error: {command}: {text} (see {command} --help)", err=True)
    raise click.exceptions.Exit(EXIT_INPUT)


@click.group(cls=AtfabGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--debug", is_flag=True, help="Show the traceback of an unexpected error.")
@click.version_option(__version__, prog_name="atfab")
def main(debug: bool) -> None:
    """Provision and manufacture Espressif modules running ESP-AT firmware."""


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
