"""Power, minimum detectable effects and seed-level intervals (taloop.core.metrics), against values
computed by hand."""

from __future__ import annotations

import numpy as np
import pytest

from taloop.core.metrics import (
    mcnemar_exact,
    mcnemar_power,
    mde_paired,
    paired_comparison,
    seed_interval,
    wilson_interval,
)


def test_power_when_every_item_is_discordant() -> None:
    # 6 discordant items: only 6-0 (p = 2/64) is significant at 0.05; 5-1 gives p = 14/64.
    assert mcnemar_power(6, 1.0, 1.0) == pytest.approx(1.0)
    # no true difference: 6-0 or 0-6 by chance, each 1/64
    assert mcnemar_power(6, 1.0, 0.0) == pytest.approx(2 / 64)
    # 5 items can never reach 0.05 (5-0 gives p = 2/32)
    assert mcnemar_power(5, 1.0, 1.0) == 0.0
    assert mde_paired(5, 1.0) is None


def test_power_when_the_number_of_discordant_items_is_random() -> None:
    # each of 6 items discordant with probability 1/2, and then always a win: rejection needs
    # all 6 discordant, probability 1/64
    assert mcnemar_power(6, 0.5, 0.5) == pytest.approx(1 / 64)
    with pytest.raises(ValueError, match="diff"):
        mcnemar_power(10, 0.1, 0.2)
    assert mcnemar_power(10, 0.0, 0.0) == 0.0
    assert mde_paired(10, 0.0) is None


def test_the_mde_is_detected_with_the_asked_power_by_simulation() -> None:
    n, discordant = 80, 0.2
    mde = mde_paired(n, discordant)
    assert mde is not None and 0 < mde < discordant
    assert mcnemar_power(n, discordant, mde) == pytest.approx(0.8, abs=1e-3)
    rng = np.random.default_rng(0)
    trials = 4000
    rejected = 0
    for _ in range(trials):
        kinds = rng.choice(3, size=n, p=[(discordant + mde) / 2, (discordant - mde) / 2, 1 - discordant])
        rejected += mcnemar_exact(int((kinds == 0).sum()), int((kinds == 1).sum())) <= 0.05
    assert rejected / trials == pytest.approx(0.8, abs=0.025)


def test_more_items_detect_smaller_effects() -> None:
    small, big = mde_paired(100, 0.2), mde_paired(400, 0.2)
    assert small is not None and big is not None
    # power grows like sqrt(n): four times the items, about half the MDE
    assert big < small and big == pytest.approx(small / 2, rel=0.15)


def test_seed_interval_by_hand() -> None:
    out = seed_interval([0.01, 0.03, -0.02])
    sd = np.sqrt(((0.01 - 1 / 150) ** 2 + (0.03 - 1 / 150) ** 2 + (-0.02 - 1 / 150) ** 2) / 2)
    se = sd / np.sqrt(3)
    # t quantiles with 2 degrees of freedom: 0.975 -> 4.302653, 0.8 -> 1.060660
    assert out["mean"] == pytest.approx(1 / 150)
    assert out["sd"] == pytest.approx(sd)
    assert out["ci_low"] == pytest.approx(1 / 150 - 4.302653 * se, abs=1e-6)
    assert out["ci_high"] == pytest.approx(1 / 150 + 4.302653 * se, abs=1e-6)
    assert out["mde"] == pytest.approx((4.302653 + 1.060660) * se, abs=1e-6)
    one = seed_interval([0.05])
    assert one["mean"] == 0.05 and one["ci_low"] is None and one["mde"] is None


def test_wilson_interval_by_hand() -> None:
    # 0 of 16: centre = half-width = (z^2/32) / (1 + z^2/16) = 0.0968
    assert wilson_interval(0, 16) == pytest.approx((0.0, 0.1936), abs=1e-4)
    # 8 of 16: 0.5 -+ z * sqrt(1/64 + z^2/1024) / (1 + z^2/16) = 0.5 -+ 0.2200
    assert wilson_interval(8, 16) == pytest.approx((0.2800, 0.7200), abs=1e-4)
    assert wilson_interval(0, 0) == (0.0, 1.0)


def test_a_paired_comparison_reports_the_mde_at_its_observed_disagreement() -> None:
    # 100 items: 12 wins, 8 losses, 80 ties -> 20% discordant, baseline accuracy 50%
    variant = [1] * 12 + [0] * 8 + [1] * 42 + [0] * 38
    baseline = [0] * 12 + [1] * 8 + [1] * 42 + [0] * 38
    result = paired_comparison(variant, baseline, ["t"] * 100, 200, 0)
    assert result["discordant"] == pytest.approx(0.2)
    assert result["mde"] == pytest.approx(mde_paired(100, 0.2))
    assert result["mde_relative"] == pytest.approx(result["mde"] / 0.5)
