"""metrics/summary.json: the run card and the ablation table, built only from tracked files."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from collections.abc import Mapping
from typing import Any

from taloop.method.simulated_ta import describe_ta
from taloop.params.schema import Params
from taloop.reporting.verdict import verdict


def params_hash(params: Params) -> str:
    """Short hash of the resolved params: two runs share it only if every setting matches."""
    blob = json.dumps(params.model_dump(mode="json"), sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:12]


def git_revision() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True, timeout=30
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def ran_in(*metrics: Mapping[str, Any]) -> str:
    """The precision the student trained and decoded in, from the stages' metrics: "fp32",
    "bf16", "mixed (...)" when stages ran on machines that resolved it differently, or
    "unknown" for metrics from before it was recorded."""
    seen = sorted({m["student_precision"] for m in metrics if m.get("student_precision")})
    if not seen:
        return "unknown"
    return seen[0] if len(seen) == 1 else f"mixed ({', '.join(seen)})"


def run_card(
    params: Params, teacher: Mapping[str, Any], acquisition: Mapping[str, Any], precision: str
) -> dict[str, Any]:
    return {
        "student": params.student.model,
        "precision": {"bf16_setting": params.student.bf16, "resolved": precision},
        "ta": describe_ta(params),
        "ta_scorer": params.ta.scorer,
        "teacher": {
            "backend": params.teacher.backend,
            "model": params.teacher.model,
            "simulated": bool(teacher["simulated"]),
            "prompt_template": params.teacher.prompt_template,
            # What the simulated teacher was told to get wrong, and how; a real one ignores these.
            "error_rate": params.teacher.error_rate,
            "error_mode": params.teacher.error_mode,
        },
        "budget": {"queries": params.budget.queries, "usd": params.budget.usd},
        "eval_split": params.eval.split,
        "acquisition": {k: v for k, v in acquisition.items() if k != "teacher"},
        "spend": {
            "replies": teacher["replies"],
            "usd_value": teacher["usd_value"],
            "usd_spent_this_run": teacher["usd_spent"],
            "cache_hits": teacher["cache_hits"],
        },
        "seeds": {
            "data": params.data.seed,
            "teacher": params.teacher.seed,
            "purchase_order": params.budget.order_seed,
            "warmup": params.warmup.seed,
            "signals": params.signals.seed,
            "stage2": params.stage2.seed,
            "eval": params.eval.seed,
        },
        "git_revision": git_revision(),
        # dvc exp run names the experiment in DVC_EXP_NAME; a plain dvc repro has none.
        "experiment": os.environ.get("DVC_EXP_NAME") or "workspace",
        "params_hash": params_hash(params),
    }


def variant_row(metrics: Mapping[str, Any], teacher_usd: float) -> dict[str, Any]:
    cmp = metrics["vs_baseline"]
    return {
        "description": metrics["description"],
        "uses_gold": metrics["uses_gold"],
        "n": metrics["n"],
        "correct": round(metrics["accuracy"] * metrics["n"]),
        "accuracy": metrics["accuracy"],
        "ci_low": metrics["ci_low"],
        "ci_high": metrics["ci_high"],
        "per_task": dict(metrics["per_task"]),
        "relative_improvement": cmp["relative_improvement"],
        "relative_ci_low": cmp.get("relative_ci_low"),
        "relative_ci_high": cmp.get("relative_ci_high"),
        "p_value": cmp["p_value"],
        "mde": cmp.get("mde"),
        "mde_relative": cmp.get("mde_relative"),
        "teacher_usd": teacher_usd,
    }


def build_summary(
    params: Params,
    evals: Mapping[str, Mapping[str, Any]],
    teacher: Mapping[str, Any],
    signals: Mapping[str, Any],
    acquisition: Mapping[str, Any],
    calibration: Mapping[str, Any],
    stage2: Mapping[str, Mapping[str, Any]],
) -> dict[str, Any]:
    """``evals`` maps each variant (baseline first) to its metrics/eval/<variant>.json;
    ``teacher`` covers every reply bought (up front and by the acquire stage);
    ``calibration`` is metrics/calibration.json, ``stage2`` each variant's metrics/stage2 file."""
    base = params.baseline
    variants = {name: variant_row(m, teacher["usd_value"]) for name, m in evals.items()}
    verdicts = {
        name: verdict(name, base, m["vs_baseline"], m["uses_gold"])
        for name, m in evals.items()
        if name != base
    }
    return {
        "run": run_card(params, teacher, acquisition, ran_in(*evals.values(), *stage2.values())),
        "baseline": base,
        "variants": variants,
        "verdicts": verdicts,
        "signals": {
            k: v
            for k, v in signals.items()
            if k.startswith("auc_") or k.endswith("_rate") or k in ("signals", "ta_summary_measure")
        },
        "calibration": {
            "replies": calibration["replies"],
            "teacher_wrong_rate": calibration["teacher_wrong_rate"],
            "student_wrong_rate": calibration["student_wrong_rate"],
            "chosen": calibration["chosen"],
            "auc": calibration["auc"],
            "rule": calibration["rule"],
            "usd_spent": calibration["teacher"]["usd_spent"],
        },
        "stage2": {
            name: {
                key: m.get(key)
                for key in (
                    "steps",
                    "optimizer_steps_total",
                    "examples_trained",
                    "train_tokens",
                    "signal_plan",
                    "per_task",
                )
            }
            for name, m in stage2.items()
        },
        "teacher": {
            "replies": teacher["replies"],
            "unparsable": teacher["unparsable"],
            "tokens_in": teacher["tokens_in"],
            "tokens_out": teacher["tokens_out"],
            "usd_value": teacher["usd_value"],
            "accuracy_vs_gold": teacher.get("diagnostic_teacher_accuracy_vs_gold"),
        },
    }


def headline(summary: Mapping[str, Any]) -> dict[str, Any]:
    """metrics/headline.json, what the README's `dvc exp show` view leads with. One column per
    variant (baseline first): its accuracy and, for the others, the relative change and p vs
    the baseline in one short text, "48.8% +5.4% p=0.70" (numbers per field would take three
    columns per variant and overflow 160 columns; metrics/eval/*.json keep them numeric); then
    the teacher data's USD, the chosen TA measure's AUC at flagging wrong teacher replies, and
    the precision the student ran in."""
    base = summary["baseline"]
    acc = {}
    for name, row in summary["variants"].items():
        text = f"{100 * row['accuracy']:.1f}%"
        if name != base:
            rel = row["relative_improvement"]  # None when the baseline scored 0
            text += f" {'n/a' if rel is None else f'{100 * rel:+.1f}%'} p={row['p_value']:.2f}"
        acc[name] = text
    auc = summary["signals"].get("auc_ta_teacher_flags_wrong_teacher")
    return {
        "acc": acc,
        "usd": round(summary["teacher"]["usd_value"], 4),
        "ta_auc": None if auc is None else round(auc, 3),
        # bf16 and fp32 machines differ in the last items' answers: say which one this was
        "precision": summary["run"]["precision"]["resolved"],
    }
