"""Shared fixtures: virtual modules and a hang guard. Keep this file small; append, don't rewrite."""

from __future__ import annotations

import os
import threading
from typing import Any, Callable, TypeVar

import pytest

from atfab.sim.module import VirtualModule
from atfab.sim.server import ModulePool

T = TypeVar("T")


def run_with_timeout(fn: Callable[..., T], seconds: float, *args: Any, **kwargs: Any) -> T:
    """Run ``fn(*args, **kwargs)`` in a thread; fail the test if it has not returned in time.

    Every esptool call and socket conversation in tests goes through this, so a simulator that
    stops answering fails the test instead of blocking the suite. Exceptions are re-raised.
    """
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = fn(*args, **kwargs)
        except BaseException as exc:  # noqa: BLE001 - handed to the test thread
            box["error"] = exc

    t = threading.Thread(target=target, daemon=True, name=f"run_with_timeout:{getattr(fn, '__name__', fn)}")
    t.start()
    t.join(seconds)
    if t.is_alive():
        pytest.fail(f"{getattr(fn, '__name__', fn)} did not finish within {seconds} s (hang?)")
    if "error" in box:
        raise box["error"]
    return box["value"]


@pytest.fixture(autouse=True)
def _own_state_home(tmp_path_factory, monkeypatch):
    """Host-side state (``atfab customize --port``'s block journal defaults to $XDG_STATE_HOME) stays in a
    folder of its own per test: never the user's home, never shared by tests whose virtual modules have
    the same MAC."""
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path_factory.mktemp("state")))


@pytest.fixture
def virtual_module():
    """One started :class:`VirtualModule` (unpaced, default AT firmware), stopped after the test."""
    module = VirtualModule().start()
    try:
        yield module
    finally:
        module.stop()


@pytest.fixture
def module_pool():
    """Factory ``module_pool(count, **kwargs) -> ModulePool`` (started); all stopped after the test."""
    pools: list[ModulePool] = []

    def make(count: int = 1, **kwargs: Any) -> ModulePool:
        pool = ModulePool(count, **kwargs).start()
        pools.append(pool)
        return pool

    try:
        yield make
    finally:
        for pool in pools:
            pool.stop()


# --------------------------------------------------- pytest-xdist: how many workers `-n auto` starts

def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    """Cores + 1: most tests wait on paced virtual UARTs and timeouts rather than compute
    (measured on 2 cores: 1 process 368 s, 3 workers 161 s for the same 1767 tests)."""
    return (os.cpu_count() or 1) + 1


# --------------------------------------------------- CI: a skipped test is a failed session
# (tests/services.py: missing services, tools or data skip locally and fail under ATFAB_CI=1)

_SKIPPED: list[str] = []


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.skipped and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        _SKIPPED.append(f"{report.nodeid}: {str(reason).removeprefix('Skipped: ')}")


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    from tests.services import CI_ENV, in_ci

    if in_ci() and _SKIPPED and session.exitstatus == 0:
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.ensure_newline()
            reporter.write_line(f"{CI_ENV}=1: {len(_SKIPPED)} test(s) skipped, CI fails on any skip:", red=True)
            for line in _SKIPPED:
                reporter.write_line(f"  {line}", red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
