"""Where the tests' reference data lives: inside the checkout (``tests/data/``), never beside it.

``ESP_AT`` mirrors the esp-at repository's paths for the committed copies (``tests/data/NOTICE``);
``RAW_DATA`` is a full esp-at ``raw_data`` folder whose certificates and keys are made at test
time (:mod:`tests.esp_at_data`), so no private key is committed.
"""

from __future__ import annotations

from pathlib import Path

from tests.esp_at_data import DATA, ESP_AT, raw_data_dir

REPO = Path(__file__).resolve().parents[1]
MODULE_CONFIG = ESP_AT / "module_config"
RAW_DATA = raw_data_dir()

__all__ = ["REPO", "DATA", "ESP_AT", "MODULE_CONFIG", "RAW_DATA"]
