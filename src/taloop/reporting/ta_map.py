"""What the published TA-quality map (reports/studies/ta_quality.json, made by a study with
``report: ta_quality``) says about one run: ta_loop's mean gain over the baseline at the AUC
calibrate_signals measured for this run's TA on validation, with the map's intervals; or why
the run lies outside the map (another student, other tasks, another teacher error rate, a
weighting or an AUC the map did not run). The map's study and each run's report share these
definitions.

The map's x-axis is the simulated TA's true (set) AUC; a run's is measured on about 50
validation replies, so its interval is carried through the curve. Its gain is the mean over
the map's seeds; one run scatters around it by the seeds' spread (the prediction interval).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

# Params that do not change what ta_loop gains over ft, so the map holds whatever they are:
# seeds, evaluation and decoding machinery, batch sizes, precision and launcher, a teacher's
# connection and price, the spending cap, which other variants run. The TA's params are the
# map's axis. Every other param must equal the map's.
_EXCLUDED_PREFIXES = ("eval.", "generation.", "ta.", "teacher.price.", "compare")
_EXCLUDED_KEYS = frozenset({
    "student.bf16", "student.launcher", "budget.usd", "budget.stop_at_budget",
    "teacher.base_url", "teacher.api_key_env", "teacher.concurrency", "teacher.requests_per_minute",
    "teacher.tokens_per_minute", "teacher.max_retries", "teacher.timeout_s", "teacher.http_client",
    "teacher.batch_api", "teacher.batch_poll_s", "teacher.cache_only",
})  # fmt: skip
_EXCLUDED_LEAVES = ("seed", "order_seed", "batch_size")
# What makes a simulated teacher what it is; a real one is judged by its measured wrong rate.
_TEACHER_IDENTITY = frozenset({
    "teacher.backend", "teacher.model", "teacher.error_rate", "teacher.error_mode", "teacher.tokenizer",
    "teacher.max_tokens", "teacher.temperature",
})  # fmt: skip
_MISSING = "(not set)"


def measured_ta_auc(calibration: Mapping[str, Any], side: str = "ta_teacher") -> float | None:
    """The TA's validation AUC with the measure it used, at flagging wrong teacher replies
    (``ta_teacher``) or wrong student answers (``ta_student``), from metrics/calibration.json's
    confirmation half; None with too few wrong or right outputs."""
    return calibration["auc"][side][calibration["chosen"]["measure"]]["auc"]


def arm_of(params: Mapping[str, Any], arms: Mapping[str, Mapping[str, Any]]) -> str | None:
    """The first arm whose every param the run has (None: no arm matches)."""
    return next(
        (name for name, bundle in arms.items() if all(_same(params.get(k), v) for k, v in bundle.items())),
        None,
    )


def _excluded(key: str) -> bool:
    return (
        key.startswith(_EXCLUDED_PREFIXES)
        or key in _EXCLUDED_KEYS
        or key.rsplit(".", 1)[-1] in _EXCLUDED_LEAVES
    )


def _same(a: Any, b: Any) -> bool:
    numbers = (int, float)
    if (
        isinstance(a, numbers)
        and isinstance(b, numbers)
        and not isinstance(a, bool)
        and not isinstance(b, bool)
    ):
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)
    return bool(a == b)


def _tasks(params: Mapping[str, Any]) -> list[str]:
    return sorted({k.split(".")[2] for k in params if k.startswith("data.tasks.")})


def scope_of(cells: Sequence[Mapping[str, Any]], calibrations: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """What the map holds for. ``cells``: each curve cell's params validated with every
    default filled in, flattened. Params every cell shares are the map's; those that differ
    between cells (the arms' params) are its axes; the teacher's validation wrong rate, and
    over how many replies, for judging a real teacher."""
    keys = {k for c in cells for k in c if not _excluded(k)}
    shared = {k: cells[0][k] for k in keys if all(k in c and _same(c[k], cells[0][k]) for c in cells)}
    return {
        "params": dict(sorted(shared.items())),
        "varies": sorted(keys - set(shared)),
        "tasks": _tasks(cells[0]),
        "teacher_wrong_rate": float(np.mean([c["teacher_wrong_rate"] for c in calibrations])),
        "validation_replies": int(calibrations[0]["replies"]),
    }


def _wrong_rates_differ(p1: float, n1: int, p2: float, n2: int) -> bool:
    """Two teachers' wrong rates differ at the 5% level (two-proportion z-test)."""
    pooled = (p1 * n1 + p2 * n2) / (n1 + n2)
    se = math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
    return se > 0 and abs(p1 - p2) > 1.96 * se


def differences(
    scope: Mapping[str, Any], params: Mapping[str, Any], calibration: Mapping[str, Any]
) -> list[str]:
    """Why a run lies outside the map (empty when it lies inside). ``params``: its validated
    params flattened; ``calibration``: its metrics/calibration.json."""
    out = []
    tasks = _tasks(params)
    if tasks != scope["tasks"]:
        out.append(f"tasks: yours {', '.join(tasks)}; the map's {', '.join(scope['tasks'])}")
    shared_tasks = set(tasks) & set(scope["tasks"])
    real_teacher = params.get("teacher.backend") != "simulated"
    keys = ({k for k in params if not _excluded(k)} | set(scope["params"])) - set(scope["varies"])
    for key in sorted(keys):
        if real_teacher and key in _TEACHER_IDENTITY:
            continue
        if key.startswith("data.tasks.") and key.split(".")[2] not in shared_tasks:
            continue  # already said: another task set
        mine, theirs = params.get(key, _MISSING), scope["params"].get(key, _MISSING)
        if not _same(mine, theirs):
            out.append(f"{key}: yours {mine!r}; the map's {theirs!r}")
    if params.get("ta.backend") == "simulated":
        if params.get("ta.blind_spot", "none") != "none":
            out.append("ta.blind_spot: the map's curve has the TA's errors spread over every reply")
        if not _same(params.get("ta.auc_student"), params.get("ta.auc_teacher")):
            out.append("ta.auc_student differs from ta.auc_teacher; the map's TA was alike on both sides")
    if real_teacher:
        mine_rate, n = calibration["teacher_wrong_rate"], calibration["replies"]
        theirs_rate, m = scope["teacher_wrong_rate"], scope["validation_replies"]
        if _wrong_rates_differ(mine_rate, n, theirs_rate, m):
            out.append(
                f"teacher wrong rate on validation: yours {mine_rate:.2f} of {n} replies; the map's "
                f"{theirs_rate:.2f} of {m} (different at the 5% level)"
            )
    return out


def prediction_grid(
    aucs: np.ndarray, gain: np.ndarray, band: np.ndarray, seed_sd: np.ndarray
) -> dict[str, list[float]]:
    """The map's curve as each run's report reads it, on a grid of AUCs (the AUCs run among
    them): the mean gain, its 95% interval, and the seeds' SD of the gain."""
    return {
        "auc": [round(float(a), 3) for a in aucs],
        "gain": gain.tolist(),
        "ci_low": band[0].tolist(),
        "ci_high": band[1].tolist(),
        "seed_sd": [None if math.isnan(x) else float(x) for x in seed_sd],
    }


def _placed(auc: float, ci: tuple[float | None, float | None], lo: float, hi: float) -> float | None:
    """Where on the map's AUCs a measured AUC goes: itself inside; the nearer end where its
    interval reaches the map; None where it does not."""
    if lo <= auc <= hi:
        return auc
    low, high = (auc if ci[0] is None else ci[0]), (auc if ci[1] is None else ci[1])
    if high < lo or low > hi:
        return None
    return min(max(auc, lo), hi)


def predict(
    published: Mapping[str, Any] | None, params: Mapping[str, Any], calibration: Mapping[str, Any]
) -> dict[str, Any]:
    """The map's answer for this run (``params``: validated and flattened; ``calibration``: its
    metrics/calibration.json): ``status`` predicted, outside (with ``reasons``) or no_map."""
    measure = calibration["chosen"]["measure"]
    entry = calibration["auc"]["ta_teacher"][measure]
    auc, ci = entry["auc"], (entry.get("ci_low"), entry.get("ci_high"))
    out: dict[str, Any] = {
        "measured_auc": auc,
        "measured_auc_ci": list(ci),
        "student_side_auc": measured_ta_auc(calibration, "ta_student"),
    }
    if published is None:
        return {**out, "status": "no_map", "reasons": []}
    reasons = differences(published["scope"], params, calibration)
    arms = published["arms"]
    arm = arm_of(params, {name: e["params"] for name, e in arms.items()})
    curve = arms[arm].get("prediction") if arm is not None else None
    if arm is None:
        keys = sorted({k for e in arms.values() for k in e["params"]})
        yours = ", ".join(f"{k}={params.get(k)!r}" for k in keys)
        reasons.append(f"weighting: yours {yours}; the map ran {', '.join(sorted(arms))}")
    elif curve is None:
        reasons.append(f"the map's {arm} arm has fewer than two AUCs run")
    at = None
    if auc is None:
        reasons.append("the TA's AUC could not be measured on validation (too few wrong or right replies)")
    elif curve is not None:
        at = _placed(auc, ci, curve["auc"][0], curve["auc"][-1])
        if at is None:
            reasons.append(f"TA AUC {auc:.3f} and its interval lie outside the map's {curve['auc'][0]:g} to "
                           f"{curve['auc'][-1]:g}")  # fmt: skip
    if reasons or curve is None or at is None:
        return {**out, "status": "outside", "reasons": reasons}
    entry_arm = arms[arm]
    seeds = entry_arm["break_even"]["seeds"]
    grid = curve["auc"]
    mean = float(np.interp(at, grid, curve["gain"]))
    low, high = sorted(clip_to(grid, auc if x is None else x) for x in ci)
    # the curve need not be monotone: its extremes over the interval may lie inside it
    span = [float(np.interp(x, grid, curve["gain"])) for x in (low, high)]
    span += [g for a, g in zip(grid, curve["gain"], strict=True) if low < a < high]
    seed_sd = float(np.interp(at, grid, [np.nan if x is None else x for x in curve["seed_sd"]]))
    half = None
    if len(seeds) > 1 and not math.isnan(seed_sd):
        from scipy.stats import t  # here: importing scipy.stats costs every importer ~0.8 s

        half = float(t.ppf(0.975, len(seeds) - 1) * seed_sd * math.sqrt(1 + 1 / len(seeds)))
    nearest = min(entry_arm["curve"], key=lambda r: abs(r["auc"] - at))
    return {
        **out,
        "status": "predicted",
        "reasons": [],
        "arm": arm,
        "baseline": published["baseline"],
        "seeds": seeds,
        "placed_at": at,
        "gain": mean,
        "ci_low": float(np.interp(at, grid, curve["ci_low"])),
        "ci_high": float(np.interp(at, grid, curve["ci_high"])),
        "one_run": None if half is None else [mean - half, mean + half],
        "over_auc_interval": [min(span), max(span)],
        "break_even": entry_arm["break_even"],
        "map_student_side_auc": nearest.get("measured_student_auc"),
        "map_teacher_side_auc": nearest.get("measured_auc"),
        "map_point": nearest["auc"],
    }


def clip_to(grid: Sequence[float], x: float) -> float:
    """``x`` read at the nearer end of ``grid`` (ascending) where it lies outside."""
    return min(max(x, grid[0]), grid[-1])


def _pts(x: float) -> str:
    return f"{x * 100:+.1f}"


def _break_even(be: Mapping[str, Any]) -> str:
    if be["auc"] is not None:
        return f"its break-even AUC is {be['auc']:.2f}"
    if be["below_grid"]:
        return f"ta_loop gains at every AUC it ran, so its break-even AUC is at or below {be['aucs'][0]:g}"
    return f"ta_loop does not gain even at AUC {be['aucs'][-1]:g}: no break-even AUC in its range"


def sentence(prediction: Mapping[str, Any]) -> str:
    """The report's words for :func:`predict`'s answer."""
    auc = prediction["measured_auc"]
    if auc is None:
        measured = "could not be measured on validation"
    else:
        low, high = prediction["measured_auc_ci"]
        interval = "" if low is None or high is None else f" (95% CI {low:.2f} to {high:.2f})"
        measured = f"measured {auc:.3f} on validation{interval}"
    if prediction["status"] == "no_map":
        return (
            f"This run's TA AUC {measured}. No TA-quality map is published in this checkout "
            "(reports/studies/ta_quality.json) to place it on."
        )
    if prediction["status"] == "outside":
        return (
            f"This run's TA AUC {measured}; the published TA-quality map does not cover this run, so it "
            "predicts nothing here: " + "; ".join(prediction["reasons"]) + "."
        )
    base, at = prediction["baseline"], prediction["placed_at"]
    where = "" if at == auc else f" (placed at the map's edge, AUC {at:g}, which its interval reaches)"
    one = prediction["one_run"]
    scatter = (
        ""
        if one is None
        else f"; one run scatters around it: 95% prediction interval {_pts(one[0])} to {_pts(one[1])}"
    )
    span = prediction["over_auc_interval"]
    student = prediction["student_side_auc"]
    theirs = prediction["map_student_side_auc"]
    sides = (
        f" On the student's outputs this run's TA measured "
        f"{'nothing (too few wrong or right answers)' if student is None else f'{student:.3f}'}; the map's "
        f"simulated TA at AUC {prediction['map_point']:g} measured "
        f"{'nothing' if theirs is None else f'{theirs:.3f}'} there."
    )
    seeds = ", ".join(map(str, prediction["seeds"]))
    return (
        f"This run's TA AUC {measured}{where}. On the published TA-quality map ({prediction['arm']} "
        f"weighting, seeds {seeds}, linear between the AUCs it ran), ta_loop - {base} averages "
        f"{_pts(prediction['gain'])} points at that AUC (95% CI of the mean {_pts(prediction['ci_low'])} "
        f"to {_pts(prediction['ci_high'])}){scatter}. Over the AUC's own interval the map's mean gain runs "
        f"from {_pts(span[0])} to {_pts(span[1])}; {_break_even(prediction['break_even'])}.{sides}"
    )
