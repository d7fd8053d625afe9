"""Signals -> per-example training weights (weight mode) or a kept subset (filter mode).

Each enabled signal becomes a usefulness in [0, 1]: teacher trust = TA confidence on the
teacher's reply; student doubt = 1 - self-consistency; student error = 1 - TA confidence
on the student's majority output. Every signal is rank-normalised **within its task**:
self-consistency is structurally >= 0.5 on yes/no tasks and TA likelihoods depend on each
task's rationale template, so pooled ranks would move whole tasks up or down, turning the
signals into a task reweighting. For the same reason weights are scaled to mean 1 per task
and filter mode keeps ``keep_fraction`` of each task.

Combination (``combine``): ``mean`` averages all usefulness parts; ``gate`` multiplies the
mean of the student-derived parts by teacher trust, so a distrusted reply stays
down-weighted whatever the student's doubt (averaging a perfect trust signal with two noisy
ones would leave wrong replies most of their weight).

That is ``stage2.weighting: rank``, the paper's. ``calibrated`` takes its usefulness from
probabilities fitted on the validation rows instead (:mod:`taloop.method.calibrated`), with no floor
but a cap.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from taloop.method import calibrated
from taloop.params.schema import Stage2Config, VariantSpec

STUDENT_SIGNALS = ("self_consistency", "ta_student")


@dataclass(frozen=True)
class SignalPlan:
    """How a variant's signals become usefulness: which TA measure's columns, each signal's
    sign (+1 as named, -1 reversed; a signal left out has no entry), and the combination.
    Calibrated weighting: instead of signs and combination, the fitted chance that the
    teacher's reply is right (None: no teacher-trust signal) and that the student needs the
    question (None: no student signal), and the weight of need."""

    measure: str
    signs: dict[str, int] = field(default_factory=dict)
    combine: Literal["mean", "gate"] = "mean"
    weighting: Literal["rank", "calibrated"] = "rank"
    p_right: calibrated.Calibrated | None = None
    p_need: calibrated.Calibrated | None = None
    need_gain: float = 0.0

    def __post_init__(self) -> None:
        # Usefulness reads any sign but +1 as reversed: a 0 must not pass for -1.
        bad = {s: v for s, v in self.signs.items() if v not in (1, -1)}
        if bad:
            raise ValueError(f"signal signs must be +1 or -1 (a left-out signal has no entry): {bad}")


def rank_normalise(values: Sequence[float]) -> np.ndarray:
    """Average ranks mapped to [0, 1] (ties share a rank; a single value maps to 0.5)."""
    from scipy.stats import rankdata  # here: importing scipy.stats costs every stage ~0.8 s

    arr = np.asarray(values, dtype=float)
    if arr.size == 0:
        return arr
    if arr.size == 1:
        return np.array([0.5])
    return (rankdata(arr) - 1) / (arr.size - 1)


def _within_task(values: Sequence[float], tasks: np.ndarray) -> np.ndarray:
    arr = np.asarray(values, dtype=float)
    out = np.empty(arr.size)
    for task in np.unique(tasks):
        members = tasks == task
        out[members] = rank_normalise(arr[members])
    return out


def signal_column(signal: str, measure: str, prefix: str = "") -> str:
    """The signal row column a signal is read from (``prefix`` picks base-student columns)."""
    if signal == "ta_teacher":
        return f"ta_teacher_{measure}"
    if signal == "ta_student":
        return f"{prefix}ta_student_{measure}"
    if signal == "self_consistency":
        return f"{prefix}sc"
    raise ValueError(f"unknown signal {signal!r}")


def _part(
    rows: Sequence[dict[str, Any]], signal: str, plan: SignalPlan, prefix: str, tasks: np.ndarray
) -> np.ndarray:
    column = signal_column(signal, plan.measure, prefix)
    values = np.asarray([r[column] for r in rows], dtype=float)
    if not np.all(np.isfinite(values)):
        bad = next(r for r, v in zip(rows, values, strict=True) if not np.isfinite(v))
        raise ValueError(
            f"signal column {column} is not finite for reply {bad.get('id')}#{bad.get('sample')}"
        )
    ranked = _within_task(values, tasks)
    # Trust is usefulness as measured; doubt and error are usefulness when confidence is low.
    useful = ranked if signal == "ta_teacher" else 1 - ranked
    return useful if plan.signs[signal] > 0 else 1 - useful


def usefulness(rows: Sequence[dict[str, Any]], plan: SignalPlan, prefix: str = "") -> np.ndarray:
    """Each row's usefulness (rank: in [0, 1]) from the plan's signals (all rows need a ``task``)."""
    if not plan.signs:
        raise ValueError("usefulness needs at least one signal")
    if plan.weighting == "calibrated":
        if prefix:
            raise ValueError(
                "calibrated weighting is fitted on the warmed-up student's outputs, not the base student's"
            )
        p_right = plan.p_right.predict(rows) if plan.p_right else np.ones(len(rows))
        p_need = plan.p_need.predict(rows) if plan.p_need else np.zeros(len(rows))
        return calibrated.usefulness(p_right, p_need, plan.need_gain)
    tasks = np.asarray([r["task"] for r in rows])
    parts = {s: _part(rows, s, plan, prefix, tasks) for s in plan.signs}
    student = [parts[s] for s in STUDENT_SIGNALS if s in parts]
    if plan.combine == "gate" and "ta_teacher" in parts:
        # Without student signals the gate is trust alone.
        return parts["ta_teacher"] * (np.mean(student, axis=0) if student else 1.0)
    return np.mean(list(parts.values()), axis=0)


def _per_task_weights(useful: np.ndarray, cfg: Stage2Config, weighting: str) -> np.ndarray:
    if cfg.mode == "filter":
        keep = max(1, round(cfg.keep_fraction * useful.size))
        weights = np.zeros(useful.size)
        weights[np.argsort(-useful, kind="stable")[:keep]] = 1.0
        return weights
    if weighting == "calibrated":
        weights = calibrated.capped_mean_one(useful, cfg.weight_cap)
        # such a reply would cost its forward passes and teach nothing; without it a perfect
        # TA's plan holds the oracle's replies exactly
        weights[weights < calibrated.NEGLIGIBLE] = 0.0
        return weights
    if useful.mean() <= 0:
        return np.ones(useful.size)
    weights = np.maximum(useful / useful.mean(), cfg.weight_floor)
    return weights / weights.mean()


def example_weights(
    rows: Sequence[dict[str, Any]],
    variant: VariantSpec,
    cfg: Stage2Config,
    plan: SignalPlan | None,
    prefix: str = "",
) -> np.ndarray:
    """One weight per row; 0 means the row is left out of training. Weight mode: mean 1 in
    every task; filter mode: ``keep_fraction`` of every task kept."""
    n = len(rows)
    if variant.gold_filter:  # oracle: uses gold, a diagnostic upper bound only
        return np.array([1.0 if r["teacher_correct"] else 0.0 for r in rows])
    if plan is None or not plan.signs or n == 0:
        return np.ones(n)
    useful = usefulness(rows, plan, prefix)
    tasks = np.asarray([r["task"] for r in rows])
    weights = np.empty(n)
    for task in np.unique(tasks):
        members = tasks == task
        weights[members] = _per_task_weights(useful[members], cfg, plan.weighting)
    return weights


def task_diagnostics(rows: Sequence[dict[str, Any]], weights: np.ndarray, tokens: Sequence[int]) -> dict:
    """Per task: weight sum, kept count, and (diagnostic, judged by gold) the share of the
    stage-2 loss on wrong teacher replies: sum of weight x completion tokens over wrong
    replies / over all (the loss an example contributes scales with both)."""
    mass = np.asarray(weights, dtype=float) * np.asarray(tokens, dtype=float)
    out: dict[str, dict[str, float]] = {}
    for task in sorted({r["task"] for r in rows}):
        idx = [i for i, r in enumerate(rows) if r["task"] == task]
        wrong = [i for i in idx if not rows[i]["teacher_correct"]]
        total = float(mass[idx].sum())
        out[task] = {
            "replies": len(idx),
            "kept": int(np.count_nonzero(weights[idx])),
            "weight_sum": float(np.sum(weights[idx])),
            "wrong_replies": len(wrong),
            "wrong_loss_share": float(mass[wrong].sum()) / total if total > 0 else 0.0,
        }
    return out
