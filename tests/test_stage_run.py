"""A stage process leaves its imports, and at the end everything, out of garbage collection."""

from __future__ import annotations

import gc
from typing import Any

from taloop.stages._run import run


def test_run_freezes_the_imports_before_main_and_all_after() -> None:
    seen: dict[str, Any] = {}

    def main() -> None:
        seen["frozen_before"] = gc.get_freeze_count()
        seen["made"] = [[] for _ in range(1000)]  # containers the stage makes and keeps

    try:
        run(main)
        frozen_after = gc.get_freeze_count()
    finally:
        gc.unfreeze()
    assert seen["frozen_before"] > 0
    assert frozen_after >= seen["frozen_before"] + 1000
