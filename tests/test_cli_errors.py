"""The one error → exit-code mapping of the CLI (atfab.cli, atfab.core.errors)."""

from __future__ import annotations

from collections.abc import Iterator

import click
import pytest
from click.testing import CliRunner

from atfab.cli import main
from atfab.core.errors import DeviceError, InputError, exit_code_for_outcomes


@pytest.fixture
def failing() -> Iterator[None]:
    @click.command("boom")
    @click.argument("kind")
    def boom(kind: str) -> None:
        raise {"input": InputError("bad value", file="x.toml", field="a.b"), "device": DeviceError("link lost"),
               "bug": ValueError("not\nexpected")}[kind]

    main.add_command(boom)
    try:
        yield
    finally:
        main.commands.pop("boom")


@pytest.mark.parametrize("kind, code, line", [
    ("input", 2, "atfab: error: x.toml: a.b: bad value"),
    ("device", 3, "atfab: error: link lost"),
    ("bug", 3, "atfab: error: unexpected ValueError: not expected (atfab --debug shows the traceback)"),
])
def test_errors_are_one_line_and_an_exit_code(failing: None, kind: str, code: int, line: str):
    res = CliRunner().invoke(main, ["boom", kind])
    assert res.exit_code == code
    assert res.stderr.splitlines() == [line] and "Traceback" not in res.output


def test_debug_shows_the_traceback_of_an_unexpected_error(failing: None):
    res = CliRunner().invoke(main, ["--debug", "boom", "bug"])
    assert res.exit_code == 3
    assert "Traceback" in res.stderr and res.stderr.splitlines()[-1] == "atfab: error: unexpected ValueError: not expected"


def test_usage_errors_stay_clicks():
    assert CliRunner().invoke(main, ["no-such-command"]).exit_code == 2


@pytest.mark.parametrize("counts, interrupted, code", [
    ({"PASS": 3}, False, 0), ({"PASS": 1, "FAIL": 1}, False, 1), ({"FAIL": 1, "ERROR": 1}, False, 3),
    ({"ERROR": 1, "ABORTED": 1}, False, 130), ({"PASS": 2}, True, 130), ({}, False, 0),
])
def test_outcome_counts_to_exit_code(counts: dict[str, int], interrupted: bool, code: int):
    assert exit_code_for_outcomes(counts, interrupted=interrupted) == code
