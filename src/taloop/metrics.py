"""Accuracy with bootstrap CIs, paired bootstrap tests and ROC-AUC."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sklearn.metrics import roc_auc_score


def _resample_indices(groups: Sequence[str], n_boot: int, seed: int) -> np.ndarray:
    """(n_boot, n) indices resampled within each group, so every task keeps its share."""
    rng = np.random.default_rng(seed)
    groups_arr = np.asarray(groups)
    out = np.empty((n_boot, len(groups_arr)), dtype=int)
    for g in np.unique(groups_arr):
        members = np.flatnonzero(groups_arr == g)
        out[:, members] = rng.choice(members, size=(n_boot, members.size), replace=True)
    return out


def bootstrap_ci(
    correct: Sequence[bool], groups: Sequence[str], n_boot: int, seed: int
) -> tuple[float, float]:
    values = np.asarray(correct, dtype=float)
    means = values[_resample_indices(groups, n_boot, seed)].mean(axis=1)
    lo, hi = np.percentile(means, [2.5, 97.5])
    return float(lo), float(hi)


def paired_comparison(
    correct: Sequence[bool], baseline: Sequence[bool], groups: Sequence[str], n_boot: int, seed: int
) -> dict[str, float | None]:
    """Difference to the baseline on the same items: absolute and relative, with 95% CIs,
    and a two-sided paired bootstrap p-value for 'no difference'."""
    a, b = np.asarray(correct, dtype=float), np.asarray(baseline, dtype=float)
    idx = _resample_indices(groups, n_boot, seed)
    diffs = a[idx].mean(axis=1) - b[idx].mean(axis=1)
    base_means = b[idx].mean(axis=1)
    observed = float(a.mean() - b.mean())
    p = min(1.0, 2 * min(float(np.mean(diffs <= 0)), float(np.mean(diffs >= 0))))
    rel = observed / b.mean() if b.mean() > 0 else None
    with np.errstate(divide="ignore", invalid="ignore"):
        rel_boot = diffs[base_means > 0] / base_means[base_means > 0]
    rel_ci = (
        (float(np.percentile(rel_boot, 2.5)), float(np.percentile(rel_boot, 97.5))) if rel_boot.size else None
    )
    return {
        "diff": observed,
        "diff_ci_low": float(np.percentile(diffs, 2.5)),
        "diff_ci_high": float(np.percentile(diffs, 97.5)),
        "relative_improvement": rel,
        "relative_ci_low": rel_ci[0] if rel_ci else None,
        "relative_ci_high": rel_ci[1] if rel_ci else None,
        "p_value": p,
    }


def flag_auc(is_wrong: Sequence[bool], confidence: Sequence[float]) -> float | None:
    """ROC-AUC of (1 - confidence) at flagging wrong outputs; None when only one class occurs."""
    y = np.asarray(is_wrong, dtype=int)
    if y.min() == y.max():
        return None
    return float(roc_auc_score(y, -np.asarray(confidence, dtype=float)))
