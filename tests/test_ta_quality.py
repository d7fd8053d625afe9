"""The TA-quality aggregation (taloop.studies.ta_quality) on crafted cells whose ta_loop gain is
set as a function of the TA's AUC: the break-even AUC and its interval, the arms, the blind-spot
and real-TA points against the curve's prediction; and the study file's arms and linked params."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from taloop.core.metrics import seed_interval
from taloop.reporting import ta_map
from taloop.studies import headline, page, spec, ta_quality

TASKS = np.repeat(["a", "b", "c", "d"], 20)
IDS = np.array([f"q{i:02d}" for i in range(80)])
AUCS = (0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
TASK_KEYS = {f"data.tasks.{t}.source": "crafted" for t in "abcd"}  # validated params name every task
SCOPE = {
    "student.model": "tiny", "teacher.backend": "simulated", "teacher.error_rate": 0.2, "budget.queries": 192,
}  # fmt: skip
ARMS = {
    "rank": {"stage2.weighting": "rank", "signals.selection": "as_listed"},
    "calibrated": {"stage2.weighting": "calibrated", "signals.selection": "calibrated"},
}


def _correct(order: np.ndarray, right: int) -> np.ndarray:
    out = np.zeros(80)
    out[order[:right]] = 1.0
    return out


def cell(
    arm: str, auc: float, seed: int, gain_points: float, jitter: int = 1, **params: Any
) -> dict[str, Any]:
    """ft right on 32 of 80 items; ta_loop on 32 + 0.8 * gain_points more (the same items first,
    so the pair differs only there), two_stage on 32, the oracle on 44; seeds shuffle the items."""
    order = np.random.default_rng(seed).permutation(80)
    right = {
        "ft": 32,
        "two_stage": 32,
        "ta_loop": 32 + round(0.8 * gain_points) + jitter * (seed % 3 - 1),
        "oracle": 44,
    }
    correct = {v: _correct(order, n) for v, n in right.items()}
    ta = {
        **SCOPE,
        "ta.backend": "simulated",
        "ta.auc_teacher": auc,
        "ta.blind_spot": "none",
        "ta.model": "gemma-3-270m",
    }
    p = {**ta, **ARMS[arm], **params}
    return {
        "name": f"auc{auc}-{arm}-s{seed}", "seed": seed, "baseline": "ft", "params": p,
        "resolved": {**p, **TASK_KEYS, "ta.seed": seed},
        "accuracy": {v: float(c.mean()) for v, c in correct.items()}, "correct": correct,
        "tasks": TASKS, "ids": IDS,
        "calibration": {
            "chosen": {"measure": "m"}, "teacher_wrong_rate": 0.2, "replies": 100,
            "auc": {"ta_teacher": {"m": {"auc": 0.58}}, "ta_student": {"m": {"auc": 0.55}}},
        },
    }  # fmt: skip


def study_cells(seeds: range = range(5), jitter: int = 1) -> list[dict[str, Any]]:
    runs = []
    for seed in seeds:
        for auc in AUCS:
            runs.append(cell("calibrated", auc, seed, 40 * (auc - 0.75), jitter))  # crosses zero at 0.75
            runs.append(cell("rank", auc, seed, -5.0))  # never pays
    return runs


@pytest.mark.parametrize(
    ("gains", "expected"),
    [
        ([-0.1, -0.05, 0.05, 0.1], 0.65),
        ([0.01, 0.02, 0.03, 0.04], -math.inf),
        ([-0.1, 0.05, -0.02, -0.01], math.inf),
        ([-0.1, 0.05, -0.02, 0.04], 0.7 + 0.1 * 0.02 / 0.06),  # the last crossing counts
        ([-0.1, 0.0, 0.1, 0.2], 0.6),
    ],
)
def test_crossing_is_where_the_gain_last_turns_positive(gains: list[float], expected: float) -> None:
    assert ta_quality.crossing([0.5, 0.6, 0.7, 0.8], gains) == pytest.approx(expected)


def test_break_even_auc_is_found_with_an_interval_around_it_and_never_for_an_arm_that_never_pays() -> None:
    result = ta_quality.summarise(study_cells(), ARMS)
    calibrated = result["arms"]["calibrated"]["break_even"]
    assert calibrated["auc"] == pytest.approx(0.75, abs=0.03)
    assert calibrated["ci_low"] < calibrated["auc"] < calibrated["ci_high"]
    assert calibrated["ci_low"] > 0.6 and calibrated["ci_high"] < 0.9
    assert calibrated["seeds"] == [0, 1, 2, 3, 4] and calibrated["share_never"] < 0.05
    rank = result["arms"]["rank"]["break_even"]
    assert rank["auc"] is None and not rank["below_grid"] and rank["share_never"] > 0.95
    assert rank["ci_high"] is None  # the interval leaves the grid: never pays


def test_break_even_against_two_stage_asks_what_the_ta_adds_beyond_the_schedule() -> None:
    runs = study_cells()
    for r in runs:  # the two-stage schedule alone 5 points above ft: 4 more items, the same first
        r["correct"]["two_stage"] = _correct(np.random.default_rng(r["seed"]).permutation(80), 36)
        r["accuracy"]["two_stage"] = 36 / 80
    entry = ta_quality.summarise(runs, ARMS)["arms"]["calibrated"]
    assert entry["break_even"]["auc"] == pytest.approx(0.75, abs=0.03)
    assert entry["break_even_vs_two_stage"]["auc"] == pytest.approx(0.875, abs=0.03)
    text = ta_quality.markdown(ta_quality.summarise(runs, ARMS))
    assert "**calibrated** against two_stage (seeds 0, 1, 2, 3, 4): break-even AUC 0.8" in text


def test_each_auc_row_compares_ta_loop_with_ft_and_two_stage_and_the_oracle() -> None:
    rows = {r["auc"]: r for r in ta_quality.summarise(study_cells(), ARMS)["arms"]["calibrated"]["curve"]}
    assert sorted(rows) == list(AUCS)
    top = rows[1.0]
    assert top["vs_baseline"]["diff"] == pytest.approx(0.0975)  # 8 of 80 items less the seeds' jitter
    assert top["vs_two_stage"]["diff"] == pytest.approx(top["vs_baseline"]["diff"])
    assert top["recovery"]["ratio"] == pytest.approx(7.8 / 12)
    assert top["vs_baseline"]["mde"] is not None and top["seeds"] == [0, 1, 2, 3, 4]
    assert top["vs_oracle"]["diff"] == pytest.approx(top["vs_baseline"]["diff"] - 12 / 80)  # oracle +12


def test_blind_spot_and_real_ta_cells_sit_beside_the_curve_with_its_prediction() -> None:
    runs = study_cells()
    blind_cells = [cell("calibrated", 0.9, s, 0.0, **{"ta.blind_spot": "shared"}) for s in range(5)]
    for c in blind_cells:  # set to 0.9, but blind to the teacher's errors: measured at chance
        c["calibration"]["auc"]["ta_teacher"]["m"]["auc"] = 0.45
    runs += blind_cells
    runs += [cell("calibrated", 0.75, s, -2.0, **{"ta.backend": "model"}) for s in range(5)]
    entry = ta_quality.summarise(runs, ARMS)["arms"]["calibrated"]
    assert [r["auc"] for r in entry["curve"]] == list(AUCS)  # neither joined the curve
    blind = entry["blind_spot"][0]
    # placed where it measured (below the curve's lowest AUC: read at 0.5), not at its set 0.9
    assert blind["auc"] == 0.9 and blind["curve_predicts"]["auc"] == 0.5
    assert blind["curve_predicts"]["gain"] == pytest.approx(-0.10, abs=0.015)
    real = entry["real"][0]
    assert real["ta"] == "gemma-3-270m" and real["auc"] == pytest.approx(0.58)  # measured, not set
    low, high = real["curve_predicts"]["ci"]
    assert low < real["curve_predicts"]["gain"] < high < 0
    text = ta_quality.markdown(ta_quality.summarise(runs, ARMS))
    assert "0.90 (shared blind spot)" in text and "0.58 (gemma-3-270m, measured)" in text
    assert "0.58 (gemma-3-270m, measured) the curve predicts" in text and "break-even AUC 0.7" in text
    assert "0.90 (shared blind spot), measured 0.45 on validation, the curve (read at 0.50) predicts" in text


def test_seeds_that_disagree_widen_the_break_even_set() -> None:
    """Each seed's gain shifted by up to 6 items: the same items, so only the seeds' t-interval
    can see it, and the set must widen with it."""
    steady = ta_quality.summarise(study_cells(), ARMS)["arms"]["calibrated"]["break_even"]
    shaky = ta_quality.summarise(study_cells(jitter=6), ARMS)["arms"]["calibrated"]["break_even"]
    width = {
        k: (b["ci_high"] or 1.0) - (b["ci_low"] or 0.5) for k, b in (("steady", steady), ("shaky", shaky))
    }
    assert width["shaky"] > width["steady"] + 0.05


def test_a_gain_clear_of_zero_everywhere_leaves_no_auc_in_the_set() -> None:
    runs = [cell("calibrated", auc, s, 15.0) for auc in AUCS for s in range(5)]
    be = ta_quality.summarise(runs, ARMS)["arms"]["calibrated"]["break_even"]
    assert be["auc"] is None and be["below_grid"] and be["confidence_set_empty"]
    assert "no AUC from 0.5 to 1 is compatible with zero gain" in ta_quality.markdown(
        ta_quality.summarise(runs, ARMS)
    )


def test_break_even_uses_the_seeds_every_auc_has() -> None:
    runs = [r for r in study_cells() if not (r["seed"] == 4 and r["params"]["ta.auc_teacher"] == 0.5)]
    be = ta_quality.summarise(runs, ARMS)["arms"]["calibrated"]["break_even"]
    assert be["seeds"] == [0, 1, 2, 3]


def test_a_cell_of_no_arm_is_named() -> None:
    runs = study_cells(range(1))
    runs[0]["params"]["signals.selection"] = "as_listed"
    runs[0]["params"]["stage2.weighting"] = "calibrated"
    with pytest.raises(ValueError, match=r"auc0\.5-calibrated-s0: matches none of the arms"):
        ta_quality.summarise(runs, ARMS)


def _user(
    auc: float | None = 0.73, wrong_rate: float = 0.2, ci: tuple[float, float] | None = None, **params: Any
) -> tuple[dict[str, Any], dict[str, Any]]:
    """A run's flattened params (the validated kind: every task has keys) and its calibration."""
    flat = {**SCOPE, **ARMS["calibrated"], **TASK_KEYS, "ta.backend": "model", **params}
    low, high = ci or (None, None)
    calibration = {
        "chosen": {"measure": "m"}, "teacher_wrong_rate": wrong_rate, "replies": 100,
        "auc": {"ta_teacher": {"m": {"auc": auc, "ci_low": low, "ci_high": high}},
                "ta_student": {"m": {"auc": 0.61}}},
    }  # fmt: skip
    return flat, calibration


def _published() -> dict[str, Any]:
    return json.loads(json.dumps(ta_quality.summarise(study_cells(), ARMS), default=float))


def test_a_run_inside_the_map_gets_the_curves_prediction_at_its_measured_auc() -> None:
    published = _published()
    assert published["scope"]["tasks"] == ["a", "b", "c", "d"]
    assert published["scope"]["params"] == {**SCOPE, **TASK_KEYS}  # ta.* is the map's axis, seeds differ
    assert published["scope"]["varies"] == ["signals.selection", "stage2.weighting"]  # the arms
    got = ta_map.predict(published, *_user(0.73, ci=(0.6, 0.86)))
    curve = ta_quality.break_even(
        {a: [r for r in study_cells() if r["params"]["ta.auc_teacher"] == a and r["params"][
            "stage2.weighting"] == "calibrated"] for a in AUCS}, "ft")  # fmt: skip
    want = ta_quality.predicted_gain(curve, 0.73)
    assert got["status"] == "predicted" and got["arm"] == "calibrated"
    assert got["gain"] == pytest.approx(want["gain"])
    assert [got["ci_low"], got["ci_high"]] == pytest.approx(want["ci"])
    # one run scatters more than the map's mean is uncertain
    assert got["one_run"][0] < got["ci_low"] < got["ci_high"] < got["one_run"][1]
    low, high = got["over_auc_interval"]  # the gain rises with AUC: the AUC's interval maps onto it
    assert low == pytest.approx(np.interp(0.6, curve["aucs"], curve["gain"]))
    assert high == pytest.approx(np.interp(0.86, curve["aucs"], curve["gain"]))
    assert got["break_even"]["auc"] == pytest.approx(0.75, abs=0.03)
    text = ta_map.sentence(got)
    assert "measured 0.730 on validation (95% CI 0.60 to 0.86)" in text and "seeds 0, 1, 2, 3, 4" in text
    assert "this run's TA measured 0.610; the map's simulated TA at AUC 0.7 measured 0.550" in text


def test_the_gain_over_the_auc_interval_spans_a_peak_inside_it() -> None:
    published = _published()
    curve = published["arms"]["calibrated"]["prediction"]
    peak = int(np.argmin(np.abs(np.asarray(curve["auc"]) - 0.75)))
    curve["gain"][peak] = 0.3  # a curve that rises and falls within the run's interval
    low, high = ta_map.predict(published, *_user(0.73, ci=(0.6, 0.86)))["over_auc_interval"]
    assert high == pytest.approx(0.3)
    assert low == pytest.approx(min(np.interp([0.6, 0.86], curve["auc"], curve["gain"])))


@pytest.mark.parametrize(
    ("user", "reason"),
    [
        (_user(**{"student.model": "other"}), "student.model: yours 'other'; the map's 'tiny'"),
        (_user(**{"data.tasks.e.source": "crafted"}), "tasks: yours a, b, c, d, e"),
        (_user(**{"teacher.error_rate": 0.4}), "teacher.error_rate: yours 0.4"),
        (_user(**{"stage2.combine": "gate"}), "stage2.combine: yours 'gate'; the map's '(not set)'"),
        (_user(wrong_rate=0.35, **{"teacher.backend": "openai"}), "teacher wrong rate on validation: yours"),
        (_user(**{"signals.selection": "as_listed"}), "weighting: yours signals.selection='as_listed'"),
        (_user(**{"ta.backend": "simulated", "ta.blind_spot": "shared"}), "ta.blind_spot"),
        (_user(0.45), "TA AUC 0.450 and its interval lie outside the map's 0.5 to 1"),
        (_user(0.4, ci=(0.3, 0.48)), "TA AUC 0.400 and its interval lie outside"),
        (_user(None), "could not be measured"),
    ],
)
def test_a_run_outside_the_map_is_told_why(user: tuple[dict[str, Any], dict[str, Any]], reason: str) -> None:
    got = ta_map.predict(_published(), *user)
    assert got["status"] == "outside" and any(reason in r for r in got["reasons"]), got["reasons"]
    assert "does not cover this run" in ta_map.sentence(got)


def test_runs_within_noise_of_the_map_are_inside_it() -> None:
    published = _published()
    real = {"teacher.backend": "openai", "teacher.error_rate": 0.0}  # a real teacher's rate param is unused
    assert ta_map.predict(published, *_user(wrong_rate=0.25, **real))["status"] == "predicted"
    assert ta_map.predict(published, *_user(**{"budget.queries": 192.0000000001}))["status"] == "predicted"
    edge = ta_map.predict(published, *_user(0.45, ci=(0.3, 0.6)))  # below the map, its interval reaching it
    assert edge["status"] == "predicted" and edge["placed_at"] == 0.5
    assert "placed at the map's edge, AUC 0.5" in ta_map.sentence(edge)


def test_without_a_published_map_the_report_says_so() -> None:
    got = ta_map.predict(None, *_user())
    assert got["status"] == "no_map" and "No TA-quality map is published" in ta_map.sentence(got)


def test_arms_and_linked_params_expand_into_cells(tmp_path: Path) -> None:
    (tmp_path / "studies").mkdir()
    (tmp_path / "studies/q.yaml").write_text(
        "description: x\nvariants: [ta_loop]\ncell: 'auc{ta.auc_teacher}-{arm}-s{seed}'\n"
        "set: {ta.backend: simulated}\nsame: {ta.auc_student: ta.auc_teacher}\n"
        "sweep: {ta.auc_teacher: [0.5, 1.0]}\n"
        "arms: {rank: {stage2.weighting: rank}, cal: {stage2.weighting: calibrated, stage2.need_gain: 0}}\n"
        "seeds: [0, 1]\n"
    )
    cells = spec.cells(spec.load("q", tmp_path))
    assert [c.name for c in cells] == [
        "auc0.5-rank-s0", "auc0.5-cal-s0", "auc1-rank-s0", "auc1-cal-s0",
        "auc0.5-rank-s1", "auc0.5-cal-s1", "auc1-rank-s1", "auc1-cal-s1",
    ]  # fmt: skip
    by_name = {c.name: c.params for c in cells}
    assert by_name["auc1-cal-s1"]["ta.auc_student"] == 1.0 and by_name["auc1-cal-s1"]["stage2.need_gain"] == 0
    assert (
        "stage2.need_gain" not in by_name["auc0.5-rank-s0"] and by_name["auc0.5-rank-s0"]["warmup.seed"] == 0
    )
    (tmp_path / "studies/q.yaml").write_text(
        "description: x\nvariants: [ta_loop]\ncell: '{arm}'\nsame: {ta.auc_student: ta.nope}\narms: {a: {}}\n"
    )
    with pytest.raises(spec.StudyError, match=r"same\.ta\.auc_student: ta\.nope is neither swept nor set"):
        spec.load("q", tmp_path)


def test_the_studies_page_draws_the_gain_against_auc_with_its_levels(tmp_path: Path) -> None:
    runs = study_cells()
    runs += [cell("calibrated", 0.9, s, 0.0, **{"ta.blind_spot": "shared"}) for s in range(5)]
    result = ta_quality.summarise(runs, ARMS)
    (tmp_path / "ta_quality.json").write_text(json.dumps(result))
    (tmp_path / "ta_quality.md").write_text(ta_quality.markdown(result))
    html = page.page(tmp_path, {"ta_quality": "ta_quality: TA quality"})
    assert html.count("<svg") == 1 and "How good must the TA be?" in html
    for label in (
        "ta_loop, rank",
        "ta_loop, calibrated",
        "two_stage - ft",
        "oracle - ft",
        "shared blind spot",
    ):
        assert label in html, label
    assert page.page(tmp_path, {"ta_quality": "ta_quality: TA quality"}) == html  # no date, no random ids


def test_the_readme_headline_of_a_ta_quality_map_holds_its_numbers() -> None:
    runs = study_cells()
    runs += [cell("calibrated", 0.9, s, 0.0, **{"ta.blind_spot": "shared"}) for s in range(5)]
    result = json.loads(json.dumps(ta_quality.summarise(runs, ARMS)))
    text = headline.ta_quality(result)
    header, _, *rows = [line.strip("|").split(" | ") for line in text.split("\n\n")[0].splitlines()]
    header = [h.strip() for h in header]
    by_label = {r[0].strip(): dict(zip(header, (c.strip() for c in r), strict=True)) for r in rows}
    blind = "0.90, blind spot shared, measured 0.58"
    assert list(by_label)[:6] == [f"{a:.2f}" for a in AUCS] and blind in by_label
    for arm in ARMS:
        for row in result["arms"][arm]["curve"]:
            shown = by_label[f"{row['auc']:.2f}"]
            lo, hi = row["vs_baseline"]["diff_ci"]
            assert shown[f"ta_loop ({arm}) - ft (95% CI)"] == (
                f"{row['vs_baseline']['diff'] * 100:+.1f} ({lo * 100:+.1f} to {hi * 100:+.1f})"
            )
            assert shown[f"ta_loop ({arm})"] == f"{row['mean_accuracy']['ta_loop'] * 100:.1f}"
            assert shown["oracle"] == f"{row['mean_accuracy']['oracle'] * 100:.1f}"
    assert by_label[blind]["ta_loop (rank)"] == "-"  # rank ran no blind-spot cells
    assert "**calibrated** (seeds 0, 1, 2, 3, 4): break-even AUC 0.7" in text
    assert "**calibrated** against two_stage (seeds 0, 1, 2, 3, 4): break-even" in text
    assert ta_quality.stop_rule_lines(result["stop_rules"])[0] in text and "Triggered" in text


def test_pooling_takes_the_seed_as_the_unit_and_compares_the_two_leading_arms() -> None:
    runs = study_cells()
    pool = ta_quality.summarise(runs, ARMS)["pooled"]
    assert pool["ranking"] == ["calibrated", "rank"]  # calibrated's mean gain is 0 over AUCs; rank's -5
    calibrated, rank = pool["vs_baseline"]["calibrated"], pool["vs_baseline"]["rank"]
    assert (calibrated["seeds"], calibrated["cells"]) == (rank["seeds"], rank["cells"]) == (5, 30)
    # a seed's AUCs share its ft run: the t-interval is over the 5 seeds' means, 4 degrees of freedom
    ours = [r for r in runs if r["params"]["stage2.weighting"] == "calibrated"]
    gains = [np.mean([r["accuracy"]["ta_loop"] - r["accuracy"]["ft"] for r in ours if r["seed"] == s])
             for s in range(5)]  # fmt: skip
    assert calibrated["diff_t_ci"] == pytest.approx([seed_interval(gains)[k] for k in ("ci_low", "ci_high")])
    lead = pool["lead"]
    assert lead["arms"] == ["calibrated", "rank"] and (lead["seeds"], lead["cells"]) == (5, 30)
    assert lead["diff"] == pytest.approx(calibrated["diff"] - rank["diff"])
    assert lead["diff_ci"][0] > 0  # 5 points on every cell's same items: clear of zero
    text = ta_quality.markdown(ta_quality.summarise(runs, ARMS))
    assert "calibrated leads rank by +" in text and "over the 30 cells both ran (5 seeds;" in text


def _calibrated_ends(blind_gain: float, perfect_gain: float, jitter: int = 1) -> list[dict[str, Any]]:
    return [
        cell("calibrated", auc, s, {0.5: blind_gain, 1.0: perfect_gain}.get(auc, 0.0), jitter)
        for s in range(5)
        for auc in AUCS
    ]


def _rule(runs: list[dict[str, Any]], arms: dict[str, dict[str, Any]] = ARMS) -> dict[str, Any]:
    (rule,) = ta_quality.summarise(runs, arms)["stop_rules"]
    return rule


def test_the_stop_rule_fires_on_harm_at_a_blind_ta_or_a_shortfall_at_a_perfect_one() -> None:
    harm = _rule(study_cells())  # calibrated 10 points below two_stage at AUC 0.5
    assert harm["arm"] == "calibrated" and harm["blind_harms"] and harm["triggered"]
    fine = _rule(_calibrated_ends(0.0, 15.0))  # two_stage's level at 0.5, the oracle's at 1.0
    assert fine["blind_harms"] is False and fine["perfect_short"] is False and not fine["triggered"]
    short = _rule(_calibrated_ends(0.0, 0.0))  # 15 points below the oracle at 1.0
    assert short["perfect_short"] and short["triggered"] and short["blind_harms"] is False
    # one seed at the oracle's level, four 16 points below it: the shortfall still counts
    mixed = [r for r in _calibrated_ends(0.0, 0.0, jitter=0) if r["params"]["ta.auc_teacher"] != 1.0]
    mixed += [cell("calibrated", 1.0, s, 15.0 if s == 0 else -5.0, jitter=0) for s in range(5)]
    assert _rule(mixed)["perfect_short"]
    # one item short of the oracle on every seed alike: the seeds' MDE is 0, the interval reaches 0
    agree = _rule(_calibrated_ends(0.0, 13.75, jitter=0))
    assert agree["perfect_vs_oracle"]["mde"] == pytest.approx(0.0) and agree["perfect_vs_oracle"]["diff"] < 0
    assert agree["perfect_short"] is False and not agree["triggered"]


def test_the_stop_rule_judges_each_end_on_its_own_and_says_what_is_not_run() -> None:
    no_top = [r for r in study_cells() if r["params"]["ta.auc_teacher"] != 1.0]
    rule = _rule(no_top)
    assert rule["perfect_vs_oracle"] is None and rule["perfect_short"] is None
    assert rule["blind_harms"] and rule["triggered"]  # harm at 0.5 needs no AUC 1.0 to count
    (line,) = ta_quality.stop_rule_lines([rule])
    assert "at AUC 1.0 not run yet" in line and line.endswith(
        "**Triggered: stop the map and find out why first.**"
    )
    pending = _rule([r for r in _calibrated_ends(0.0, 15.0) if r["params"]["ta.auc_teacher"] != 0.5])
    (line,) = ta_quality.stop_rule_lines([pending])
    assert "at AUC 0.5 not run yet" in line and line.endswith("Not triggered so far.")
    (line,) = ta_quality.stop_rule_lines([_rule(_calibrated_ends(0.0, 15.0))])
    assert "harm not shown (a loss up to" in line and line.endswith("Not triggered.")
    assert ta_quality.stop_rule_lines([_rule(_calibrated_ends(0.0, 15.0))])[0] in ta_quality.markdown(
        ta_quality.summarise(_calibrated_ends(0.0, 15.0), ARMS)
    )


def test_the_stop_rule_finds_calibrated_arms_by_their_cells_not_their_names() -> None:
    rank_only = [r for r in study_cells() if r["params"]["stage2.weighting"] == "rank"]
    assert ta_quality.summarise(rank_only, ARMS)["stop_rules"] == []  # the rule is about calibrated weights
    # an arm that leaves stage2.weighting to the default is found by its cells' resolved params
    by_default = {"rank": ARMS["rank"], "default": {"signals.selection": "calibrated"}}
    calibrated = [r for r in study_cells() if r["params"]["stage2.weighting"] == "calibrated"]
    assert _rule(calibrated, by_default)["arm"] == "default"
    two_calibrated = {
        "calibrated-g0": {**ARMS["calibrated"], "stage2.need_gain": 0},
        **ARMS,
    }  # first match wins
    runs = _calibrated_ends(0.0, 15.0) + [
        cell("calibrated", auc, s, -10.0, **{"stage2.need_gain": 0}) for s in range(5) for auc in AUCS
    ]
    rules = ta_quality.summarise(runs, two_calibrated)["stop_rules"]
    assert [(r["arm"], r["triggered"]) for r in rules] == [("calibrated", False), ("calibrated-g0", True)]


def test_the_report_shows_the_measured_auc_beside_the_set_one() -> None:
    runs = study_cells()
    for r in runs:
        a, shift = r["params"]["ta.auc_teacher"], 0.01 * r["seed"]
        r["calibration"]["auc"] = {
            "ta_teacher": {"m": {"auc": a - shift}},
            "ta_student": {"m": {"auc": a - 0.04}},
        }
        if r["seed"] == 4:
            r["calibration"]["auc"]["ta_student"]["m"]["auc"] = None  # too few wrong student answers
    text = ta_quality.markdown(ta_quality.summarise(runs, ARMS))
    assert "| 0.70 | 0.68 (0.66-0.70); 0.66 (0.66-0.66), 4 of 5 seeds | 5 |" in text
    assert "| 1.00 | 0.98 (0.96-1.00); 0.96 (0.96-0.96), 4 of 5 seeds | 5 |" in text
