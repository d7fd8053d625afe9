"""The effect-size aggregation (taloop.studies.aggregate): budget-curve matching point,
active/random pairing, maps, tuning; and the studies page."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from taloop.core.io import write_json, write_jsonl
from taloop.core.metrics import mde_paired
from taloop.studies import aggregate as study
from taloop.studies import page as figures
from taloop.studies import spec
from taloop.studies.sources import KeptCell, load_run
from taloop.studies.spec import KEPT_DIR

from .conftest import REPO, chromium

TASKS = np.array(["a"] * 10 + ["b"] * 10)
IDS = np.arange(20).astype(str)


def _run(
    seed: int, budget: int, acquisition: str, acc: dict[str, float], split: str = "test", **params: Any
) -> dict[str, Any]:
    correct = {v: (np.arange(20) < round(a * 20)).astype(float) for v, a in acc.items()}
    return {
        "name": f"{acquisition}{seed}-{budget}", "seed": seed, "budget": budget, "acquisition": acquisition,
        "split": split, "params": {"eval.split": split, "stage2.mode": "weight", **params},
        "seeds": {"warmup": seed, "signals": seed, "stage2": seed}, "teacher_usd": budget / 100,
        "baseline": "ft", "accuracy": acc, "correct": correct, "tasks": TASKS, "ids": IDS,
    }  # fmt: skip


def test_budget_curve_gives_each_point_its_seed_interval_and_the_method_against_the_baseline() -> None:
    runs = [
        _run(seed, budget, "random", {"ft": ft, "ta_loop": ta})
        for seed, budget, ft, ta in [(0, 48, 0.3, 0.35), (1, 48, 0.4, 0.4), (2, 48, 0.5, 0.6),
                                     (0, 96, 0.5, 0.5), (1, 96, 0.6, 0.55), (2, 96, 0.7, 0.6)]
    ]  # fmt: skip
    curve = study.budget_curve(runs, 96, "ta_loop")
    ft_48 = curve["curves"]["ft"][0]
    # mean 0.4, sd 0.1 over three seeds: half-width t(0.975, 2) * 0.1 / sqrt(3) = 4.3027 * 0.05774 = 0.2484
    assert ft_48["accuracy"] == pytest.approx(0.4)
    assert ft_48["accuracy_t_ci"] == pytest.approx([0.4 - 0.24841, 0.4 + 0.24841], abs=1e-4)
    versus = {c["budget"]: c for c in curve["method_vs_baseline"]}
    assert versus[48]["diff"] == pytest.approx(0.05) and versus[96]["diff"] == pytest.approx(-0.05)
    assert versus[48]["seeds"] == 3 and versus[48]["mde"] is not None
    text = study.markdown({**study.study(runs), "tuning": []})
    assert "ta_loop against ft at each budget, same seeds:" in text
    assert "| 48 | 3 | +5.0 (" in text and "| 96 | 3 | -5.0 (" in text
    assert "| ft | 48 | 50% | 3 | 40.0 (15.2 to 64.8) |" in text


def test_each_comparison_shows_the_items_mde_beside_the_seeds_one() -> None:
    cmp = study.compare(_seed_runs([0.4, 0.5]), "ta_loop", "ft")  # disagree on 8 and 10 of 20 items
    per_seed = [mde_paired(20, 0.4), mde_paired(20, 0.5)]
    assert None not in per_seed and cmp["mde_items"] == pytest.approx(np.mean(per_seed))
    mde_cell = study.points_with_mdes(cmp).split(" | ")[1]
    assert mde_cell == f"{100 * cmp['mde']:.1f}; items {100 * cmp['mde_items']:.1f}"
    assert study.points_with_mdes({**cmp, "mde_items": None}).split(" | ")[1] == f"{100 * cmp['mde']:.1f}"


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
    assert "| ft | 1 | 50.0 | 55.0 | +5.0 (" in text and "| n/a (one seed) | +10.0% (" in text
    assert [row["changed"] for row in result["tuning"]] == [{}, {"stage2.mode": "filter"}]
    assert "| random0-96 | stage2.mode=filter | 90.0 | 80.0 |" in text


def _seed_runs(diffs: list[float], copies_of_one: bool = False) -> list[dict[str, Any]]:
    """Runs whose ta_loop beats ft by ``diffs`` (one run per seed) on the same 20 items."""
    runs = []
    for seed, d in enumerate(diffs):
        ft = np.zeros(20)
        ft[:8] = 1  # 40%
        ta = ft.copy()
        ta[8 : 8 + round(d * 20)] = 1
        runs.append(
            {
                **_run(seed, 96, "random", {"ft": 0.4, "ta_loop": 0.4 + d}),
                "correct": {"ft": ft, "ta_loop": ta},
            }
        )
    return runs


def test_compare_spans_the_seed_t_interval_and_states_its_mde() -> None:
    result = study.compare(_seed_runs([0.05, 0.10, 0.15]), "ta_loop", "ft")
    se = 0.05 / np.sqrt(3)
    assert result["diff"] == pytest.approx(0.10)
    assert result["diff_t_ci"] == pytest.approx([0.10 - 4.302653 * se, 0.10 + 4.302653 * se], abs=1e-6)
    assert result["diff_ci"][0] <= result["diff_t_ci"][0] and result["diff_ci"][1] >= result["diff_t_ci"][1]
    assert result["mde"] == pytest.approx((4.302653 + 1.060660) * se, abs=1e-6)
    assert result["mean_relative_improvement"] == pytest.approx(0.10 / 0.40)


def test_seeds_on_shared_items_do_not_narrow_the_interval_as_fresh_items_would() -> None:
    # Three identical seeds carry no more information about the test items than one: the joint
    # bootstrap must give (about) the one-seed interval, not one sqrt(3) times narrower.
    one = study.compare(_seed_runs([0.15]), "ta_loop", "ft")
    three = study.compare(_seed_runs([0.15] * 3), "ta_loop", "ft")
    width = lambda c: c["diff_bootstrap_ci"][1] - c["diff_bootstrap_ci"][0]  # noqa: E731
    assert width(one) > 0.1
    assert width(three) == pytest.approx(width(one), rel=0.15)
    assert (
        three["diff_t_ci"] == pytest.approx([0.15, 0.15]) and three["diff_ci"] == three["diff_bootstrap_ci"]
    )
    assert one["mde"] is None and one["diff_t_ci"] == [None, None]


def test_relative_change_interval_is_bounded_by_test_inversion_or_unbounded() -> None:
    result = study.compare(_seed_runs([0.05, 0.10, 0.15]), "ta_loop", "ft")
    low, high = result["ci_low"], result["ci_high"]
    assert low is not None and high is not None and low < result["mean_relative_improvement"] < high
    # never narrower than the points' t-interval over the baseline's mean allows
    t_low, t_high = result["diff_t_ci"]
    assert low <= t_low / 0.4 + 1e-12 and high >= t_high / 0.4 - 1e-12
    # one baseline success in 20 items: about a third of the resamples score the baseline 0,
    # so the relative change may be any size; no "inf" or "nan" end
    runs = _seed_runs([0.30, 0.35])
    for r in runs:
        r["correct"]["ft"] = np.zeros(20)
        r["correct"]["ft"][0] = 1
        r["accuracy"]["ft"] = 0.05
    result = study.compare(runs, "ta_loop", "ft")
    assert (result["ci_low"], result["ci_high"]) == (None, None)
    assert "(-inf to +inf)" in study._rel(result)


def _one_hot_runs(k: int) -> list[dict[str, Any]]:
    """k runs on the 20 items of one task; run j gets item j right and nothing else."""
    runs = []
    for j in range(k):
        right = np.zeros(20)
        right[j] = 1
        runs.append(
            {**_run(j, 96, "random", {"ft": 0.05}), "correct": {"ft": right}, "tasks": np.array(["t"] * 20)}
        )
    return runs


def test_the_seeds_drawn_do_not_repeat_the_items_drawn() -> None:
    # With as many runs as items, runs drawn from the same random stream as the items were the
    # item draws themselves: run j counted on exactly the resamples holding item j, which
    # nearly doubled every resample's mean (0.0975 expected instead of 0.05).
    boot = study._accuracy_resamples(_one_hot_runs(20), ["ft"], seed=0)
    assert boot["ft"].mean() == pytest.approx(0.05, abs=0.005)


def test_runs_resampled_within_their_strata_keep_each_stratum_s_share() -> None:
    runs = _one_hot_runs(4)
    for i, r in enumerate(runs):
        r["correct"]["ft"] = np.full(20, float(i > 0))  # run 0 gets nothing right, the rest all
    free = study._accuracy_resamples(runs, ["ft"], seed=0)["ft"]
    kept = study._accuracy_resamples(runs, ["ft"], seed=0, strata=["a", "b", "b", "b"])["ft"]
    assert np.all(kept == 0.75) and free.std() > 0.1


def test_compare_refuses_runs_evaluated_on_different_items() -> None:
    runs = _seed_runs([0.05, 0.10])
    runs[1]["ids"] = np.arange(1, 21).astype(str)
    with pytest.raises(ValueError, match="share their test items"):
        study.compare(runs, "ta_loop", "ft")


def test_recovery_ratio_is_the_share_of_the_oracles_gain() -> None:
    runs = _seed_runs([0.10, 0.10])
    for r in runs:
        oracle = r["correct"]["ft"].copy()
        oracle[8:12] = 1  # +20 points
        r["correct"]["oracle"] = oracle
        r["accuracy"]["oracle"] = 0.6
    result = study.recovery(runs, "ta_loop", "ft", "oracle")
    assert result["ratio"] == pytest.approx(0.5) and result["oracle_gain"] == pytest.approx(0.2)
    assert result["ci_low"] <= 0.5 <= result["ci_high"]


def test_a_kept_cell_loads_with_predictions_in_item_order(tmp_path: Path) -> None:
    keep = tmp_path / "kept"
    params = {"baseline": "ft", "compare": ["ta_loop"], "budget": {"queries": 8},
              "acquisition": {"mode": "random"}, "eval": {"split": "test", "seed": 0},
              **{k: {"seed": 3} for k in ("warmup", "signals", "stage2", "data", "teacher")}}  # fmt: skip
    (keep / "metrics/eval").mkdir(parents=True)
    (keep / "params.yaml").write_text(yaml.safe_dump(params))
    write_json(keep / "metrics/teacher.json", {"usd_value": 0.25})
    for v, right in (("ft", [True, False, True]), ("ta_loop", [True, True, True])):
        write_json(keep / f"metrics/eval/{v}.json", {"accuracy": sum(right) / 3})
        rows = [{"id": f"q{i}", "task": "t", "correct": c} for i, c in reversed(list(enumerate(right)))]
        write_jsonl(keep / f"data/predictions/{v}.jsonl", rows)
    run = load_run(KeptCell("kept", keep))
    assert run["correct"]["ft"].tolist() == [1.0, 0.0, 1.0]  # ordered by id, not as written
    assert run["accuracy"] == {"ft": pytest.approx(2 / 3), "ta_loop": 1.0}
    assert (run["seed"], run["budget"], run["teacher_usd"]) == (3, 8, 0.25)
    (keep / "data/predictions/ta_loop.jsonl").unlink()
    with pytest.raises(FileNotFoundError, match=r"kept: no data/predictions/ta_loop\.jsonl"):
        load_run(KeptCell("kept", keep))


def test_error_rate_map_compares_each_rate_on_its_own_seeds() -> None:
    runs = []
    for rate, gains in ((0.2, [0.05, 0.10]), (0.4, [0.15, 0.20, 0.25])):
        for r in _seed_runs(gains):
            two = r["correct"]["ft"].copy()
            two[8:10] = 1  # two_stage: +10 points over ft
            oracle = r["correct"]["ft"].copy()
            oracle[8:16] = 1  # oracle: +40 points over ft
            r["correct"].update(two_stage=two, oracle=oracle)
            r["accuracy"].update(two_stage=0.5, oracle=0.8)
            r["params"]["teacher.error_rate"] = rate
            runs.append(r)
    result = study.study(runs)
    # The other tables take the error rate most runs have: 0.4, three seeds.
    assert result["error_rate"] == 0.4
    assert result["mean_accuracy"]["ta_loop"] == pytest.approx(0.6)
    low, high = result["error_rate_map"]
    assert (low["error_rate"], low["seeds"], high["seeds"]) == (0.2, [0, 1], [0, 1, 2])
    assert low["vs_baseline"]["diff"] == pytest.approx(0.075)
    assert high["vs_two_stage"]["diff"] == pytest.approx(0.10)  # 0.6 - 0.5
    assert high["recovery"]["ratio"] == pytest.approx(0.2 / 0.4)
    lo, hi = high["accuracy_t_ci"]["ta_loop"]  # 0.55, 0.60, 0.65: mean 0.6, sd 0.05
    assert (lo, hi) == pytest.approx((0.6 - 4.302653 * 0.05 / np.sqrt(3), 0.6 + 4.302653 * 0.05 / np.sqrt(3)))
    text = study.markdown(result)
    assert "## Error-rate map" in text
    assert "| 0.4 | 3 | 40.0 | 60.0 | 50.0 | 80.0 | +20.0 (" in text
    # pooled over the 5 cells: ta_loop above ft in each; against two_stage (50%) 45 and 50% at
    # 0.2, 55-65% at 0.4: higher 3, lower 1, tied 1, sign test 2 * (1 + 4) / 2**4
    pooled = result["error_rate_map_pooled"]
    vs_ft, vs_two = pooled["vs_baseline"], pooled["vs_two_stage"]
    assert vs_ft["cells"] == vs_two["cells"] == 5
    assert (vs_ft["wins"], vs_ft["losses"], vs_ft["ties"]) == (5, 0, 0)
    assert vs_ft["sign_test_p"] == pytest.approx(2 / 2**5) and vs_ft["diff"] == pytest.approx(0.15)
    assert (vs_two["wins"], vs_two["losses"], vs_two["ties"]) == (3, 1, 1)
    assert vs_two["sign_test_p"] == pytest.approx(10 / 16)
    assert "| two_stage | 5 | 3 | 1 | 1 | 0.625 | +5.0 (" in text
    assert vs_ft["mde"] is None and "| n/a (pooled) |" in text  # rates' differences are not seed noise
    # a comparison some cells lack counts the cells it has
    del runs[0]["accuracy"]["two_stage"]
    fewer = study.pooled_map([r for r in runs if r["params"]["teacher.error_rate"] in (0.2, 0.4)])
    assert (fewer["vs_two_stage"]["cells"], fewer["vs_baseline"]["cells"]) == (4, 5)
    # cells on other test items: no pooled view rather than no study
    runs[1]["ids"] = np.arange(1, 21).astype(str)
    assert study.pooled_map(runs) is None


def test_runs_at_one_error_rate_have_no_map_section() -> None:
    result = study.study(_seed_runs([0.05, 0.10]))
    assert len(result["error_rate_map"]) == 1
    assert result["error_rate_map"][0]["vs_two_stage"] is None  # no two_stage run
    assert result["error_rate_map_pooled"] is None
    assert "Error-rate map" not in study.markdown(result) and "Pooled over" not in study.markdown(result)


def test_studies_page_is_self_contained_with_a_figure_per_study(tmp_path: Path) -> None:
    runs = []
    for rate, gains in ((0.2, [0.05, 0.10]), (0.4, [0.15, 0.20])):
        for r in _seed_runs(gains):
            r["correct"]["oracle"] = np.ones(20)
            r["accuracy"]["oracle"] = 1.0
            r["params"]["teacher.error_rate"] = rate
            runs.append(r)
    runs.append(
        {**_run(0, 48, "random", {"ft": 0.3, "ta_loop": 0.35}), "params": {"teacher.error_rate": 0.4}}
    )
    result = study.study(runs)
    (tmp_path / "map.json").write_text(json.dumps(result))
    (tmp_path / "map.md").write_text(study.markdown(result))
    page = figures.page(tmp_path, {"map": "map"})
    assert page.count("<svg") == 2  # the map (two panels, one figure) and the budget curve
    assert "<td>0.2</td>\n<td>2</td>" in page and "not been run yet" not in page
    assert "<script" not in page and "<link" not in page and "src=" not in page
    unbounded = json.loads(json.dumps(result))
    unbounded["error_rate_map"][0]["recovery"].update(ci_low=None, ci_high=None)  # drawn to the edge
    # a point beyond the default axis, with one side unbounded, and one outside its own interval
    unbounded["error_rate_map"][1]["recovery"].update(ratio=4.0, ci_low=1.2, ci_high=None)
    (tmp_path / "map.json").write_text(json.dumps(unbounded))
    assert figures.page(tmp_path, {"map": "map"}).count("<svg") == 2
    unbounded["error_rate_map"][1]["recovery"].update(ratio=4.0, ci_low=0.5, ci_high=3.5)
    (tmp_path / "map.json").write_text(json.dumps(unbounded))
    assert figures.page(tmp_path, {"map": "map"}).count("<svg") == 2
    (tmp_path / "map.json").write_text(json.dumps({**result, "error_rate_map": result["error_rate_map"][:1]}))
    assert "The error-rate map has not been run yet" in figures.page(tmp_path, {"map": "map"})


def test_validation_runs_alone_give_the_tuning_table_and_each_variants_best_setting() -> None:
    def val(seed: int, lr: float, ft: float, ta: float) -> dict[str, Any]:
        return _run(seed, 96, "random", {"ft": ft, "ta_loop": ta}, split="val",
                    **{"stage2.learning_rate": lr, "stage2.seed": seed})  # fmt: skip

    # ft is best at 1e-3 (mean 0.55 against 0.50), ta_loop at 2e-3 (0.65 against 0.50); the
    # seed differs between runs but is not part of a setting.
    runs = [val(0, 1e-3, 0.5, 0.5), val(1, 1e-3, 0.6, 0.5), val(0, 2e-3, 0.5, 0.7), val(1, 2e-3, 0.5, 0.6)]
    result = study.study(runs)
    assert set(result) == {"tuning", "tuning_choice"}
    choice = result["tuning_choice"]
    assert choice["ft"] == {"setting": {}, "accuracy": pytest.approx(0.55), "seeds": [0, 1]}
    assert choice["ta_loop"] == {
        "setting": {"stage2.learning_rate": 2e-3},
        "accuracy": pytest.approx(0.65),
        "seeds": [0, 1],
    }
    text = study.markdown(result)
    assert text.startswith("# Tuning study")
    assert "- ta_loop: stage2.learning_rate=0.002, 65.0% (mean over seeds 0, 1)" in text

    # With a setting run on seed 0 only, all are compared on seed 0: 1e-3 no longer counts
    # its seed-1 run (0.6) that 4e-3 never had the chance to match.
    result = study.study([*runs, val(0, 4e-3, 0.54, 0.5)])
    assert result["tuning_choice"]["ft"] == {
        "setting": {"stage2.learning_rate": 4e-3},
        "accuracy": pytest.approx(0.54),
        "seeds": [0],
    }
    result = study.study([*runs, val(2, 4e-3, 0.9, 0.9)])
    assert result["tuning_choice"] == {}  # no seed common to all three settings


def test_each_variants_best_setting_is_held_against_the_defaults_setting_per_seed() -> None:
    def val(seed: int, lr: float, epochs: int, ft: float) -> dict[str, Any]:
        return _run(seed, 96, "random", {"ft": ft}, split="val", **{
            "stage2.learning_rate": lr, "stage2.epochs": epochs, "stage2.seed": seed, "eval.batch_size": 80,
        })  # fmt: skip

    runs = [val(s, lr, ep, ft) for s, lr, ep, ft in [
        (0, 1e-3, 3, 0.50), (1, 1e-3, 3, 0.52),
        (0, 2e-3, 3, 0.60), (1, 2e-3, 3, 0.70),  # the default's setting
        (0, 2e-3, 4, 0.70), (1, 2e-3, 4, 0.65),
    ]]  # fmt: skip
    # eval.batch_size is the same in every run: the default's 16 there does not matter; nor do seeds.
    default = {"stage2.learning_rate": 2e-3, "stage2.epochs": 3, "stage2.seed": 7, "eval.batch_size": 16}
    result = study.study(runs, default=default)
    assert [row["default"] for row in result["tuning"]] == [False, False, True, True, False, False]
    best = result["tuning_choice"]["ft"]
    assert best["setting"] == {"stage2.learning_rate": 2e-3, "stage2.epochs": 4}  # mean 0.675 vs 0.65
    assert best["vs_default"]["setting"] == {"stage2.learning_rate": 2e-3}
    assert best["vs_default"]["per_seed"] == pytest.approx([0.10, -0.05])
    assert best["vs_default"]["diff"] == pytest.approx(0.025)
    assert "points against the default (per seed +10.0, -5.0)" in study.markdown(result)
    # Without a run at the default's setting there is nothing to hold the best against.
    result = study.study([r for r in runs if r["params"]["stage2.learning_rate"] != 2e-3 or
                          r["params"]["stage2.epochs"] != 3], default=default)  # fmt: skip
    assert "vs_default" not in result["tuning_choice"]["ft"]


def test_signals_applied_as_listed_are_compared_with_two_stage_of_the_same_runs() -> None:
    def val(seed: int, selection: str, two_stage: float, ta: float, lr: float = 2e-3) -> dict[str, Any]:
        run = _run(
            seed,
            96,
            "random",
            {"ft": 0.5, "two_stage": two_stage, "ta_loop": ta},
            split="val",
            **{"signals.selection": selection, "stage2.seed": seed, "stage2.learning_rate": lr},
        )
        return {**run, "name": f"{selection}-lr{lr:g}-s{seed}"}  # fmt: skip

    calibrated = [val(0, "calibrated", 0.5, 0.5), val(1, "calibrated", 0.6, 0.6)]
    assert "selection" not in study.study(calibrated)
    # a run at another learning rate is not pooled with them
    listed = [
        val(0, "as_listed", 0.5, 0.6),
        val(1, "as_listed", 0.6, 0.6),
        val(1, "as_listed", 0.6, 0.9, 1e-3),
    ]
    whole = study.study([*calibrated, *listed])
    result = whole["selection"]
    assert result["runs"] == ["as_listed-lr0.002-s0", "as_listed-lr0.002-s1"]
    # the selection is its own study, not one more tuning setting (ta_loop 0.9 would win there)
    assert [row["run"] for row in whole["tuning"]] == [r["name"] for r in calibrated]
    assert "signals.selection" not in whole["tuning_choice"]["ta_loop"]["setting"]
    assert result["vs_two_stage"]["diff"] == pytest.approx(0.05)  # +10 and 0 points
    assert result["vs_two_stage"]["diff_t_ci"][0] < 0 < result["vs_two_stage"]["diff_t_ci"][1]
    assert result["vs_baseline"]["diff"] == pytest.approx(0.1)
    text = study.markdown(whole)
    assert "## Signals applied as listed (validation)" in text
    assert "| two_stage | 60.0 | 55.0 | +5.0 (" in text
    assert "| ft | 60.0 | 50.0 | +10.0 (" in text  # the baseline row is named by its variant
    # beside test-split runs the selection is still reported
    tested = [
        _run(0, 96, "random", {"ft": 0.5, "ta_loop": 0.55}),
        _run(1, 96, "random", {"ft": 0.5, "ta_loop": 0.5}),
    ]
    both = study.study([*tested, *listed])
    assert both["selection"] == result
    assert "## Signals applied as listed (validation)" in study.markdown(both)


def test_recovery_interval_is_unbounded_not_nan_when_the_oracle_gains_nothing() -> None:
    # oracle == ft item for item: every resample's oracle gain is 0, so no ratio is excluded
    runs = _seed_runs([0.10, 0.05])
    for r in runs:
        r["correct"]["oracle"] = r["correct"]["ft"].copy()
        r["accuracy"]["oracle"] = r["accuracy"]["ft"]
    result = study.recovery(runs, "ta_loop", "ft", "oracle")
    assert result["ratio"] is None
    assert (result["ci_low"], result["ci_high"]) == (None, None)


def _markdown_tables(text: str) -> int:
    """Tables in markdown: their header separator rows."""
    return sum(1 for line in text.splitlines() if re.fullmatch(r"\|(\s*:?-+:?\s*\|)+", line.strip()))


@pytest.mark.slow
def test_the_published_studies_page_reads_as_a_page_in_chromium(tmp_path: Path) -> None:
    """The page over the repository's own published studies, as a browser parses it: every
    markdown table an HTML table, every figure with its caption, no markdown pipes left."""
    studies = REPO / KEPT_DIR
    titles = {n: f"{n}: {spec.load(n, REPO).description}" for n in spec.available(REPO)}
    (tmp_path / "index.html").write_text(figures.page(studies, titles))
    done = subprocess.run(
        [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--dump-dom",
         (tmp_path / "index.html").as_uri()],
        capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    dom = done.stdout
    shown = [n for n in titles if (studies / f"{n}.json").is_file()]
    assert len(shown) >= 5
    want = sum(_markdown_tables((studies / f"{n}.md").read_text()) for n in shown)
    assert want > 10 and dom.count("<table>") == want
    assert dom.count("<figure>") == dom.count("<figcaption>") >= 3 and dom.count("<svg") >= 3
    text = re.sub(r"<svg.*?</svg>|<[^>]+>", " ", dom, flags=re.DOTALL)
    assert "|---" not in text and not re.search(r"^\s*\|.*\|\s*$", text, flags=re.MULTILINE)
    assert "How to read this page" in text and all(f'href="#{n}"' in dom for n in shown)
