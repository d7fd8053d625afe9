"""Verdict wording against crafted comparisons, and the cross-experiment comparison read from
`dvc exp show --json` output."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from taloop.reporting import figures
from taloop.reporting.compare import runs_from_exp_show, series, write_compare
from taloop.reporting.verdict import significant, verdict


def _cmp(
    rel: float | None, lo: float, hi: float, p: float, diff: float = 0.1, mde: float | None = 0.138
) -> dict[str, Any]:
    # diff's CI shares the relative CI's sign pattern, as the paired bootstrap guarantees.
    return {
        "diff": diff,
        "diff_ci_low": lo / 4,
        "diff_ci_high": hi / 4,
        "relative_improvement": rel,
        "relative_ci_low": lo if rel is not None else None,
        "relative_ci_high": hi if rel is not None else None,
        "p_value": p,
        "discordant": 0.19,
        "mde": mde,
    }


def test_significant_win_is_called_significant() -> None:
    text = verdict("ta_loop", "ft", _cmp(0.12, 0.03, 0.21, 0.01))
    assert text.startswith("ta_loop beat ft by 12.0% relative (95% CI 3.0% to 21.0%; p = 0.010)")
    assert "; significant at the 5% level" in text


def test_nonsignificant_win_says_so() -> None:
    text = verdict("ta_loop", "ft", _cmp(0.12, -0.03, 0.27, 0.21))
    assert "beat ft by 12.0% relative (95% CI \N{MINUS SIGN}3.0% to 27.0%" in text
    assert "not significant at the 5% level" in text


def test_significant_loss_is_reported_as_a_loss() -> None:
    text = verdict("ta_loop", "ft", _cmp(-0.2, -0.35, -0.05, 0.004, diff=-0.1))
    assert text.startswith("ta_loop trailed ft by 20.0% relative")
    assert "; significant" in text and "beat" not in text


def test_small_p_with_ci_covering_zero_is_not_called_significant() -> None:
    # p and CI can disagree at the edge; the text must follow the more cautious one.
    cmp = _cmp(0.1, -0.01, 0.2, 0.04)
    assert not significant(cmp)
    assert "not significant" in verdict("ta_loop", "ft", cmp)


def test_tie_and_gold_variants() -> None:
    assert "matched ft exactly" in verdict("two_stage", "ft", _cmp(0.0, -0.1, 0.1, 1.0, diff=0.0))
    assert "diagnostic upper bound" in verdict("oracle", "ft", _cmp(0.1, -0.1, 0.3, 0.4), uses_gold=True)


def test_every_verdict_states_the_comparisons_minimum_detectable_effect() -> None:
    text = verdict("ta_loop", "ft", _cmp(0.12, -0.03, 0.27, 0.21))
    assert text.endswith(
        "The smallest difference these items detect with 80% power is 13.8 percentage points"
        " (minimum detectable effect at the observed 19.0% disagreement)."
    )
    assert "no difference is detectable" in verdict("ta_loop", "ft", _cmp(0.12, -0.03, 0.27, 0.21, mde=None))


def test_baseline_at_zero_reports_points_not_relative() -> None:
    text = verdict("ta_loop", "ft", _cmp(None, 0.1, 0.5, 0.02, diff=0.25))
    assert "by 25.0 percentage points (95% CI 2.5 to 12.5 percentage points;" in text
    assert "relative" not in text


def _exp(
    rev: str, name: str | None, budget: int, error_rate: float, acc: dict[str, float], split: str = "test"
) -> dict[str, Any]:
    """One revision record shaped like dvc 3's `exp show --json`."""
    params = {"budget": {"queries": budget}, "teacher": {"error_rate": error_rate}, "eval": {"split": split}}
    return {
        "rev": rev,
        "name": name,
        "data": {
            "rev": rev,
            "params": {"params.yaml": {"data": params}},
            "metrics": {
                **{f"metrics/eval/{v}.json": {"data": {"accuracy": a, "n": 80}} for v, a in acc.items()},
                "metrics/teacher.json": {"data": {"usd_spent": 0.1}},
            },
        },
        "error": None,
        "experiments": None,
    }


def _exp_show() -> list[dict[str, Any]]:
    base = _exp("a" * 40, "main", 100, 0.2, {"ft": 0.4, "ta_loop": 0.45})
    exps = [
        _exp("b" * 40, "exp-200", 200, 0.2, {"ft": 0.5, "ta_loop": 0.52}),
        _exp("c" * 40, "exp-400", 400, 0.2, {"ft": 0.55, "ta_loop": 0.6}),
        _exp("d" * 40, "exp-err", 100, 0.4, {"ft": 0.3, "ta_loop": 0.38}),
        _exp("f" * 40, "exp-tune", 200, 0.2, {"ft": 0.9, "ta_loop": 0.1}, split="val"),  # left out
    ]
    base["experiments"] = [{"revs": [e], "name": e["name"], "executor": None} for e in exps]
    workspace = _exp("workspace", None, 400, 0.2, {"ft": 0.55, "ta_loop": 0.6})  # = exp-400, applied
    no_metrics = {"rev": "e" * 40, "name": "failed", "data": {"params": {}, "metrics": {}}}
    return [workspace, base, no_metrics]


def test_compare_reads_every_experiment_once() -> None:
    runs = runs_from_exp_show(_exp_show())
    assert sorted(r.name for r in runs) == ["exp-200", "exp-400", "exp-err", "main"]
    budget = series(runs, "budget")
    assert set(budget) == {"ft", "ta_loop"}
    # budget 100 has two runs (error 0.2 and 0.4): the line shows their mean
    assert budget["ft"] == [(100.0, pytest.approx(0.35)), (200.0, 0.5), (400.0, 0.55)]
    assert series(runs, "error_rate")["ta_loop"] == [
        (0.2, pytest.approx((0.45 + 0.52 + 0.6) / 3)),
        (0.4, 0.38),
    ]


def test_compare_writes_one_line_per_variant(tmp_path: Path) -> None:
    out = tmp_path / "reports/compare.html"
    result = write_compare(runs_from_exp_show(_exp_show()), out)
    assert set(result["series"]["budget"]) == {"ft", "ta_loop"}
    page = out.read_text()
    assert "http://" not in page and "https://" not in page
    assert page.count("data:image/png;base64,") == 2
    fig = figures.lines(result["series"]["budget"], "budget")
    assert [line.get_label() for line in fig.axes[0].get_lines()] == ["ft", "ta_loop"]
    assert json.loads(out.with_suffix(".json").read_text())["series"] == json.loads(
        json.dumps(result["series"])
    )


def test_compare_without_metrics_fails_clearly(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no experiment has test metrics"):
        write_compare(
            runs_from_exp_show([{"rev": "workspace", "data": {"metrics": {}}}]), tmp_path / "c.html"
        )


def test_run_card_says_what_the_simulated_teacher_gets_wrong_and_a_real_one_does_not() -> None:
    from taloop.reporting.document import run_card_table

    teacher = {"model": "simulated-cot-v1", "backend": "simulated", "prompt_template": "cot_v1",
               "simulated": True, "error_rate": 0.2, "error_mode": "systematic"}  # fmt: skip
    run = {
        "student": "s", "precision": {"bf16_setting": "auto", "resolved": "fp32"}, "ta": "t",
        "ta_scorer": "auto", "teacher": teacher,
        "budget": {"queries": 192, "usd": None}, "acquisition": {"mode": "random"},
        "spend": {"usd_value": 0.1, "replies": 192, "usd_spent_this_run": 0.1, "cache_hits": 0},
        "seeds": {"stage2": 0}, "git_revision": "abc", "experiment": "e", "params_hash": "h",
    }  # fmt: skip
    card = run_card_table(run, 0.8)
    assert "SIMULATED offline teacher (systematic errors at rate 0.2), not a real LLM; 80.0%" in card
    assert "| student precision | fp32 (student.bf16: auto) |" in card
    real = run_card_table({**run, "teacher": {**teacher, "backend": "openai", "simulated": False}}, 0.8)
    assert "errors at rate" not in real
