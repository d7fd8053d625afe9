"""Study files (studies/*.yaml): they expand to the cells kept before studies were DVC
experiments, and their aggregation reproduces the tables published from those cells."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from taloop.params.profiles import flatten
from taloop.studies import engine, spec

from .conftest import REPO

KEPT = REPO / spec.KEPT_DIR
# Kept beside the reference cell, not a cell of it: the benchmark's fp32 twin (docs/performance.md).
NOT_CELLS = {("reference", "default-avx2-fp32")}
# Headroom cells kept from before the study had its file (a random-teacher zero-error control).
EXTRA_HEADROOM = {"random-e0-b96-s0", "random-e0-b96-s1"}


def _kept_params(study: str, name: str) -> dict[str, Any]:
    if study == "headroom":  # kept as one JSON each, with the overrides they ran with
        overrides = json.loads((KEPT / study / f"{name}.json").read_text())["overrides"]
        return {k: yaml.safe_load(v) for k, v in (o.split("=", 1) for o in overrides)}
    return flatten(yaml.safe_load((KEPT / study / name / "params.yaml").read_text()))


def _kept_names(study: str) -> set[str]:
    folder = KEPT / study
    names = {p.stem if p.is_file() else p.name for p in folder.iterdir()} if folder.is_dir() else set()
    return (
        names - {n for s, n in NOT_CELLS if s == study} - (EXTRA_HEADROOM if study == "headroom" else set())
    )


@pytest.mark.parametrize("name", spec.available(REPO))
def test_every_kept_cell_is_a_cell_of_its_study_file_with_its_params(name: str) -> None:
    cells = {c.name: c for c in spec.cells(spec.load(name, REPO))}
    kept = _kept_names(name)
    assert kept <= set(cells), f"kept cells the study file does not define: {sorted(kept - set(cells))}"
    for cell_name in kept:
        params = _kept_params(name, cell_name)
        for key, value in cells[cell_name].params.items():
            if name == "headroom" and key not in params:
                continue  # its runner set only what differed from params.yaml
            assert params[key] == value, f"{name}/{cell_name}: {key}"


def test_the_map_is_fifteen_cells_of_error_rate_and_training_seeds() -> None:
    cells = spec.cells(spec.load("map", REPO))
    assert len(cells) == 15 and cells[0].experiment == "map-e0.2-s0"
    assert cells[0].set_args()[-6:] == ["-S", "warmup.seed=0", "-S", "signals.seed=0", "-S", "stage2.seed=0"]
    assert "compare=[two_stage, ta_loop, oracle]" in cells[0].set_args()


def _aggregate(name: str) -> dict[str, Any]:
    result, _ = engine.aggregate_study(name, engine.study_cells(name, REPO, kept_only=True), REPO)
    return result


def _published(name: str) -> dict[str, Any]:
    return json.loads((KEPT / f"{name}.json").read_text())


@pytest.mark.parametrize(
    ("study", "published", "parts"),
    [
        ("map", "effect_size", ("error_rate_map", "error_rate_map_pooled", "vs_baseline", "accuracy")),
        ("budget", "effect_size", ("budget_curve",)),
        ("active", "effect_size", ("acquisition",)),
        ("epochs", "tuning_summary", ("tuning", "tuning_choice")),
        ("selection", "tuning_summary", ("selection",)),
        ("headroom", "headroom", ("settings",)),
    ],
)
def test_aggregating_the_kept_cells_reproduces_the_published_tables(
    study: str, published: str, parts: tuple[str, ...]
) -> None:
    result, expected = _aggregate(study), _published(published)
    for part in parts:
        assert result[part] == expected[part], f"{study}: {part}"


def test_a_study_file_with_a_bad_field_is_named(tmp_path: Path) -> None:
    (tmp_path / "studies").mkdir()
    (tmp_path / "studies/bad.yaml").write_text(
        "description: x\nvariants: [ta_loop]\nsweep: {ta.scorer: []}\n"
    )
    with pytest.raises(spec.StudyError, match=r"studies/bad\.yaml: .*sweep\.ta\.scorer: no values"):
        spec.load("bad", tmp_path)
    (tmp_path / "studies/bad.yaml").write_text("description: x\nvariants: [ta_loop]\nseeds: [0]\ncell: x\n")
    with pytest.raises(spec.StudyError, match=r"cell template 'x' must name exactly these: \['seed'\]"):
        spec.load("bad", tmp_path)
    (tmp_path / "studies/bad.yaml").write_text("description: x\nvariants: [ta_loop]\nsweeps: {}\n")
    with pytest.raises(spec.StudyError, match=r"sweeps: Extra inputs are not permitted"):
        spec.load("bad", tmp_path)
    with pytest.raises(spec.StudyError, match=r"no study named 'nope'.*studies: bad"):
        spec.load("nope", tmp_path)


def test_dvc_output_tells_which_stages_ran_and_which_were_restored() -> None:
    text = "\n".join([
        "Reproducing experiment 'study-x'",
        "Stage 'prepare_data' didn't change, skipping",
        "Stage 'warmup' is cached - skipping run, checking out outputs",
        "Running stage 'calibrate_signals':",
        "> python -m taloop.stages.calibrate_signals",
        "Running stage 'train_stage2@ta_loop':",
    ])  # fmt: skip
    assert engine.stage_outcomes(text) == {
        "prepare_data": "unchanged", "warmup": "restored",
        "calibrate_signals": "ran", "train_stage2@ta_loop": "ran",
    }  # fmt: skip
