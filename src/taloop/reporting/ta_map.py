"""What the published TA-quality map (reports/studies/ta_quality.json, made by a study with
``report: ta_quality``) predicts for one run: ta_loop's gain over the baseline at the AUC
calibrate_signals measured for this run's TA on validation, with the map's interval; or why the
run lies outside the map (another student, other tasks, another teacher error rate, a weighting
or an AUC the map did not run). The map's study and each run's report share these definitions.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

# Params that change what ta_loop gains, besides the TA: a run differing in any of them is
# outside the map. Seeds, the evaluation split and the TA's own params are not among them.
SCOPE_PREFIXES = (
    "data.tasks.",
    "data.train_per_task",
    "student.model",
    "student.lora.",
    "teacher.error_mode",
    "teacher.error_rate",
    "budget.queries",
    "acquisition.mode",
    "warmup.fraction",
    "warmup.epochs",
    "warmup.learning_rate",
    "signals.samples",
    "stage2.mode",
    "stage2.epochs",
    "stage2.learning_rate",
)
# A real teacher's error rate is measured on validation (about 100 replies by default: a
# binomial SD of 0.04 at 0.2), so it is compared with the map's within this much.
WRONG_RATE_TOLERANCE = 0.05
# A real teacher (any backend but simulated) is judged by its measured wrong rate instead.
_SIMULATED_TEACHER_ONLY = ("teacher.error_mode", "teacher.error_rate")


def measured_ta_auc(calibration: Mapping[str, Any]) -> float | None:
    """The TA's validation AUC at flagging wrong teacher replies with the measure it used (the
    confirmation half in metrics/calibration.json; None with too few wrong or right replies)."""
    return calibration["auc"]["ta_teacher"][calibration["chosen"]["measure"]]["auc"]


def arm_of(params: Mapping[str, Any], arms: Mapping[str, Mapping[str, Any]]) -> str | None:
    """The first arm whose every param the run has (None: no arm matches)."""
    return next(
        (name for name, bundle in arms.items() if all(params.get(k) == v for k, v in bundle.items())), None
    )


def _in_scope(key: str) -> bool:
    return any(key == p or (p.endswith(".") and key.startswith(p)) for p in SCOPE_PREFIXES)


def scope_of(
    cells: Sequence[Mapping[str, Any]], tasks: Sequence[str], wrong_rates: Sequence[float]
) -> dict[str, Any]:
    """What the map holds for: the in-scope params every cell shares (``cells``: flattened
    params.yaml, where a task without config has no key), the tasks its cells were evaluated
    on, and the teacher's mean wrong rate on validation."""
    shared = {k: v for k, v in cells[0].items() if _in_scope(k) and all(c.get(k) == v for c in cells)}
    return {"params": shared, "tasks": sorted(tasks), "teacher_wrong_rate": float(np.mean(wrong_rates))}


def differences(scope: Mapping[str, Any], params: Mapping[str, Any], wrong_rate: float) -> list[str]:
    """Why a run lies outside the map (empty when it lies inside): ``params`` are its validated
    params flattened (every task has keys there), ``wrong_rate`` its teacher's on validation."""
    out = []
    tasks = sorted({k.split(".")[2] for k in params if k.startswith("data.tasks.")})
    if tasks != scope["tasks"]:
        out.append(f"tasks: yours {', '.join(tasks)}; the map's {', '.join(scope['tasks'])}")
    real_teacher = params.get("teacher.backend") != "simulated"
    for key, value in scope["params"].items():
        if real_teacher and key in _SIMULATED_TEACHER_ONLY:
            continue
        if key.startswith("data.tasks.") and key.split(".")[2] not in tasks:
            continue  # already said: another task set
        if params.get(key) != value:
            out.append(f"{key}: yours {params.get(key)!r}; the map's {value!r}")
    if real_teacher and abs(wrong_rate - scope["teacher_wrong_rate"]) > WRONG_RATE_TOLERANCE:
        out.append(
            f"teacher wrong rate on validation: yours {wrong_rate:.2f}; the map's "
            f"{scope['teacher_wrong_rate']:.2f} (more than {WRONG_RATE_TOLERANCE} apart)"
        )
    return out


def prediction_grid(aucs: np.ndarray, gain: np.ndarray, band: np.ndarray) -> dict[str, list[float]]:
    """The map's curve as the report reads it: the gain and its 95% interval on a grid of AUCs."""
    return {
        "auc": [round(float(a), 3) for a in aucs],
        "gain": gain.tolist(),
        "ci_low": band[0].tolist(),
        "ci_high": band[1].tolist(),
    }


def predict(
    published: Mapping[str, Any] | None, params: Mapping[str, Any], calibration: Mapping[str, Any]
) -> dict[str, Any]:
    """The map's prediction for this run (``params`` flattened; ``calibration`` its
    metrics/calibration.json): ``status`` is predicted, outside (with ``reasons``) or no_map."""
    auc = measured_ta_auc(calibration)
    out: dict[str, Any] = {"measured_auc": auc, "student_side_auc": _student_auc(calibration)}
    if published is None:
        return {**out, "status": "no_map", "reasons": []}
    reasons = differences(published["scope"], params, calibration["teacher_wrong_rate"])
    arms = published["arms"]
    arm = arm_of(params, {name: entry["params"] for name, entry in arms.items()})
    curve = arms[arm].get("prediction") if arm is not None else None
    if arm is None:
        keys = sorted({k for entry in arms.values() for k in entry["params"]})
        yours = ", ".join(f"{k}={params.get(k)!r}" for k in keys)
        reasons.append(f"weighting: yours {yours}; the map ran {', '.join(sorted(arms))}")
    elif curve is None:
        reasons.append(f"the map's {arm} arm has fewer than two AUCs run")
    if auc is None:
        reasons.append("the TA's AUC could not be measured on validation (too few wrong or right replies)")
    elif curve is not None and not curve["auc"][0] <= auc <= curve["auc"][-1]:
        reasons.append(f"TA AUC {auc:.3f}: the map ran {curve['auc'][0]:g} to {curve['auc'][-1]:g}")
    seeds = arms[arm]["break_even"]["seeds"] if curve is not None else None
    out |= {"arm": arm, "baseline": published["baseline"], "seeds": seeds}
    if reasons:
        return {**out, "status": "outside", "reasons": reasons}
    assert curve is not None and auc is not None
    at = {k: float(np.interp(auc, curve["auc"], curve[k])) for k in ("gain", "ci_low", "ci_high")}
    return {**out, "status": "predicted", "reasons": [], **at, "break_even": arms[arm]["break_even"]["auc"]}


def _student_auc(calibration: Mapping[str, Any]) -> float | None:
    return calibration["auc"]["ta_student"][calibration["chosen"]["measure"]]["auc"]


def sentence(prediction: Mapping[str, Any]) -> str:
    """The report's words for :func:`predict`'s answer."""
    auc = prediction["measured_auc"]
    measured = "could not be measured" if auc is None else f"measured {auc:.3f} on validation"
    if prediction["status"] == "no_map":
        return (
            f"This run's TA AUC {measured}. No published TA-quality map in this checkout "
            "(reports/studies/ta_quality.json) to place it on."
        )
    if prediction["status"] == "outside":
        return (
            f"This run's TA AUC {measured}; the published TA-quality map does not cover this run, so it "
            "predicts nothing here: " + "; ".join(prediction["reasons"]) + "."
        )
    be = prediction["break_even"]
    where = f"its break-even AUC is {be:.2f}" if be is not None else "it has no break-even AUC in its range"
    student = prediction["student_side_auc"]
    caveat = (
        ""
        if student is None
        else " The map's simulated TA was as good on the student's outputs as on the teacher's; "
        f"this run's TA scored {student:.3f} on the student's."
    )
    seeds = ", ".join(map(str, prediction["seeds"]))
    return (
        f"This run's TA AUC {measured}. At that AUC the published TA-quality map ({prediction['arm']} "
        f"weighting, seeds {seeds}) predicts ta_loop - {prediction['baseline']} = "
        f"{prediction['gain'] * 100:+.1f} points (95% interval {prediction['ci_low'] * 100:+.1f} to "
        f"{prediction['ci_high'] * 100:+.1f}); {where}.{caveat}"
    )
