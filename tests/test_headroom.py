"""taloop.studies.headroom's summary: per setting, seeds pooled into a gain with its t-interval."""

from __future__ import annotations

from typing import Any

import pytest

from taloop.studies import headroom


def _cell(mode: str, rate: float, seed: int, ft: float, oracle: float, p: float) -> dict[str, Any]:
    return {
        "error_mode": mode, "error_rate": rate, "budget": 96, "seed": seed, "teacher_accuracy": 1 - rate,
        "accuracy": {"ft": ft, "oracle_one_stage": oracle}, "gain": oracle - ft, "n": 400,
        "vs_ft": {"p_value": p, "mde": 0.06},
    }  # fmt: skip


def test_seeds_of_a_setting_pool_into_a_t_interval_and_settings_stay_apart() -> None:
    cells = [
        _cell("systematic", 0.4, 1, 0.50, 0.70, 0.001),
        _cell("systematic", 0.4, 0, 0.50, 0.60, 0.04),
        _cell("random", 0.4, 0, 0.55, 0.50, 0.3),
    ]
    rows = {(r["error_mode"], r["error_rate"]): r for r in headroom.summarise(cells)["settings"]}
    assert set(rows) == {("systematic", 0.4), ("random", 0.4)}
    systematic = rows[("systematic", 0.4)]
    assert systematic["seeds"] == [0, 1]  # ordered by seed whatever the order of the files
    assert systematic["ft"] == pytest.approx(0.50) and systematic["oracle_one_stage"] == pytest.approx(0.65)
    # Gains 0.10 and 0.20: sd 0.0707, t(0.975, df 1) = 12.706, half-width 12.706 * 0.0707 / sqrt(2).
    gain = systematic["gain"]
    assert gain["mean"] == pytest.approx(0.15)
    assert gain["ci_low"] == pytest.approx(0.15 - 0.6353, abs=1e-3)
    assert gain["ci_high"] == pytest.approx(0.15 + 0.6353, abs=1e-3)
    assert [s["p_value"] for s in systematic["per_seed"]] == [0.04, 0.001]
    assert rows[("random", 0.4)]["gain"]["ci_low"] is None  # one seed: no interval


def test_markdown_shows_each_setting_with_its_gain_interval() -> None:
    summary = headroom.summarise(
        [_cell("systematic", 0.4, s, 0.5, 0.5 + g, 0.01) for s, g in ((0, 0.1), (1, 0.2))]
    )
    table = headroom.markdown(summary)
    assert "| systematic | 0.4 | 96 | 2 | 60, 60 | 50.0 | 65.0 | +15.0 [-48.5, +78.5] |" in table
    assert "+10.0, p=0.01, MDE +6.0; +20.0, p=0.01, MDE +6.0" in table
