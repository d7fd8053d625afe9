"""calibrate_signals: buy teacher replies for validation questions, score them and the
warmed-up student's outputs (sample_student's) with every TA measure, and choose from
validation AUCs the TA measure, each signal's inclusion and sign (see calibration.py)."""

from __future__ import annotations

import logging

from taloop.core import logs, paths
from taloop.core.io import read_json, write_json, write_jsonl
from taloop.core.profiling import phase
from taloop.method.calibration import decide
from taloop.method.sampling import calibration_limit, calibration_questions, read_outputs
from taloop.method.scoring import score
from taloop.params import load_params
from taloop.stages._run import run
from taloop.tasks import data
from taloop.teachers.budget import Ledger
from taloop.teachers.cache import ReplyCache, default_cache_dir
from taloop.teachers.collect import collect_or_exit, plan_for, teacher_or_exit

log = logging.getLogger(__name__)


def main() -> None:
    logs.setup()
    params = load_params(paths.PARAMS)
    teacher = teacher_or_exit("calibrate_signals", params)
    val, tasks = data.examples("val"), data.tasks(params)
    limit = calibration_limit(params, len(val))
    planned = plan_for(params, teacher, calibration_questions(params, val), limit)
    usd_cap = params.budget.usd
    if usd_cap is not None:  # one cap over every purchase of the run
        usd_cap -= read_json(paths.TEACHER_METRICS)["usd_spent"]
        usd_cap -= read_json(paths.ACQUISITION_METRICS).get("teacher", {}).get("usd_spent", 0.0)
    cache = ReplyCache(default_cache_dir())
    with phase("teacher_collect"):
        result, teacher_metrics = collect_or_exit(
            "calibrate_signals", params, planned, teacher, cache, tasks, Ledger(len(planned), usd_cap)
        )
    students = {"": read_outputs(paths.SAMPLES_CALIBRATION)}
    rows = score(params, paths.BASE_TA, {"stage2": result.rows}, {ex.id: ex for ex in val}, students)
    tokens = {(r["id"], r["sample"]): r["output_tokens"] for r in result.rows}
    rows = [{**r, "teacher_tokens": tokens[(r["id"], r["sample"])]} for r in rows]
    with phase("calibrate_decide"):
        decision = decide(rows, params)
    with phase("write_outputs"):
        write_jsonl(paths.CALIBRATION_ROWS, rows)
        write_json(paths.CALIBRATION, {**decision, "teacher": teacher_metrics})
    chosen = decision["chosen"]
    log.info("calibration on %d validation replies: measure %s, signs %s",
             len(rows), chosen["measure"], chosen["signs"])  # fmt: skip


if __name__ == "__main__":
    run(main)
