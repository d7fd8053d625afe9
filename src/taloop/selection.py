"""Signals -> per-example training weights (weight mode) or a kept subset (filter mode).

Each enabled signal becomes a usefulness in [0, 1]: teacher trust = TA confidence on the
teacher's reply; student doubt = 1 - self-consistency; student error = 1 - TA confidence
on the student's majority output. Signals live on different scales (K-valued shares,
probabilities), so each is rank-normalised before they are averaged.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy.stats import rankdata

from taloop.config import Stage2Config, VariantSpec


def rank_normalise(values: Sequence[float]) -> np.ndarray:
    """Average ranks mapped to [0, 1] (ties share a rank; a single value maps to 0.5)."""
    arr = np.asarray(values, dtype=float)
    if arr.size == 1:
        return np.array([0.5])
    return (rankdata(arr) - 1) / (arr.size - 1)


def usefulness(rows: Sequence[dict[str, Any]], signals: Sequence[str], prefix: str = "") -> np.ndarray:
    """Mean of the enabled signals' usefulness; ``prefix`` picks base-student columns."""
    parts = []
    for signal in signals:
        if signal == "ta_teacher":
            parts.append(rank_normalise([r["ta_conf_teacher"] for r in rows]))
        elif signal == "self_consistency":
            parts.append(1 - rank_normalise([r[f"{prefix}sc"] for r in rows]))
        elif signal == "ta_student":
            parts.append(1 - rank_normalise([r[f"{prefix}ta_conf_student"] for r in rows]))
        else:
            raise ValueError(f"unknown signal {signal!r}")
    return np.mean(parts, axis=0)


def example_weights(
    rows: Sequence[dict[str, Any]], variant: VariantSpec, cfg: Stage2Config, prefix: str = ""
) -> np.ndarray:
    """One weight per row; 0 means the row is left out of training."""
    n = len(rows)
    if variant.gold_filter:  # oracle: uses gold, a diagnostic upper bound only
        return np.array([1.0 if r["teacher_correct"] else 0.0 for r in rows])
    if not variant.signals or n == 0:
        return np.ones(n)
    useful = usefulness(rows, variant.signals, prefix)
    if cfg.mode == "filter":
        keep = max(1, round(cfg.keep_fraction * n))
        order = np.argsort(-useful, kind="stable")
        weights = np.zeros(n)
        weights[order[:keep]] = 1.0
        return weights
    weights = useful / useful.mean() if useful.mean() > 0 else np.ones(n)
    weights = np.maximum(weights, cfg.weight_floor)
    return weights / weights.mean()
