"""End to end: `dvc repro` of prepare_data + collect_teacher, then a budget experiment on
just that part of the pipeline."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from taloop.params import load_params

from .conftest import REPO
from .pipeline import copy_repo, run

TASKS = set(load_params(REPO / "params.yaml").data.tasks)

TINY = {"data": {"train_per_task": 10}, "budget": {"queries": 8}}


@pytest.mark.slow
def test_repro_then_doubled_budget_buys_only_the_difference(tmp_path: Path) -> None:
    repo = copy_repo(tmp_path / "repo", extra=TINY)
    run(repo, "dvc", "repro", "collect_teacher")

    metrics = json.loads((repo / "metrics/teacher.json").read_text())
    assert (metrics["queries_sent"], metrics["cache_hits"], metrics["replies"]) == (8, 0, 8)
    assert {t: m["replies"] for t, m in metrics["per_task"].items()} == dict.fromkeys(TASKS, 2)
    rows = [json.loads(line) for line in (repo / "data/prepared/test.jsonl").read_text().splitlines()]
    assert len(rows) == 12 and set(rows[0]) == {"id", "task", "question", "gold", "meta"}
    manifest = json.loads((repo / "data/teacher/manifest.json").read_text())
    assert manifest["git_revision"] and manifest["packages"]["dvc"]

    # A partial experiment straight from a fresh clone: no dvc.lock is committed (docs/running.md:
    # "Comparing experiments"), so none can name outputs this clone's cache lacks.
    assert not (REPO / "dvc.lock").exists() or "dvc.lock" not in run(REPO, "git", "ls-files").stdout
    out = run(repo, "dvc", "exp", "run", "-S", "budget.queries=16", "collect_teacher").stdout
    assert "Stage 'prepare_data' didn't change" in out and "Running stage 'collect_teacher'" in out

    doubled = json.loads((repo / "metrics/teacher.json").read_text())
    assert (doubled["cache_hits"], doubled["queries_sent"], doubled["replies"]) == (8, 8, 16)
