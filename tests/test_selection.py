"""Signals -> weights within each task, the combinations, the fixed loss normaliser and the
equal optimiser budget, on crafted rows and a tiny in-process model."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

from taloop.method.calibration import choose_combine, decide, signal_plan
from taloop.method.schedule import plan_variant, step_budget
from taloop.method.selection import SignalPlan, example_weights, rank_normalise, task_diagnostics, usefulness
from taloop.params import validate_params
from taloop.params.schema import ConfigError, Stage2Config, VariantSpec
from taloop.student.loss import WeightedCollator, loss_normaliser, scored_positions, weighted_loss
from taloop.student.training import TrainExample, encode

ALL = ["self_consistency", "ta_student", "ta_teacher"]
LOOP = VariantSpec(schedule="two_stage", signals=ALL)
PLAN = SignalPlan("mean_logprob", dict.fromkeys(ALL, 1), "mean")


def _rows(n: int, task: str = "a", seed: int = 0, shift: float = 0.0) -> list[dict[str, Any]]:
    rng = np.random.default_rng(seed)
    return [
        {"task": task, "sc": float(rng.integers(1, 5)) / 4 + shift,
         "ta_student_mean_logprob": float(rng.random()) + shift,
         "ta_teacher_mean_logprob": float(rng.random()) + shift, "teacher_correct": bool(i % 5)}
        for i in range(n)
    ]  # fmt: skip


@pytest.mark.parametrize("mode", ["weight", "filter"])
def test_a_task_with_higher_signals_keeps_its_total_weight_and_kept_count(mode: str) -> None:
    # Task b's signals are all higher than task a's: pooled ranks would move weight to a
    # (all three signals' usefulness is a function of rank), within-task ranks must not.
    rows = _rows(20, "a") + _rows(30, "b", seed=1, shift=5.0)
    cfg = Stage2Config(mode=mode, keep_fraction=0.5)
    weights = example_weights(rows, LOOP, cfg, PLAN)
    tasks = np.array([r["task"] for r in rows])
    if mode == "weight":
        assert weights[tasks == "a"].sum() == pytest.approx(20)
        assert weights[tasks == "b"].sum() == pytest.approx(30)
    else:
        assert np.count_nonzero(weights[tasks == "a"]) == 10
        assert np.count_nonzero(weights[tasks == "b"]) == 15
    # Task a's weights do not depend on what task b's signals are.
    other = _rows(20, "a") + _rows(30, "b", seed=7, shift=-3.0)
    assert np.array_equal(example_weights(other, LOOP, cfg, PLAN)[:20], weights[:20])


def test_gate_with_a_perfect_teacher_trust_leaves_wrong_replies_little_of_the_loss() -> None:
    rng = np.random.default_rng(3)
    rows = []
    for task in ("a", "b"):
        for i in range(60):
            correct = i % 5 != 0  # 20% wrong
            rows.append({
                "task": task, "teacher_correct": correct, "sc": float(rng.integers(1, 5)) / 4,
                "ta_student_mean_logprob": float(rng.random()),
                # perfect: every wrong reply is trusted less than every right one
                "ta_teacher_mean_logprob": float(rng.random()) + (1.0 if correct else 0.0),
            })  # fmt: skip
    tokens = [50] * len(rows)
    cfg = Stage2Config(mode="weight", weight_floor=0.1)
    shares = {}
    for combine in ("mean", "gate"):
        weights = example_weights(rows, LOOP, cfg, SignalPlan("mean_logprob", dict.fromkeys(ALL, 1), combine))
        per_task = task_diagnostics(rows, weights, tokens)
        shares[combine] = max(t["wrong_loss_share"] for t in per_task.values())
    assert shares["gate"] <= 0.05
    assert shares["mean"] > 0.10  # averaging with two noise signals dilutes the trust signal


def test_signs_and_directions() -> None:
    rows = [
        {"task": "a", "sc": 1.0, "ta_student_m": 0.9, "ta_teacher_m": 0.9},
        {"task": "a", "sc": 0.25, "ta_student_m": 0.1, "ta_teacher_m": 0.1},
    ]
    # A sure student is less useful to teach; a trusted teacher is more useful to learn from.
    assert usefulness(rows, SignalPlan("m", {"self_consistency": 1})).tolist() == [0.0, 1.0]
    assert usefulness(rows, SignalPlan("m", {"ta_student": 1})).tolist() == [0.0, 1.0]
    assert usefulness(rows, SignalPlan("m", {"ta_teacher": 1})).tolist() == [1.0, 0.0]
    assert usefulness(rows, SignalPlan("m", {"ta_teacher": -1})).tolist() == [0.0, 1.0]
    # base_ columns for one-stage variants
    base = [{"task": "a", "base_sc": 0.5}, {"task": "a", "base_sc": 1.0}]
    assert usefulness(base, SignalPlan("m", {"self_consistency": 1}), prefix="base_").tolist() == [1.0, 0.0]
    assert rank_normalise([5.0]).tolist() == [0.5]
    assert rank_normalise([1.0, 1.0, 3.0]).tolist() == [0.25, 0.25, 1.0]


def test_weight_mode_is_monotone_in_usefulness_with_a_floor() -> None:
    rows = _rows(40)
    cfg = Stage2Config(mode="weight", weight_floor=0.3)
    plan = SignalPlan("mean_logprob", {"ta_teacher": 1})
    weights = example_weights(rows, VariantSpec(schedule="two_stage", signals=["ta_teacher"]), cfg, plan)
    trust = np.array([r["ta_teacher_mean_logprob"] for r in rows])
    order = np.argsort(trust)
    assert np.all(np.diff(weights[order]) >= -1e-12)
    assert weights.mean() == pytest.approx(1.0)
    # The floor binds (a third of the rows would sit below it) and survives renormalising.
    assert weights.min() > 0.2 and np.sum(weights == weights.min()) > 1


def test_oracle_drops_exactly_the_wrong_teacher_replies() -> None:
    rows = _rows(12)
    weights = example_weights(rows, VariantSpec(schedule="two_stage", gold_filter=True), Stage2Config(), None)
    assert weights.tolist() == [1.0 if r["teacher_correct"] else 0.0 for r in rows]


# --- the fixed loss normaliser -----------------------------------------------------------


A = TrainExample("What is 2 + 2?", "2 + 2 = 4\nThe answer is 4.")
B = TrainExample(
    "Is every cat a mammal? Think about it step by step.", "Cats are mammals.\nThe answer is Yes."
)


def _grads(model: Any, tok: Any, examples: list[TrainExample], normaliser: float = 10.0) -> torch.Tensor:
    batch = WeightedCollator(tok.pad_token_id)(encode(tok, examples, max_length=128))
    model.zero_grad()
    keep = batch["input_ids"].shape[1]
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    weighted_loss(logits[:, -keep:], batch["labels"], batch["weight"], normaliser).backward()
    return torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])


def _weighted(ex: TrainExample, w: float) -> TrainExample:
    return TrainExample(ex.prompt, ex.completion, w)


def test_a_weight_two_example_pushes_twice_as_hard_alone_and_in_a_mixed_batch(tiny) -> None:
    model, tok = tiny
    one, two = _grads(model, tok, [_weighted(A, 1)]), _grads(model, tok, [_weighted(A, 2)])
    assert torch.allclose(two, 2 * one, rtol=1e-5, atol=1e-8)
    # In a batch with B, A's own contribution is what the batch adds over B alone (weight 0).
    base = _grads(model, tok, [_weighted(A, 0), B])
    one_mixed = _grads(model, tok, [_weighted(A, 1), B]) - base
    two_mixed = _grads(model, tok, [_weighted(A, 2), B]) - base
    assert one_mixed.abs().sum() > 0
    assert torch.allclose(two_mixed, 2 * one_mixed, rtol=1e-3, atol=1e-7)
    # A per-batch normaliser would shrink B's push when A's weight grows; a fixed one does not.
    b_alone = _grads(model, tok, [_weighted(A, 0), B])
    assert torch.allclose(base, b_alone)


def test_all_ones_weights_equal_the_plain_loss_on_an_average_batch(tiny) -> None:
    model, tok = tiny
    rows = encode(tok, [A, B], max_length=128)
    batch = WeightedCollator(tok.pad_token_id)(rows)
    out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=batch["labels"])
    # With the batch being the whole dataset, mean(w*n) * batch size = its token count.
    ours = weighted_loss(out.logits, batch["labels"], torch.ones(2), loss_normaliser(rows, batch_size=2))
    assert torch.allclose(ours, out.loss, atol=1e-6)


def test_the_loss_on_the_kept_logits_is_the_weighted_full_logit_loss(tiny) -> None:
    # Training asks the model for the last scored_positions logits only; the loss on them must
    # be the full-logit loss, w_i-weighted linearly (fractional weights: w**2 would differ).
    model, tok = tiny
    batch = WeightedCollator(tok.pad_token_id)(encode(tok, [A, B], max_length=128))
    labels, weight = batch["labels"], torch.tensor([0.5, 1.5])
    keep = scored_positions(labels)
    assert keep < labels.shape[1]  # the prompts are longer than the completions
    with torch.no_grad():
        full = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        kept = model(
            input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], logits_to_keep=keep
        ).logits
    # By hand: each example's summed next-token NLL over its completion tokens.
    logp = torch.log_softmax(full.float(), dim=-1)
    nll = [
        -sum(logp[i, t - 1, labels[i, t]] for t in range(labels.shape[1]) if labels[i, t] != -100)
        for i in range(2)
    ]
    expected = (0.5 * nll[0] + 1.5 * nll[1]) / 7.0
    ours = weighted_loss(kept, labels[:, -keep:], weight, 7.0)
    torch.testing.assert_close(ours, expected, rtol=1e-5, atol=1e-6)
    # One position fewer drops the first completion token of the longest completion.
    short = weighted_loss(full[:, -(keep - 1) :], labels[:, -(keep - 1) :], weight, 7.0)
    assert not torch.isclose(short, expected)


def test_rank_normalise_ties_and_sizes() -> None:
    assert rank_normalise([]).size == 0
    assert rank_normalise([3.0, 1.0, 2.0]).tolist() == [1.0, 0.0, 0.5]
    assert rank_normalise([2.0, 2.0, 2.0, 2.0]).tolist() == [0.5] * 4  # all tied: the middle


@pytest.mark.parametrize(("n", "kept"), [(1, 1), (2, 1), (3, 2), (4, 2), (5, 3), (7, 4)])
def test_filter_keeps_keep_fraction_rounded_and_at_least_one(n: int, kept: int) -> None:
    # keep_fraction 0.6: round(0.6 n), never 0 (0.6, 1.2, 1.8, 2.4, 3.0, 4.2 by hand).
    weights = example_weights(_rows(n), LOOP, Stage2Config(mode="filter", keep_fraction=0.6), PLAN)
    assert int((weights > 0).sum()) == kept and set(weights.tolist()) <= {0.0, 1.0}


def test_loss_normaliser_is_the_mean_weighted_token_count_times_the_batch() -> None:
    rows = [{"labels": [-100, 1, 2], "weight": 2.0}, {"labels": [-100, -100, 3, 4, 5, 6], "weight": 0.5}]
    assert loss_normaliser(rows, batch_size=8) == pytest.approx((2 * 2 + 0.5 * 4) / 2 * 8)
    with pytest.raises(ValueError, match="positive weight"):
        loss_normaliser([{"labels": [1], "weight": 0.0}], batch_size=2)


# --- equal optimiser budget --------------------------------------------------------------


def _params(raw_params: dict[str, Any], **stage2: Any) -> Any:
    """These tests are about rank weighting (the paper's); calibrated has its own file."""
    raw = {**raw_params, "stage2": {**raw_params.get("stage2", {}), "weighting": "rank", **stage2}}
    raw["variants"] = {
        "ft": {"schedule": "one_stage"},
        "two_stage": {"schedule": "two_stage"},
        "ta_loop": {"schedule": "two_stage", "signals": ALL},
        "oracle": {"schedule": "two_stage", "gold_filter": True},
    }
    raw["baseline"], raw["compare"] = "ft", ["two_stage", "ta_loop", "oracle"]
    return validate_params(raw)


def _replies(n: int) -> list[dict[str, Any]]:
    return [
        {"id": f"q{i}", "sample": 0, "task": "ab"[i % 2], "rationale": f"r{i}", "correct": i % 4 != 0,
         "output_tokens": 10 + i}
        for i in range(n)
    ]  # fmt: skip


@pytest.mark.parametrize("mode", ["weight", "filter"])
def test_every_variant_takes_the_same_optimiser_steps(raw_params: dict[str, Any], mode: str) -> None:
    params = _params(raw_params, mode=mode, epochs=3, batch_size=4)
    replies = _replies(37)
    signals = {(r["id"], 0): _rows(1, r["task"], seed=i)[0] for i, r in enumerate(replies)}
    prompts = {r["id"]: "q" for r in replies}
    plan = SignalPlan("mean_logprob", dict.fromkeys(ALL, 1), "gate")
    plans = {
        v: plan_variant(params, v, replies, signals, prompts, plan)
        for v in ("ft", "two_stage", "ta_loop", "oracle")
    }
    budget = step_budget(replies, params)
    assert {p.total_steps for p in plans.values()} == {budget.total} == {30}  # ceil(37/4) x 3
    assert plans["ft"].steps == budget.total
    assert {plans[v].steps for v in ("two_stage", "ta_loop", "oracle")} == {budget.total - budget.warmup}
    # The oracle (and a filter) trains on fewer rows but as many steps: it revisits them.
    assert plans["oracle"].kept < plans["two_stage"].kept
    if mode == "filter":
        assert plans["ta_loop"].kept < plans["two_stage"].kept
    assert set(plans["ta_loop"].per_task) == {"a", "b"}


def test_a_step_budget_the_warmup_uses_up_is_refused(raw_params: dict[str, Any]) -> None:
    raw = {**raw_params, "warmup": {**raw_params.get("warmup", {}), "epochs": 20}}
    params = _params(raw, epochs=1)
    with pytest.raises(ConfigError, match=r"stage2\.epochs"):
        step_budget(_replies(16), params)


# --- choices made on validation rows -------------------------------------------------------


def _val_rows(n: int = 80) -> list[dict[str, Any]]:
    rng = np.random.default_rng(5)
    rows = []
    for i in range(n):
        teacher_ok, student_ok = i % 4 != 0, i % 3 != 0
        row = {
            "id": f"q{i}",
            "task": "ab"[i % 2],
            "teacher_correct": teacher_ok,
            "student_correct": student_ok,
            "teacher_tokens": 20,
            "sc": float(rng.random()),
        }  # sc carries no information
        for m in ("mean_logprob", "min_logprob", "local_window", "answer_logprob", "contrastive"):
            row[f"ta_teacher_{m}"] = float(rng.random())
            row[f"ta_student_{m}"] = float(rng.random())
        row["ta_teacher_min_logprob"] += 2.0 * teacher_ok  # the informative measure
        row["ta_student_min_logprob"] -= 2.0 * student_ok  # informative, but reversed
        rows.append(row)
    return rows  # fmt: skip


def test_calibration_picks_the_informative_measure_and_signs(raw_params: dict[str, Any]) -> None:
    params = _params(raw_params)
    out = decide(_val_rows(), params)
    assert out["selection_replies"] == out["confirmation_replies"] == 40
    chosen = out["chosen"]
    assert chosen["measure"] == "min_logprob"
    assert chosen["signs"] == {"ta_teacher": 1, "ta_student": -1, "self_consistency": 0}
    plan, shares = signal_plan(params, params.variants["ta_loop"], out, _val_rows())
    assert plan.signs == {"ta_teacher": 1, "ta_student": -1} and plan.measure == "min_logprob"
    assert plan.combine == "gate" and shares["gate"] < shares["mean"]
    assert choose_combine(_val_rows(), params, "min_logprob", {}) == ("mean", {})
    # Explicit params win over the calibration.
    explicit = _params({**raw_params, "ta": {"scorer": "contrastive"}, "signals": {"selection": "as_listed"}},
                       combine="mean")  # fmt: skip
    plan, _ = signal_plan(explicit, explicit.variants["ta_loop"], None)
    assert plan == SignalPlan("contrastive", dict.fromkeys(ALL, 1), "mean")
    with pytest.raises(ConfigError, match="calibrate_signals"):
        signal_plan(params, params.variants["ta_loop"], None)


def test_a_one_stage_variant_weights_replies_by_the_base_students_signals(raw_params: dict[str, Any]) -> None:
    # One-stage variants have no warmed-up student: their signals are the base student's
    # ("base_" columns, over every reply), the two-stage ones' the warmed-up student's.
    raw = {**raw_params, "signals": {**raw_params["signals"], "base_student": True, "selection": "as_listed"}}
    params = _params(raw, mode="weight")
    raw = params.model_dump()
    raw["variants"]["ta_loop_one_stage"] = {"schedule": "one_stage", "signals": ALL}
    raw["compare"] = [*raw["compare"], "ta_loop_one_stage"]
    params = validate_params(raw)
    replies = _replies(24)
    varied = {(r["id"], 0): _rows(1, r["task"], seed=i)[0] for i, r in enumerate(replies)}
    # the TA's view of the teacher's reply does not depend on the student: it has no base_ twin
    flat = dict.fromkeys(("sc", "ta_student_mean_logprob", "ta_teacher_mean_logprob"), 0.5)
    student = ("sc", "ta_student_mean_logprob")
    signals = {key: {**flat, **{f"base_{k}": row[k] for k in student}} for key, row in varied.items()}
    prompts = {r["id"]: "q" for r in replies}
    plan = SignalPlan("mean_logprob", dict.fromkeys(ALL, 1), "mean")
    one = plan_variant(params, "ta_loop_one_stage", replies, signals, prompts, plan)
    two = plan_variant(params, "ta_loop", replies, signals, prompts, plan)
    assert not one.from_warmup and len(one.examples) == 24  # every reply, from the base model
    assert one.weight_max > one.weight_min  # the base_ signals vary
    assert two.weight_max == two.weight_min  # the warmed-up student's are flat
    # and a one-stage variant without base_ scores is refused, naming the setting
    del signals[("q3", 0)]["base_sc"]
    with pytest.raises(KeyError, match="base_sc"):
        plan_variant(params, "ta_loop_one_stage", replies, signals, prompts, plan)


@pytest.mark.parametrize("sign", [0, 2, -1.5])
def test_a_signal_plan_refuses_a_sign_other_than_plus_or_minus_one(sign: float) -> None:
    with pytest.raises(ValueError, match="signal signs must be"):
        SignalPlan("mean_logprob", {"self_consistency": 1, "ta_teacher": sign})  # type: ignore[dict-item]
