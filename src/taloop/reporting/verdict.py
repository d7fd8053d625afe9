"""Plain-language verdicts that never claim more than the paired test and the bootstrap CI support."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

ALPHA = 0.05


def pct(x: float, digits: int = 1) -> str:
    """A share as a signed-where-needed percentage, using a true minus sign."""
    return f"{100 * x:.{digits}f}%".replace("-", "\N{MINUS SIGN}")


def points(x: float) -> str:
    """A difference of two shares in percentage points, written out so that it never reads as
    a relative change ("11.6% points" beside "11.6% relative" did)."""
    return f"{100 * x:.1f}".replace("-", "\N{MINUS SIGN}")


def _interval(low: float | None, high: float | None, in_points: bool = False) -> str:
    if low is None or high is None:
        return "no CI: the baseline scored 0 in every resample"
    if in_points:
        return f"95% CI {points(low)} to {points(high)} percentage points"
    return f"95% CI {pct(low)} to {pct(high)}"


def significant(cmp: Mapping[str, Any], alpha: float = ALPHA) -> bool:
    """Significant only when the p-value and the CI of the difference agree, so the text
    never calls a difference real while the interval still covers zero."""
    excludes_zero = cmp["diff_ci_low"] > 0 or cmp["diff_ci_high"] < 0
    return cmp["p_value"] < alpha and excludes_zero


def _detectable(cmp: Mapping[str, Any]) -> str:
    """What this comparison could have seen: its minimum detectable effect at 80% power."""
    mde = cmp["mde"]
    if mde is None:
        return "On these items no difference is detectable with 80% power."
    return (
        f"The smallest difference these items detect with 80% power is {points(mde)} percentage points"
        f" (minimum detectable effect at the observed {pct(cmp['discordant'])} disagreement)."
    )


def verdict(variant: str, baseline: str, cmp: Mapping[str, Any], uses_gold: bool = False) -> str:
    """One sentence (two for gold-using variants) on ``variant`` against ``baseline``."""
    rel = cmp.get("relative_improvement")
    if rel is None:  # baseline at 0%: a relative change is undefined, report points
        size = f"{points(abs(cmp['diff']))} percentage points"
        ci = _interval(cmp["diff_ci_low"], cmp["diff_ci_high"], in_points=True)
        change = cmp["diff"]
    else:
        size = f"{pct(abs(rel))} relative"
        ci = _interval(cmp.get("relative_ci_low"), cmp.get("relative_ci_high"))
        change = rel
    p = f"p = {cmp['p_value']:.3f}"
    if change == 0:
        text = f"{variant} matched {baseline} exactly ({ci}; {p})."
    else:
        verb = "beat" if change > 0 else "trailed"
        text = f"{variant} {verb} {baseline} by {size} ({ci}; {p}); "
        if significant(cmp):
            text += f"significant at the {pct(ALPHA, 0)} level."
        else:
            text += f"not significant at the {pct(ALPHA, 0)} level: this test set cannot tell them apart."
    text += " " + _detectable(cmp)
    if uses_gold:
        text += " It filters by gold answers, so it is a diagnostic upper bound, not a usable method."
    return text
