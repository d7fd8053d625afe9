"""acquire: with `acquisition: active`, spend the rest of the budget on the unbought
questions the warmed-up student is least sure of; with random acquisition, buy nothing."""

from __future__ import annotations

import logging

from taloop.core import logs, paths
from taloop.core.io import read_json, read_jsonl, write_json, write_jsonl
from taloop.core.profiling import phase
from taloop.method.acquisition import (
    acquisition_metrics,
    candidates,
    choose,
    remaining_quotas,
    sureness_by_question,
)
from taloop.method.scoring import question_signals, ta_measure_name
from taloop.params import load_params
from taloop.stages._run import run
from taloop.tasks import data
from taloop.teachers.budget import Ledger
from taloop.teachers.cache import ReplyCache, default_cache_dir
from taloop.teachers.collect import check_trainable, collect_or_exit, teacher_or_exit

log = logging.getLogger(__name__)


def main() -> None:
    logs.setup()
    params = load_params(paths.PARAMS)
    if params.acquisition.mode == "random":
        with phase("write_outputs"):
            write_jsonl(paths.ACQUIRED, [])
            write_jsonl(paths.ACQUISITION_SCORES, [])
            write_json(paths.ACQUISITION_METRICS, {"mode": "random", "replies": 0})
        return
    teacher = teacher_or_exit("acquire", params)  # a missing key fails here, before minutes of scoring
    pool, tasks = data.examples("train"), data.tasks(params)
    bought = read_jsonl(paths.RESPONSES)
    quotas = remaining_quotas(params, pool, teacher)
    scored = candidates(params, pool, {r["id"] for r in bought}, quotas)
    log.info("scoring %d unbought questions to choose %d replies", len(scored), sum(quotas.values()))
    signals = question_signals(params, paths.BASE_STUDENT, paths.BASE_TA, paths.WARMUP, scored, tasks)
    measure = ta_measure_name(params)
    log.info("sureness: self-consistency and the within-task rank of the TA's %s", measure)
    sure = sureness_by_question(scored, signals, f"ta_student_{measure}")
    planned = choose(params, teacher, scored, sure, quotas)
    check_trainable("acquire", params, planned)
    usd_cap = params.budget.usd
    if usd_cap is not None:  # one cap for both purchases
        usd_cap -= read_json(paths.TEACHER_METRICS)["usd_spent"]
    cache = ReplyCache(default_cache_dir())
    with phase("teacher_collect"):
        result, metrics = collect_or_exit(
            "acquire", params, planned, teacher, cache, tasks, Ledger(len(planned), usd_cap)
        )
    rows = [{**row, "acquired": "active", "sureness": sure[row["id"]]} for row in result.rows]
    chosen = {r["id"] for r in rows}
    with phase("write_outputs"):
        write_jsonl(paths.ACQUIRED, rows)
        write_jsonl(
            paths.ACQUISITION_SCORES,
            [{"id": ex.id, "task": ex.task, **signals[ex.id], "sureness": sure[ex.id],
              "chosen": ex.id in chosen} for ex in scored],
        )  # fmt: skip
        write_json(
            paths.ACQUISITION_METRICS,
            {"mode": "active", **acquisition_metrics(signals, sure, rows), "teacher": metrics},
        )


if __name__ == "__main__":
    run(main)
