"""A stage process leaves its imports, and at the end everything, out of garbage collection; a
user's mistake ends it with one message and no traceback."""

from __future__ import annotations

import gc
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from taloop.core.errors import DEBUG_ENV
from taloop.stages._run import run

from .pipeline import copy_repo


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


def _failing(repo: Path, *cmd: str, debug: bool = False) -> str:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    env["DVC_NO_ANALYTICS"] = "1"
    env.pop(DEBUG_ENV, None)
    if debug:
        env[DEBUG_ENV] = "1"
    result = subprocess.run(cmd, cwd=repo, env=env, capture_output=True, text=True, check=False)
    assert result.returncode != 0, result.stdout + result.stderr
    return result.stdout + result.stderr


def test_bad_params_under_dvc_repro_print_one_message_naming_the_key(tmp_path: Path) -> None:
    repo = copy_repo(tmp_path / "repo", extra={"budget": {"queries": 100_000}})
    out = _failing(repo, "dvc", "repro")
    assert "Traceback" not in out
    assert out.count("budget.queries: 100000 exceeds the train pool") == 1, out
    assert "raise data.train_per_task" in out  # how to fix it
    assert "Traceback" in _failing(repo, "dvc", "repro", debug=True)


@pytest.mark.parametrize("key", ["student", "ta"])
def test_unknown_model_ends_the_run_with_its_key_and_message(tmp_path: Path, key: str) -> None:
    repo = copy_repo(tmp_path / "repo", extra={key: {"model": "no-such-dir/no-such-model"}})
    out = _failing(repo, "dvc", "repro")
    assert "Traceback" not in out
    # the student's tokenizer is needed first (collect_teacher), the TA only by prepare_models
    stage = "collect_teacher" if key == "student" else "prepare_models"
    assert out.count(f"error in {stage}: {key}.model: 'no-such-dir/no-such-model' is none of") == 1, out
