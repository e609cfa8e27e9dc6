"""Where the read-only reference material lives: ``shared/`` beside the repository checkout.

CI clones the repository with ``shared/`` next to it; ``ATFAB_SHARED`` overrides the location.
"""

from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("ATFAB_SHARED", REPO.parent / "shared"))
ESP_AT = SHARED / "reference" / "esp-at"
MODULE_CONFIG = ESP_AT / "module_config"
RAW_DATA = ESP_AT / "components" / "customized_partitions" / "raw_data"
