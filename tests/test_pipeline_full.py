"""End to end on tiny in-process models: every stage, every default variant, then a
stage2-only experiment that must not rerun anything upstream of train_stage2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from taloop.config import load_params

from .conftest import REPO
from .pipeline import copy_repo, run

TASKS = set(load_params(REPO / "params.yaml").data.tasks)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    repo = copy_repo(tmp_path_factory.mktemp("full") / "repo")
    run(repo, "dvc", "repro")
    run(repo, "git", "add", "dvc.lock")
    run(repo, "git", "commit", "-qm", "tiny run")
    return repo


def _json(path: Path) -> dict:
    return json.loads(path.read_text())


@pytest.mark.slow
def test_every_variant_is_evaluated_against_the_baseline(tiny_run: Path) -> None:
    for variant in ("ft", "two_stage", "ta_loop", "oracle"):
        metrics = _json(tiny_run / f"metrics/eval/{variant}.json")
        assert 0 <= metrics["ci_low"] <= metrics["accuracy"] <= metrics["ci_high"] <= 1
        assert set(metrics["per_task"]) == TASKS
        assert 0 <= metrics["vs_baseline"]["p_value"] <= 1
        predictions = (tiny_run / f"data/predictions/{variant}.jsonl").read_text().splitlines()
        assert len(predictions) == metrics["n"] == 12
        assert (tiny_run / f"models/stage2/{variant}/adapter_model.safetensors").is_file()
        assert list((tiny_run / f"models/stage2/{variant}").glob("checkpoint-*"))
    assert _json(tiny_run / "metrics/eval/oracle.json")["uses_gold"] is True


@pytest.mark.slow
def test_variants_share_the_teacher_data(tiny_run: Path) -> None:
    stage2 = [_json(p) for p in (tiny_run / "metrics/stage2").glob("*.json")]
    assert len(stage2) == 4
    assert len({m["teacher_data_fingerprint"] for m in stage2}) == 1
    assert {m["teacher_replies"] for m in stage2} == {16}
    by_name = {m["variant"]: m for m in stage2}
    assert by_name["ft"]["examples_trained"] == 16 and not by_name["ft"]["from_warmup"]
    assert by_name["two_stage"]["examples_trained"] == 12 and by_name["two_stage"]["from_warmup"]


@pytest.mark.slow
def test_signals_cover_stage2_replies(tiny_run: Path) -> None:
    rows = [json.loads(x) for x in (tiny_run / "data/signals.jsonl").read_text().splitlines()]
    assert len(rows) == 12 and {r["stage"] for r in rows} == {"stage2"}
    for r in rows:
        assert r["sc"] in (0.5, 1.0)
        assert 0 < r["ta_conf_teacher"] < 1 and 0 < r["ta_conf_student"] < 1
    metrics = _json(tiny_run / "metrics/signals.json")
    assert metrics["diagnostic_uses_gold"] is True and "auc_ta_teacher_flags_wrong_teacher" in metrics
    assert (tiny_run / "metrics/train/warmup/plots/metrics/train/loss.tsv").is_file()


@pytest.mark.slow
def test_stage2_experiment_reruns_nothing_upstream(tiny_run: Path) -> None:
    out = run(tiny_run, "dvc", "exp", "run", "-S", "stage2.mode=filter").stdout
    for stage in ("prepare_data", "collect_teacher", "prepare_models", "warmup", "score_signals"):
        assert f"'{stage}' didn't change" in out, out
    assert "Running stage 'train_stage2@ta_loop'" in out
    assert "Running stage 'score_signals'" not in out
