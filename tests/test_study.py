"""The study's aggregation: budget-curve matching point and active/random pairing."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from .conftest import load_benchmark

study = load_benchmark("study")
TASKS = np.array(["a"] * 10 + ["b"] * 10)


def _run(
    seed: int, budget: int, acquisition: str, acc: dict[str, float], split: str = "test", **params: Any
) -> dict[str, Any]:
    correct = {v: (np.arange(20) < round(a * 20)).astype(float) for v, a in acc.items()}
    return {
        "name": f"{acquisition}{seed}-{budget}", "seed": seed, "budget": budget, "acquisition": acquisition,
        "split": split, "params": {"eval.split": split, "stage2.mode": "weight", **params},
        "seeds": {"warmup": seed, "signals": seed, "stage2": seed}, "teacher_usd": budget / 100,
        "baseline": "ft", "accuracy": acc, "correct": correct, "tasks": TASKS,
    }  # fmt: skip


def test_matching_spend_interpolates_between_measured_budgets() -> None:
    curve = [
        {"budget": 24, "accuracy": 0.30, "teacher_usd": 0.24},
        {"budget": 48, "accuracy": 0.40, "teacher_usd": 0.48},
        {"budget": 96, "accuracy": 0.60, "teacher_usd": 0.96},
    ]
    assert study.matching_spend(curve, 0.50) == pytest.approx({"budget": 72.0, "teacher_usd": 0.72})
    assert study.matching_spend(curve, 0.25) == {"budget": 24, "teacher_usd": 0.24}
    assert study.matching_spend(curve, 0.61) is None


def test_curve_uses_only_seeds_run_at_every_budget_and_pairs_active_with_its_twin() -> None:
    runs = [
        _run(0, 96, "random", {"ft": 0.5, "ta_loop": 0.6}),
        _run(1, 96, "random", {"ft": 0.3, "ta_loop": 0.3}),  # no smaller budget: not on the curve
        _run(0, 48, "random", {"ft": 0.4, "ta_loop": 0.45}),
        _run(0, 96, "active", {"ft": 0.55, "ta_loop": 0.65}),
        _run(2, 96, "active", {"ft": 0.55, "ta_loop": 0.65}),  # no random twin
        _run(0, 96, "random", {"ft": 0.9, "ta_loop": 0.9}, split="val"),  # tuning runs: not in the tables
        _run(0, 96, "random", {"ft": 0.9, "ta_loop": 0.8}, split="val", **{"stage2.mode": "filter"}),
    ]
    result = study.study(runs)
    assert result["mean_accuracy"] == pytest.approx({"ft": 0.4, "ta_loop": 0.45})
    curve = result["budget_curve"]
    assert curve["seeds"] == [0] and curve["baseline_full_accuracy"] == 0.5
    assert [p["budget"] for p in curve["curves"]["ta_loop"]] == [48, 96]
    assert curve["method_matches_baseline_at"]["budget"] == pytest.approx(48 + 48 * (0.05 / 0.15))
    acq = result["acquisition"]
    assert [(p["active"], p["random"]) for p in acq["pairs"]] == [("active0-96", "random0-96")]
    ft = acq["variants"]["ft"]
    assert (ft["random_accuracy"], ft["active_accuracy"]) == (0.5, 0.55)
    assert ft["active_vs_random"]["mean_relative_improvement"] == pytest.approx(0.1)
    text = study.markdown(result)
    assert "ta_loop matches ft's full-budget accuracy (50.0%) at about 64 replies" in text
    assert "| ft | 1 | 50.0 | 55.0 | +10.0%" in text
    assert [row["changed"] for row in result["tuning"]] == [{}, {"stage2.mode": "filter"}]
    assert "| random0-96 | stage2.mode=filter | 90.0 | 80.0 |" in text
