"""taloop.core.metrics against references worked out independently: bootstrap intervals redone with
numpy from the same resample indices, AUCs by counting pairs, power by enumerating every
outcome, t quantiles from the closed form at one degree of freedom. Complements test_power.py
and test_training_signals.py, which cover the hand-worked McNemar and Wilson values."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest
from scipy.optimize import brentq

from taloop.core.metrics import (
    bootstrap_ci,
    grouped_flag_auc,
    mcnemar_power,
    mde_paired,
    paired_comparison,
    rank_flag_auc,
    ratio_interval,
    resample_indices,
    seed_interval,
)

PAIRED_KEYS = {
    "diff",
    "discordant",
    "mde",
    "mde_relative",
    "diff_ci_low",
    "diff_ci_high",
    "relative_improvement",
    "relative_ci_low",
    "relative_ci_high",
    "p_value",
}
SEED_KEYS = {"mean", "sd", "seeds", "ci_low", "ci_high", "mde"}


def _pct(values: np.ndarray) -> tuple[float, float]:
    lo, hi = np.percentile(values, [2.5, 97.5])
    return float(lo), float(hi)


def _pair_auc(wrong: Sequence[bool], conf: Sequence[float]) -> float:
    """ROC-AUC of low confidence at flagging wrong outputs, by counting (wrong, right) pairs:
    1 when the wrong one is less confident, 1/2 on a tie; NaN with a single class."""
    w = np.asarray(wrong, dtype=bool)
    c = np.asarray(conf, dtype=float)
    bad, good = c[w], c[~w]
    if bad.size == 0 or good.size == 0:
        return math.nan
    less = (bad[:, None] < good[None, :]).sum()
    ties = (bad[:, None] == good[None, :]).sum()
    return float((less + 0.5 * ties) / (bad.size * good.size))


def _exact_p(wins: int, losses: int) -> float:
    d = wins + losses
    return min(1.0, 2 * sum(math.comb(d, i) for i in range(min(wins, losses) + 1)) / 2**d) if d else 1.0


# --- resampling and bootstrap_ci -----------------------------------------------------------------


def test_resampling_stays_within_each_group_and_is_seeded() -> None:
    groups = ["a", "b", "a", "c", "b", "a", "c", "c", "b"]  # interleaved on purpose
    idx = resample_indices(groups, 50, 4)
    assert idx.shape == (50, 9)
    for j, g in enumerate(groups):
        assert all(groups[i] == g for i in idx[:, j])
    assert np.array_equal(idx, resample_indices(groups, 50, 4))
    assert not np.array_equal(idx, resample_indices(groups, 50, 5))


def _accuracy_data() -> tuple[list[bool], list[str]]:
    rng = np.random.default_rng(21)
    correct = (rng.random(70) < np.r_[np.full(40, 0.7), np.full(30, 0.4)]).tolist()
    return correct, ["easy"] * 40 + ["hard"] * 30


def test_bootstrap_ci_is_the_percentile_interval_of_resampled_means() -> None:
    correct, groups = _accuracy_data()
    means = np.asarray(correct, dtype=float)[resample_indices(groups, 400, 4)].mean(axis=1)
    expected = _pct(means)
    got = bootstrap_ci(correct, groups, 400, 4)
    assert got == pytest.approx(expected, rel=1e-12)
    assert all(type(x) is float for x in got)
    # the same flags as float32 (e.g. from a tensor) are averaged in double precision: a
    # float32 mean of 0/1 values would be off in the 8th digit
    assert bootstrap_ci(np.asarray(correct, dtype=np.float32), groups, 400, 4) == pytest.approx(
        expected, rel=1e-12
    )


# --- paired_comparison ---------------------------------------------------------------------------


def _paired_reference(
    correct: Sequence[bool], baseline: Sequence[bool], groups: Sequence[str], n_boot: int, seed: int
) -> dict[str, Any]:
    a, b = np.asarray(correct, dtype=float), np.asarray(baseline, dtype=float)
    idx = resample_indices(groups, n_boot, seed)
    base = b[idx].mean(axis=1)
    diffs = a[idx].mean(axis=1) - base
    kept = base > 0  # a resample whose baseline got nothing right has no relative change
    rel = diffs[kept] / base[kept]
    discordant = float(np.mean(a != b))
    mde = mde_paired(len(a), discordant)
    base_acc = float(b.mean())
    wins, losses = int(((a == 1) & (b == 0)).sum()), int(((a == 0) & (b == 1)).sum())
    return {
        "diff": float(a.mean()) - base_acc,
        "discordant": discordant,
        "mde": mde,
        "mde_relative": mde / base_acc if mde is not None and base_acc > 0 else None,
        "diff_ci_low": _pct(diffs)[0],
        "diff_ci_high": _pct(diffs)[1],
        "relative_improvement": (float(a.mean()) - base_acc) / base_acc if base_acc > 0 else None,
        "relative_ci_low": _pct(rel)[0] if rel.size else None,
        "relative_ci_high": _pct(rel)[1] if rel.size else None,
        "p_value": _exact_p(wins, losses),
    }


def _assert_same(got: dict[str, Any], expected: dict[str, Any]) -> None:
    assert set(got) == set(expected)
    for key, value in expected.items():
        if value is None:
            assert got[key] is None, key
        else:
            assert got[key] == pytest.approx(value, rel=1e-12, abs=1e-15), key


def test_paired_comparison_matches_a_reference_on_two_groups() -> None:
    baseline, groups = _accuracy_data()
    rng = np.random.default_rng(8)
    flip = rng.random(70) < 0.25  # the variant disagrees on about a quarter of the items
    variant = [x != f for x, f in zip(baseline, flip, strict=True)]
    expected = _paired_reference(variant, baseline, groups, 300, 9)
    assert expected["mde"] is not None and expected["relative_ci_low"] is not None
    got = paired_comparison(variant, baseline, groups, 300, 9)
    assert set(got) == PAIRED_KEYS
    _assert_same(got, expected)
    # float32 flags give the same numbers: the accuracies are taken in double precision
    _assert_same(
        paired_comparison(np.asarray(variant, np.float32), np.asarray(baseline, np.float32), groups, 300, 9),
        expected,
    )


def test_relative_interval_leaves_out_resamples_where_the_baseline_got_nothing_right() -> None:
    # one baseline success in 8 items: about a third of the resamples miss it entirely
    baseline = [True] + [False] * 7
    variant = [True, True, False, True, False, True, True, False]
    groups = ["t"] * 8
    base = np.asarray(baseline, dtype=float)[resample_indices(groups, 200, 1)].mean(axis=1)
    assert (base == 0).any() and (base > 0).any()
    got = paired_comparison(variant, baseline, groups, 200, 1)
    _assert_same(got, _paired_reference(variant, baseline, groups, 200, 1))


@pytest.mark.filterwarnings("error")  # no division by the zero baseline, not even a warning
def test_a_baseline_that_gets_nothing_right_has_no_relative_numbers() -> None:
    n = 30
    got = paired_comparison([True] * n, [False] * n, ["t"] * n, 100, 0)
    mde = mde_paired(n, 1.0)
    assert mde is not None  # 30 wins and no loss are detectable: only the relative MDE is None
    assert got == {
        "diff": 1.0,
        "discordant": 1.0,
        "mde": mde,
        "mde_relative": None,
        "diff_ci_low": 1.0,
        "diff_ci_high": 1.0,
        "relative_improvement": None,
        "relative_ci_low": None,
        "relative_ci_high": None,
        "p_value": pytest.approx(2 / 2**n, rel=1e-12),
    }


# --- mcnemar_power and mde_paired ----------------------------------------------------------------


def _power_by_enumeration(n: int, discordant: float, diff: float, alpha: float) -> float:
    """P(exact McNemar p <= alpha), summing the multinomial probability of every (wins, losses)."""
    p_win, p_loss, p_tie = (discordant + diff) / 2, (discordant - diff) / 2, 1 - discordant
    total = 0.0
    for wins in range(n + 1):
        for losses in range(n + 1 - wins):
            if _exact_p(wins, losses) <= alpha:
                d = wins + losses
                total += (
                    math.comb(n, d) * math.comb(d, wins) * p_win**wins * p_loss**losses * p_tie ** (n - d)
                )
    return total


@pytest.mark.parametrize(
    ("n", "discordant", "diff", "alpha"),
    [
        (12, 1.0, 0.0, 0.05),  # size of the test: every item discordant, no true difference
        (12, 0.8, 0.3, 0.05),
        (12, 0.8, -0.3, 0.1),  # the baseline better: two-sided, so as detectable
        (10, 0.6, -0.6, 0.05),  # the first system never wins a disagreement
        (11, 0.5, 0.5, 0.01),
        (12, 0.9, 0.2, 0.2),
    ],
)
def test_power_matches_enumeration_of_all_outcomes(
    n: int, discordant: float, diff: float, alpha: float
) -> None:
    expected = _power_by_enumeration(n, discordant, diff, alpha)
    assert mcnemar_power(n, discordant, diff, alpha) == pytest.approx(expected, rel=1e-9, abs=1e-12)


@pytest.mark.filterwarnings("error")  # log(0) at the edges must stay inside the function
def test_power_at_the_edges_is_exact_and_silent() -> None:
    # 6 items, all discordant, one system always right: 6-0 (p = 2/64) is always reached
    assert mcnemar_power(6, 1.0, 1.0) == pytest.approx(1.0)
    assert mcnemar_power(6, 1.0, -1.0) == pytest.approx(1.0)
    assert mcnemar_power(8, 1.0, 0.0) == pytest.approx(2 / 256)  # only 8-0 or 0-8


def test_power_rejects_a_discordant_share_above_one() -> None:
    with pytest.raises(ValueError, match="discordant"):
        mcnemar_power(10, 1.5, 0.0)
    with pytest.raises(ValueError, match="discordant"):
        mcnemar_power(10, 1.0 + 1e-9, 0.0)


def test_mde_uses_the_asked_alpha() -> None:
    # 5 items, all discordant: at alpha 0.1 only 5-0 or 0-5 rejects (p = 2/32; 4-1 gives 12/32),
    # so power is q^5 + (1-q)^5 with win share q = (1 + diff) / 2
    q = brentq(lambda x: x**5 + (1 - x) ** 5 - 0.8, 0.5, 1.0, xtol=1e-14)
    expected = 2 * q - 1
    mde = mde_paired(5, 1.0, alpha=0.1)
    assert mde is not None
    assert expected - 1e-12 <= mde <= expected + 2**-20  # bisection's upper end, to 2^-20
    assert mde_paired(5, 1.0, alpha=0.05) is None  # 5-0 gives p = 0.0625


def test_mde_at_the_extreme_power_targets() -> None:
    # certainty: with 6 items all discordant only a first system that wins all 6 is sure to be detected
    assert mde_paired(6, 1.0, power=1.0) == pytest.approx(1.0)
    # a target of 0 is met by every difference, even where the test can never reject (5 items)
    mde = mde_paired(5, 1.0, power=0.0)
    assert mde is not None and 0.0 <= mde <= 2**-20


# --- seed_interval -------------------------------------------------------------------------------


def _t_one_df(p: float) -> float:
    """Quantile of Student's t with one degree of freedom (the Cauchy distribution)."""
    return math.tan(math.pi * (p - 0.5))


def test_seed_interval_with_exactly_two_seeds() -> None:
    out = seed_interval([0.1, 0.3])
    sd = math.sqrt(0.1**2 + 0.1**2)  # deviations of +-0.1 from the mean, 1 degree of freedom
    se = sd / math.sqrt(2)
    half = _t_one_df(0.975) * se  # 12.706 * se
    assert set(out) == SEED_KEYS
    assert out == {
        "mean": pytest.approx(0.2),
        "sd": pytest.approx(sd),
        "seeds": 2,
        "ci_low": pytest.approx(0.2 - half),
        "ci_high": pytest.approx(0.2 + half),
        "mde": pytest.approx((_t_one_df(0.975) + _t_one_df(0.8)) * se),
    }


@pytest.mark.filterwarnings("error")  # no "mean of empty slice" warning for zero seeds
def test_seed_interval_with_fewer_than_two_seeds() -> None:
    assert seed_interval([0.05]) == {
        "mean": 0.05,
        "sd": None,
        "seeds": 1,
        "ci_low": None,
        "ci_high": None,
        "mde": None,
    }
    empty = seed_interval([])
    assert set(empty) == SEED_KEYS
    assert math.isnan(empty["mean"])
    assert {k: v for k, v in empty.items() if k != "mean"} == {
        "sd": None,
        "seeds": 0,
        "ci_low": None,
        "ci_high": None,
        "mde": None,
    }


def test_seed_interval_of_float32_differences_is_computed_in_double() -> None:
    diffs32 = np.array([0.1, 0.2, 0.4], dtype=np.float32)
    x = [float(v) for v in diffs32]  # the float32 values, exactly, as doubles
    mean = sum(x) / 3
    sd = math.sqrt(sum((v - mean) ** 2 for v in x) / 2)
    out = seed_interval(diffs32)
    assert out["mean"] == pytest.approx(mean, rel=1e-12)
    assert out["sd"] == pytest.approx(sd, rel=1e-12)
    assert out["seeds"] == 3


# --- rank_flag_auc and grouped_flag_auc ----------------------------------------------------------


@pytest.mark.filterwarnings("error")  # single-class rows give NaN quietly, not a RuntimeWarning
def test_rank_flag_auc_rows_match_pair_counting() -> None:
    wrong = np.array(
        [
            [True, False, True, False, False],
            [True, True, True, True, True],  # no right output
            [False, False, False, False, False],  # no wrong output
            [False, True, False, True, False],
        ]
    )
    conf = np.array(
        [
            [0.1, 0.9, 0.5, 0.5, 0.3],
            [0.1, 0.2, 0.3, 0.4, 0.5],
            [0.1, 0.2, 0.3, 0.4, 0.5],
            [0.7, 0.7, 0.2, 0.9, 0.7],
        ]
    )
    got = rank_flag_auc(wrong, conf)
    expected = [_pair_auc(w, c) for w, c in zip(wrong, conf, strict=True)]
    # by hand: 0.1 is below all three right outputs, 0.5 below 0.9 and tied with 0.5: 4.5 of 6 pairs
    assert expected[0] == pytest.approx(0.75)
    np.testing.assert_allclose(got, expected, rtol=1e-12)
    assert np.isnan(got[1]) and np.isnan(got[2])


def test_rank_flag_auc_takes_a_boolean_signal() -> None:
    # a yes/no signal (e.g. "agrees with the majority") as confidence: False ranks below True
    wrong = np.array([[True, False, True, False, False]])
    conf = np.array([[False, True, True, False, True]])
    # wrong outputs at False, True; right ones at True, False, True:
    # False is below both Trues and ties the False (2.5), True ties both Trues (1): 3.5 of 6 pairs
    assert rank_flag_auc(wrong, conf)[0] == pytest.approx(3.5 / 6)


def test_flags_are_read_as_truth_values() -> None:
    # a count of mistakes per output still marks the output as wrong once, not twice
    counts = [2, 0, 1, 0, 0]
    conf = [0.1, 0.9, 0.5, 0.5, 0.3]
    assert rank_flag_auc(np.array([counts]), np.array([conf]))[0] == pytest.approx(0.75)  # as above
    out = grouped_flag_auc(counts, conf, ["t"] * 5, n_boot=20, seed=0)
    assert out["per_group"]["t"]["wrong"] == 2
    assert out["auc"] == pytest.approx(0.75)


def _auc_data() -> tuple[list[bool], list[float], list[str]]:
    a_wrong = [True, False, False, True, False, False, True, False, False, False]
    a_conf = [0.2, 0.9, 0.5, 0.5, 0.7, 0.3, 0.1, 0.8, 0.6, 0.4]
    b_wrong = [False, True, False, False, True, True, False, False, False, True, False, False]
    b_conf = [0.6, 0.6, 0.9, 0.2, 0.4, 0.1, 0.7, 0.8, 0.5, 0.3, 0.9, 0.35]
    c_wrong = [False] * 5  # a task with no wrong output: no AUC, left out of the pooled one
    c_conf = [0.5, 0.4, 0.9, 0.9, 0.1]
    wrong = a_wrong + b_wrong + c_wrong
    conf = a_conf + b_conf + c_conf
    groups = ["a"] * 10 + ["b"] * 12 + ["c"] * 5
    order = np.random.default_rng(3).permutation(len(wrong))  # groups need not be contiguous
    return [wrong[i] for i in order], [conf[i] for i in order], [groups[i] for i in order]


def _grouped_reference(
    wrong: list[bool], conf: list[float], groups: list[str], n_boot: int, seed: int
) -> dict[str, Any]:
    w, c, labels = np.asarray(wrong), np.asarray(conf), np.asarray(groups)
    idx = resample_indices(groups, n_boot, seed)
    per_group, boots = {}, []
    for g in sorted(set(groups)):
        members = np.flatnonzero(labels == g)
        point = _pair_auc(w[members], c[members])
        resampled = np.array([_pair_auc(w[row], c[row]) for row in idx[:, members]])
        kept = resampled[~np.isnan(resampled)]
        defined = not math.isnan(point)
        lo, hi = _pct(kept) if defined and kept.size else (None, None)
        per_group[g] = {
            "auc": point if defined else None,
            "ci_low": lo,
            "ci_high": hi,
            "n": len(members),
            "wrong": int(w[members].sum()),
        }
        if defined:
            boots.append(resampled)
    table = np.array(boots).T  # resample x defined group
    pooled = [float(np.mean(row[~np.isnan(row)])) for row in table if (~np.isnan(row)).any()]
    points = [p["auc"] for p in per_group.values() if p["auc"] is not None]
    return {
        "auc": float(np.mean(points)),
        "ci_low": _pct(np.array(pooled))[0],
        "ci_high": _pct(np.array(pooled))[1],
        "groups_used": len(points),
        "per_group": per_group,
    }


def _assert_auc_result(got: dict[str, Any], expected: dict[str, Any]) -> None:
    assert set(got) == {"auc", "ci_low", "ci_high", "groups_used", "per_group"}
    assert set(got["per_group"]) == set(expected["per_group"])
    for g, entry in expected["per_group"].items():
        assert set(got["per_group"][g]) == {"auc", "ci_low", "ci_high", "n", "wrong"}
        _assert_same(got["per_group"][g], entry)
    _assert_same(
        {k: v for k, v in got.items() if k != "per_group"},
        {k: v for k, v in expected.items() if k != "per_group"},
    )


def test_grouped_flag_auc_matches_a_reference() -> None:
    wrong, conf, groups = _auc_data()
    expected = _grouped_reference(wrong, conf, groups, 300, 7)
    assert expected["groups_used"] == 2 and expected["per_group"]["c"]["auc"] is None
    assert expected["per_group"]["a"]["auc"] == pytest.approx(
        18.5 / 21
    )  # by hand: 7 + 7 + 4.5 of 3 x 7 pairs
    _assert_auc_result(grouped_flag_auc(wrong, conf, groups, n_boot=300, seed=7), expected)


def test_grouped_flag_auc_defaults_to_1000_resamples_with_seed_0() -> None:
    wrong, conf, groups = _auc_data()
    _assert_auc_result(
        grouped_flag_auc(wrong, conf, groups), _grouped_reference(wrong, conf, groups, 1000, 0)
    )


def test_grouped_flag_auc_with_a_single_resample() -> None:
    wrong, conf, groups = [True, False, True, False], [0.3, 0.6, 0.7, 0.2], ["t"] * 4
    # a seed whose one resample keeps both classes: the interval is that resample's AUC
    seed = next(s for s in range(100) if len({wrong[i] for i in resample_indices(groups, 1, s)[0]}) == 2)
    row = resample_indices(groups, 1, seed)[0]
    auc = _pair_auc([wrong[i] for i in row], [conf[i] for i in row])
    out = grouped_flag_auc(wrong, conf, groups, n_boot=1, seed=seed)
    assert out["per_group"]["t"]["ci_low"] == out["per_group"]["t"]["ci_high"] == pytest.approx(auc)
    assert out["ci_low"] == out["ci_high"] == pytest.approx(auc)
    assert out["auc"] == pytest.approx(0.25)  # by hand: only 0.3 < 0.6 of the 4 (wrong, right) pairs


@pytest.mark.filterwarnings("error")
def test_grouped_flag_auc_when_every_resample_loses_a_class() -> None:
    wrong, conf, groups = [True, False], [0.1, 0.9], ["t", "t"]
    # a seed whose one resample draws the same output twice: no resample has an AUC
    seed = next(s for s in range(100) if len(set(resample_indices(groups, 1, s)[0])) == 1)
    assert grouped_flag_auc(wrong, conf, groups, n_boot=1, seed=seed) == {
        "auc": 1.0,
        "ci_low": None,
        "ci_high": None,
        "groups_used": 1,
        "per_group": {"t": {"auc": 1.0, "ci_low": None, "ci_high": None, "n": 2, "wrong": 1}},
    }


@pytest.mark.filterwarnings("error")
def test_grouped_flag_auc_with_no_group_holding_both_classes() -> None:
    out = grouped_flag_auc([False, False, True, True], [0.2, 0.8, 0.4, 0.6], ["a", "a", "b", "b"], n_boot=50)
    assert out == {
        "auc": None,
        "ci_low": None,
        "ci_high": None,
        "groups_used": 0,
        "per_group": {
            "a": {"auc": None, "ci_low": None, "ci_high": None, "n": 2, "wrong": 0},
            "b": {"auc": None, "ci_low": None, "ci_high": None, "n": 2, "wrong": 2},
        },
    }


@pytest.mark.filterwarnings("error")
def test_a_missing_confidence_leaves_its_group_without_auc_or_interval() -> None:
    # task t has both classes but one confidence missing (None -> NaN): its AUC is undefined, and
    # so is its interval, even though resamples that miss that row would have an AUC
    wrong = [True, False, True, False, False, True, False]
    conf: list[float | None] = [0.1, None, 0.5, 0.5, 0.3, 0.2, 0.8]
    groups = ["t"] * 5 + ["u"] * 2
    out = grouped_flag_auc(wrong, conf, groups, n_boot=200, seed=0)
    assert out["per_group"]["t"] == {"auc": None, "ci_low": None, "ci_high": None, "n": 5, "wrong": 2}
    # u alone is pooled: 0.2 < 0.8, and every resample that keeps both of its rows agrees
    assert out["per_group"]["u"] == {"auc": 1.0, "ci_low": 1.0, "ci_high": 1.0, "n": 2, "wrong": 1}
    assert (out["auc"], out["ci_low"], out["ci_high"], out["groups_used"]) == (1.0, 1.0, 1.0, 1)


def test_ratio_interval_inverts_the_test_of_num_minus_r_times_den() -> None:
    rng = np.random.default_rng(0)
    den = rng.normal(0.2, 0.02, 4000)  # far from zero: a bounded interval
    num = 0.5 * den + rng.normal(0.0, 0.01, 4000)
    low, high = ratio_interval(num, den)
    assert low is not None and high is not None and low < 0.5 < high
    # at each bound, 0 sits at the edge of the percentile interval of num - r * den
    for bound, edge in ((low, 2.5), (high, 97.5)):
        assert np.percentile(num - bound * den, edge) == pytest.approx(0.0, abs=1e-9)
    # the same ratio over negative resamples
    assert ratio_interval(-num, -den) == pytest.approx((low, high))
    # an exact ratio: an interval of width zero, not an empty set read as unbounded
    assert ratio_interval(0.3 * den, den) == pytest.approx((0.3, 0.3))


@pytest.mark.parametrize("ratio", [3.0, -40.0, 1e6])
def test_ratio_interval_widens_its_bracket_to_ratios_beyond_one(ratio: float) -> None:
    rng = np.random.default_rng(2)
    den = rng.normal(0.2, 0.02, 4000)
    num = ratio * den + rng.normal(0.0, 0.01 * abs(ratio), 4000)
    low, high = ratio_interval(num, den)
    assert low is not None and high is not None and low < ratio < high
    for bound, edge in ((low, 2.5), (high, 97.5)):
        assert np.percentile(num - bound * den, edge) == pytest.approx(0.0, abs=1e-9 * abs(ratio))


def test_ratio_interval_stays_bounded_with_a_few_non_positive_denominators() -> None:
    rng = np.random.default_rng(3)
    den = rng.normal(0.2, 0.02, 2000)
    den[:20] = -0.05  # 1%: the 2.5th percentile of den is still positive
    num = 0.5 * den + rng.normal(0.0, 0.01, 2000)
    low, high = ratio_interval(num, den)
    assert low is not None and high is not None and low < 0.5 < high


def test_ratio_interval_is_unbounded_when_the_denominator_may_be_zero() -> None:
    rng = np.random.default_rng(1)
    # den's 95% interval just spans zero; the set then holds r = -100 too (two rays), which a
    # search over a finite range of ratios missed, reporting "4.34 to +inf"
    den, num = rng.normal(0.1, 0.06, 2000), rng.normal(1.0, 0.1, 2000)
    assert np.percentile(den, 2.5) < 0 < np.percentile(den, 97.5)
    lo, hi = np.percentile(num + 100 * den, [2.5, 97.5])
    assert lo <= 0 <= hi  # r = -100 is in the set
    assert ratio_interval(num, den) == (None, None)
