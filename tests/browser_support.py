"""Headless Chromium (Debian's chromium + chromium-driver) driven by Selenium, for the station page tests.

The browser must start: a machine without it fails these tests (``.ci/run`` installs it), it
never skips them. The machine's network is closed: the flags keep Chromium from calling out.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

T = TypeVar("T")

FLAGS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--window-size=1400,1000", "--disable-extensions",
         "--no-default-browser-check", "--metrics-recording-only", "--password-store=basic")


def start_chromium(user_data_dir: Path) -> Any:
    """A Selenium driver of a fresh headless Chromium; fails the test when it cannot start."""
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError as exc:
        pytest.fail(f"selenium is not installed (pip install -e '.[test]'): {exc}")
    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not chromium or not driver:
        pytest.fail("Debian's chromium and chromium-driver are needed: apt-get install -y chromium chromium-driver")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in (*FLAGS, f"--user-data-dir={user_data_dir}"):
        options.add_argument(flag)
    try:
        return webdriver.Chrome(service=Service(executable_path=driver), options=options)
    except Exception as exc:  # noqa: BLE001 - any failure to start is this test's failure
        pytest.fail(f"headless Chromium did not start: {type(exc).__name__}: {' '.join(str(exc).split())[:400]}")


@pytest.fixture
def chromium(tmp_path: Path) -> Iterator[Any]:
    """A started headless Chromium (Selenium WebDriver), quit after the test."""
    browser = start_chromium(tmp_path / "chromium-profile")
    browser.set_page_load_timeout(30)
    try:
        yield browser
    finally:
        browser.quit()


def wait_for(what: str, probe: Callable[[], T], timeout: float = 30.0, interval: float = 0.1) -> T:
    """Poll ``probe`` until it returns something true; fail the test with ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = probe()
        except Exception as exc:  # noqa: BLE001 - e.g. the element is being redrawn
            last = exc
        else:
            if last:
                return last
        time.sleep(interval)
    pytest.fail(f"timed out after {timeout} s waiting for {what} (last: {last!r})")


__all__ = ["chromium", "start_chromium", "wait_for", "FLAGS"]
