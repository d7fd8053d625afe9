"""How well can the TA flag wrong teacher replies? Every TA measure's ROC-AUC per task on a
large validation sample of simulated teacher replies (free), with bootstrap CIs.

    python benchmarks/ta_probe.py --ta-dir models/base/ta [--per-task 100] [--error-rate 0.5]
        [--judge] [--out benchmarks/results/ta_probe.json]

The validation split is enlarged to ``--per-task`` items (the test split is drawn first and
does not move), so nothing here looks at test. A run's own stage-2 replies number 18 per
task with about 3 wrong: too few to tell an AUC of 0.7 from 0.5. A higher error rate than
the default gives more wrong replies per item scored; the AUC does not depend on the share.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import yaml

from taloop.core import logs
from taloop.core.metrics import grouped_flag_auc
from taloop.method.scoring import ta_scores
from taloop.params import validate_params
from taloop.student.models import load_saved
from taloop.tasks.prompts import render
from taloop.tasks.registry import get_task
from taloop.tasks.splits import make_splits
from taloop.teachers.base import TeacherRequest
from taloop.teachers.simulated import SimulatedTeacher

log = logging.getLogger("ta_probe")


def main() -> None:
    logs.setup()
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--ta-dir", type=Path, required=True, help="a saved TA (models/base/ta of a run)")
    parser.add_argument("--per-task", type=int, default=100)
    parser.add_argument("--error-rate", type=float, default=0.5)
    parser.add_argument("--judge", action="store_true", help="also ask the TA as a judge (one more pass)")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/ta_probe.json"))
    args = parser.parse_args()

    raw = yaml.safe_load(Path(args.params).read_text())
    raw["data"]["val_per_task"] = args.per_task
    # The train pool is not needed; small generators (leg_counting) have few distinct items.
    raw["data"]["train_per_task"] = 1
    raw["budget"]["queries"] = 1
    raw["teacher"]["error_rate"] = args.error_rate
    params = validate_params(raw)
    val = make_splits(params.data)["val"]
    task_configs = {name: spec.config for name, spec in params.data.tasks.items()}
    teacher = SimulatedTeacher(params.teacher, task_configs)
    tasks = {name: get_task(name, spec) for name, spec in params.data.tasks.items()}
    rows = []
    for ex in val:
        prompt = render(params.teacher.prompt_template, question=ex.question)
        reply = teacher.query(TeacherRequest(ex, prompt, 0))
        rows.append({
            "task": ex.task, "question": ex.question, "rationale": reply.text,
            "correct": tasks[ex.task].is_correct(tasks[ex.task].extract(reply.text), ex),
            "kind": reply.meta["simulated_error"],
        })  # fmt: skip
    scores = ta_scores(
        params,
        load_saved(args.ta_dir),
        [r["question"] for r in rows],
        [r["rationale"] for r in rows],
        "teacher",
        judge=args.judge,
    )
    wrong = [not r["correct"] for r in rows]
    groups = [r["task"] for r in rows]
    result = {
        "split": "val",
        "items_per_task": args.per_task,
        "error_rate": args.error_rate,
        "wrong_per_task": {t: sum(w for w, g in zip(wrong, groups, strict=True) if g == t) for t in tasks},
        "auc": {m: grouped_flag_auc(wrong, scores[m], groups, seed=0) for m in scores},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    for m, a in result["auc"].items():
        per_task = ", ".join(
            f"{t} {g['auc']:.2f} ({g['ci_low']:.2f}-{g['ci_high']:.2f})"
            for t, g in a["per_group"].items()
            if g["auc"] is not None
        )
        log.info("%-15s pooled %.2f (%.2f-%.2f); %s", m, a["auc"], a["ci_low"], a["ci_high"], per_task)


if __name__ == "__main__":
    main()
