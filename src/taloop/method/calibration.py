"""Choosing how signals are used, on the validation split only.

calibrate_signals buys teacher replies for validation questions (free with the simulated
teacher: :func:`taloop.method.sampling.calibration_questions`), and has the TA score them and the
warmed-up student's outputs on the same questions (sampled by sample_student) with every measure.
From those rows, judged against gold, it decides:

- the TA measure: the one whose pooled-within-task AUC at flagging wrong teacher replies is
  highest on a selection half of the validation questions (``ta.scorer: auto``); everything
  below is decided, and every AUC reported, on the other half, so the winner of five is not
  judged on the rows that made it win;
- each signal's inclusion and sign (``signals.selection: calibrated``): a signal is kept
  when the 95% CI of its pooled-within-task AUC at flagging what it claims to flag (wrong
  teacher replies for TA-on-teacher, wrong student answers for the two student signals)
  lies wholly above 0.5, kept reversed when wholly below, and left out otherwise (or when
  fewer than MIN_PER_CLASS wrong or right outputs back it): a signal that cannot be told
  from noise on validation only adds noise to the weights;
- the combination (``stage2.combine: auto``, decided by train_stage2 from the same rows, so
  that stage-2 settings do not rerun the calibration): the one that puts the smaller share of the
  stage-2 loss on wrong teacher replies when ta_loop's weights are computed on the
  validation replies. That is a proxy (it says nothing about what the student signals add)
  chosen because training one student per candidate would multiply the run's cost.

The test split is never read here.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

import numpy as np

from taloop.core.metrics import grouped_flag_auc
from taloop.method.calibrated import fit
from taloop.method.scoring import ta_measure_name
from taloop.method.selection import SignalPlan, example_weights, signal_column, task_diagnostics
from taloop.params.schema import TA_MEASURES, ConfigError, Params, VariantSpec

# What each signal claims to flag when it is low.
TARGETS = {
    "ta_teacher": "teacher_correct",
    "ta_student": "student_correct",
    "self_consistency": "student_correct",
}
ALL_SIGNALS = ("self_consistency", "ta_student", "ta_teacher")


def _auc(rows: Sequence[dict[str, Any]], column: str, target: str, seed: int) -> dict[str, Any]:
    return grouped_flag_auc(
        [not r[target] for r in rows], [r[column] for r in rows], [r["task"] for r in rows], seed=seed
    )


# A percentile bootstrap over a handful of rows can give a CI of zero width (1.00 to 1.00
# with one wrong and one right output per task), so a decision also needs this many
# outputs of each class.
MIN_PER_CLASS = 5


def _sign(auc: dict[str, Any]) -> int:
    low, high = auc.get("ci_low"), auc.get("ci_high")
    groups = auc.get("per_group", {}).values()
    wrong = sum(g["wrong"] for g in groups if g.get("auc") is not None)
    right = sum(g["n"] - g["wrong"] for g in groups if g.get("auc") is not None)
    if low is None or high is None or min(wrong, right) < MIN_PER_CLASS:
        return 0
    return 1 if low > 0.5 else -1 if high < 0.5 else 0


def _wrong_share(rows: Sequence[dict[str, Any]], params: Params, plan: SignalPlan) -> float:
    variant = VariantSpec(schedule="two_stage", signals=list(plan.signs))
    weights = example_weights(rows, variant, params.stage2, plan)
    per_task = task_diagnostics(rows, weights, [r.get("teacher_tokens", 1) for r in rows])
    return float(np.mean([t["wrong_loss_share"] for t in per_task.values()]))


def split_halves(rows: Sequence[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Validation rows split by question, within each task, into a selection half (where the
    measure is chosen) and a confirmation half (where signs and the reported AUCs come from):
    testing the best of five measures on the rows that made it best would overstate it."""
    selection, confirmation = [], []
    for task in sorted({r["task"] for r in rows}):
        ids = sorted(
            {r["id"] for r in rows if r["task"] == task}, key=lambda i: hashlib.sha256(i.encode()).hexdigest()
        )
        chosen = set(ids[: len(ids) // 2])
        for r in rows:
            if r["task"] == task:
                (selection if r["id"] in chosen else confirmation).append(r)
    return selection, confirmation


def decide(rows: Sequence[dict[str, Any]], params: Params) -> dict[str, Any]:
    """Every measure's and signal's validation AUCs, and the choices made from them."""
    if not rows:
        raise ValueError("calibration needs scored validation replies; none were given")
    seed = params.eval.seed
    measures = [*TA_MEASURES, "judge"] if params.ta.scorer == "judge" else list(TA_MEASURES)
    selection, confirmation = split_halves(rows)
    picked = {
        m: _auc(selection, signal_column("ta_teacher", m), TARGETS["ta_teacher"], seed) for m in measures
    }
    auc: dict[str, Any] = {
        ta: {m: _auc(confirmation, signal_column(ta, m), TARGETS[ta], seed) for m in measures}
        for ta in ("ta_teacher", "ta_student")
    }
    auc["self_consistency"] = _auc(confirmation, "sc", TARGETS["self_consistency"], seed)
    if params.ta.scorer == "auto":
        measure = max(TA_MEASURES, key=lambda m: picked[m]["auc"] or 0.0)
    else:
        measure = params.ta.scorer
    chosen_auc = {
        "ta_teacher": auc["ta_teacher"][measure],
        "ta_student": auc["ta_student"][measure],
        "self_consistency": auc["self_consistency"],
    }
    signs = {s: _sign(chosen_auc[s]) for s in ALL_SIGNALS}
    return {
        "split": "val",
        "diagnostic_uses_gold": True,
        "replies": len(rows),
        "selection_replies": len(selection),
        "confirmation_replies": len(confirmation),
        "teacher_wrong_rate": float(np.mean([not r["teacher_correct"] for r in rows])),
        "student_wrong_rate": float(np.mean([not r["student_correct"] for r in rows])),
        "selection_auc_ta_teacher": {m: a["auc"] for m, a in picked.items()},
        "auc": auc,
        "chosen": {"measure": measure, "signs": signs},
        "rule": (
            "validation questions split in half within each task; measure: highest pooled-within-task "
            "AUC at flagging wrong teacher replies on the first half; on the second half, a signal is "
            "kept (sign +1) when its AUC's 95% CI lies above 0.5, reversed (-1) when below, left out (0) "
            f"otherwise or with fewer than {MIN_PER_CLASS} wrong or right outputs"
        ),
    }


def choose_combine(
    rows: Sequence[dict[str, Any]], params: Params, measure: str, signs: dict[str, int]
) -> tuple[str, dict[str, float]]:
    """The combination that puts the smaller share of stage-2 loss on wrong teacher replies
    when ta_loop's weights (these signs, ``stage2`` settings) are computed on the validation
    replies, and each candidate's share. Computed at training time, so a stage2.* change
    does not rerun calibrate_signals."""
    if not signs:
        return "mean", {}
    shares = {c: _wrong_share(rows, params, SignalPlan(measure, signs, c)) for c in ("mean", "gate")}
    # Ties (e.g. no teacher-trust signal kept, where gate is mean) go to the simpler mean.
    return ("gate" if shares["gate"] < shares["mean"] else "mean"), shares


def signal_plan(
    params: Params,
    variant: VariantSpec,
    calibration: dict[str, Any] | None,
    rows: Sequence[dict[str, Any]] = (),
) -> tuple[SignalPlan | None, dict[str, float]]:
    """How ``variant``'s signals become weights: explicit params win, ``auto`` and
    ``calibrated`` settings come from calibrate_signals' choices and validation ``rows``.
    Returns the plan (None: no signals) and each combination's wrong-reply loss share when
    the combination was chosen here."""
    if not variant.signals:
        return None, {}
    needs = (
        params.ta.scorer == "auto"
        or params.stage2.combine == "auto"
        or params.signals.selection == "calibrated"
        or params.stage2.weighting == "calibrated"
    )
    if needs and calibration is None:
        raise ConfigError([(
            "ta.scorer",
            "auto/calibrated settings need calibrate_signals' choices (metrics/calibration.json); "
            "run that stage or set ta.scorer, stage2.combine, stage2.weighting and signals.selection "
            "explicitly",
        )])  # fmt: skip
    chosen = (calibration or {}).get("chosen", {})
    measure = ta_measure_name(params, calibration)
    if params.signals.selection == "calibrated":
        signs = {s: chosen["signs"][s] for s in variant.signals if chosen["signs"][s]}
    else:
        signs = dict.fromkeys(variant.signals, 1)
    if params.stage2.weighting == "calibrated":
        return calibrated_plan(params, variant, rows, measure, signs), {}
    shares: dict[str, float] = {}
    if params.stage2.combine == "auto":
        combine, shares = choose_combine(rows, params, measure, signs)
    else:
        combine = params.stage2.combine
    if "ta_teacher" not in signs:
        combine = "mean"  # without teacher trust there is nothing to gate: record what is applied
    return SignalPlan(measure=measure, signs=signs, combine=combine), shares


def calibrated_plan(
    params: Params, variant: VariantSpec, rows: Sequence[dict[str, Any]], measure: str, signs: dict[str, int]
) -> SignalPlan:
    """Calibrated weighting: the chance that the teacher's reply is right from the TA's
    confidence in it, and that the student gets the question wrong from its student signals,
    fitted on the validation ``rows`` over the signals ``signs`` keeps (a signal the
    validation gate left out has no slope; the fit finds each kept signal's direction)."""
    if variant.schedule != "two_stage":
        raise ConfigError([(
            "stage2.weighting",
            "calibrated weighting is fitted on the warmed-up student's validation outputs; a one-stage "
            "variant's signals come from the base student: use rank weighting for it",
        )])  # fmt: skip
    student = [signal_column(s, measure) for s in ALL_SIGNALS if s != "ta_teacher" and s in signs]
    return SignalPlan(
        measure=measure,
        signs=signs,
        weighting="calibrated",
        p_right=fit(rows, "teacher_correct", [signal_column("ta_teacher", measure)])
        if "ta_teacher" in signs
        else None,
        p_need=fit(rows, "student_correct", student, positive=False) if student else None,
        need_gain=params.stage2.need_gain,
    )
