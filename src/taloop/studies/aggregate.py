"""Effect-size aggregation over study cells (each loaded by :func:`taloop.studies.sources.load_run`,
from a kept directory or a DVC experiment). Its parts, each where the cells support it:

- seeds: at the full budget with random acquisition, per-seed accuracy of every variant and
  its difference from the baseline (:func:`compare`: the t-interval of per-seed differences
  and a bootstrap resampling seeds and the shared test items jointly; the minimum
  detectable effect at 80% power), and the relative change;
- budget curve: accuracy against budget.queries (random acquisition), and the spend at which
  ta_loop first matches the baseline's full-budget accuracy (linear between measured budgets);
- acquisition: every active run against the random run with the same seeds and budget, per
  variant (same test items, so paired);
- tuning: runs evaluated on the validation split (eval.split: val), each with the params it
  changed against the first of them, and each variant's best setting against the default
  (``--default``, params.yaml) per seed;
- selection: validation runs with signals.selection as_listed, ta_loop against two_stage and
  the baseline of the same runs (:func:`selection`);
- error-rate map (issue 16), when the full-budget runs span several ``teacher.error_rate``:
  per rate, ta_loop against the baseline and against two_stage, and the recovery ratio
  against the oracle, and the same comparisons pooled over every cell with a sign test
  (:func:`pooled_map`). The other parts then take the error rate most runs have.

:func:`study` gives the numbers, :func:`markdown` the tables.
"""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from collections.abc import Mapping
from typing import Any

import numpy as np

from taloop.core.metrics import (
    mcnemar_exact,
    mde_paired,
    percentile_interval,
    ratio_interval,
    resample_indices,
    seed_interval,
)

log = logging.getLogger("study")
N_BOOT = 2000


def _accuracy_resamples(
    runs: list[dict[str, Any]], variants: list[str], seed: int, strata: list[Any] | None = None
) -> dict[str, np.ndarray]:
    """Per variant, the mean accuracy over the runs in each of N_BOOT joint resamples: the
    runs (seeds) with replacement, within each of their ``strata`` if given (e.g. error rates,
    so each keeps its share), and the test items once per resample for all runs alike
    (stratified by task), since every seed is evaluated on the same items. Resampling each
    seed's items on their own would treat shared items as fresh ones and narrow the interval."""
    ids = runs[0]["ids"]
    if any(not np.array_equal(r["ids"], ids) for r in runs):
        raise ValueError("runs compared across seeds must share their test items (same data seed and split)")
    items = resample_indices(runs[0]["tasks"], N_BOOT, seed)  # (N_BOOT, n)
    # Runs by stratum with their own stream: from default_rng(seed), the runs drawn would
    # repeat the first task's item draws (identical when there are as many runs as items).
    picks = resample_indices([0] * len(runs) if strata is None else strata, N_BOOT, (seed, 1))  # (N_BOOT, k)
    out = {}
    for v in variants:
        correct = np.stack([r["correct"][v] for r in runs])  # (k, n)
        per_seed = correct[:, items].mean(axis=2)  # (k, N_BOOT): each seed on each item resample
        out[v] = per_seed[picks, np.arange(N_BOOT)[:, None]].mean(axis=1)
    return out


def compare(
    runs: list[dict[str, Any]], variant: str, baseline: str, seed: int = 0, strata: list[Any] | None = None
) -> dict[str, Any]:
    """``variant`` against ``baseline`` over runs that differ only in their training seeds.

    The difference of mean accuracies with two 95% intervals, the t-interval of the per-seed
    paired differences and the joint bootstrap of :func:`_accuracy_resamples` (runs drawn
    within ``strata``), and the reported ``diff_ci`` spanning both: neither narrower than the
    seed-level spread allows nor blind to the test items being a sample. ``mde``: the smallest
    mean difference a t-test over as many seeds detects with 80% power at the observed spread;
    ``mde_items``: the same for one seed's exact McNemar test on its items (the mean over seeds
    of each seed's, at its observed disagreement). The relative change is mean(variant) /
    mean(baseline) - 1; its interval spans :func:`~taloop.core.metrics.ratio_interval`'s over the
    joint resamples (None: unbounded, where the baseline's accuracy may be 0) and the
    t-interval over the baseline's mean, as the difference's does."""
    a = np.array([r["accuracy"][variant] for r in runs])
    b = np.array([r["accuracy"][baseline] for r in runs])
    seeds = seed_interval(a - b)
    boot = _accuracy_resamples(runs, [variant, baseline], seed, strata)
    diff_boot = percentile_interval(boot[variant] - boot[baseline])
    # variant / baseline - 1 is the ratio of the difference to the baseline
    rel_boot = ratio_interval(boot[variant] - boot[baseline], boot[baseline])
    item_mdes = [
        mde_paired(len(r["ids"]), float((r["correct"][variant] != r["correct"][baseline]).mean()))
        for r in runs
    ]
    known = [m for m in item_mdes if m is not None]
    lows = [x for x in (seeds["ci_low"], diff_boot[0]) if x is not None]
    highs = [x for x in (seeds["ci_high"], diff_boot[1]) if x is not None]
    rel_t = (None, None) if b.mean() <= 0 or seeds["ci_low"] is None else (
        seeds["ci_low"] / b.mean(), seeds["ci_high"] / b.mean()
    )  # fmt: skip
    return {
        "seeds": len(runs),
        "mean_accuracy": float(a.mean()),
        "baseline_mean_accuracy": float(b.mean()),
        "diff": float(a.mean() - b.mean()),
        "diff_t_ci": [seeds["ci_low"], seeds["ci_high"]],
        "diff_bootstrap_ci": list(diff_boot),
        "diff_ci": [min(lows), max(highs)],
        "seed_sd": seeds["sd"],
        "mde": seeds["mde"],
        "mde_relative": seeds["mde"] / b.mean() if seeds["mde"] is not None and b.mean() > 0 else None,
        "mde_items": float(np.mean(known)) if len(known) == len(runs) else None,
        "mean_relative_improvement": float(a.mean() / b.mean() - 1) if b.mean() > 0 else None,
        # An unbounded side (None) stays unbounded.
        "ci_low": None if rel_boot[0] is None else min(x for x in (rel_boot[0], rel_t[0]) if x is not None),
        "ci_high": None if rel_boot[1] is None else max(x for x in (rel_boot[1], rel_t[1]) if x is not None),
        "share_of_resamples_above_zero": float(np.mean(boot[variant] > boot[baseline])),
    }


def recovery(
    runs: list[dict[str, Any]], method: str, baseline: str, oracle: str, seed: int = 0
) -> dict[str, Any]:
    """The recovery ratio (method - baseline) / (oracle - baseline) of mean accuracies: the share
    of the gain from dropping every wrong teacher reply that ``method`` gets without gold
    answers, with the 95% bounds of :func:`ratio_interval` over the joint resamples (None:
    unbounded). The ratio is unstable when the oracle's gain is near zero, so
    the oracle's gain and its interval are reported beside it."""
    boot = _accuracy_resamples(runs, [method, baseline, oracle], seed)
    mean = {v: float(np.mean([r["accuracy"][v] for r in runs])) for v in (method, baseline, oracle)}
    headroom = mean[oracle] - mean[baseline]
    ratio = ratio_interval(boot[method] - boot[baseline], boot[oracle] - boot[baseline])
    return {
        # An exact 0 can come out as a rounding residue of the two means (1e-17).
        "ratio": (mean[method] - mean[baseline]) / headroom if abs(headroom) > 1e-9 else None,
        "ci_low": ratio[0],
        "ci_high": ratio[1],
        "oracle_gain": headroom,
        "oracle_gain_ci": list(percentile_interval(boot[oracle] - boot[baseline])),
    }


def seeds_table(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Every variant over the runs that trained it (a run may compare fewer variants)."""
    baseline = runs[0]["baseline"]
    variants = list(dict.fromkeys(v for r in runs for v in r["accuracy"]))
    having = {v: [r for r in runs if v in r["accuracy"]] for v in variants}
    return {
        "baseline": baseline,
        "seeds": [r["seeds"] for r in runs],
        "budget": runs[0]["budget"],
        "test_items_per_seed": len(runs[0]["tasks"]),
        "accuracy": {v: {str(r["seed"]): r["accuracy"][v] for r in having[v]} for v in variants},
        "mean_accuracy": {v: float(np.mean([r["accuracy"][v] for r in having[v]])) for v in variants},
        "vs_baseline": {v: compare(having[v], v, baseline) for v in variants if v != baseline},
    }


def matching_spend(curve: list[dict[str, float]], target: float) -> dict[str, float] | None:
    """The first point of ``curve`` (budget ascending) reaching ``target`` accuracy, linear
    between the measured budgets; None if no measured budget reaches it."""
    for i, point in enumerate(curve):
        if point["accuracy"] >= target:
            if i == 0:
                return {"budget": point["budget"], "teacher_usd": point["teacher_usd"]}
            prev = curve[i - 1]
            t = (target - prev["accuracy"]) / (point["accuracy"] - prev["accuracy"])
            return {k: prev[k] + t * (point[k] - prev[k]) for k in ("budget", "teacher_usd")}
    return None


def budget_curve(runs: list[dict[str, Any]], full: int, method: str) -> dict[str, Any]:
    """Mean accuracy per (variant, budget) with its t-interval over the seeds run at every
    budget (so each point averages the same seeds), ``method`` against the baseline at each
    budget (:func:`compare`), and where ``method`` matches the baseline's full-budget accuracy."""
    baseline = runs[0]["baseline"]
    budgets = sorted({r["budget"] for r in runs})
    seed_sets = [{json.dumps(r["seeds"], sort_keys=True) for r in runs if r["budget"] == b} for b in budgets]
    common = set.intersection(*seed_sets)
    runs = [r for r in runs if json.dumps(r["seeds"], sort_keys=True) in common]
    curves: dict[str, list[dict[str, float]]] = {}
    for v in dict.fromkeys(v for r in runs for v in r["accuracy"]):
        points = []
        for b in budgets:
            at = [r for r in runs if r["budget"] == b and v in r["accuracy"]]
            if at:
                spread = seed_interval([r["accuracy"][v] for r in at])
                points.append({
                    "budget": b, "share_of_full": b / full, "seeds": len(at), "accuracy": spread["mean"],
                    "accuracy_t_ci": [spread["ci_low"], spread["ci_high"]],
                    "teacher_usd": float(np.mean([r["teacher_usd"] for r in at])),
                })  # fmt: skip
        curves[v] = points
    target = next((p["accuracy"] for p in curves[baseline] if p["budget"] == full), None)
    match = matching_spend(curves.get(method, []), target) if target is not None else None
    versus = []
    for b in budgets:
        both = [r for r in runs if r["budget"] == b and {method, baseline} <= set(r["accuracy"])]
        if both:
            versus.append({"budget": b, **compare(both, method, baseline)})
    return {
        "full_budget": full, "seeds": sorted(json.loads(c)["stage2"] for c in common), "curves": curves,
        "method": method, "baseline_full_accuracy": target, "method_matches_baseline_at": match,
        "method_vs_baseline": versus,
    }  # fmt: skip


def acquisition_pairs(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Active against random with the same seeds and budget, per variant both trained."""
    pairs = []
    for active in (r for r in runs if r["acquisition"] == "active"):
        twin = next(
            (r for r in runs if r["acquisition"] == "random"
             and (r["seeds"], r["budget"]) == (active["seeds"], active["budget"])),
            None,
        )  # fmt: skip
        if twin is not None:
            pairs.append((active, twin))
    by_variant: dict[str, Any] = {}
    for v in dict.fromkeys(v for a, _ in pairs for v in a["accuracy"]):
        both = [(a, r) for a, r in pairs if v in r["accuracy"]]
        if not both:
            continue
        paired = [{"correct": {"active": a["correct"][v], "random": r["correct"][v]}, "tasks": a["tasks"],
                   "ids": a["ids"], "accuracy": {"active": a["accuracy"][v], "random": r["accuracy"][v]}}
                  for a, r in both]  # fmt: skip
        by_variant[v] = {
            "pairs": len(both),
            "random_accuracy": float(np.mean([r["accuracy"][v] for _, r in both])),
            "active_accuracy": float(np.mean([a["accuracy"][v] for a, _ in both])),
            "active_vs_random": compare(paired, "active", "random"),
        }
    return {"pairs": [{"active": a["name"], "random": r["name"], "budget": a["budget"],
                       "teacher_usd_active": a["teacher_usd"], "teacher_usd_random": r["teacher_usd"]}
                      for a, r in pairs],
            "variants": by_variant}  # fmt: skip


def tuning(runs: list[dict[str, Any]], default: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """Validation runs against the first one: what each changed, and its accuracies. With
    ``default`` (flattened params), ``default`` marks the runs at the default's setting: equal
    to it in every param, seeds aside, that differs between the runs."""
    if not runs:
        return []
    ref = runs[0]["params"]
    keys = sorted({k for r in runs for k in r["params"]})
    varying = [
        k for k in _without_seeds(dict.fromkeys(keys)) if len({str(r["params"].get(k)) for r in runs}) > 1
    ]
    rows = []
    for r in runs:
        row = {
            "run": r["name"],
            "changed": {k: r["params"].get(k) for k in keys if r["params"].get(k) != ref.get(k)},
            "seed": r["seed"],
            "accuracy": r["accuracy"],
        }
        if default is not None:
            row["default"] = all(r["params"].get(k) == default.get(k) for k in varying)
        rows.append(row)
    return rows


def tuning_choice(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Per variant, the setting (the changed params other than seeds) with the best mean
    validation accuracy over the seeds every setting ran: every variant picks from the same
    grid with the same seeds, so each gets the same tuning effort. A variant is left out when
    no seed is common to all its settings. ``vs_default``: the best setting against the rows
    marked ``default`` (see :func:`tuning`), per common seed and in the mean."""
    settings: dict[str, list[dict[str, Any]]] = defaultdict(list)
    default = None
    for row in rows:
        key = json.dumps(_without_seeds(row["changed"]), sort_keys=True)
        settings[key].append(row)
        if row.get("default"):
            default = key
    out = {}
    for v in dict.fromkeys(v for row in rows for v in row["accuracy"]):
        ran = {key: {r["seed"]: r["accuracy"][v] for r in group if v in r["accuracy"]}
               for key, group in settings.items()}  # fmt: skip
        ran = {key: by_seed for key, by_seed in ran.items() if by_seed}
        common = sorted(set.intersection(*(set(by_seed) for by_seed in ran.values())))
        if not common:
            log.warning("%s: no seed common to all %d settings, no choice", v, len(ran))
            continue
        means = {key: np.mean([by_seed[s] for s in common]) for key, by_seed in ran.items()}
        key = max(means, key=lambda k: means[k])
        out[v] = {"setting": json.loads(key), "accuracy": float(means[key]), "seeds": common}
        if default in ran:
            # Per seed, so that the change of default can be read against one seed's noise.
            out[v]["vs_default"] = {
                "setting": json.loads(default),
                "per_seed": [float(ran[key][s] - ran[default][s]) for s in common],
                "diff": float(means[key] - means[default]),
            }
    return out


def selection(runs: list[dict[str, Any]], method: str = "ta_loop") -> dict[str, Any] | None:
    """Validation runs with every signal applied at its designed sign (signals.selection
    as_listed): ``method`` against two_stage in the same runs (the signals alone: same data,
    schedule and seed) and against the baseline; None without such runs."""
    listed = [r for r in runs if _as_listed(r) and {method, "two_stage"} <= set(r["accuracy"])]
    if not listed:
        return None
    setting = _without_seeds(listed[0]["params"])
    kept = [r for r in listed if _without_seeds(r["params"]) == setting]
    if len(kept) < len(listed):
        log.warning("selection: only the runs at %s pooled, not %s", setting,
                    [r["name"] for r in listed if r not in kept])  # fmt: skip
    return {
        "runs": [r["name"] for r in kept],
        "baseline": kept[0]["baseline"],
        "vs_two_stage": compare(kept, method, "two_stage"),
        "vs_baseline": compare(kept, method, kept[0]["baseline"]),
    }


def _as_listed(run: dict[str, Any]) -> bool:
    return run["params"].get("signals.selection") == "as_listed"


def _without_seeds(params: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in params.items() if not k.endswith(".seed")}


def _error_rate(run: dict[str, Any]) -> float | None:
    return run["params"].get("teacher.error_rate")


def error_rate_map(
    runs: list[dict[str, Any]], method: str = "ta_loop", oracle: str = "oracle"
) -> list[dict[str, Any]]:
    """Per teacher error rate, over runs that differ only in their training seeds: each
    variant's mean accuracy, ``method`` against the baseline (signals plus the two-stage
    schedule) and against two_stage (the signals alone), and the recovery ratio against
    ``oracle``; a comparison is None where some run lacks one of its variants."""
    groups: dict[float | None, list[dict[str, Any]]] = defaultdict(list)
    for r in runs:
        groups[_error_rate(r)].append(r)
    rows = []
    for rate, group in sorted(groups.items(), key=lambda kv: (kv[0] is None, kv[0] or 0.0)):
        baseline = group[0]["baseline"]
        variants = [v for v in dict.fromkeys(v for r in group for v in r["accuracy"])
                    if all(v in r["accuracy"] for r in group)]  # fmt: skip
        have = set(variants)
        intervals = {v: seed_interval([r["accuracy"][v] for r in group]) for v in variants}
        rows.append({
            "error_rate": rate,
            "seeds": sorted(r["seed"] for r in group),
            "mean_accuracy": {v: i["mean"] for v, i in intervals.items()},
            "accuracy_t_ci": {v: [i["ci_low"], i["ci_high"]] for v, i in intervals.items()},
            "vs_baseline": compare(group, method, baseline) if method in have else None,
            "vs_two_stage": compare(group, method, "two_stage") if {method, "two_stage"} <= have else None,
            "recovery": recovery(group, method, baseline, oracle) if {method, oracle} <= have else None,
        })  # fmt: skip
    return rows


def pooled_map(runs: list[dict[str, Any]], method: str = "ta_loop") -> dict[str, Any] | None:
    """``method`` against the baseline and against two_stage over every cell of the map at
    once: per cell the sign of the difference, with the two-sided sign test of "higher as often
    as lower" (exact, ties left out; on these test items, the cells' training the only chance),
    and :func:`compare` over all cells, the cells resampled within their error rate. Its MDE
    is left out: over cells it would count differences between error rates as seed noise (as
    the t-interval within the reported interval does). Exploratory: it assumes one effect at
    every error rate. None with one error rate or cells on different test items."""
    if len({_error_rate(r) for r in runs}) < 2:
        return None
    if any(not np.array_equal(r["ids"], runs[0]["ids"]) for r in runs):
        log.warning("the map's cells are not all on the same test items: no pooled view")
        return None
    out: dict[str, Any] = {}
    for key, against in (("vs_baseline", runs[0]["baseline"]), ("vs_two_stage", "two_stage")):
        cells = [r for r in runs if {method, against} <= set(r["accuracy"])]
        diffs = [r["accuracy"][method] - r["accuracy"][against] for r in cells]
        wins, losses = sum(d > 0 for d in diffs), sum(d < 0 for d in diffs)
        cmp = compare(cells, method, against, strata=[_error_rate(r) for r in cells]) if cells else None
        out[key] = None if cmp is None else {
            "against": against, "cells": len(cells), "wins": wins, "losses": losses,
            "ties": len(diffs) - wins - losses, "sign_test_p": mcnemar_exact(wins, losses),
            **cmp, "mde": None, "mde_relative": None,
        }  # fmt: skip
    return out


def study(
    runs: list[dict[str, Any]], method: str = "ta_loop", default: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The tables of the module docstring. With runs at several teacher error rates, the
    error-rate map covers them all and every other table the error rate most runs have.
    ``default``: the flattened params the tuning's best settings are held against."""
    validation = [r for r in runs if r["split"] == "val"]
    # The signals' selection is chosen by its own study, not as one more tuning setting.
    tuned = tuning([r for r in validation if not _as_listed(r)], default)
    listed = selection(validation, method)
    validated = {"tuning": tuned, "tuning_choice": tuning_choice(tuned)}
    if listed:
        validated["selection"] = listed
    tested = [r for r in runs if r["split"] == "test"]
    if not tested:
        return validated
    random_runs = [r for r in tested if r["acquisition"] == "random"]
    map_budget = max(r["budget"] for r in random_runs)  # the map spans error rates at one budget
    at_full = [r for r in random_runs if r["budget"] == map_budget]
    rates = [_error_rate(r) for r in tested]
    main = max(dict.fromkeys(rates), key=rates.count)
    tested = [r for r in tested if _error_rate(r) == main]
    random_runs = [r for r in random_runs if _error_rate(r) == main]
    full = max(r["budget"] for r in random_runs)
    return {
        "error_rate": main,
        "error_rate_map": error_rate_map(at_full, method),
        "error_rate_map_pooled": pooled_map(at_full, method),
        **seeds_table([r for r in random_runs if r["budget"] == full]),
        "budget_curve": budget_curve(random_runs, full, method),
        "acquisition": acquisition_pairs(tested),
        **validated,
    }


def _rel(cmp: dict[str, Any]) -> str:
    if cmp["mean_relative_improvement"] is None:
        return "undefined (baseline at 0%)"
    low = "-inf" if cmp["ci_low"] is None else f"{100 * cmp['ci_low']:+.1f}%"
    high = "+inf" if cmp["ci_high"] is None else f"{100 * cmp['ci_high']:+.1f}%"
    return f"{100 * cmp['mean_relative_improvement']:+.1f}% ({low} to {high})"


def points_ci(cmp: Mapping[str, Any]) -> str:
    """A comparison's difference in accuracy points with its reported 95% interval."""
    lo, hi = cmp["diff_ci"]
    return f"{100 * cmp['diff']:+.1f} ({100 * lo:+.1f} to {100 * hi:+.1f})"


def points_with_mdes(cmp: dict[str, Any], no_mde: str = "n/a (one seed)") -> str:
    """:func:`points_ci` and both MDEs: over seeds (the test items held fixed) and on one
    seed's items, so that seeds agreeing by chance cannot pass for a sharp instrument beside an
    interval the items keep wide."""
    mde = no_mde if cmp["mde"] is None else f"{100 * cmp['mde']:.1f}"
    if cmp.get("mde_items") is not None:
        mde += f"; items {100 * cmp['mde_items']:.1f}"
    return f"{points_ci(cmp)} | {mde}"


def _cmp_cells(cmp: dict[str, Any] | None, no_mde: str = "n/a (one seed)") -> str:
    return "- | - | -" if cmp is None else f"{points_with_mdes(cmp, no_mde)} | {_rel(cmp)}"


def map_lines(rows: list[dict[str, Any]], base: str) -> list[str]:
    """The error-rate map as markdown; nothing when the runs share one error rate."""
    if len(rows) < 2:
        return []
    variants = list(dict.fromkeys(v for row in rows for v in row["mean_accuracy"]))
    lines = [
        "", "## Error-rate map", "",
        f"Per teacher error rate, the mean accuracy (%) over its seeds; ta_loop against {base} (signals "
        "and schedule) and against two_stage (the signals alone): difference in points (95% CI) | MDE "
        f"| relative (95% CI); the recovery ratio (ta_loop - {base}) / (oracle - {base}) with its 95% "
        "interval (Fieller-style, over the joint resamples: unbounded, +-inf, where the oracle's gain "
        "may be zero), beside the oracle's gain it divides by. A difference's interval, and a relative "
        "change's, spans the t-interval over seeds and the joint bootstrap of seeds and test items.", "",
        "| error rate | seeds | " + " | ".join(variants) + f" | vs {base}, points | MDE | relative "
        "| vs two_stage, points | MDE | relative | recovery (95% CI) | oracle gain, points (95% CI) |",
        "|---|---|" + "---|" * (len(variants) + 8),
    ]  # fmt: skip
    for row in rows:
        acc = [f"{100 * row['mean_accuracy'][v]:.1f}" if v in row["mean_accuracy"] else "-" for v in variants]
        rec = row["recovery"]
        if rec is None:
            recovery_cells = "- | -"
        else:
            ratio = "undefined" if rec["ratio"] is None else f"{rec['ratio']:.2f}"
            low = "-inf" if rec["ci_low"] is None else f"{rec['ci_low']:.2f}"
            high = "+inf" if rec["ci_high"] is None else f"{rec['ci_high']:.2f}"
            lo, hi = rec["oracle_gain_ci"]
            recovery_cells = (
                f"{ratio} ({low} to {high}) | "
                f"{100 * rec['oracle_gain']:+.1f} ({100 * lo:+.1f} to {100 * hi:+.1f})"
            )
        rate = "?" if row["error_rate"] is None else f"{row['error_rate']:g}"
        lines.append(
            f"| {rate} | {len(row['seeds'])} | " + " | ".join(acc)
            + f" | {_cmp_cells(row['vs_baseline'])} | {_cmp_cells(row['vs_two_stage'])} | {recovery_cells} |"
        )  # fmt: skip
    return lines


def pooled_lines(pooled: dict[str, Any] | None, method: str = "ta_loop") -> list[str]:
    if pooled is None:
        return []
    lines = [
        "", "Pooled over the map's cells (exploratory: it assumes one effect at every error rate; the "
        "sign test reads the cells as independent, chance coming from training alone on these test "
        "items; the bootstrap resamples cells within their error rate and the shared items once):", "",
        f"| {method} against | cells | higher | lower | tied | sign test p | points (95% CI) | MDE "
        "| relative (95% CI) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]  # fmt: skip
    for key in ("vs_baseline", "vs_two_stage"):
        cmp = pooled[key]
        if cmp is not None:
            lines.append(
                f"| {cmp['against']} | {cmp['cells']} | {cmp['wins']} | {cmp['losses']} | {cmp['ties']} | "
                f"{cmp['sign_test_p']:.3f} | {_cmp_cells(cmp, 'n/a (pooled)')} |"
            )
    return lines


def markdown(result: dict[str, Any]) -> str:
    if "baseline" not in result:  # validation runs only
        note = ["", result["note"]] if result.get("note") else []
        tuned = tuning_lines(result["tuning"], result["tuning_choice"])
        return "\n".join(["# Tuning study", *note, *tuned, *selection_lines(result.get("selection"))]) + "\n"
    base = result["baseline"]
    seeds = list(result["accuracy"][base])
    lines = [
        "# Effect-size study",
        "",
        f"{len(seeds)} training seeds (warmup, signals and stage2 seeds; data, teacher and eval seeds "
        f"fixed), teacher budget {result['budget']} replies, random acquisition, "
        f"{result['test_items_per_seed']} test items per seed. Accuracy in %.",
        *(["", result["note"]] if result.get("note") else []),
        "",
        "Against the baseline: the difference in points with a 95% interval spanning the seed-level "
        "t-interval and the joint bootstrap over seeds and shared test items; MDE: the smallest "
        "difference a t-test over these seeds detects with 80% power at the observed spread (it holds "
        "the test items fixed), and after 'items' the same for one seed's exact McNemar test on its "
        "test items (the mean over seeds, at each seed's observed disagreement).",
        "",
        "| variant | "
        + " | ".join(f"seed {s}" for s in seeds)
        + f" | mean | vs {base}, points (95% CI) | MDE, points | relative (95% CI) |",
        "|---|" + "---|" * (len(seeds) + 4),
    ]
    for v, by_seed in result["accuracy"].items():
        cells = [f"{100 * by_seed[s]:.1f}" if s in by_seed else "not run" for s in seeds]
        cmp = result["vs_baseline"].get(v)
        rel = f"{points_with_mdes(cmp)} | {_rel(cmp)}" if cmp else "(baseline) | | "
        lines.append(f"| {v} | " + " | ".join(cells) + f" | {100 * result['mean_accuracy'][v]:.1f} | {rel} |")

    lines += map_lines(result["error_rate_map"], base)
    lines += pooled_lines(result.get("error_rate_map_pooled"))
    curve = result["budget_curve"]
    lines += [
        "", "## Budget curve", "",
        f"Random acquisition, training seeds run at every budget: {', '.join(map(str, curve['seeds']))}.", "",
        "| variant | budget | share of full | seeds | accuracy (95% t-CI over seeds) | teacher USD |",
        "|---|---|---|---|---|---|",
    ]  # fmt: skip
    for v, points in curve["curves"].items():
        for p in points:
            lo, hi = p["accuracy_t_ci"]
            spread = "" if lo is None else f" ({100 * lo:.1f} to {100 * hi:.1f})"
            lines.append(
                f"| {v} | {p['budget']} | {100 * p['share_of_full']:.0f}% | {p['seeds']} | "
                f"{100 * p['accuracy']:.1f}{spread} | {p['teacher_usd']:.4f} |"
            )
    if curve["method_vs_baseline"]:
        lines += [
            "", f"{curve['method']} against {base} at each budget, same seeds:", "",
            "| budget | seeds | points (95% CI) | MDE, points | relative (95% CI) |", "|---|---|---|---|---|",
        ]  # fmt: skip
        lines += [f"| {c['budget']} | {c['seeds']} | {_cmp_cells(c)} |" for c in curve["method_vs_baseline"]]
    match, target = curve["method_matches_baseline_at"], curve["baseline_full_accuracy"]
    lines.append("")
    if target is None:
        lines.append(f"{base} was not run at the full budget.")
    elif match is None:
        lines.append(
            f"{curve['method']} does not reach {base}'s full-budget accuracy ({100 * target:.1f}%) at any "
            "measured budget."
        )
    else:
        full_usd = next(
            p["teacher_usd"] for p in curve["curves"][base] if p["budget"] == curve["full_budget"]
        )
        lines.append(
            f"{curve['method']} matches {base}'s full-budget accuracy ({100 * target:.1f}%) at about "
            f"{match['budget']:.0f} replies (USD {match['teacher_usd']:.4f}; {base} spent "
            f"USD {full_usd:.4f})."
        )

    acq = result["acquisition"]
    lines += ["", "## Active against random acquisition at equal budget", ""]
    if not acq["variants"]:
        lines.append("No active run with a random twin (same seeds and budget).")
    else:
        lines += [
            "| variant | pairs | random | active | active vs random, points (95% CI) | MDE, points | "
            "relative (95% CI) |",
            "|---|---|---|---|---|---|---|",
        ]
        for v, row in acq["variants"].items():
            lines.append(
                f"| {v} | {row['pairs']} | {100 * row['random_accuracy']:.1f} | "
                f"{100 * row['active_accuracy']:.1f} | {_cmp_cells(row['active_vs_random'])} |"
            )
    tuned = tuning_lines(result["tuning"], result.get("tuning_choice", {}))
    return "\n".join(lines + tuned + selection_lines(result.get("selection"))) + "\n"


def selection_lines(listed: dict[str, Any] | None) -> list[str]:
    if not listed:
        return []
    lines = [
        "", "## Signals applied as listed (validation)", "",
        f"ta_loop with every signal at its designed sign, in runs {', '.join(listed['runs'])}: difference "
        "in points (95% CI) | MDE | relative (95% CI).", "",
        "| against | ta_loop, % | against, % | points (95% CI) | MDE | relative (95% CI) |",
        "|---|---|---|---|---|---|",
    ]  # fmt: skip
    for key, against in (("vs_two_stage", "two_stage"), ("vs_baseline", listed["baseline"])):
        cmp = listed[key]
        lines.append(
            f"| {against} | {100 * cmp['mean_accuracy']:.1f} | "
            f"{100 * cmp['baseline_mean_accuracy']:.1f} | {_cmp_cells(cmp)} |"
        )
    return lines


def tuning_lines(rows: list[dict[str, Any]], choice: dict[str, Any]) -> list[str]:
    if not rows:
        return []
    variants = list(dict.fromkeys(v for row in rows for v in row["accuracy"]))
    lines = [
        "", "## Tuning on the validation split", "",
        "Each run against the first (the reference); accuracy on the validation split in %.", "",
        "| run | changed | " + " | ".join(variants) + " |", "|---|---|" + "---|" * len(variants),
    ]  # fmt: skip
    for row in rows:
        changed = ", ".join(f"{k}={v}" for k, v in row["changed"].items()) or "(reference)"
        cells = [f"{100 * row['accuracy'][v]:.1f}" if v in row["accuracy"] else "-" for v in variants]
        lines.append(f"| {row['run']} | {changed} | " + " | ".join(cells) + " |")
    if choice:
        lines += [
            "",
            "Best setting per variant (mean over the seeds every setting ran; ties to the first):",
            "",
        ]
        for v, best in choice.items():
            setting = ", ".join(f"{k}={x}" for k, x in best["setting"].items()) or "the reference"
            seeds = ", ".join(map(str, best["seeds"]))
            line = f"- {v}: {setting}, {100 * best['accuracy']:.1f}% (mean over seeds {seeds})"
            if "vs_default" in best:
                vs = best["vs_default"]
                per_seed = ", ".join(f"{100 * d:+.1f}" for d in vs["per_seed"])
                line += f"; {100 * vs['diff']:+.1f} points against the default (per seed {per_seed})"
            lines.append(line)
    return lines
