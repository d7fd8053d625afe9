"""Calibrated weighting (``stage2.weighting: calibrated``): signals -> probabilities -> weights.

Rank weighting spreads replies over a fixed range whether or not the signal tells them apart,
so a blind TA reweights at random. Here each signal is first turned into a probability fitted
on the gold-judged validation rows calibrate_signals wrote (the test split is never read):

- ``p_right``: the chance that the teacher's reply is right, given the TA's confidence in it;
- ``p_need``: the chance that the warmed-up student gets the question wrong, given its
  self-consistency and the TA's confidence in its majority output.

Each is a task's base rate updated by the signals' likelihood ratio, each signal standardised
within its task (TA likelihoods depend on each task's rationale template) and their ratio
fitted as an equal-covariance binormal model whose separation is shared by the tasks (a few
wrong replies per task could not fit one each). A signal that does not separate the classes
gets a ratio near 1, so a constant probability, and the weights below stay constant too.

The weight of a reply is ``p_right * (1 + need_gain * p_need)``, scaled to mean 1 within its
task and capped at ``weight_cap`` (:func:`capped_mean_one`): a reply the TA shows to be wrong
loses its weight in proportion to that evidence, and a question the student surely gets wrong
weighs at most ``1 + need_gain`` times one it surely gets right (a bounded preference:
self-consistency is a weak signal of need, and a question the student answers right still
teaches it).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

# Logits are clipped here: a perfectly separating signal has an unbounded slope, and
# exp(-logit) must not overflow. 30 logits is p = 1 - 1e-13.
MAX_LOGIT = 30.0


# A weight below this (the task's mean is 1) leaves its reply out of training.
NEGLIGIBLE = 1e-3
# A step's slope: a signal whose validation classes do not overlap in any task separates them
# as far as the data can show, which is the limit a likelihood fit reaches.
STEP_SLOPE = 1e6


def _finite(rows: Sequence[dict[str, Any]], column: str) -> np.ndarray:
    values = np.asarray([float(r[column]) for r in rows])
    bad = np.flatnonzero(~np.isfinite(values))
    if bad.size:
        r = rows[int(bad[0])]
        raise ValueError(f"signal column {column} is not finite for reply {r.get('id')}#{r.get('sample')}")
    return values


@dataclass(frozen=True)
class Discriminant:
    """The signals' joint log-likelihood ratio ``slope . (z - midpoint[task])``, with ``z`` each
    signal centred and scaled within its task as the validation rows were."""

    columns: list[str]
    centre: dict[str, list[float]]
    scale: dict[str, list[float]]
    slope: list[float]
    midpoint: dict[str, list[float]]

    def z(self, rows: Sequence[dict[str, Any]]) -> np.ndarray:
        raw = np.column_stack([_finite(rows, c) for c in self.columns])
        tasks = [r["task"] for r in rows]
        centre = np.asarray([self.centre[t] for t in tasks])
        return (raw - centre) / np.asarray([self.scale[t] for t in tasks])

    def log_ratio(self, rows: Sequence[dict[str, Any]]) -> np.ndarray:
        offset = self.z(rows) - np.asarray([self.midpoint[r["task"]] for r in rows])
        return offset @ np.asarray(self.slope)


def _class_means(z: np.ndarray, members: np.ndarray, y: np.ndarray) -> dict[bool, np.ndarray]:
    return {
        cls: z[members & (y == cls)].mean(axis=0) for cls in (True, False) if np.any(members & (y == cls))
    }


def _separating(z: np.ndarray, tasks: np.ndarray, y: np.ndarray, sign: float) -> dict[str, float] | None:
    """For one signal whose classes do not overlap in any task that has both (pointing the
    way ``sign`` says): each such task's boundary, halfway between the classes' nearest values;
    None otherwise."""
    bounds = {}
    for task in np.unique(tasks):
        pos, neg = sign * z[(tasks == task) & y], sign * z[(tasks == task) & ~y]
        if pos.size and neg.size:
            if pos.min() <= neg.max():
                return None
            bounds[str(task)] = sign * (pos.min() + neg.max()) / 2
    return bounds or None


def discriminant(rows: Sequence[dict[str, Any]], columns: Sequence[str], y: np.ndarray) -> Discriminant:
    """Linear discriminant analysis on the signals standardised within each task (by the
    task's within-class SD, so a task's base rate does not shrink its separation): the classes'
    mean difference pooled over the tasks that have both (weighted by n_pos * n_neg / n, each
    difference's precision), one within-class covariance pooled over everything, slope =
    covariance^-1 x difference (correlated signals are not counted twice). Each task's midpoint
    lies halfway between its class means; a task with one class puts the other the pooled
    difference away. One signal that separates the classes in every task becomes a step."""
    tasks = np.asarray([r["task"] for r in rows])
    raw = np.column_stack([_finite(rows, c) for c in columns])
    centre, scale = {}, {}
    for task in np.unique(tasks):
        members = tasks == task
        centre[str(task)] = raw[members].mean(axis=0)
        means = _class_means(raw, members, y)
        resid = np.concatenate([raw[members & (y == cls)] - m for cls, m in means.items()])
        dof = resid.shape[0] - len(means)
        sd = (
            np.sqrt((resid**2).sum(axis=0) / dof) if len(means) == 2 and dof > 0 else raw[members].std(axis=0)
        )
        scale[str(task)] = np.where(sd > 1e-12, sd, 1.0)
    z = (raw - np.asarray([centre[t] for t in tasks])) / np.asarray([scale[t] for t in tasks])
    k = len(columns)
    delta, weight = np.zeros(k), 0.0
    resid, groups, class_means = [], 0, {}
    for task in np.unique(tasks):
        means = class_means[str(task)] = _class_means(z, tasks == task, y)
        groups += len(means)
        resid += [z[(tasks == task) & (y == cls)] - m for cls, m in means.items()]
        n_pos, n_neg = int(np.sum((tasks == task) & y)), int(np.sum((tasks == task) & ~y))
        if len(means) == 2:
            w = n_pos * n_neg / (n_pos + n_neg)
            delta += w * (means[True] - means[False])
            weight += w
    delta = delta / weight if weight else delta
    r = np.concatenate(resid)
    covariance = (r.T @ r) / max(r.shape[0] - groups, 1)
    midpoint = {
        task: (m[True] + m[False]) / 2
        if len(m) == 2
        else m[True] - delta / 2
        if True in m
        else m[False] + delta / 2
        for task, m in class_means.items()
    }
    steps = _separating(z[:, 0], tasks, y, float(np.sign(delta[0]))) if k == 1 and delta[0] else None
    if steps is not None:
        slope = np.array([np.sign(delta[0]) * STEP_SLOPE])
        midpoint |= {task: np.array([b]) for task, b in steps.items()}
    else:
        slope = np.linalg.pinv(covariance) @ delta
    return Discriminant(
        columns=list(columns),
        centre={t: c.tolist() for t, c in centre.items()},
        scale={t: s.tolist() for t, s in scale.items()},
        slope=slope.tolist(),
        midpoint={t: np.atleast_1d(m).tolist() for t, m in midpoint.items()},
    )


@dataclass(frozen=True)
class Calibrated:
    """A fitted P(target | signals, task): each task's base rate, times the signals' evidence."""

    target: str
    prior_logit: dict[str, float]
    evidence: Discriminant | None  # None: no signal, the base rate alone

    def predict(self, rows: Sequence[dict[str, Any]]) -> np.ndarray:
        missing = sorted({r["task"] for r in rows} - self.prior_logit.keys())
        if missing:
            raise ValueError(f"calibrated weighting: no validation rows for tasks {missing} ({self.target})")
        logit = np.asarray([self.prior_logit[r["task"]] for r in rows], dtype=float)
        if self.evidence is not None and rows:
            logit = logit + self.evidence.log_ratio(rows)
        return 1.0 / (1.0 + np.exp(-np.clip(logit, -MAX_LOGIT, MAX_LOGIT)))

    def describe(self) -> dict[str, Any]:
        ev = self.evidence
        return {
            "target": self.target,
            "base_rate": {t: float(1 / (1 + np.exp(-v))) for t, v in self.prior_logit.items()},
            "log_ratio_per_sd": {} if ev is None else dict(zip(ev.columns, ev.slope, strict=True)),
        }


def fit(
    rows: Sequence[dict[str, Any]], target: str, columns: Sequence[str], positive: bool = True
) -> Calibrated:
    """P(``target`` is ``positive``) given ``columns``: per task, a base rate smoothed towards
    the pooled one, updated by the signals' likelihood ratio (:func:`discriminant`: with a few
    dozen rows per class, linear discriminant analysis needs far fewer than a logistic fit)."""
    if not rows:
        raise ValueError(f"calibrated weighting needs validation rows to fit {target}; none were given")
    y = np.asarray([bool(r[target]) == positive for r in rows])
    pooled = (y.sum() + 1) / (y.size + 2)
    prior_logit = {}
    for task in sorted({r["task"] for r in rows}):
        in_task = np.asarray([r["task"] == task for r in rows])
        # Two pseudo-rows at the pooled rate: a task whose validation rows all agree keeps a finite logit.
        rate = (y[in_task].sum() + 2 * pooled) / (in_task.sum() + 2)
        prior_logit[task] = float(np.log(rate / (1 - rate)))
    return Calibrated(
        target=target if positive else f"not {target}",
        prior_logit=prior_logit,
        evidence=discriminant(rows, columns, y) if columns else None,
    )


def capped_mean_one(useful: np.ndarray, cap: float) -> np.ndarray:
    """Weights ``min(cap, c * useful / mean(useful))`` with the smallest lift ``c`` in [1, cap]
    that brings their mean back to 1 after capping. Where even ``c = cap`` cannot (a task whose
    useful replies are fewer than 1 in ``cap``), the mean stays below 1: the replies the signals
    show useless are not raised to fill it."""
    if useful.size == 0:
        return useful.astype(float)
    if np.any(useful < 0) or useful.sum() <= 0:
        return np.ones(useful.size)
    x = useful / useful.mean()
    if x.max() <= cap:
        return x

    def mean(c: float) -> float:
        return float(np.minimum(cap, c * x).mean())

    low, high = 1.0, cap
    if mean(high) < 1:
        return np.minimum(cap, high * x)
    for _ in range(100):  # mean(c) rises with c: bisection to machine precision
        mid = (low + high) / 2
        low, high = (mid, high) if mean(mid) < 1 else (low, mid)
    return np.minimum(cap, high * x)


def usefulness(p_right: np.ndarray, p_need: np.ndarray, need_gain: float) -> np.ndarray:
    """Rises with each probability: a reply's chance of being right, times a bounded bonus
    for a question the student needs."""
    return p_right * (1.0 + need_gain * p_need)
