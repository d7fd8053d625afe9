"""Calibrated weighting (``stage2.weighting: calibrated``): signals -> probabilities -> weights.

Rank weighting spreads replies over a fixed range whether or not the signal tells them apart,
so a blind TA reweights at random. Here each signal is first turned into a probability fitted
on the gold-judged validation rows calibrate_signals wrote (the test split is never read):

- ``p_right``: the chance that the teacher's reply is right, given the TA's confidence in it;
- ``p_need``: the chance that the warmed-up student gets the question wrong, given its
  self-consistency and the TA's confidence in its majority output.

Each is a task's base rate updated by each signal's likelihood ratio, the signal standardised
within its task (TA likelihoods depend on each task's rationale template) and its ratio
fitted as an equal-variance binormal model whose separation is shared by the tasks (a few
wrong replies per task could not fit one each). A signal that does not separate the classes
gets a ratio near 1, so a constant probability, and the weights below stay constant too.

The weight of a reply is ``p_right * (1 + need_gain * p_need)``, scaled to mean 1 within
its task and capped at ``weight_cap``: a reply the TA shows to be wrong loses its weight in
proportion to that evidence, and a question the student surely gets wrong weighs at most
``1 + need_gain`` times one it surely gets right (a bounded preference: self-consistency is
a weak signal of need, and a question the student answers right still teaches it).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

# Logits are clipped here: a perfectly separating signal has an unbounded slope, and
# exp(-logit) must not overflow. 30 logits is p = 1 - 1e-13.
MAX_LOGIT = 30.0


@dataclass(frozen=True)
class Feature:
    """A signal column and its within-task standardisation (from the validation rows)."""

    column: str
    centre: dict[str, float]
    scale: dict[str, float]

    @classmethod
    def fit(cls, column: str, rows: Sequence[dict[str, Any]]) -> Feature:
        centre, scale = {}, {}
        for task in sorted({r["task"] for r in rows}):
            values = np.asarray([r[column] for r in rows if r["task"] == task], dtype=float)
            centre[task] = float(values.mean())
            sd = float(values.std())
            scale[task] = sd if sd > 1e-12 else 1.0
        return cls(column, centre, scale)

    def values(self, rows: Sequence[dict[str, Any]]) -> np.ndarray:
        out = np.empty(len(rows))
        for i, r in enumerate(rows):
            value = float(r[self.column])
            if not np.isfinite(value):
                raise ValueError(
                    f"signal column {self.column} is not finite for reply {r.get('id')}#{r.get('sample')}"
                )
            out[i] = (value - self.centre[r["task"]]) / self.scale[r["task"]]
        return out


@dataclass(frozen=True)
class Evidence:
    """One signal's log-likelihood ratio: ``slope * (z - midpoint[task])`` on its
    standardised value z."""

    feature: Feature
    slope: float
    midpoint: dict[str, float]

    def log_ratio(self, rows: Sequence[dict[str, Any]]) -> np.ndarray:
        z = self.feature.values(rows)
        return self.slope * (z - np.asarray([self.midpoint[r["task"]] for r in rows]))


@dataclass(frozen=True)
class Calibrated:
    """A fitted P(target | signals, task): each task's base rate, times each signal's evidence."""

    target: str
    prior_logit: dict[str, float]
    evidence: list[Evidence]

    def predict(self, rows: Sequence[dict[str, Any]]) -> np.ndarray:
        missing = sorted({r["task"] for r in rows} - self.prior_logit.keys())
        if missing:
            raise ValueError(f"calibrated weighting: no validation rows for tasks {missing} ({self.target})")
        logit = np.asarray([self.prior_logit[r["task"]] for r in rows], dtype=float)
        for e in self.evidence:
            logit = logit + e.log_ratio(rows)
        return 1.0 / (1.0 + np.exp(-np.clip(logit, -MAX_LOGIT, MAX_LOGIT)))

    def describe(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "base_rate": {t: float(1 / (1 + np.exp(-v))) for t, v in self.prior_logit.items()},
            "log_ratio_per_sd": {e.feature.column: e.slope for e in self.evidence},
        }


def _evidence(column: str, rows: Sequence[dict[str, Any]], y: np.ndarray) -> Evidence:
    """Equal-variance binormal fit: within each task the two classes' means, their difference
    pooled over the tasks that have both (weighted by n_pos * n_neg / n, as each difference's
    precision), one within-class variance pooled over everything."""
    feature = Feature.fit(column, rows)
    z = feature.values(rows)
    tasks = np.asarray([r["task"] for r in rows])
    means: dict[str, dict[bool, float]] = {}
    residuals = []
    num = den = 0.0
    for task in feature.centre:
        members = tasks == task
        means[task] = {}
        for cls in (True, False):
            group = z[members & (y == cls)]
            if group.size:
                means[task][cls] = float(group.mean())
                residuals.append(group - group.mean())
        n_pos, n_neg = int(np.sum(members & y)), int(np.sum(members & ~y))
        if n_pos and n_neg:
            w = n_pos * n_neg / (n_pos + n_neg)
            num += w * (means[task][True] - means[task][False])
            den += w
    delta = num / den if den else 0.0
    resid = np.concatenate(residuals)
    groups = sum(len(m) for m in means.values())
    variance = float(resid @ resid) / max(resid.size - groups, 1)
    midpoint = {}
    for task, m in means.items():
        if len(m) == 2:
            midpoint[task] = (m[True] + m[False]) / 2
        else:  # one class seen: the other sits delta away, as the tasks that saw both say
            midpoint[task] = m[True] - delta / 2 if True in m else m[False] + delta / 2
    slope = delta / variance if variance > 1e-12 else np.sign(delta) * 1e6
    return Evidence(feature, float(slope), midpoint)


def fit(
    rows: Sequence[dict[str, Any]], target: str, columns: Sequence[str], positive: bool = True
) -> Calibrated:
    """P(``target`` is ``positive``) given ``columns``: per task, a base rate smoothed towards
    the pooled one; per signal, the log-likelihood ratio of an equal-variance binormal model
    (linear discriminant analysis: with a few dozen rows per class it needs far fewer than a
    logistic fit, and a perfectly separating signal gives a step, not a bounded slope); the
    signals' ratios add, as if independent given the target."""
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
        evidence=[_evidence(c, rows, y) for c in columns],
    )


def capped_mean_one(useful: np.ndarray, cap: float) -> np.ndarray:
    """``useful`` scaled to mean 1 with no weight above ``cap`` (>= 1): the capped weights
    stay at the cap and the rest are scaled up together until the mean is 1 again."""
    if useful.size == 0:
        return useful.astype(float)
    if np.any(useful < 0) or useful.sum() <= 0:
        return np.ones(useful.size)
    weights = useful / useful.mean()
    capped = np.zeros(useful.size, dtype=bool)
    while True:
        over = ~capped & (weights > cap)
        if not over.any():
            return weights
        capped |= over
        free = ~capped
        room = useful.size - cap * capped.sum()  # weight sum the uncapped replies must carry
        weights[capped] = cap
        if not free.any():
            return weights
        total = useful[free].sum()
        # replies of no usefulness at all are alike: they share what the cap left over equally
        weights[free] = useful[free] * room / total if total > 0 else room / free.sum()


def usefulness(p_right: np.ndarray, p_need: np.ndarray, need_gain: float) -> np.ndarray:
    """Rises with each probability: a reply's chance of being right, times a bounded bonus
    for a question the student needs."""
    return p_right * (1.0 + need_gain * p_need)
