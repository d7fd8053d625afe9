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

from taloop.core.metrics import resample_indices
from taloop.reporting.ta_map import arm_of, clip_to, measured_ta_auc, prediction_grid, scope_of
from taloop.studies.aggregate import N_BOOT, compare, points_ci, points_with_mdes, recovery

METHOD = "ta_loop"
SEED = 0
GRID_STEP = 0.01  # of the prediction each run's report reads (linear between grid points)
Groups = Mapping[float, Sequence[dict[str, Any]]]  # AUC -> its cells


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


def _interpolation(aucs: Sequence[float], at: np.ndarray) -> np.ndarray:
    """(len(at), len(aucs)): the matrix that interpolates values at ``aucs`` linearly at ``at``."""
    eye = np.eye(len(aucs))
    return np.column_stack([np.interp(at, aucs, eye[j]) for j in range(len(aucs))])


def _band(boot: np.ndarray, per_seed: np.ndarray, aucs: Sequence[float], at: np.ndarray) -> np.ndarray:
    """(2, len(at)): the 95% interval of the gain at each of ``at``, spanning the joint
    bootstrap's percentiles and the seeds' t-interval, as each AUC's comparison does."""
    w = _interpolation(aucs, at)
    low, high = np.percentile(boot @ w.T, [2.5, 97.5], axis=0)
    seeds = per_seed @ w.T  # (k, len(at))
    k = seeds.shape[0]
    if k >= 2:
        from scipy.stats import t  # here: importing scipy.stats costs every stage ~0.8 s

        half = t.ppf(0.975, k - 1) * seeds.std(axis=0, ddof=1) / np.sqrt(k)
        low, high = np.minimum(low, seeds.mean(axis=0) - half), np.maximum(high, seeds.mean(axis=0) + half)
    return np.vstack([low, high])


def crossings(gains: np.ndarray) -> np.ndarray:
    """Per row of gains over the AUCs run, how many times it turns from <= 0 to > 0."""
    positive = gains > 0
    return np.sum(~positive[:, :-1] & positive[:, 1:], axis=1)


def break_even(groups: Mapping[float, Sequence[dict[str, Any]]], baseline: str) -> dict[str, Any]:
    """The break-even AUC of one arm over the seeds every AUC has (:func:`crossing` of the mean
    gains) and its 95% confidence set by test inversion: the AUCs, on a 0.001 grid between the
    lowest and highest run, where the gain's interval (:func:`_band`) contains 0. A set that
    reaches an end of the grid leaves that side open (None). Also: the shares of resamples in
    which ta_loop never pays, always pays, and turns positive more than once."""
    aucs = sorted(groups)
    common = set.intersection(*({r["seed"] for r in groups[a]} for a in aucs))
    if not common:
        raise ValueError("break-even AUC: no seed has run at every AUC")
    ordered = [sorted((r for r in groups[a] if r["seed"] in common), key=lambda r: r["seed"]) for a in aucs]
    per_seed = np.array([[r["accuracy"][METHOD] - r["accuracy"][baseline] for r in g] for g in ordered]).T
    mean = per_seed.mean(axis=0)
    boot = _diff_resamples(ordered, baseline)
    grid = np.round(np.arange(aucs[0], aucs[-1] + 5e-4, 1e-3), 3)
    low, high = _band(boot, per_seed, aucs, grid)
    mask = (low <= 0) & (high >= 0)
    inside = grid[mask]
    stretch = np.flatnonzero(mask)
    points = np.array([crossing(aucs, row) for row in boot])
    point = crossing(aucs, mean.tolist())
    return {
        "aucs": aucs,
        "seeds": sorted(common),
        "gain": mean.tolist(),
        "auc": point if math.isfinite(point) else None,
        "below_grid": point == -math.inf,
        "ci_low": float(inside.min()) if inside.size and inside.min() > aucs[0] else None,
        "ci_high": float(inside.max()) if inside.size and inside.max() < aucs[-1] else None,
        "confidence_set_empty": not inside.size,
        # the band can touch zero in more than one stretch: then low..high is its hull
        "confidence_set_contiguous": bool(not stretch.size or stretch[-1] - stretch[0] + 1 == stretch.size),
        "share_never": float(np.mean(points == math.inf)),
        "share_always": float(np.mean(points == -math.inf)),
        "share_several_crossings": float(np.mean(crossings(boot) > 1)),
        "gain_resamples": boot,
        "per_seed_gain": per_seed,
    }


def predicted_gain(curve: Mapping[str, Any], auc: float) -> dict[str, Any] | None:
    """The arm's gain at ``auc``, linear between the AUCs run, with its 95% interval (the
    same band the break-even set uses); None outside the AUCs run."""
    aucs = curve["aucs"]
    if not aucs[0] <= auc <= aucs[-1]:
        return None
    (low,), (high,) = _band(curve["gain_resamples"], curve["per_seed_gain"], aucs, np.array([auc]))
    return {"auc": auc, "gain": float(np.interp(auc, aucs, curve["gain"])), "ci": [float(low), float(high)]}


def predicted_at_measured(curve: Mapping[str, Any] | None, measured: float | None) -> dict[str, Any] | None:
    """The curve's gain where a TA off the curve (a shared blind spot, a real TA) belongs: at
    its validation AUC as measured, as the curve's own cells were, not at the one it was set to
    (a TA sharing the teacher's blind spot, set to 0.9, can measure at chance). A measured AUC
    outside the AUCs run is read at the nearer end: below the lowest is chance read with noise."""
    if curve is None or measured is None:
        return None
    return predicted_gain(curve, clip_to(curve["aucs"], measured))


def _prediction(curve: Mapping[str, Any]) -> dict[str, list[float]]:
    aucs = curve["aucs"]
    grid = np.arange(aucs[0], aucs[-1] + GRID_STEP / 2, GRID_STEP)
    grid = np.unique(np.round(np.concatenate([grid[grid <= aucs[-1]], aucs]), 3))  # the AUCs run included
    band = _band(curve["gain_resamples"], curve["per_seed_gain"], aucs, grid)
    per_seed = curve["per_seed_gain"] @ _interpolation(aucs, grid).T  # (k, len(grid))
    seed_sd = per_seed.std(axis=0, ddof=1) if per_seed.shape[0] > 1 else np.full(grid.size, np.nan)
    return prediction_grid(grid, np.interp(grid, aucs, curve["gain"]), band, seed_sd)


def _public(curve: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in curve.items() if k not in ("gain_resamples", "per_seed_gain")}


def _mean_of(values: list[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return float(np.mean(known)) if known else None


def _row(group: list[dict[str, Any]], baseline: str) -> dict[str, Any]:
    have = set.intersection(*(set(r["accuracy"]) for r in group))
    group = sorted(group, key=lambda r: r["seed"])
    # the TA's AUC as calibrate_signals measured it on validation (a simulated TA's realised
    # one), at flagging wrong teacher replies and wrong student answers, per seed
    teacher = [measured_ta_auc(r["calibration"]) for r in group]
    student = [measured_ta_auc(r["calibration"], "ta_student") for r in group]
    return {
        "seeds": [r["seed"] for r in group],
        "measured_auc": _mean_of(teacher),
        "measured_auc_per_seed": teacher,
        "measured_student_auc": _mean_of(student),
        "measured_student_auc_per_seed": student,
        "mean_accuracy": {v: float(np.mean([r["accuracy"][v] for r in group])) for v in sorted(have)},
        "vs_baseline": compare(group, METHOD, baseline),
        "vs_two_stage": compare(group, METHOD, "two_stage") if "two_stage" in have else None,
        "recovery": recovery(group, METHOD, baseline, "oracle") if "oracle" in have else None,
        "vs_oracle": compare(group, METHOD, "oracle") if "oracle" in have else None,
    }


def summarise(runs: list[dict[str, Any]], arms: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """``runs``: :func:`taloop.studies.sources.load_run` cells, each with its ``calibration``
    (metrics/calibration.json) and ``resolved`` params (validated, every default filled in,
    flattened) added; ``arms``: the study's."""
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
    curve_cells = [r for r in runs if _kind(r) == "curve"] or runs
    out: dict[str, Any] = {
        "baseline": baseline,
        "method": METHOD,
        "scope": scope_of([r["resolved"] for r in curve_cells], [r["calibration"] for r in curve_cells]),
        "arms": {},
    }
    for arm, kinds in by_arm.items():
        curve_groups = kinds.get("curve", {})
        weightings = {
            r["resolved"]["stage2.weighting"] for k in kinds.values() for g in k.values() for r in g
        }
        if len(weightings) != 1:
            raise ValueError(f"arm {arm}: its cells weight in more than one way: {sorted(weightings)}")
        entry: dict[str, Any] = {
            "params": dict(arms[arm]),
            "weighting": weightings.pop(),  # the arm's bundle may leave it to the default
            "curve": [{"auc": a, **_row(curve_groups[a], baseline)} for a in sorted(curve_groups)],
        }
        curve = break_even(curve_groups, baseline) if len(curve_groups) >= 2 else None
        if curve is not None:
            entry["break_even"] = _public(curve)
            entry["prediction"] = _prediction(curve)
            # against ft the two-stage schedule alone may pay; against two_stage only the TA can
            if all("two_stage" in r["accuracy"] for g in curve_groups.values() for r in g):
                entry["break_even_vs_two_stage"] = _public(break_even(curve_groups, "two_stage"))
        entry["blind_spot"] = []
        for a, group in sorted(kinds.get("blind_spot", {}).items()):
            row = _row(group, baseline)
            entry["blind_spot"].append(
                {"auc": a, **row, "curve_predicts": predicted_at_measured(curve, row["measured_auc"])}
            )
        entry["real"] = []
        for model, group in sorted(kinds.get("real", {}).items()):
            row = _row(group, baseline)
            auc = row["measured_auc"]
            if auc is None:
                raise ValueError(f"real TA {model}: its validation AUC could not be measured in any cell")
            entry["real"].append(
                {
                    **row,
                    "ta": model,
                    "auc": auc,
                    "curve_predicts": predicted_at_measured(curve, auc),
                }
            )
        out["arms"][arm] = entry
    curves = {arm: kinds["curve"] for arm, kinds in by_arm.items() if kinds.get("curve")}
    out["pooled"] = pooled(curves, baseline) if curves else None
    out["stop_rules"] = stop_rules(out["arms"])
    return out


def _stop_rule(arm: str, entry: Mapping[str, Any]) -> dict[str, Any]:
    rows = {r["auc"]: r for r in entry["curve"]}
    vs_two = rows[0.5]["vs_two_stage"] if 0.5 in rows else None
    vs_oracle = rows[1.0]["vs_oracle"] if 1.0 in rows else None
    harm = None if vs_two is None else vs_two["diff_ci"][1] < 0
    short = None
    if vs_oracle is not None and vs_oracle["mde"] is not None:
        # seeds that agree by chance give an MDE near 0: the shortfall must be clear of zero too
        short = -vs_oracle["diff"] > vs_oracle["mde"] and vs_oracle["diff_ci"][1] < 0
    return {
        "arm": arm,
        "blind_vs_two_stage": vs_two,
        "blind_harms": harm,
        "perfect_vs_oracle": vs_oracle,
        "perfect_short": short,
        "triggered": bool(harm) or bool(short),
    }


def stop_rules(arms: Mapping[str, Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The map's stop rule, per arm that weights by calibrated probabilities and has a curve:
    stop the map and find out why if at AUC 0.5 (a blind TA) it is below two_stage with an
    interval clear of zero, or at AUC 1.0 (a perfect TA) below the oracle by more than the
    seeds' MDE and clear of zero. Each end is judged on its own (None: not run, or no MDE with
    one seed)."""
    return [_stop_rule(a, e) for a, e in arms.items() if e["weighting"] == "calibrated" and e["curve"]]


def _blind_clause(cmp: Mapping[str, Any] | None, harms: bool | None) -> str:
    if cmp is None:
        return "at AUC 0.5 not run yet"
    said = f"at AUC 0.5 ({cmp['seeds']} seeds) against two_stage {points_ci(cmp)} points"
    low, high = cmp["diff_ci"]
    if low == high == cmp["diff"] == 0:
        return f"{said}: it came out as two_stage, the weights changed nothing measurable"
    if harms:
        return f"{said}: harm, the interval is below zero"
    return f"{said}: harm not shown (a loss up to {max(0.0, -low) * 100:.1f} points not excluded)"


def _perfect_clause(cmp: Mapping[str, Any] | None, short: bool | None) -> str:
    if cmp is None:
        return "at AUC 1.0 not run yet"
    said = f"at AUC 1.0 ({cmp['seeds']} seeds) against the oracle {points_ci(cmp)} points"
    if short is None:
        return f"{said}, no MDE with one seed: not judged"
    verdict = "a shortfall beyond it, clear of zero" if short else "no shortfall beyond it clear of zero"
    return f"{said}, MDE {cmp['mde'] * 100:.1f}: {verdict}"


def stop_rule_lines(rules: Sequence[Mapping[str, Any]]) -> list[str]:
    """The stop rule as it came out, with its intervals (the README's headline says it too)."""
    lines = []
    for rule in rules:
        if rule["triggered"]:
            end = "**Triggered: stop the map and find out why first.**"
        elif rule["blind_harms"] is None or rule["perfect_short"] is None:
            end = "Not triggered so far."
        else:
            end = "Not triggered."
        lines.append(
            f"- Stop rule ({rule['arm']}): "
            f"{_blind_clause(rule['blind_vs_two_stage'], rule['blind_harms'])}; "
            f"{_perfect_clause(rule['perfect_vs_oracle'], rule['perfect_short'])}. {end}"
        )
    return lines


def _common_seeds(groups: Groups) -> set[int]:
    return set.intersection(*({r["seed"] for r in g} for g in groups.values()))


def _seed_record(seed: int, series: Mapping[str, tuple[Sequence[dict[str, Any]], str]]) -> dict[str, Any]:
    """One seed as :func:`compare` reads a run: each named series (``name -> (cells, variant)``,
    the seed's cells) averaged over its cells, accuracy and per-item correctness alike."""
    cells, _ = next(iter(series.values()))
    return {
        "seed": seed,
        "ids": cells[0]["ids"],
        "tasks": cells[0]["tasks"],
        "accuracy": {n: float(np.mean([r["accuracy"][v] for r in rs])) for n, (rs, v) in series.items()},
        "correct": {n: np.mean([r["correct"][v] for r in rs], axis=0) for n, (rs, v) in series.items()},
    }


def _at(groups: Groups, seed: int, aucs: Sequence[float]) -> list[dict[str, Any]]:
    return [r for a in aucs for r in groups[a] if r["seed"] == seed]


def _pooled_compare(records: list[dict[str, Any]], variant: str, baseline: str, cells: int) -> dict[str, Any]:
    # one seed's McNemar test reads right and wrong items; a mean over AUCs is neither
    return {**compare(records, variant, baseline), "mde_items": None, "cells": cells}


def pooled(curves: Mapping[str, Groups], baseline: str) -> dict[str, Any]:
    """Each arm's ta_loop - baseline pooled over the AUCs (exploratory: it assumes one gain at
    every AUC) over the seeds that ran every AUC of the arm. A seed's AUCs share its ft,
    two_stage and oracle runs, so the seed is the unit: per seed the mean over its AUCs, then
    the seeds' t-interval and the joint bootstrap of seeds and items. Then the two leading arms
    compared over the seeds and AUCs both ran (the leader is picked on these same cells, so
    that interval leans its way)."""
    per_arm = {}
    for arm, groups in curves.items():
        aucs, seeds = sorted(groups), sorted(_common_seeds(groups))
        if seeds:
            records = [
                _seed_record(s, {v: (_at(groups, s, aucs), v) for v in (METHOD, baseline)}) for s in seeds
            ]
            per_arm[arm] = _pooled_compare(records, METHOD, baseline, len(seeds) * len(aucs))
    ranked = sorted(per_arm, key=lambda a: per_arm[a]["diff"], reverse=True)
    out: dict[str, Any] = {"vs_baseline": per_arm, "ranking": ranked, "lead": None}
    if len(ranked) >= 2:
        first, second = (curves[a] for a in ranked[:2])
        aucs = sorted(set(first) & set(second))
        both = [{a: g[a] for a in aucs} for g in (first, second)] if aucs else []
        seeds = sorted(_common_seeds(both[0]) & _common_seeds(both[1])) if both else []
        if seeds:
            records = [
                _seed_record(
                    s, {"lead": (_at(first, s, aucs), METHOD), "next": (_at(second, s, aucs), METHOD)}
                )
                for s in seeds
            ]
            lead = _pooled_compare(records, "lead", "next", len(seeds) * len(aucs))
            out["lead"] = {"arms": ranked[:2], **lead}
    return out


def _ci(cmp: Mapping[str, Any]) -> str:
    return f"{cmp['diff'] * 100:+.1f} [{cmp['diff_ci'][0] * 100:+.1f}, {cmp['diff_ci'][1] * 100:+.1f}]"


def _measured_side(values: Sequence[float | None]) -> str:
    known = [v for v in values if v is not None]
    if not known:
        return "n/a"
    text = f"{np.mean(known):.2f}"
    if len(known) > 1:
        text += f" ({min(known):.2f}-{max(known):.2f})"
    return text if len(known) == len(values) else f"{text}, {len(known)} of {len(values)} seeds"


def _measured(row: Mapping[str, Any]) -> str:
    """The TA's validation AUC as calibrate_signals measured it, mean and range over the seeds:
    on the confirmation half of the calibration rows (about a dozen wrong teacher replies a
    seed at the default teacher), so one seed's AUC is uncertain by about +-0.17."""
    sides = (row["measured_auc_per_seed"], row["measured_student_auc_per_seed"])
    return "; ".join(_measured_side(v) for v in sides)


def _recovery(rec: Mapping[str, Any] | None) -> str:
    if rec is None or rec["ratio"] is None:
        return "n/a"
    bound = [("unbounded" if b is None else f"{b:.2f}") for b in (rec["ci_low"], rec["ci_high"])]
    return f"{rec['ratio']:.2f} [{bound[0]}, {bound[1]}]"


def break_even_line(arm: str, be: Mapping[str, Any] | None, against: str = "") -> str:
    """``against``: the comparison's other side where it is not the study's baseline."""
    if be is None:
        return f"- **{arm}**: fewer than two AUCs run, no break-even AUC yet."
    first, last = be["aucs"][0], be["aucs"][-1]
    if be["auc"] is not None:
        point = f"AUC {be['auc']:.2f}"
    elif be["below_grid"]:
        point = f"at or below AUC {first:g} (ta_loop gains at every AUC run)"
    else:
        point = f"none up to AUC {last:g} (ta_loop does not gain at the highest)"
    if be["confidence_set_empty"]:
        interval = f"no AUC from {first:g} to {last:g} is compatible with zero gain"
    else:
        lo = f"{be['ci_low']:.3f}" if be["ci_low"] is not None else f"{first:g} or below"
        hi = f"{be['ci_high']:.3f}" if be["ci_high"] is not None else f"{last:g} or above (possibly never)"
        interval = f"95% confidence set {lo} to {hi}"
        if not be.get("confidence_set_contiguous", True):
            interval += " (not one interval: the gain's band touches zero in more than one stretch)"
    return (
        f"- **{arm}**{f' against {against}' if against else ''} (seeds {', '.join(map(str, be['seeds']))}): "
        f"break-even {point}; {interval} "
        f"(the AUCs where the gain's interval contains 0). In the resamples ta_loop never gains in "
        f"{be['share_never']:.0%}, gains at every AUC in {be['share_always']:.0%}, and turns positive more "
        f"than once in {be['share_several_crossings']:.0%}."
    )


def break_even_lines(arm: str, entry: Mapping[str, Any]) -> list[str]:
    """The arm's break-even against the baseline, then against two_stage where it was run."""
    lines = [break_even_line(arm, entry.get("break_even"))]
    if "break_even_vs_two_stage" in entry:
        lines.append(break_even_line(arm, entry["break_even_vs_two_stage"], "two_stage"))
    return lines


def markdown(result: Mapping[str, Any]) -> str:
    base = result["baseline"]
    lines = [
        "# How good must the TA be?",
        "",
        f"ta_loop against {base} and two_stage, in accuracy points with 95% intervals (seeds and test",
        "items resampled jointly, and the seeds' t-interval: the wider), minimum detectable effects at",
        f"80% power, and the recovery ratio (ta_loop - {base}) / (oracle - {base}), by the TA's AUC:",
        "the set one, and beside it the one calibrate_signals measured on validation (mean and range",
        "over the seeds, at flagging wrong teacher replies; wrong student answers).",
        "",
    ]
    mde = "MDE (seeds; items)"
    header = ["AUC", "measured (teacher; student): mean (range)", "seeds", base, "two_stage", "ta_loop",
              "oracle", f"ta_loop - {base}", mde, "ta_loop - two_stage", mde, "recovery"]  # fmt: skip
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
                f"{r['auc']:.2f}{label}", _measured(r), str(len(r["seeds"])),
                *(f"{acc[v] * 100:.1f}" if v in acc else "n/a" for v in variants),
                points_with_mdes(r["vs_baseline"]),
                points_with_mdes(r["vs_two_stage"]) if r["vs_two_stage"] else "n/a | n/a",
                _recovery(r["recovery"]),
            ]) + " |")  # fmt: skip
        lines += ["", *break_even_lines(arm, entry)]
        if entry["curve"] and entry["curve"][-1]["vs_oracle"] is not None:
            top = entry["curve"][-1]
            lines.append(
                f"- at AUC {top['auc']:g}, ta_loop - oracle = {points_with_mdes(top['vs_oracle'])} "
                "(difference [95% CI] | MDE): how much of the oracle's data a TA this good recovers."
            )
        for label, r in rows[len(entry["curve"]) :]:
            predicted = r["curve_predicts"]
            if predicted is not None:
                placed = " the curve"
                if abs(predicted["auc"] - r["auc"]) > 0.005:
                    measured = f", measured {r['measured_auc']:.2f} on validation,"
                    placed = f"{measured}{placed} (read at {predicted['auc']:.2f})"
                lines.append(
                    f"- at AUC {r['auc']:.2f}{label}{placed} predicts {predicted['gain'] * 100:+.1f} points "
                    f"[{predicted['ci'][0] * 100:+.1f}, {predicted['ci'][1] * 100:+.1f}]; measured "
                    f"{_ci(r['vs_baseline'])}."
                )
        lines.append("")
    lines += _pooled_lines(result.get("pooled"), base)
    lines += [*stop_rule_lines(result.get("stop_rules", [])), ""]
    return "\n".join(lines)


def _pooled_lines(pool: Mapping[str, Any] | None, base: str) -> list[str]:
    if not pool:
        return []
    lines = [
        "## Pooled over the AUCs run (exploratory: one gain at every AUC)",
        "",
        f"| arm | seeds | cells | ta_loop - {base} (95% CI) | MDE (seeds) |",
        "|---|---|---|---|---|",
    ]
    for arm in pool["ranking"]:
        cmp = pool["vs_baseline"][arm]
        lines.append(f"| {arm} | {cmp['seeds']} | {cmp['cells']} | {points_with_mdes(cmp)} |")
    lead = pool["lead"]
    if lead is not None:
        first, second = lead["arms"]
        lines += [
            "",
            f"- {first} leads {second} by {_ci(lead)} points over the {lead['cells']} cells both ran "
            f"({lead['seeds']} seeds; {first} was ranked first on these cells, so the interval leans "
            "its way).",
        ]
    return [*lines, ""]
