"""evaluate's library side: greedy decoding on the test split, accuracy with CIs, paired tests."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from taloop.core.metrics import bootstrap_ci, paired_comparison, wilson_interval
from taloop.params.schema import Params
from taloop.student.generation import complete, task_answered
from taloop.tasks.base import Example, Task
from taloop.tasks.prompts import render


def predict(
    params: Params, base_dir: Path, adapter: Path | None, test: Sequence[Example], tasks: dict[str, Task]
) -> list[dict[str, Any]]:
    prompts = [render(params.teacher.prompt_template, question=ex.question) for ex in test]
    outputs, tok = complete(
        params, base_dir, adapter, prompts, max_new_tokens=params.eval.max_new_tokens,
        batch_size=params.eval.batch_size, desc="evaluate",
        answered=task_answered([tasks[ex.task].extract_strict for ex in test]),
    )  # fmt: skip
    rows = []
    for ex, (text,) in zip(test, outputs, strict=True):
        answer = tasks[ex.task].extract(text)
        rows.append({
            "id": ex.id, "task": ex.task, "gold": ex.gold, "output": text, "answer": answer,
            "correct": tasks[ex.task].is_correct(answer, ex),
            "output_tokens": len(tok(text, add_special_tokens=False).input_ids),
        })  # fmt: skip
    return rows


def _task_accuracy(correct: Sequence[bool]) -> dict[str, float]:
    lo, hi = wilson_interval(sum(correct), len(correct))
    return {"accuracy": sum(correct) / len(correct), "n": len(correct), "ci_low": lo, "ci_high": hi}


def summarise(
    params: Params, variant: str, rows: Sequence[dict[str, Any]], baseline: Sequence[dict[str, Any]] | None
) -> dict[str, Any]:
    cfg = params.eval
    correct = [r["correct"] for r in rows]
    groups = [r["task"] for r in rows]
    by_task: dict[str, list[bool]] = defaultdict(list)
    for r in rows:
        by_task[r["task"]].append(r["correct"])
    lo, hi = bootstrap_ci(correct, groups, cfg.bootstrap, cfg.seed)
    spec = params.variants[variant]
    out: dict[str, Any] = {
        "variant": variant,
        "description": spec.description,
        "uses_gold": spec.gold_filter,
        "split": cfg.split,
        "n": len(rows),
        "accuracy": sum(correct) / len(correct),
        "ci_low": lo,
        "ci_high": hi,
        "per_task": {t: _task_accuracy(v) for t, v in sorted(by_task.items())},
        "unparsable": sum(r["answer"] is None for r in rows),
        "baseline": params.baseline,
    }
    if baseline is None:  # the baseline itself
        out["vs_baseline"] = {"diff": 0.0, "relative_improvement": 0.0, "p_value": 1.0, "mde": None}
        return out
    if [r["id"] for r in baseline] != [r["id"] for r in rows]:
        raise ValueError(f"{variant} and {params.baseline} were evaluated on different test items")
    out["vs_baseline"] = paired_comparison(
        correct, [r["correct"] for r in baseline], groups, cfg.bootstrap, cfg.seed
    )
    return out
