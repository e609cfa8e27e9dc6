"""The line rehearsal (bench/line_test.py), shortened: 3 station processes × 2 ports on one
PostgreSQL ledger (a schema of its own), units swapped and pulled mid-attempt, one station
``kill -9``ed and restarted, the server cutting every station's connection mid-run, every
sealed report published to an MQTT topic of the machine's Mosquitto; every problem count of the
line's books must be 0 (no sealed report the MES did not get). The full run (3 × 8 ports, a real server
restart) is ``python bench/line_test.py``; its figures are in the ledger notes."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.line_test import Line, shared_postgres
from tests.services import require_mqtt, require_postgres


@pytest.mark.slow
def test_three_stations_on_one_postgresql_ledger(tmp_path: Path) -> None:
    with shared_postgres(require_postgres()) as pg:
        result = Line(tmp_path / "line", pg, stations=3, ports=2, seconds=15, swap_s="1.5,4", mqtt=require_mqtt()).run()
    text = "\n".join(result.lines())
    assert result.ok, text
    assert result.figures["attempts"] > 6, text
    assert result.problems["sealed reports the MES never got"] == 0, text
    assert any("kill -9" in e for e in result.events) and any("PostgreSQL" in e for e in result.events), text
