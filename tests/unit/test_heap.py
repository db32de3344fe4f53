"""The collector settings `exchange serve`'s workers run with (exchange.heap)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from exchange.heap import FULL_COLLECTION_THRESHOLD, MIDDLE_COLLECTION_THRESHOLD, YOUNG_COLLECTION_THRESHOLD

#: Run in a process of its own: freezing this test process's heap would keep its garbage.
WORKER = """
import gc, json
before = (gc.get_freeze_count(), gc.get_threshold())
from exchange.app import create_app_from_environment
create_app_from_environment()
print(json.dumps({"before": before, "after": (gc.get_freeze_count(), gc.get_threshold())}))
"""


def test_the_serving_factory_freezes_the_start_up_heap_and_spaces_collections_out(tmp_path: Path) -> None:
    environment = {**os.environ, "EXCHANGE_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'exchange.db'}"}
    done = subprocess.run(
        [sys.executable, "-c", WORKER], env=environment, capture_output=True, text=True, check=True, timeout=120
    )
    seen = json.loads(done.stdout.splitlines()[-1])
    assert seen["before"] == [0, [700, 10, 10]]
    frozen, thresholds = seen["after"]
    assert frozen > 10_000  # the modules, the schema and the app, out of every later collection
    assert thresholds == [YOUNG_COLLECTION_THRESHOLD, MIDDLE_COLLECTION_THRESHOLD, FULL_COLLECTION_THRESHOLD]
