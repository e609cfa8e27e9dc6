"""Asking the operator for a passphrase, only where there is an operator to ask."""

from __future__ import annotations

import sys
from collections.abc import Callable

import click

from ..core.errors import InputError


def passphrase_prompt(text: str, *, confirm: bool = False) -> Callable[[], str] | None:
    """A callable that asks for a passphrase on the terminal, or None when stdin is no terminal
    (a service, a pipe): then the library's "no passphrase: set $VAR" error is the one line the
    user sees, never a ``GetPassWarning`` or click's "Aborted!"."""
    if not sys.stdin.isatty():
        return None

    def ask() -> str:
        try:
            return click.prompt(text, hide_input=True, confirmation_prompt=confirm, default="", show_default=False)
        except (click.Abort, EOFError):
            raise InputError("no passphrase given (the prompt was closed)", field="passphrase") from None

    return ask
