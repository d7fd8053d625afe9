"""Accuracy with bootstrap CIs, exact paired (McNemar) tests, their power and minimum
detectable effects, seed-level intervals, and ROC-AUC."""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from typing import Any

import numpy as np


def resample_indices(groups: Sequence[Any], n_boot: int, seed: int | tuple[int, ...]) -> np.ndarray:
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
    means = values[resample_indices(groups, n_boot, seed)].mean(axis=1)
    lo, hi = np.percentile(means, [2.5, 97.5])
    return float(lo), float(hi)


def wilson_interval(correct: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """95% Wilson score interval of a proportion: sound at the small n and the 0% or 100% of a
    single task's accuracy, where the normal interval collapses to a point."""
    if n == 0:
        return 0.0, 1.0
    p = correct / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def mcnemar_exact(wins: int, losses: int) -> float:
    """Two-sided exact McNemar p-value: under 'no difference' each of the ``wins + losses``
    discordant items (right for one, wrong for the other) goes either way with probability
    1/2, so the smaller count is Binomial(n, 1/2); both tails, capped at 1."""
    n, k = wins + losses, min(wins, losses)
    return min(1.0, 2 * sum(math.comb(n, i) for i in range(k + 1)) / 2**n) if n else 1.0


def _binomial(n: int, p: float) -> np.ndarray:
    """P(k) for k = 0..n of Binomial(n, p), computed in log space (no overflow at large n)."""
    k = np.arange(n + 1)
    log_comb = np.concatenate([[0.0], np.cumsum(np.log(np.arange(n, 0, -1)) - np.log(np.arange(1, n + 1)))])
    with np.errstate(divide="ignore", invalid="ignore"):
        logs = log_comb + np.where(k > 0, k * np.log(p), 0.0) + np.where(k < n, (n - k) * np.log1p(-p), 0.0)
    return np.exp(logs)


@functools.cache
def _rejected_up_to(n: int, alpha: float) -> np.ndarray:
    """For each number of discordant items D = 0..n, the largest smaller-side count at which
    :func:`mcnemar_exact` rejects at ``alpha`` (-1 where none does)."""
    out = np.full(n + 1, -1)
    for d in range(1, n + 1):
        tail = np.cumsum(_binomial(d, 0.5))[: d // 2 + 1]  # P(smaller side <= k) / 2, k <= d/2
        out[d] = int(np.searchsorted(2 * tail, alpha * (1 + 1e-9), side="right")) - 1
    return out


def mcnemar_power(n: int, discordant: float, diff: float, alpha: float = 0.05) -> float:
    """Probability that :func:`mcnemar_exact` on ``n`` paired items rejects 'no difference' at
    ``alpha`` when the two systems disagree on a share ``discordant`` of items and the first is
    right on ``(discordant + diff) / 2`` of them (so its accuracy is ``diff`` higher). Exact:
    the number of discordant items is Binomial(n, discordant), and the first system's wins
    among them Binomial(D, (discordant + diff) / (2 discordant))."""
    if not 0 <= abs(diff) <= discordant <= 1:
        raise ValueError(f"need 0 <= |diff| ({diff}) <= discordant ({discordant}) <= 1")
    if discordant == 0:
        return 0.0
    win_share = (discordant + diff) / (2 * discordant)
    critical = _rejected_up_to(n, alpha)
    power = 0.0
    for d, p_d in enumerate(_binomial(n, discordant)):
        k = critical[d]
        if k >= 0 and p_d > 1e-15:
            wins = _binomial(d, win_share)
            power += p_d * (wins[: k + 1].sum() + wins[d - k :].sum())
    return float(power)


def mde_paired(n: int, discordant: float, alpha: float = 0.05, power: float = 0.8) -> float | None:
    """Minimum detectable effect of a paired comparison on ``n`` shared items: the smallest
    accuracy difference that :func:`mcnemar_exact` detects with probability ``power`` at
    ``alpha``, when the systems disagree on a share ``discordant`` of items (the observed
    share, or a pilot's when planning). None when no difference is detectable that often
    (too few items or disagreements)."""
    if discordant <= 0 or mcnemar_power(n, discordant, discordant, alpha) < power:
        return None
    lo, hi = 0.0, discordant
    for _ in range(20):  # to within discordant / 2**20
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if mcnemar_power(n, discordant, mid, alpha) < power else (lo, mid)
    return hi


def seed_interval(diffs: Sequence[float], alpha: float = 0.05, power: float = 0.8) -> dict[str, float | None]:
    """Mean of per-seed paired differences with its t-interval (1 - ``alpha``), and the
    minimum detectable mean difference of a one-sample t-test over as many seeds with the
    observed spread: (t_{1-alpha/2} + t_{power}) * sd / sqrt(k), k - 1 degrees of freedom.
    Bounds and MDE are None with fewer than two seeds."""
    values = np.asarray(diffs, dtype=float)
    k = values.size
    mean = float(values.mean()) if k else float("nan")
    if k < 2:
        return {"mean": mean, "sd": None, "seeds": k, "ci_low": None, "ci_high": None, "mde": None}
    from scipy.stats import t  # here: importing scipy.stats costs every stage ~0.8 s

    sd = float(values.std(ddof=1))
    se = sd / math.sqrt(k)
    half = float(t.ppf(1 - alpha / 2, k - 1)) * se
    mde = (float(t.ppf(1 - alpha / 2, k - 1)) + float(t.ppf(power, k - 1))) * se
    return {"mean": mean, "sd": sd, "seeds": k, "ci_low": mean - half, "ci_high": mean + half, "mde": mde}


def paired_comparison(
    correct: Sequence[bool], baseline: Sequence[bool], groups: Sequence[str], n_boot: int, seed: int
) -> dict[str, float | None]:
    """Difference to the baseline on the same items: absolute and relative, with 95%
    bootstrap CIs (items resampled within ``groups``), and the exact McNemar p-value for 'no
    difference' (:func:`mcnemar_exact`), which reads the paired items as they are: a p-value
    read off the bootstrap distribution came out far too small (6 wins and no loss gave
    0.002 where the exact test gives 0.031). ``mde`` is the smallest difference that test
    detects with 80% power on these items at their observed share of disagreements
    (:func:`mde_paired`); None when none is detectable that often."""
    a, b = np.asarray(correct, dtype=float), np.asarray(baseline, dtype=float)
    idx = resample_indices(groups, n_boot, seed)
    diffs = a[idx].mean(axis=1) - b[idx].mean(axis=1)
    base_means = b[idx].mean(axis=1)
    observed = float(a.mean() - b.mean())
    p = mcnemar_exact(int(((a == 1) & (b == 0)).sum()), int(((a == 0) & (b == 1)).sum()))
    rel = observed / b.mean() if b.mean() > 0 else None
    with np.errstate(divide="ignore", invalid="ignore"):
        rel_boot = diffs[base_means > 0] / base_means[base_means > 0]
    rel_ci = (
        (float(np.percentile(rel_boot, 2.5)), float(np.percentile(rel_boot, 97.5))) if rel_boot.size else None
    )
    discordant = float((a != b).mean())
    mde = mde_paired(len(a), discordant)
    return {
        "diff": observed,
        "discordant": discordant,
        "mde": mde,
        "mde_relative": mde / b.mean() if mde is not None and b.mean() > 0 else None,
        "diff_ci_low": float(np.percentile(diffs, 2.5)),
        "diff_ci_high": float(np.percentile(diffs, 97.5)),
        "relative_improvement": rel,
        "relative_ci_low": rel_ci[0] if rel_ci else None,
        "relative_ci_high": rel_ci[1] if rel_ci else None,
        "p_value": p,
    }


def rank_flag_auc(is_wrong: np.ndarray, confidence: np.ndarray) -> np.ndarray:
    """Row-wise ROC-AUC of (1 - confidence) at flagging wrong outputs, for 2-D arrays (one row
    per bootstrap resample); NaN where a row has a single class.

    The Mann-Whitney form on average ranks equals sklearn's roc_auc_score (ties count one half) and
    handles a thousand resamples in one call, where sklearn would need a call each.
    """
    from scipy.stats import rankdata  # here: importing scipy.stats costs every stage ~0.8 s

    wrong = np.asarray(is_wrong, dtype=bool)
    ranks = rankdata(-np.asarray(confidence, dtype=float), axis=1)
    n_wrong = wrong.sum(axis=1).astype(float)
    n_right = wrong.shape[1] - n_wrong
    with np.errstate(divide="ignore", invalid="ignore"):
        auc = ((ranks * wrong).sum(axis=1) - n_wrong * (n_wrong + 1) / 2) / (n_wrong * n_right)
    auc[(n_wrong == 0) | (n_right == 0)] = np.nan
    return auc


def percentile_interval(values: np.ndarray) -> tuple[float | None, float | None]:
    """95% percentile interval over the resamples where the statistic exists."""
    kept = values[~np.isnan(values)]
    if kept.size == 0:
        return None, None
    lo, hi = np.percentile(kept, [2.5, 97.5])
    return float(lo), float(hi)


def ratio_interval(num: np.ndarray, den: np.ndarray) -> tuple[float | None, float | None]:
    """95% confidence bounds for the ratio of mean(num) to mean(den) from their joint
    resamples, by inverting a test, as Fieller's interval does: a ratio r is in the set when 0
    lies within the 2.5-97.5 percentiles of num - r * den. Percentiles of the resampled ratios
    themselves break down when den can be near zero (a resample with den = 0 gives inf or nan:
    the interval came out as "nan to 11").

    When den's own 95% interval excludes zero, each percentile of num - r * den decreases in r
    (for den > 0; strictly so when every resample's den is positive, near enough when a few
    are not), so the set is one interval whose ends, the roots of the 2.5th and the 97.5th
    percentile, are found by bisection. When it includes zero, the set reaches
    to infinity (the whole line, or two rays around a gap): (None, None), unbounded."""
    den_low, den_high = np.percentile(den, [2.5, 97.5])
    if den_low <= 0 <= den_high:
        return None, None
    if den_high < 0:  # the same ratio over a positive denominator
        num, den = -num, -den

    def root(q: float) -> float | None:
        """Where the q-th percentile of num - r * den (decreasing in r) crosses zero; None when
        it does not within +-2**60 (the few resamples with den <= 0 can hold a percentile up)."""
        at = lambda r: float(np.percentile(num - r * den, q))  # noqa: E731
        low, high = -1.0, 1.0
        for _ in range(60):
            if at(low) >= 0 and at(high) <= 0:
                break
            low, high = (low * 2 if at(low) < 0 else low), (high * 2 if at(high) > 0 else high)
        else:
            return None
        for _ in range(60):
            mid = (low + high) / 2
            low, high = (mid, high) if at(mid) > 0 else (low, mid)
        return (low + high) / 2

    return root(2.5), root(97.5)


def grouped_flag_auc(
    is_wrong: Sequence[bool],
    confidence: Sequence[float],
    groups: Sequence[str],
    n_boot: int = 1000,
    seed: int = 0,
) -> dict[str, Any]:
    """ROC-AUC at flagging wrong outputs per group (task) and pooled within groups, each with a
    95% bootstrap CI (rows resampled within their group).

    The pooled AUC is the mean of the per-group AUCs over the groups holding both classes: a
    pooled ROC over all rows would also reward a signal for ranking whole tasks (an easy task
    with confident outputs above a hard one), which is not what selection uses it for. A
    resample in which a group lost a class leaves that group out of that resample's mean.
    Returns {"auc", "ci_low", "ci_high", "groups_used", "per_group": {g: {"auc", "ci_low",
    "ci_high", "n", "wrong"}}}; AUCs and bounds are None where undefined.
    """
    wrong = np.asarray(is_wrong, dtype=bool)
    conf = np.asarray(confidence, dtype=float)
    labels = np.asarray(groups)
    idx = resample_indices(groups, n_boot, seed)
    per_group: dict[str, dict[str, Any]] = {}
    points, boots = [], []
    for g in sorted(set(labels.tolist())):
        members = np.flatnonzero(labels == g)
        point = float(rank_flag_auc(wrong[members][None], conf[members][None])[0])
        resampled = rank_flag_auc(wrong[idx[:, members]], conf[idx[:, members]])
        defined = not math.isnan(point)
        lo, hi = percentile_interval(resampled) if defined else (None, None)
        per_group[g] = {
            "auc": point if defined else None,
            "ci_low": lo,
            "ci_high": hi,
            "n": int(members.size),
            "wrong": int(wrong[members].sum()),
        }
        if defined:
            points.append(point)
            boots.append(resampled)
    pooled: float | None = None
    lo = hi = None
    if points:
        pooled = float(np.mean(points))
        stacked = np.stack(boots, axis=1)
        usable = ~np.isnan(stacked).all(axis=1)
        lo, hi = percentile_interval(np.nanmean(stacked[usable], axis=1)) if usable.any() else (None, None)
    return {"auc": pooled, "ci_low": lo, "ci_high": hi, "groups_used": len(points), "per_group": per_group}
