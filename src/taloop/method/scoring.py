"""The TA's side of the signals (calibrate_signals, score_signals, acquire): TA confidences in
the teacher's replies and the student's outputs (sampled by :mod:`taloop.method.sampling`), and how
well every signal flags errors.

Signal rows carry every TA measure (:data:`taloop.method.signals.TA_MEASURES`) as ``ta_teacher_<m>``
and ``{prefix}ta_student_<m>`` (``prefix`` "" for the warmed-up student, "base_" for the base
one), plus ``ta_teacher_judge`` / ``{prefix}ta_student_judge`` when the judge was asked for.
``ta_conf_teacher`` / ``{prefix}ta_conf_student`` repeat the measure ``ta.scorer`` names; with
``ta.scorer: auto`` the measure is chosen later (stage 2, on validation), so they are left out.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from taloop.core.metrics import grouped_flag_auc
from taloop.method import simulated_ta
from taloop.method.sampling import student_outputs
from taloop.method.signals import TA_MEASURES, judge_confidence, ta_measures
from taloop.params.schema import Params
from taloop.student.models import load_saved
from taloop.tasks.base import Example, Task
from taloop.tasks.prompts import render

log = logging.getLogger(__name__)

# The measure summaries and acquisition use while ``ta.scorer`` is "auto" and no calibration
# has chosen one: the paper's length-normalised likelihood, on the log scale.
DEFAULT_MEASURE = "mean_logprob"


def conf_measure(scorer: str) -> str | None:
    """The score behind the ``ta_conf_*`` columns: ``scorer`` when it names a TA measure or
    the judge; None ("auto", or anything unknown) when no column should be written."""
    return scorer if scorer in (*TA_MEASURES, "judge") else None


def ta_measure_name(params: Params, calibration: Mapping[str, Any] | None = None) -> str:
    """The TA score to act on: ``ta.scorer`` when it names one; else the measure a validation
    calibration chose (metrics/calibration.json's ``chosen.measure``); else
    :data:`DEFAULT_MEASURE`."""
    named = conf_measure(params.ta.scorer)
    if named is not None:
        return named
    chosen = (calibration or {}).get("chosen", {}).get("measure")
    return chosen if chosen in TA_MEASURES else DEFAULT_MEASURE


def wants_judge(params: Params) -> bool:
    """The judge is a second, costlier prompt: it runs only when ``ta.scorer`` asks for it."""
    return params.ta.scorer == "judge"


def load_ta(params: Params, ta_dir: Path) -> tuple[Any, Any] | None:
    """The TA model and tokenizer; None for the simulated TA, which runs no model."""
    return None if params.ta.backend == "simulated" else load_saved(ta_dir)


def ta_scores(
    params: Params,
    ta: tuple[Any, Any] | None,
    examples: Sequence[Example],
    outputs: Sequence[str],
    correct: Sequence[bool],
    what: str,
    judge: bool = False,
) -> dict[str, list[float]]:
    """Every TA measure for each (question, output) pair, and "judge" when ``judge``.
    ``correct`` (gold) is read by the simulated TA only (:mod:`taloop.method.simulated_ta`)."""
    if ta is None:
        return simulated_ta.measures(params, what, examples, outputs, correct, judge)
    model, tok = ta
    bs = params.ta.batch_size
    questions = [ex.question for ex in examples]
    prompts = [render(params.teacher.prompt_template, question=q) for q in questions]
    out = ta_measures(model, tok, prompts, outputs, bs, desc=f"TA {what}")
    if judge:
        out["judge"] = judge_confidence(model, tok, questions, outputs, bs, desc=f"TA judge {what}")
    return out


def _ta_columns(
    scores: Mapping[str, float], whose: str, conf: str | None, prefix: str = ""
) -> dict[str, float]:
    """``{prefix}ta_<whose>_<measure>`` for every score, and ``{prefix}ta_conf_<whose>``."""
    columns = {f"{prefix}ta_{whose}_{name}": value for name, value in scores.items()}
    if conf is not None:
        columns[f"{prefix}ta_conf_{whose}"] = scores[conf]
    return columns


def question_signals(
    params: Params,
    student_dir: Path,
    ta_dir: Path,
    warm_adapter: Path,
    questions: Sequence[Example],
    tasks: dict[str, Task],
) -> dict[str, dict[str, Any]]:
    """Per question id: the warmed-up student's outputs (:func:`taloop.method.sampling.student_outputs`: its
    self-consistency and majority output, and whether that is right, diagnostic) and the
    TA's measures of that output (``ta_student_<measure>``, ``ta_conf_student``)."""
    outs = student_outputs(params, student_dir, warm_adapter, questions, tasks)
    scored = ta_scores(
        params, load_ta(params, ta_dir), questions, [outs[ex.id]["student_output"] for ex in questions],
        [outs[ex.id]["student_correct"] for ex in questions], "student", judge=wants_judge(params),
    )  # fmt: skip
    conf = conf_measure(params.ta.scorer)
    return {
        ex.id: {**outs[ex.id], **_ta_columns({k: v[n] for k, v in scored.items()}, "student", conf)}
        for n, ex in enumerate(questions)
    }


def score(
    params: Params,
    ta_dir: Path,
    scope: dict[str, Sequence[dict[str, Any]]],
    examples: dict[str, Example],
    students: Mapping[str, Mapping[str, dict[str, Any]]],
    sampled: dict[str, dict[str, Any]] | None = None,
) -> list[dict[str, Any]]:
    """Signal rows for the replies in ``scope`` ("stage2": with the warmed-up student's
    outputs; "all": also with the base student's, in ``base_*`` columns): the TA's measures of
    each teacher reply and of the students' outputs
    (:func:`taloop.method.sampling.sample_students`, by prefix).
    ``sampled``: acquire's rows, whose TA scores of the student's outputs are not redone."""
    stage2_ids = list(dict.fromkeys(r["id"] for r in scope["stage2"]))
    outs_of = {"": {i: students[""][i] for i in stage2_ids}}
    replies = list(scope["stage2"])
    if "all" in scope:
        outs_of["base_"] = {i: students["base_"][i] for i in dict.fromkeys(r["id"] for r in scope["all"])}
        replies = list(scope["all"])
    sampled = sampled or {}
    known = [i for i in stage2_ids if i in sampled]
    ta = load_ta(params, ta_dir)
    judge = wants_judge(params)
    teacher = ta_scores(
        params,
        ta,
        [examples[r["id"]] for r in replies],
        [r["rationale"] for r in replies],
        [r["correct"] for r in replies],
        "teacher",
        judge=judge,
    )
    # acquire scored the majority outputs it sampled with the same TA: those are not scored again
    measures = [f"ta_student_{m}" for m in (*TA_MEASURES, *(["judge"] if judge else []))]
    reused = {
        i: {c.removeprefix("ta_student_"): sampled[i][c] for c in measures}
        for i in known
        if all(c in sampled[i] for c in measures)
    }
    if reused:
        log.info("reusing acquire's TA scores of the student's outputs for %d questions", len(reused))
    student_scores = {}
    for prefix, outs in outs_of.items():
        ids = [i for i in outs if prefix or i not in reused]
        scored = (
            ta_scores(
                params,
                ta,
                [examples[i] for i in ids],
                [outs[i]["student_output"] for i in ids],
                [outs[i]["student_correct"] for i in ids],
                "student",
                judge=judge,
            )
            if ids
            else {}
        )
        student_scores[prefix] = {
            **({} if prefix else reused),
            **{i: {k: v[n] for k, v in scored.items()} for n, i in enumerate(ids)},
        }

    conf = conf_measure(params.ta.scorer)
    stage2_keys = {(r["id"], r["sample"]) for r in scope["stage2"]}
    rows = []
    for n, reply in enumerate(replies):
        row: dict[str, Any] = {
            "id": reply["id"],
            "sample": reply["sample"],
            "task": reply["task"],
            "stage": "stage2" if (reply["id"], reply["sample"]) in stage2_keys else "warmup",
            "teacher_answer": reply["answer"],
            "teacher_correct": reply["correct"],  # diagnostic (gold)
        }
        meta = reply.get("meta") or {}
        if "simulated_error" in meta:  # the simulated teacher's mistake kind (None: no mistake)
            row["teacher_error_kind"] = meta["simulated_error"]
        row.update(_ta_columns({k: v[n] for k, v in teacher.items()}, "teacher", conf))
        for prefix, outs in outs_of.items():
            student = outs.get(reply["id"])
            if student is None:
                continue
            row.update({f"{prefix}{k}": v for k, v in student.items()})
            row.update(_ta_columns(student_scores[prefix][reply["id"]], "student", conf, prefix))
        rows.append(row)
    return rows


# Each signal that every signal row holds, the column holding it, and the gold-judged column it
# should flag when low ("higher = more confident" for all). Judge columns, present only when
# the judge ran, are added by :func:`flag_signals`.
FLAG_SIGNALS: dict[str, tuple[str, str]] = {
    **{f"ta_teacher_{m}": (f"ta_teacher_{m}", "teacher_correct") for m in TA_MEASURES},
    "self_consistency": ("sc", "student_correct"),
    **{f"ta_student_{m}": (f"ta_student_{m}", "student_correct") for m in TA_MEASURES},
}


def flag_signals(rows: Sequence[Mapping[str, Any]]) -> dict[str, tuple[str, str]]:
    """:data:`FLAG_SIGNALS` plus the judge's columns when every row has them."""
    out = dict(FLAG_SIGNALS)
    for whose in ("teacher", "student"):
        column = f"ta_{whose}_judge"
        if rows and all(column in r for r in rows):
            out[column] = (column, f"{whose}_correct")
    return out


def _by_error_kind(
    rows: Sequence[Mapping[str, Any]], column: str, n_boot: int, seed: int
) -> dict[str, dict[str, Any]]:
    """Per simulated mistake kind: how well ``column`` separates the wrong teacher replies of
    that kind from all correct ones (within task, as :func:`grouped_flag_auc`)."""
    kinds = sorted(
        {r["teacher_error_kind"] for r in rows if r.get("teacher_error_kind") and not r["teacher_correct"]}
    )
    out = {}
    for kind in kinds:
        subset = [r for r in rows if r["teacher_correct"] or r.get("teacher_error_kind") == kind]
        out[kind] = grouped_flag_auc(
            [not r["teacher_correct"] for r in subset], [r[column] for r in subset],
            [r["task"] for r in subset], n_boot, seed,
        )  # fmt: skip
    return out


def signal_metrics(
    rows: Sequence[dict[str, Any]], scorer: str, n_boot: int = 1000, seed: int = 0
) -> dict[str, Any]:
    """ROC-AUC of each signal at flagging wrong outputs, against gold (a labelled diagnostic).

    Per signal (``signals``): the AUC per task and pooled within task (the mean of the per-task
    AUCs, tasks with one class left out), each with a 95% bootstrap CI over rows resampled
    within task; for teacher signals also per simulated mistake kind. ``auc_all`` holds the
    pooled AUCs; the ``auc_*_flags_*`` summaries use the measure ``scorer`` names
    (:data:`DEFAULT_MEASURE` when it names none).
    """
    scored = [r for r in rows if "sc" in r]
    teacher_wrong = [not r["teacher_correct"] for r in scored]
    student_wrong = [not r["student_correct"] for r in scored]
    groups = [r["task"] for r in scored]
    signals = flag_signals(scored)
    details: dict[str, dict[str, Any]] = {}
    for name, (column, target) in signals.items():
        entry = {
            "column": column,
            "target": target,
            **grouped_flag_auc(
                [not r[target] for r in scored], [r[column] for r in scored], groups, n_boot, seed
            ),
        }
        if target == "teacher_correct":
            entry["by_error_kind"] = _by_error_kind(scored, column, n_boot, seed)
        details[name] = entry
    auc = {name: d["auc"] for name, d in details.items()}
    summary = conf_measure(scorer) or DEFAULT_MEASURE
    if f"ta_teacher_{summary}" not in signals:  # judge named but not in these rows
        summary = DEFAULT_MEASURE
    return {
        "diagnostic_uses_gold": True,
        "scored_replies": len(scored),
        "ta_scorer": scorer,
        "ta_summary_measure": summary,
        "auc_pooling": "mean of per-task AUCs (tasks with both classes); 95% CIs resample rows within task",
        "teacher_wrong_rate": sum(teacher_wrong) / len(scored) if scored else None,
        "student_wrong_rate": sum(student_wrong) / len(scored) if scored else None,
        "auc_ta_teacher_flags_wrong_teacher": auc[f"ta_teacher_{summary}"],
        "auc_ta_student_flags_wrong_student": auc[f"ta_student_{summary}"],
        "auc_self_consistency_flags_wrong_student": auc["self_consistency"],
        "auc_all": auc,
        "signals": details,
    }
