"""The live station page in a real browser (headless Chromium via Selenium) against a real station
running virtual modules: slots, a FAIL in red with its failing check, counts equal to the reports,
the operator's buttons, and a page that keeps working across a station restart.

Screenshots go to the test's tmp folder (``station-page*.png``).
"""

from __future__ import annotations

import socket
import threading
from collections import Counter
from pathlib import Path
from typing import Any

from selenium.webdriver.common.by import By

from atfab.station.events import STATION, Event, EventBus
from atfab.station.recipe import load_recipe
from atfab.station.report import list_reports
from atfab.station.station import Station, StationSummary, parse_port
from tests.browser_support import chromium, wait_for  # noqa: F401 - the fixture
from tests.station_support import load_ca, write_recipe

T = 90


def recipe_failing(tmp: Path, macs: list[str], failing: int) -> Any:
    """The default recipe, with ``verify.mac_prefixes`` allowing every MAC but ``macs[failing]``:
    that unit FAILs its ``mac.prefix`` check (a module from the wrong reel)."""
    path = write_recipe(tmp)
    allowed = ", ".join(f'"{m}"' for i, m in enumerate(macs) if i != failing)
    path.write_text(path.read_text().replace("[verify]\n", f"[verify]\nmac_prefixes = [{allowed}]\n", 1))
    return load_recipe(path, workdir=tmp)


class Running:
    """A station run in a thread; ``url`` is its page (from the ``page`` event)."""

    def __init__(self, station: Station, **run: Any) -> None:
        self.station = station
        self.summary: StationSummary | None = None
        self.error: BaseException | None = None
        self._url = threading.Event()
        self.url = ""
        station.bus.subscribe(self._on_event)
        self.thread = threading.Thread(target=self._run, kwargs=run, daemon=True)
        self.thread.start()
        assert self._url.wait(T), "the station page was not announced"

    def _on_event(self, ev: Event) -> None:
        if ev.port == STATION and ev.step == "page":
            self.url = ev.detail or ""
            self._url.set()

    def _run(self, **run: Any) -> None:
        try:
            self.summary = self.station.run(**run)
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            self.error = exc
            self._url.set()

    def join(self) -> StationSummary:
        self.thread.join(T)
        assert not self.thread.is_alive(), "the station did not stop"
        if self.error is not None:
            raise self.error
        assert self.summary is not None
        return self.summary


def slot(browser: Any, label: str) -> Any:
    return browser.find_element(By.ID, f"slot-{label}")


def counts_on_page(browser: Any) -> dict[str, int]:
    return {k: int(browser.find_element(By.ID, f"count-{k}").text) for k in ("PASS", "FAIL", "ERROR", "ABORTED")}


def test_page_shows_the_slots_a_fail_in_red_and_the_counts_of_the_reports(chromium, module_pool, tmp_path: Path) -> None:
    pool = module_pool(4)
    macs = [m.mac.hex(":") for m in pool]
    recipe = recipe_failing(tmp_path, macs, failing=2)
    ports = [parse_port(f"bay{i}={m.flash_url},{m.at_url}") for i, m in enumerate(pool)]
    station = Station(recipe, ports, ca=load_ca(tmp_path), bus=EventBus(), ui="http://127.0.0.1:0", station_id="line-7")
    run = Running(station, loop=True, poll_s=0.2)
    assert run.url.startswith("http://127.0.0.1:") and not run.url.endswith(":0/")
    chromium.get(run.url)
    wait_for("the four slots", lambda: len(chromium.find_elements(By.CSS_SELECTOR, "#slots .slot")) == 4)
    wait_for("every unit's outcome", lambda: all(slot(chromium, f"bay{i}").get_attribute("data-outcome")
                                                  for i in range(4)))
    wait_for("the counts", lambda: counts_on_page(chromium) == {"PASS": 3, "FAIL": 1, "ERROR": 0, "ABORTED": 0})
    chromium.save_screenshot(str(tmp_path / "station-page.png"))

    bad = slot(chromium, "bay2")
    assert "outcome-FAIL" in bad.get_attribute("class")
    assert bad.find_element(By.CLASS_NAME, "outcome").text == "FAIL"
    assert bad.value_of_css_property("background-color") == "rgba(255, 235, 233, 1)"      # the slot is red
    assert bad.find_element(By.CLASS_NAME, "outcome").value_of_css_property("color") == "rgba(207, 34, 46, 1)"
    check = bad.find_element(By.CLASS_NAME, "check").text
    assert check.startswith("mac.prefix: expected [") and f"measured {macs[2]}" in check
    assert macs[2] in bad.find_element(By.CLASS_NAME, "unit").text
    for i in (0, 1, 3):
        good = slot(chromium, f"bay{i}")
        assert good.find_element(By.CLASS_NAME, "outcome").text == "PASS"
        assert good.find_element(By.CLASS_NAME, "label").text == f"bay{i}"
        assert "C2D-" in good.find_element(By.CLASS_NAME, "unit").text
        assert good.find_element(By.CLASS_NAME, "outcome").value_of_css_property("color") == "rgba(26, 127, 55, 1)"
    row = chromium.find_element(By.CSS_SELECTOR, "#failures tbody tr").text
    assert "bay2" in row and "FAIL" in row and "mac.prefix" in row and macs[2] in row

    on_disk = Counter(e.report.outcome for e in list_reports(recipe.report.dir))   # the counts are the reports'
    assert counts_on_page(chromium) == {k: on_disk.get(k, 0) for k in ("PASS", "FAIL", "ERROR", "ABORTED")}
    assert "PRIVATE KEY" not in chromium.page_source

    slot(chromium, "bay1").find_element(By.CSS_SELECTOR, "button.toggle").click()       # the operator pauses bay1
    wait_for("bay1 paused", lambda: station.paused == {"bay1"})
    wait_for("the page to say so", lambda: slot(chromium, "bay1").find_element(By.CLASS_NAME, "step").text == "paused")
    chromium.find_element(By.ID, "stop").click()                                         # stop after the current units
    summary = run.join()
    assert sorted(r.outcome for r in summary.finals) == ["FAIL", "PASS", "PASS", "PASS"] and not summary.interrupted
    wait_for("the page to see the station gone",
             lambda: chromium.find_element(By.ID, "run").text in ("ended", "disconnected"))
    assert counts_on_page(chromium)["PASS"] == 3            # the last state stays on the page
    chromium.save_screenshot(str(tmp_path / "station-page-ended.png"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_page_keeps_working_when_the_station_restarts(chromium, module_pool, tmp_path: Path) -> None:
    pool = module_pool(1)
    m = pool[0]
    url = f"http://127.0.0.1:{_free_port()}"
    recipe = load_recipe(write_recipe(tmp_path), workdir=tmp_path)
    ports = [parse_port(f"bay0={m.flash_url},{m.at_url}")]
    first = Running(Station(recipe, ports, ca=load_ca(tmp_path), ui=url), loop=True, poll_s=0.2)
    chromium.get(first.url)
    wait_for("the first run's PASS", lambda: counts_on_page(chromium)["PASS"] == 1)
    first.station.stop(abort=False)
    first.join()
    wait_for("the page to notice", lambda: chromium.find_element(By.ID, "banner").is_displayed())

    second = Running(Station(recipe, ports, ca=load_ca(tmp_path), ui=url, station_id="restarted"), loop=True,
                     poll_s=0.2)                     # same address, a new run with a new token
    wait_for("the page to reconnect", lambda: chromium.find_element(By.ID, "station").text == "restarted")
    wait_for("the new run's state", lambda: slot(chromium, "bay0").get_attribute("data-outcome") == "PASS"
             and not chromium.find_element(By.ID, "banner").is_displayed())
    slot(chromium, "bay0").find_element(By.CSS_SELECTOR, "button.toggle").click()    # the refreshed token works
    wait_for("the restarted station to pause bay0", lambda: second.station.paused == {"bay0"})
    chromium.save_screenshot(str(tmp_path / "station-page-restarted.png"))
    second.station.stop(abort=False)
    second.join()
