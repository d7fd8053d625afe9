"""The TA-quality aggregation (a study's ``report: ta_quality``): how good must the TA be before
TA-in-the-loop pays?

Cells are grouped by arm (the study's named param bundles: a weighting and how the signals are
selected) and by the simulated TA's AUC (``ta.auc_teacher``; the student side follows it). Per
group, over the training seeds: ta_loop against the baseline and against two_stage
(:func:`taloop.studies.aggregate.compare`: intervals and minimum detectable effects) and the
recovery ratio against the oracle. Per arm, the **break-even AUC**: where ta_loop - baseline,
linear between the AUCs run, last turns from <= 0 to > 0; its interval comes from joint
resamples of the seeds and the test items, the same draw for every AUC (each seed's baseline is
one run shared by all its AUCs). Cells with ``ta.blind_spot: shared`` and cells with a real TA
(``ta.backend: model``, placed at the AUC calibrate_signals measured on validation) are
reported beside the curve, each against the curve's prediction at its AUC.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from taloop.metrics import percentile_interval, resample_indices
from taloop.studies.aggregate import N_BOOT, _points, compare, recovery

METHOD = "ta_loop"
SEED = 0
OFF_GRID = 1e6  # a break-even "AUC" this far out: none within the AUCs run


def arm_of(params: Mapping[str, Any], arms: Mapping[str, Mapping[str, Any]]) -> str | None:
    """The first arm whose every param the cell has (None: no arm matches)."""
    return next(
        (name for name, bundle in arms.items() if all(params.get(k) == v for k, v in bundle.items())), None
    )


def measured_auc(calibration: Mapping[str, Any]) -> float | None:
    """The TA's validation AUC at flagging wrong teacher replies with the measure it used."""
    measure = calibration["chosen"]["measure"]
    return calibration["auc"]["ta_teacher"][measure]["auc"]


def _kind(run: Mapping[str, Any]) -> str:
    p = run["params"]
    if p.get("ta.backend", "model") != "simulated":
        return "real"
    return "blind_spot" if p.get("ta.blind_spot", "none") != "none" else "curve"


def _diff_resamples(groups: Sequence[Sequence[dict[str, Any]]], baseline: str) -> np.ndarray:
    """(N_BOOT, len(groups)): mean ta_loop - baseline accuracy of each group under one joint
    draw of seeds and test items shared by all groups. Every group must hold the same seeds."""
    first = groups[0]
    seeds = [r["seed"] for r in first]
    ids, tasks = first[0]["ids"], first[0]["tasks"]
    items = resample_indices(tasks, N_BOOT, SEED)
    picks = resample_indices([0] * len(seeds), N_BOOT, (SEED, 1))
    out = np.empty((N_BOOT, len(groups)))
    for j, group in enumerate(groups):
        by_seed = {r["seed"]: r for r in group}
        if sorted(by_seed) != sorted(seeds) or any(not np.array_equal(r["ids"], ids) for r in group):
            raise ValueError("break-even AUC: every AUC needs the same seeds, evaluated on the same items")
        diff = np.stack([by_seed[s]["correct"][METHOD] - by_seed[s]["correct"][baseline] for s in seeds])
        per_seed = diff[:, items].mean(axis=2)  # (k, N_BOOT)
        out[:, j] = per_seed[picks, np.arange(N_BOOT)[:, None]].mean(axis=1)
    return out


def crossing(aucs: Sequence[float], gains: Sequence[float]) -> float:
    """The AUC where the gain last turns from <= 0 to > 0, linear between the AUCs run:
    -inf when it is above 0 at every AUC (break-even below the grid), +inf when it is not above
    0 at the highest (no break-even within it)."""
    at_or_below = [j for j, g in enumerate(gains) if g <= 0]
    if not at_or_below:
        return -math.inf
    j = at_or_below[-1]
    if j == len(gains) - 1:
        return math.inf
    a0, a1, g0, g1 = aucs[j], aucs[j + 1], gains[j], gains[j + 1]
    return a0 + (a1 - a0) * (0 - g0) / (g1 - g0)


def break_even(groups: Mapping[float, Sequence[dict[str, Any]]], baseline: str) -> dict[str, Any]:
    """The break-even AUC of one arm over the seeds every AUC has, its 95% interval over joint
    resamples (None where the interval leaves the AUCs run), and the shares of resamples in
    which ta_loop never pays and always pays."""
    aucs = sorted(groups)
    common = set.intersection(*({r["seed"] for r in groups[a]} for a in aucs))
    if not common:
        raise ValueError("break-even AUC: no seed has run at every AUC")
    ordered = [sorted((r for r in groups[a] if r["seed"] in common), key=lambda r: r["seed"]) for a in aucs]
    mean = [float(np.mean([r["accuracy"][METHOD] - r["accuracy"][baseline] for r in g])) for g in ordered]
    boot = _diff_resamples(ordered, baseline)
    points = np.array([crossing(aucs, row) for row in boot])
    # percentiles of infinities are undefined: off the grid each side stands in as a far value
    low, high = np.percentile(np.clip(points, -OFF_GRID, OFF_GRID), [2.5, 97.5])
    return {
        "aucs": aucs,
        "seeds": sorted(common),
        "gain": mean,
        "auc": _finite(crossing(aucs, mean)),
        "below_grid": crossing(aucs, mean) == -math.inf,
        "ci_low": _finite(low),
        "ci_high": _finite(high),
        "share_never": float(np.mean(points == math.inf)),
        "share_always": float(np.mean(points == -math.inf)),
        "gain_resamples": boot,
    }


def _finite(x: float) -> float | None:
    return float(x) if abs(x) < OFF_GRID else None


def predicted_gain(curve: Mapping[str, Any], auc: float) -> dict[str, Any] | None:
    """The arm's gain at ``auc``, linear between the AUCs run, with its 95% interval over the
    same resamples; None outside the AUCs run."""
    aucs = curve["aucs"]
    if not aucs[0] <= auc <= aucs[-1]:
        return None
    boot = np.array([np.interp(auc, aucs, row) for row in curve["gain_resamples"]])
    low, high = percentile_interval(boot)
    return {"auc": auc, "gain": float(np.interp(auc, aucs, curve["gain"])), "ci": [low, high]}


def _row(group: list[dict[str, Any]], baseline: str) -> dict[str, Any]:
    have = set.intersection(*(set(r["accuracy"]) for r in group))
    return {
        "seeds": sorted(r["seed"] for r in group),
        "mean_accuracy": {v: float(np.mean([r["accuracy"][v] for r in group])) for v in sorted(have)},
        "vs_baseline": compare(group, METHOD, baseline),
        "vs_two_stage": compare(group, METHOD, "two_stage") if "two_stage" in have else None,
        "recovery": recovery(group, METHOD, baseline, "oracle") if "oracle" in have else None,
    }


def summarise(runs: list[dict[str, Any]], arms: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """``runs``: :func:`taloop.studies.sources.load_run` cells, each with its ``calibration``
    (metrics/calibration.json) added; ``arms``: the study's."""
    baseline = runs[0]["baseline"]
    by_arm: dict[str, dict[str, dict[float, list[dict[str, Any]]]]] = defaultdict(lambda: defaultdict(dict))
    for run in runs:
        arm = arm_of(run["params"], arms)
        if arm is None:
            raise ValueError(f"cell {run['name']}: matches none of the arms {sorted(arms)}")
        kind = _kind(run)
        # a real TA's cells group by the TA, placed at their measured AUC below
        key = run["params"]["ta.model"] if kind == "real" else run["params"]["ta.auc_teacher"]
        by_arm[arm][kind].setdefault(key, []).append(run)
    out: dict[str, Any] = {"baseline": baseline, "method": METHOD, "arms": {}}
    for arm, kinds in by_arm.items():
        curve_groups = kinds.get("curve", {})
        entry: dict[str, Any] = {
            "params": dict(arms[arm]),
            "curve": [{"auc": a, **_row(curve_groups[a], baseline)} for a in sorted(curve_groups)],
        }
        curve = break_even(curve_groups, baseline) if len(curve_groups) >= 2 else None
        if curve is not None:
            entry["break_even"] = {k: v for k, v in curve.items() if k != "gain_resamples"}
        entry["blind_spot"] = [
            {"auc": a, **_row(g, baseline), "curve_predicts": predicted_gain(curve, a) if curve else None}
            for a, g in sorted(kinds.get("blind_spot", {}).items())
        ]
        entry["real"] = []
        for model, group in sorted(kinds.get("real", {}).items()):
            measured = [measured_auc(r["calibration"]) for r in group]
            auc = float(np.mean(measured))
            entry["real"].append({
                "ta": model, "auc": auc, "measured_auc_per_seed": measured, **_row(group, baseline),
                "curve_predicts": predicted_gain(curve, auc) if curve else None,
            })  # fmt: skip
        out["arms"][arm] = entry
    return out


def _ci(cmp: Mapping[str, Any]) -> str:
    return f"{cmp['diff'] * 100:+.1f} [{cmp['diff_ci'][0] * 100:+.1f}, {cmp['diff_ci'][1] * 100:+.1f}]"


def _recovery(rec: Mapping[str, Any] | None) -> str:
    if rec is None or rec["ratio"] is None:
        return "n/a"
    bound = [("unbounded" if b is None else f"{b:.2f}") for b in (rec["ci_low"], rec["ci_high"])]
    return f"{rec['ratio']:.2f} [{bound[0]}, {bound[1]}]"


def _break_even_line(arm: str, be: Mapping[str, Any] | None) -> str:
    if be is None:
        return f"- **{arm}**: fewer than two AUCs run, no break-even AUC yet."
    lo = f"{be['ci_low']:.2f}" if be["ci_low"] is not None else f"below {be['aucs'][0]:g}"
    hi = f"{be['ci_high']:.2f}" if be["ci_high"] is not None else f"above {be['aucs'][-1]:g} (never)"
    if be["auc"] is not None:
        point = f"AUC {be['auc']:.2f}"
    elif be["below_grid"]:
        point = f"at or below AUC {be['aucs'][0]:g} (ta_loop gains at every AUC run)"
    else:
        point = f"none up to AUC {be['aucs'][-1]:g} (ta_loop never gains)"
    return (
        f"- **{arm}**: break-even {point}; 95% interval {lo} to {hi}; ta_loop never gains in "
        f"{be['share_never']:.0%} of the resamples."
    )


def markdown(result: Mapping[str, Any]) -> str:
    base = result["baseline"]
    lines = [
        "# How good must the TA be?",
        "",
        f"ta_loop against {base} and two_stage, in accuracy points with 95% intervals (seeds and test",
        "items resampled jointly, and the seeds' t-interval: the wider), minimum detectable effects at",
        f"80% power, and the recovery ratio (ta_loop - {base}) / (oracle - {base}), by the TA's AUC.",
        "",
    ]
    mde = "MDE (seeds; items)"
    header = ["AUC", "seeds", base, "two_stage", "ta_loop", "oracle", f"ta_loop - {base}", mde,
              "ta_loop - two_stage", mde, "recovery"]  # fmt: skip
    variants = (base, "two_stage", METHOD, "oracle")
    for arm, entry in result["arms"].items():
        lines += [f"## {arm}: {json.dumps(entry['params'])}", "", "| " + " | ".join(header) + " |",
                  "|" + "---|" * len(header)]  # fmt: skip
        rows = [("", r) for r in entry["curve"]]
        rows += [(" (shared blind spot)", r) for r in entry["blind_spot"]]
        rows += [(f" ({r['ta']}, measured)", r) for r in entry["real"]]
        for label, r in rows:
            acc = r["mean_accuracy"]
            lines.append("| " + " | ".join([
                f"{r['auc']:.2f}{label}", str(len(r["seeds"])),
                *(f"{acc[v] * 100:.1f}" if v in acc else "n/a" for v in variants),
                _points(r["vs_baseline"]),
                _points(r["vs_two_stage"]) if r["vs_two_stage"] else "n/a | n/a",
                _recovery(r["recovery"]),
            ]) + " |")  # fmt: skip
        lines += ["", _break_even_line(arm, entry.get("break_even"))]
        for r in [*entry["blind_spot"], *entry["real"]]:
            predicted = r["curve_predicts"]
            if predicted is not None:
                lines.append(
                    f"- at AUC {r['auc']:g} the curve predicts {predicted['gain'] * 100:+.1f} points "
                    f"[{predicted['ci'][0] * 100:+.1f}, {predicted['ci'][1] * 100:+.1f}]; measured "
                    f"{_ci(r['vs_baseline'])}."
                )
        lines.append("")
    return "\n".join(lines)
