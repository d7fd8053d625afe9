"""Calibrate task difficulty: accuracy of the base and the full-budget `ft` student on the
validation split (never test), with stage timings.

    python benchmarks/calibrate.py [params.yaml] [--set budget.queries=160 ...] [--out FILE]

Used to choose each task's generator settings so the default student lands between 20% and
80% after ft; results are printed as JSON (and written to --out).
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from taloop.core import logs
from taloop.method.schedule import epoch_steps, settings, to_example
from taloop.params import validate_params
from taloop.student.evaluation import predict
from taloop.student.models import materialize
from taloop.student.training import train_lora
from taloop.tasks.prompts import render
from taloop.tasks.registry import get_task
from taloop.tasks.splits import make_splits
from taloop.teachers.cache import ReplyCache
from taloop.teachers.collect import collect, plan_queries
from taloop.teachers.factory import make_teacher

log = logging.getLogger("calibrate")


def _override(raw: dict[str, Any], assignment: str) -> None:
    key, _, value = assignment.partition("=")
    *parents, last = key.split(".")
    node = raw
    for part in parents:
        node = node.setdefault(part, {})
    node[last] = yaml.safe_load(value)


def _accuracy(rows: list[dict[str, Any]]) -> dict[str, float]:
    per_task: dict[str, list[bool]] = {}
    for r in rows:
        per_task.setdefault(r["task"], []).append(r["correct"])
    out = {t: sum(v) / len(v) for t, v in sorted(per_task.items())}
    out["mean"] = sum(r["correct"] for r in rows) / len(rows)
    return out


def main() -> None:
    logs.setup()
    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=formatter)
    parser.add_argument("params", nargs="?", default="params.yaml")
    parser.add_argument("--set", action="append", default=[], help="key.path=value override")
    parser.add_argument("--work", default=str(Path(tempfile.gettempdir()) / "taloop-calibrate"))
    parser.add_argument("--skip-base", action="store_true", help="do not evaluate the untrained student")
    parser.add_argument("--out", help="also write the JSON result here")
    args = parser.parse_args()

    raw = yaml.safe_load(Path(args.params).read_text())
    for assignment in args.set:
        _override(raw, assignment)
    params = validate_params(raw)
    work = Path(args.work)
    timings: dict[str, float] = {}

    start = time.perf_counter()
    splits = make_splits(params.data)
    tasks = {n: get_task(n, s) for n, s in params.data.tasks.items()}
    teacher = make_teacher(params)
    planned = plan_queries(params, splits["train"], teacher)
    result, _ = collect(params, planned, teacher, ReplyCache(work / "cache"), tasks)
    timings["data_and_teacher_s"] = time.perf_counter() - start

    student_dir = work / "models" / params.student.model.replace("/", "_")
    if not student_dir.is_dir():
        start = time.perf_counter()
        materialize(params.student.model, student_dir)
        timings["materialize_s"] = time.perf_counter() - start

    prompts = {ex.id: render(params.teacher.prompt_template, question=ex.question) for ex in splits["train"]}
    examples = [to_example(r, prompts[r["id"]]) for r in result.rows]
    report: dict[str, Any] = {"overrides": args.set, "teacher_replies": len(examples)}
    if not args.skip_base:
        start = time.perf_counter()
        report["base_val_accuracy"] = _accuracy(predict(params, student_dir, None, splits["val"], tasks))
        timings["eval_base_s"] = time.perf_counter() - start

    start = time.perf_counter()
    adapter = work / "ft"
    train_lora(
        student_dir,
        examples,
        settings(params, params.stage2, epoch_steps(len(examples), params.stage2)),
        adapter,
        work / "curves",
    )
    timings["train_ft_s"] = time.perf_counter() - start
    start = time.perf_counter()
    rows = predict(params, student_dir, adapter, splits["val"], tasks)
    timings["eval_ft_s"] = time.perf_counter() - start
    report["ft_val_accuracy"] = _accuracy(rows)
    report["ft_val_unparsable"] = sum(r["answer"] is None for r in rows)
    report["timings"] = timings
    text = json.dumps(report, indent=2)
    log.info("calibration result:\n%s", text)
    if args.out:
        Path(args.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
