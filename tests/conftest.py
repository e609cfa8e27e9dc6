"""Shared fixtures: virtual modules and a hang guard. Keep this file small; append, don't rewrite."""

from __future__ import annotations

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
