"""Calibrated weighting (stage2.weighting: calibrated) on crafted signals: the four properties
its design promises (issue 33): (a) an uninformative signal leaves the weights constant, (b) a
perfect teacher-trust signal gives the oracle's data, (c) weights rise with each calibrated
probability, (d) mean 1 per task under the stated cap."""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import pytest

from taloop.method import calibrated
from taloop.method.calibration import decide, signal_plan
from taloop.method.schedule import TrainPlan, plan_record
from taloop.method.selection import example_weights, task_diagnostics
from taloop.params import validate_params
from taloop.params.schema import TA_MEASURES, ConfigError, Params, Stage2Config, VariantSpec

TASKS = ("chain_sum", "leg_counting", "syllogism", "family_relationships")
ALL = ["self_consistency", "ta_student", "ta_teacher"]
LOOP = VariantSpec(schedule="two_stage", signals=ALL)
SC_LEVELS = (0.25, 0.5, 0.75, 1.0)  # self-consistency of K = 4 samples


def _row(task: str, i: int, teacher_ok: bool, student_ok: bool, trust: float, ta_student: float, sc: float):
    return {
        "task": task, "id": f"{task}-{i}", "sample": 0, "teacher_correct": teacher_ok,
        "student_correct": student_ok, "sc": sc, "teacher_tokens": 1,
        **{f"ta_teacher_{m}": trust for m in TA_MEASURES},
        **{f"ta_student_{m}": ta_student for m in TA_MEASURES},
    }  # fmt: skip


def binormal_rows(
    rng: np.random.Generator, per_task: int, d_teacher: float, d_student: float, d_sc: float = 0.0
) -> list[dict[str, Any]]:
    """Rows whose signals follow the equal-variance binormal model at the given separations
    (d' = 0: AUC 0.5); the teacher is wrong on 20% of replies, the student on half the questions."""
    rows = []
    for task in TASKS:
        for i in range(per_task):
            teacher_ok, student_ok = bool(rng.random() >= 0.2), bool(rng.random() >= 0.5)
            level = rng.normal() + (d_sc if student_ok else 0.0)
            sc = SC_LEVELS[int(np.clip(np.floor(level + 2), 0, 3))]
            trust = rng.normal() + (d_teacher if teacher_ok else 0.0)
            rows.append(
                _row(
                    task,
                    i,
                    teacher_ok,
                    student_ok,
                    trust,
                    rng.normal() + (d_student if student_ok else 0),
                    sc,
                )
            )
    return rows


def even_rows(perfect_trust: bool, gap: float = 2.0) -> list[dict[str, Any]]:
    """Per task 32 right and 8 wrong teacher replies, 20 right and 20 wrong student answers.
    Every student signal takes the same values, as often, on both classes (AUC exactly 0.5);
    teacher trust does too, or separates the classes completely (``perfect_trust``), the
    nearest right and wrong values ``gap`` apart (each class spans 1)."""
    rows = []
    for task in TASKS:
        for i in range(40):
            teacher_ok = i % 5 != 0
            spread = ((i // 5) % 4) / 3  # each of four values a quarter of each teacher class
            trust = (gap / 2 + spread if teacher_ok else -gap / 2 - spread) if perfect_trust else spread
            student_ok = i % 2 == 0
            value = (i // 2) % 4  # each of four values a quarter of each student class
            rows.append(_row(task, i, teacher_ok, student_ok, trust, value / 3, SC_LEVELS[value]))
    return rows


def _params(raw: dict[str, Any], selection: str = "calibrated", **stage2: Any) -> Params:
    raw["ta"]["scorer"] = "mean_logprob"
    raw["signals"]["selection"] = selection
    raw["stage2"] |= {"weighting": "calibrated", "combine": "mean", **stage2}
    return validate_params(raw)


def _weights(
    params: Params, val: list[dict[str, Any]], train: list[dict[str, Any]], variant=LOOP
) -> np.ndarray:
    plan, _ = signal_plan(params, variant, decide(val, params), val)
    return example_weights(train, variant, params.stage2, plan)


# --- (a) an uninformative signal: weights within +-10% of constant ------------------------------


def test_a_signal_at_auc_one_half_gets_no_slope_and_constant_weights(raw_params: dict[str, Any]) -> None:
    params = _params(raw_params, selection="as_listed")  # no validation gate: the fit alone
    rows = even_rows(perfect_trust=False)
    plan, _ = signal_plan(params, LOOP, decide(rows, params), rows)
    assert plan.p_right is not None and plan.p_need is not None
    assert plan.p_right.evidence.slope == pytest.approx([0.0], abs=1e-9)
    assert plan.p_need.evidence.slope == pytest.approx([0.0, 0.0], abs=1e-9)
    train = binormal_rows(np.random.default_rng(1), 36, 0.0, 0.0)
    weights = example_weights(train, LOOP, params.stage2, plan)
    assert np.all(np.abs(weights - 1) <= 0.10)


def test_at_true_auc_one_half_the_validation_gate_keeps_weights_constant(raw_params: dict[str, Any]) -> None:
    """Drawn from a TA at chance, a finite validation set still shows some slope; the gate
    (signals.selection: calibrated) leaves such a signal out unless its AUC's CI excludes 0.5."""
    draws = 30
    constant = dict.fromkeys(("calibrated", "as_listed"), 0)
    for selection in constant:
        params = _params(copy.deepcopy(raw_params), selection=selection)
        for seed in range(draws):
            rng = np.random.default_rng(seed)
            val, train = binormal_rows(rng, 25, 0.0, 0.0), binormal_rows(rng, 36, 0.0, 0.0)
            constant[selection] += bool(np.all(np.abs(_weights(params, val, train) - 1) <= 0.10))
    # Three signals, each kept by chance about 5% of the time when its CI is right.
    assert constant["calibrated"] >= 0.8 * draws
    # Without the gate, noise in 100 validation rows moves weights by more than 10% most of
    # the time: the gate is what makes (a) hold, so signals.selection stays.
    assert constant["as_listed"] <= 0.5 * draws


# --- (b) a perfect teacher-trust signal: the oracle's data ---------------------------------------


@pytest.mark.parametrize("gap", [2.0, 0.02])  # far apart, or adjacent: no gap to speak of
def test_a_perfect_trust_signal_trains_on_the_right_replies_alone(
    raw_params: dict[str, Any], gap: float
) -> None:
    params = _params(raw_params, selection="as_listed")
    val, train = even_rows(perfect_trust=True, gap=gap), even_rows(perfect_trust=True, gap=gap)
    weights = _weights(params, val, train)
    per_task = task_diagnostics(train, weights, [len(r["id"]) for r in train])  # unequal lengths
    tasks = np.asarray([r["task"] for r in train])
    right = np.asarray([r["teacher_correct"] for r in train])
    for task, diag in per_task.items():
        assert diag["wrong_loss_share"] <= 0.02, task
        w = weights[(tasks == task) & right]
        assert w.max() <= 1.1 * w.min(), task
        # the oracle drops the wrong fifth; at equal steps each right reply is seen 5/4 as often
        assert w.mean() == pytest.approx(40 / 32, rel=0.02)


def test_a_task_with_no_wrong_validation_reply_still_distrusts_its_low_replies() -> None:
    """Its midpoint comes from its right replies and the separation the other tasks show; its
    base rate (no wrong reply in 20) holds a reply 3 SD down at better than even, 5 SD down not."""
    val = binormal_rows(np.random.default_rng(4), 25, d_teacher=3.0, d_student=0.0)
    val = [r for r in val if r["task"] != "syllogism" or r["teacher_correct"]]
    model = calibrated.fit(val, "teacher_correct", ["ta_teacher_mean_logprob"])
    right = [r["ta_teacher_mean_logprob"] for r in val if r["task"] == "syllogism"]
    probe = [
        {"task": "syllogism", "ta_teacher_mean_logprob": v}
        for v in (float(np.mean(right)), float(np.mean(right)) - 3, float(np.mean(right)) - 5)
    ]
    high, middle, low = model.predict(probe)
    assert high > 0.99 and 0.5 < middle < high and low < 0.1


# --- (c) weights rise with each calibrated probability -------------------------------------------


def test_usefulness_rises_with_each_probability() -> None:
    grid = np.linspace(0, 1, 11)
    for gain in (0.0, 1.0, 3.0):
        useful = calibrated.usefulness(grid[:, None], grid[None, :], gain)  # rows p_right, cols p_need
        assert np.all(np.diff(useful, axis=0) > 0)
        assert np.all(np.diff(useful, axis=1) >= 0) and (gain == 0 or np.all(np.diff(useful[1:], axis=1) > 0))


def test_scaling_and_capping_keep_the_order_of_usefulness() -> None:
    rng = np.random.default_rng(0)
    for _ in range(200):
        useful = rng.lognormal(0, 2, size=int(rng.integers(2, 60)))
        weights = calibrated.capped_mean_one(useful, cap=float(rng.uniform(1, 4)))
        order = np.argsort(useful)
        assert np.all(np.diff(weights[order]) >= -1e-12)


def test_calibrated_probability_follows_the_signal_in_the_direction_the_validation_rows_show() -> None:
    rng = np.random.default_rng(3)
    val = binormal_rows(rng, 25, d_teacher=1.5, d_student=0.0)
    for flip in (1, -1):
        rows = [r | {"ta_teacher_m": flip * r["ta_teacher_mean_logprob"]} for r in val]
        model = calibrated.fit(rows, "teacher_correct", ["ta_teacher_m"])
        probe = [{"task": t, "ta_teacher_m": v} for t in TASKS for v in np.linspace(-3, 3, 13)]
        p = model.predict(probe).reshape(len(TASKS), -1)
        assert np.all(flip * np.diff(p, axis=1) > 0)  # a reversed signal is learnt reversed


def test_within_a_task_weights_follow_the_trust_signal(raw_params: dict[str, Any]) -> None:
    params = _params(raw_params, selection="as_listed")
    val = binormal_rows(np.random.default_rng(6), 25, d_teacher=1.5, d_student=0.0)
    train = [
        _row(t, i, True, True, trust, 0.5, 0.75)
        for t in TASKS
        for i, trust in enumerate(np.linspace(-2, 4, 30))
    ]
    weights = _weights(params, val, train).reshape(len(TASKS), -1)
    assert np.all(np.diff(weights, axis=1) >= -1e-12) and np.all(weights[:, -1] > weights[:, 0])


# --- (d) mean 1 per task under the cap ----------------------------------------------------------


@pytest.mark.parametrize("cap", [1.0, 1.5, 3.0])
def test_weights_keep_mean_one_and_never_pass_the_cap(cap: float) -> None:
    rng = np.random.default_rng(int(cap * 10))
    cases = [rng.lognormal(0, 1.5, size=50) for _ in range(100)] + [np.full(5, 2.0), np.r_[1.0, 2.0, 3.0]]
    for useful in cases:
        weights = calibrated.capped_mean_one(useful, cap)
        if np.minimum(cap, cap * useful / useful.mean()).mean() >= 1:  # reachable within the lift
            assert weights.mean() == pytest.approx(1.0, abs=1e-9)
        assert weights.max() <= cap + 1e-9


def test_where_few_replies_are_useful_the_mean_falls_rather_than_lift_the_useless() -> None:
    """Cap 1.5 and 60% of a task's replies shown wrong: mean 1 would need 0.1 of weight on the
    wrong ones; they keep at most cap times what mean-1 scaling gave them instead."""
    useful = np.r_[np.full(4, 1.0), np.full(6, 1e-6)]
    weights = calibrated.capped_mean_one(useful, 1.5)
    assert weights[:4] == pytest.approx(1.5) and np.all(weights[4:] < 1e-4)
    assert weights.mean() == pytest.approx(0.6, abs=1e-4)
    assert calibrated.capped_mean_one(np.r_[0.0, 0.0, 1.0], 1.0).tolist() == [0.0, 0.0, 1.0]


def test_every_task_keeps_mean_one_whatever_its_signals(raw_params: dict[str, Any]) -> None:
    params = _params(raw_params, selection="as_listed", weight_cap=2.0)
    rng = np.random.default_rng(5)
    val, train = binormal_rows(rng, 25, 3.0, 2.0, d_sc=1.0), binormal_rows(rng, 36, 3.0, 2.0, d_sc=1.0)
    weights = _weights(params, val, train)
    tasks = np.asarray([r["task"] for r in train])
    for task in TASKS:
        assert weights[tasks == task].mean() == pytest.approx(1.0, abs=1e-9)
    assert weights.max() <= 2.0 + 1e-9
    assert weights.max() > 1.5  # the signals do move weight: the cap is what holds it


# --- wiring ---------------------------------------------------------------------------------------

EMPTY_PLAN = TrainPlan([], True, 0, 0, 0.0, 0.0, 1, 1, {})


def test_the_plan_records_its_fitted_probabilities(raw_params: dict[str, Any]) -> None:
    params = _params(raw_params, selection="as_listed")
    val = binormal_rows(np.random.default_rng(2), 25, 2.0, 1.0)
    plan, shares = signal_plan(params, LOOP, decide(val, params), val)
    record = plan_record("ta_loop", EMPTY_PLAN, [], plan, shares, "simulated TA")["signal_plan"]
    assert record["weighting"] == "calibrated" and "combine" not in record
    assert record["p_right"]["target"] == "teacher_correct"
    assert record["p_need"]["target"] == "not student_correct"
    assert record["p_right"]["log_ratio_per_sd"]["ta_teacher_mean_logprob"] > 0
    assert set(record["p_right"]["base_rate"]) == set(TASKS)


def test_a_one_stage_variant_cannot_be_weighted_by_calibration(raw_params: dict[str, Any]) -> None:
    params = _params(raw_params)
    val = even_rows(perfect_trust=True)
    one_stage = VariantSpec(schedule="one_stage", signals=ALL)
    with pytest.raises(ConfigError, match=r"stage2\.weighting"):
        signal_plan(params, one_stage, decide(val, params), val)


def test_a_task_without_validation_rows_is_named(raw_params: dict[str, Any]) -> None:
    params = _params(raw_params, selection="as_listed")
    val = [r for r in even_rows(perfect_trust=True) if r["task"] != "syllogism"]
    plan, _ = signal_plan(params, LOOP, decide(val, params), val)
    with pytest.raises(ValueError, match="syllogism"):
        example_weights(even_rows(perfect_trust=True), LOOP, Stage2Config(weighting="calibrated"), plan)


def test_a_perfect_trust_signal_plans_exactly_the_oracles_replies(raw_params: dict[str, Any]) -> None:
    params = _params(raw_params, selection="as_listed", need_gain=0.0)
    rows = even_rows(perfect_trust=True, gap=0.02)
    weights = _weights(params, rows, rows)
    oracle = example_weights(rows, VariantSpec(schedule="two_stage", gold_filter=True), params.stage2, None)
    assert np.array_equal(weights > 0, oracle > 0)
