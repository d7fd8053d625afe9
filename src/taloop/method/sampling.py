"""The student's side of the signals (sample_student): K samples per question, their
self-consistency and majority output. Apart from the TA's code (taloop.method.scoring) and the
calibration's choices (taloop.method.calibration), so that changing those does not sample again."""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from taloop.core.io import read_jsonl
from taloop.method.signals import self_consistency
from taloop.params.schema import Params
from taloop.student.generation import complete, task_answered
from taloop.tasks.base import Example, Task
from taloop.tasks.prompts import render
from taloop.tasks.splits import stratified_order

log = logging.getLogger(__name__)


def calibration_limit(params: Params, n_val: int) -> int:
    """Teacher replies bought for calibration: ``calibration.queries``, or one per sample
    of every validation question."""
    return params.calibration.queries or n_val * params.teacher.samples


def calibration_questions(params: Params, val: list[Example]) -> list[Example]:
    """The validation questions calibration buys replies for, in purchase order (the budget's
    task-stratified order): sample_student samples the student on exactly these."""
    limit = calibration_limit(params, len(val))
    return stratified_order(val, params.budget.order_seed)[: math.ceil(limit / params.teacher.samples)]


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
        answered=task_answered([tasks[ex.task].extract_strict for ex in questions]),
    )  # fmt: skip
    out = {}
    for ex, texts in zip(questions, samples, strict=True):
        task = tasks[ex.task]
        # Strict: a sample that never states "The answer is X" has no answer to agree with.
        answers = [task.extract_strict(t) for t in texts]
        cons = self_consistency(answers)
        output = texts[cons.majority_index]
        out[ex.id] = {
            "sc": cons.share,
            "sc_entropy": cons.entropy,
            "student_answer": cons.majority,
            "student_output": output,
            # Diagnostic (gold), read leniently as evaluation reads answers: judged by the strict
            # reading, a missing answer line would count as wrong and lower self-consistency at
            # once, crediting the signal with agreeing with itself.
            "student_correct": task.is_correct(task.extract(output), ex),
        }
    return out


def sample_students(
    params: Params,
    student_dir: Path,
    warm_adapter: Path,
    scope: dict[str, Sequence[dict[str, Any]]],
    examples: dict[str, Example],
    tasks: dict[str, Task],
    sampled: dict[str, dict[str, Any]] | None = None,
) -> dict[str, dict[str, dict[str, Any]]]:
    """The students' outputs (:data:`STUDENT_COLUMNS`) for the questions of the replies in
    ``scope``, by column prefix and question id: "" the warmed-up student on "stage2"; "base_"
    the base student on "all", when asked. ``sampled``: the warmed-up student's outputs
    already drawn for some questions (the acquire stage's), which are not sampled again."""
    stage2_ids = list(dict.fromkeys(r["id"] for r in scope["stage2"]))
    sampled = sampled or {}
    known = {i: {k: sampled[i][k] for k in STUDENT_COLUMNS} for i in stage2_ids if i in sampled}
    missing = [examples[i] for i in stage2_ids if i not in known]
    if known:
        log.info(
            "reusing acquire's student samples for %d of %d stage-2 questions", len(known), len(stage2_ids)
        )
    new = student_outputs(params, student_dir, warm_adapter, missing, tasks) if missing else {}
    students = {"": {i: known.get(i) or new[i] for i in stage2_ids}}
    if "all" in scope:
        all_ids = list(dict.fromkeys(r["id"] for r in scope["all"]))
        students["base_"] = student_outputs(params, student_dir, None, [examples[i] for i in all_ids], tasks)
    return students


def read_outputs(path: Path) -> dict[str, dict[str, Any]]:
    """sample_student's file at ``path`` as :func:`sample_students` returns one prefix: id -> columns."""
    return {r.pop("id"): r for r in read_jsonl(path)}
