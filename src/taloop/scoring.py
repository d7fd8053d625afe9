"""score_signals' library side: student samples, TA confidences, and how well they flag errors."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from taloop.config import Params
from taloop.generation import complete
from taloop.metrics import flag_auc
from taloop.models import load_saved
from taloop.signals import judge_confidence, likelihood_confidence, self_consistency
from taloop.tasks.base import Example, Task
from taloop.tasks.prompts import render

log = logging.getLogger(__name__)

# student_outputs' columns: the acquire stage stores them, so score_signals need not sample
# the same questions again.
STUDENT_COLUMNS = ("sc", "sc_entropy", "student_answer", "student_output", "student_correct")


def student_outputs(
    params: Params, base_dir: Path, adapter: Path | None, questions: Sequence[Example], tasks: dict[str, Task]
) -> dict[str, dict[str, Any]]:
    """Per example id: self-consistency of K samples and the student's majority output
    (the :data:`STUDENT_COLUMNS`)."""
    cfg = params.signals
    prompts = [render(params.teacher.prompt_template, question=ex.question) for ex in questions]
    samples, _ = complete(
        params, base_dir, adapter, prompts, max_new_tokens=cfg.max_new_tokens, batch_size=cfg.batch_size,
        num_samples=cfg.samples, temperature=cfg.temperature, seed=cfg.seed,
        desc="student samples" if adapter else "base student samples",
    )  # fmt: skip
    out = {}
    for ex, texts in zip(questions, samples, strict=True):
        task = tasks[ex.task]
        answers = [task.extract(t) for t in texts]
        cons = self_consistency(answers)
        out[ex.id] = {
            "sc": cons.share,
            "sc_entropy": cons.entropy,
            "student_answer": cons.majority,
            "student_output": texts[cons.majority_index],
            "student_correct": task.is_correct(cons.majority, ex),  # diagnostic (gold)
        }
    return out


def ta_scores(
    params: Params,
    ta: tuple[Any, Any],
    questions: Sequence[str],
    outputs: Sequence[str],
    what: str,
    scorers: Sequence[str] = ("likelihood", "judge"),
) -> dict[str, list[float]]:
    """The TA's ``scorers`` for each (question, output) pair."""
    model, tok = ta
    bs = params.ta.batch_size
    out = {}
    if "likelihood" in scorers:
        prompts = [render(params.teacher.prompt_template, question=q) for q in questions]
        out["likelihood"] = likelihood_confidence(
            model, tok, prompts, outputs, bs, desc=f"TA likelihood {what}"
        )
    if "judge" in scorers:
        out["judge"] = judge_confidence(model, tok, questions, outputs, bs, desc=f"TA judge {what}")
    return out


def question_signals(
    params: Params,
    student_dir: Path,
    ta_dir: Path,
    warm_adapter: Path,
    questions: Sequence[Example],
    tasks: dict[str, Task],
) -> dict[str, dict[str, Any]]:
    """Per question id: the warmed-up student's outputs (:func:`student_outputs`: its
    self-consistency and majority output, and whether that is right, diagnostic) and the
    TA's confidence (with ``ta.scorer``) in that output."""
    outs = student_outputs(params, student_dir, warm_adapter, questions, tasks)
    scorer = params.ta.scorer
    conf = ta_scores(
        params, load_saved(ta_dir), [ex.question for ex in questions],
        [outs[ex.id]["student_output"] for ex in questions], "student", scorers=(scorer,),
    )[scorer]  # fmt: skip
    return {ex.id: {**outs[ex.id], "ta_conf_student": c} for ex, c in zip(questions, conf, strict=True)}


def score(
    params: Params,
    student_dir: Path,
    ta_dir: Path,
    warm_adapter: Path,
    scope: dict[str, Sequence[dict[str, Any]]],
    examples: dict[str, Example],
    tasks: dict[str, Task],
    sampled: dict[str, dict[str, Any]] | None = None,
) -> list[dict[str, Any]]:
    """Signal rows for the replies in ``scope`` ("stage2": scored by the warmed-up student;
    "all": additionally by the base student, in ``base_*`` columns). ``sampled``: the
    warmed-up student's outputs already drawn for some questions (:func:`student_outputs`
    columns, by id; the acquire stage's), which are not sampled again."""
    students: dict[str, dict[str, dict[str, Any]]] = {}
    stage2_ids = list(dict.fromkeys(r["id"] for r in scope["stage2"]))
    known = {i: {k: sampled[i][k] for k in STUDENT_COLUMNS} for i in stage2_ids if i in (sampled or {})}
    missing = [examples[i] for i in stage2_ids if i not in known]
    if known:
        log.info(
            "reusing acquire's student samples for %d of %d stage-2 questions", len(known), len(stage2_ids)
        )
    new = student_outputs(params, student_dir, warm_adapter, missing, tasks) if missing else {}
    students[""] = {i: known.get(i) or new[i] for i in stage2_ids}
    replies = list(scope["stage2"])
    if "all" in scope:
        all_ids = list(dict.fromkeys(r["id"] for r in scope["all"]))
        students["base_"] = student_outputs(params, student_dir, None, [examples[i] for i in all_ids], tasks)
        replies = list(scope["all"])

    ta = load_saved(ta_dir)
    teacher = ta_scores(
        params,
        ta,
        [examples[r["id"]].question for r in replies],
        [r["rationale"] for r in replies],
        "teacher",
    )
    student_scores = {}
    for prefix, outs in students.items():
        ids = list(outs)
        scored = ta_scores(
            params,
            ta,
            [examples[i].question for i in ids],
            [outs[i]["student_output"] for i in ids],
            "student",
        )
        student_scores[prefix] = {i: {k: v[n] for k, v in scored.items()} for n, i in enumerate(ids)}

    scorer = params.ta.scorer
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
            "ta_like_teacher": teacher["likelihood"][n],
            "ta_judge_teacher": teacher["judge"][n],
            "ta_conf_teacher": teacher[scorer][n],
        }
        for prefix, outs in students.items():
            student = outs.get(reply["id"])
            if student is None:
                continue
            tas = student_scores[prefix][reply["id"]]
            row.update({f"{prefix}{k}": v for k, v in student.items()})
            row[f"{prefix}ta_like_student"] = tas["likelihood"]
            row[f"{prefix}ta_judge_student"] = tas["judge"]
            row[f"{prefix}ta_conf_student"] = tas[scorer]
        rows.append(row)
    return rows


# Each signal, the column holding it, and the gold-judged column it should flag when low.
FLAG_SIGNALS: dict[str, tuple[str, str]] = {
    "ta_teacher_likelihood": ("ta_like_teacher", "teacher_correct"),
    "ta_teacher_judge": ("ta_judge_teacher", "teacher_correct"),
    "self_consistency": ("sc", "student_correct"),
    "ta_student_likelihood": ("ta_like_student", "student_correct"),
    "ta_student_judge": ("ta_judge_student", "student_correct"),
}


def signal_metrics(rows: Sequence[dict[str, Any]], scorer: str) -> dict[str, Any]:
    """ROC-AUC of each signal at flagging wrong outputs, against gold (a labelled diagnostic)."""
    scored = [r for r in rows if "sc" in r]
    teacher_wrong = [not r["teacher_correct"] for r in scored]
    student_wrong = [not r["student_correct"] for r in scored]
    auc = {
        name: flag_auc([not r[target] for r in scored], [r[column] for r in scored])
        for name, (column, target) in FLAG_SIGNALS.items()
    }
    return {
        "diagnostic_uses_gold": True,
        "scored_replies": len(scored),
        "ta_scorer": scorer,
        "teacher_wrong_rate": sum(teacher_wrong) / len(scored) if scored else None,
        "student_wrong_rate": sum(student_wrong) / len(scored) if scored else None,
        "auc_ta_teacher_flags_wrong_teacher": auc[f"ta_teacher_{scorer}"],
        "auc_ta_student_flags_wrong_student": auc[f"ta_student_{scorer}"],
        "auc_self_consistency_flags_wrong_student": auc["self_consistency"],
        "auc_all": auc,
    }
