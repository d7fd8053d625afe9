"""Student decoding throughput: model.generate (the old path) against taloop's decode loop.

    python benchmarks/decode.py [--per-task 4] [--eval-batch 8 16] [--signals-batch 2 4]
                                [--student-dir models/base/student [--adapter DIR]]

On validation questions, with the student of params.yaml (its GGUF alias, or a saved student
directory and adapter), times greedy evaluation decoding (eval.max_new_tokens) and K-sample
signal decoding (signals.samples, temperature, max_new_tokens) at each batch size, three ways:

- old: model.generate on K copies of each prompt, every row to EOS or max_new_tokens (the
  path before the decode loop, tests.test_generation.reference);
- loop: taloop's generate without an answer rule (one prefill per prompt, finished rows leave
  the batch);
- stop: generate with states_answer, as evaluation and student sampling now run.

Prints questions per second of each, and whether they compute the same: loop texts equal to
old ones, stop texts equal to old ones cut at their answer line, and the answers extracted
(leniently and strictly) from stop and old texts equal, also when cut by the task-aware rule
(a value on an answer line, extract_strict) instead. Results also go to --out as JSON.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import yaml

from taloop.core import logs, precision
from taloop.params import validate_params
from taloop.student.generation import generate, states_answer, task_answered, through_answer
from taloop.student.models import load_source, load_student, store_for_autocast
from taloop.tasks.prompts import render
from taloop.tasks.registry import get_task
from taloop.tasks.splits import make_splits

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
from tests.test_generation import reference  # noqa: E402  (the old path, as the tests hold it)

log = logging.getLogger("decode")


def timed(run: Callable[[], list[list[str]]]) -> tuple[list[list[str]], float]:
    start = time.perf_counter()
    out = run()
    return out, time.perf_counter() - start


def compare(
    model: Any, tok: Any, prompts: list[str], readers: list[Any], batch_size: int, settings: dict[str, Any]
) -> dict[str, Any]:
    """The three paths at one batch size; ``readers``: each prompt's task."""
    kwargs = {"batch_size": batch_size, **settings}
    old, old_s = timed(lambda: reference(model, tok, prompts, **kwargs))
    loop, loop_s = timed(lambda: generate(model, tok, prompts, **kwargs))
    stop, stop_s = timed(lambda: generate(model, tok, prompts, answered=states_answer, **kwargs))
    pairs = [
        (task, s, o)
        for task, stops, olds in zip(readers, stop, old, strict=True)
        for s, o in zip(stops, olds, strict=True)
    ]
    # The rule a caller that knows each prompt's task could pass instead of states_answer; its
    # texts are the old ones cut at its answer line, so they need no decoding of their own.
    by_task = [
        (task, through_answer(o, 0, lambda _, t, task=task: task.extract_strict(t) is not None), o)
        for task, _, o in pairs
    ]
    return {
        "batch_size": batch_size,
        "questions": len(prompts),
        "questions_per_s": {
            "old": len(prompts) / old_s,
            "loop": len(prompts) / loop_s,
            "stop": len(prompts) / stop_s,
        },
        "loop_texts_equal_old": sum(a == b for a, b in zip(loop, old, strict=True)),
        "stop_texts_equal_old_cut": sum(through_answer(o, 0, states_answer) == s for _, s, o in pairs),
        "texts_cut_short": sum(through_answer(o, 0, states_answer) != o for _, _, o in pairs),
        "answers_equal": sum(task.extract(s) == task.extract(o) for task, s, o in pairs),
        "strict_answers_equal": sum(task.extract_strict(s) == task.extract_strict(o) for task, s, o in pairs),
        "task_rule_answers_equal": sum(task.extract(s) == task.extract(o) for task, s, o in by_task),
        "samples": len(pairs),
    }


def pipeline_speed(
    model: Any, tok: Any, prompts: list[str], readers: list[Any], batch_size: int, settings: dict[str, Any]
) -> dict[str, Any]:
    """Questions per second of decoding as the pipeline runs it (the task-aware answer rule),
    for choosing batch sizes without timing the old paths."""
    rule = task_answered([task.extract_strict for task in readers])
    _, s = timed(lambda: generate(model, tok, prompts, batch_size=batch_size, answered=rule, **settings))
    n = len(prompts)
    return {"batch_size": batch_size, "questions": n, "questions_per_s": {"stop": n / s}}


def main() -> None:
    logs.setup()
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--per-task", type=int, default=4, help="validation questions per task")
    parser.add_argument("--eval-batch", type=int, nargs="*", default=[8, 16])
    parser.add_argument("--signals-batch", type=int, nargs="*", default=[2, 4])
    parser.add_argument("--student-dir", type=Path, help="a saved student (models/base/student of a run)")
    parser.add_argument("--adapter", type=Path, help="an adapter to merge into --student-dir's student")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/decode.json"))
    parser.add_argument(
        "--pipeline-only", action="store_true", help="time only the pipeline's path (batch-size sweeps)"
    )
    args = parser.parse_args()

    raw = yaml.safe_load(Path(args.params).read_text())
    raw["data"]["val_per_task"] = args.per_task
    raw["data"]["train_per_task"] = 1  # the train pool is not needed
    raw["budget"]["queries"] = 1
    params = validate_params(raw)
    questions = make_splits(params.data)["val"]
    tasks = {name: get_task(name, spec) for name, spec in params.data.tasks.items()}
    prompts = [render(params.teacher.prompt_template, question=ex.question) for ex in questions]
    readers = [tasks[ex.task] for ex in questions]
    if args.student_dir:
        model, tok = load_student(args.student_dir, args.adapter)
    else:
        model, tok = load_source(params.student.model)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    bf16 = precision.student(params.student.bf16).bf16
    if bf16:  # as taloop.student.generation.complete runs the student (the same logits, faster)
        store_for_autocast(model, torch.bfloat16)
    sig = params.signals
    settings = {
        "eval": {"max_new_tokens": params.eval.max_new_tokens, "bf16": bf16},
        "signals": {
            "max_new_tokens": sig.max_new_tokens, "num_samples": sig.samples, "temperature": sig.temperature,
            "seed": sig.seed, "bf16": bf16,
        },
    }  # fmt: skip
    # Untimed: the first calls of a process pay one-off costs (kernel selection, allocations).
    reference(model, tok, prompts[:1], max_new_tokens=2, batch_size=1, bf16=bf16)
    generate(model, tok, prompts[:1], max_new_tokens=2, batch_size=1, bf16=bf16)
    batches = {"eval": args.eval_batch, "signals": args.signals_batch}
    results: dict[str, Any] = {"student": str(args.student_dir or params.student.model), "bf16": bf16}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    for mode, sizes in batches.items():
        results[mode] = []
        for b in sizes:
            # Written and logged as each comes: a run cut short keeps what it measured.
            if args.pipeline_only:
                r = pipeline_speed(model, tok, prompts, readers, b, settings[mode])
                results[mode].append(r)
                args.out.write_text(json.dumps(results, indent=2) + "\n")
                log.info("%s batch %d: %.2f questions/s", mode, b, r["questions_per_s"]["stop"])
                continue
            r = compare(model, tok, prompts, readers, b, settings[mode])
            results[mode].append(r)
            args.out.write_text(json.dumps(results, indent=2) + "\n")
            speed = r["questions_per_s"]
            log.info(
                "%s batch %d: q/s old %.2f, loop %.2f, stop %.2f; loop==old %d/%d, stop==cut(old) %d/%d "
                "(%d cut short), answers equal %d/%d, strict %d/%d, with the task's rule %d/%d",
                mode, r["batch_size"], speed["old"], speed["loop"], speed["stop"], r["loop_texts_equal_old"],
                r["questions"], r["stop_texts_equal_old_cut"], r["samples"], r["texts_cut_short"],
                r["answers_equal"], r["samples"], r["strict_answers_equal"], r["samples"],
                r["task_rule_answers_equal"], r["samples"],
            )  # fmt: skip


if __name__ == "__main__":
    main()
