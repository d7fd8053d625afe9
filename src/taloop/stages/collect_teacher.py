"""collect_teacher: buy (or replay from cache) the teacher replies the budget allows."""

from __future__ import annotations

import logging

from taloop import logs, paths
from taloop.config import load_params
from taloop.io import read_jsonl, write_json, write_jsonl
from taloop.manifest import build_manifest
from taloop.tasks.base import Example
from taloop.tasks.registry import get_task
from taloop.teachers.base import TeacherFatalError
from taloop.teachers.cache import ReplyCache, default_cache_dir
from taloop.teachers.collect import CacheMissError, collect, teacher_metrics
from taloop.teachers.estimate import OverBudgetError
from taloop.teachers.factory import make_teacher

log = logging.getLogger(__name__)


def main() -> None:
    logs.setup()
    params = load_params(paths.PARAMS)
    pool = [Example.from_row(r) for r in read_jsonl(paths.split_file("train"))]
    tasks = {name: get_task(name, spec) for name, spec in params.data.tasks.items()}
    cache = ReplyCache(default_cache_dir())
    try:
        result, ledger = collect(params, pool, make_teacher(params), cache, tasks)
    except (TeacherFatalError, OverBudgetError, CacheMissError) as err:
        raise SystemExit(f"collect_teacher: {err}") from None
    metrics = teacher_metrics(params, result, ledger)
    if result.failed:
        for line in result.failed[:20]:
            log.error("failed: %s", line)
        raise SystemExit(
            f"collect_teacher: {len(result.failed)} replies failed after "
            f"{params.teacher.max_retries} retries each; the {metrics['queries_sent']} bought this run "
            f"are cached (USD {metrics['usd_spent']:.4f}), so a rerun buys only the failed ones"
        )
    write_jsonl(paths.RESPONSES, result.rows)
    write_json(paths.TEACHER_METRICS, metrics)
    seeds = {"teacher.seed": params.teacher.seed, "budget.order_seed": params.budget.order_seed}
    write_json(paths.TEACHER_DIR / "manifest.json", build_manifest("collect_teacher", seeds))
    log.info(
        "%d replies: %d bought (USD %.4f), %d from cache, %d unparsable",
        metrics["replies"], metrics["queries_sent"], metrics["usd_spent"], metrics["cache_hits"],
        metrics["unparsable"],
    )  # fmt: skip


if __name__ == "__main__":
    main()
