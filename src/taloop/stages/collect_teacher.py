"""collect_teacher: buy (or replay from cache) the teacher replies bought up front: the
whole budget, or with `acquisition: active` the warm-up share."""

from __future__ import annotations

from taloop.core import logs, paths
from taloop.core.io import write_json, write_jsonl
from taloop.core.manifest import build_manifest
from taloop.core.profiling import phase
from taloop.method.acquisition import upfront_plan
from taloop.params import load_params
from taloop.stages._run import run
from taloop.tasks import data
from taloop.teachers.cache import ReplyCache, default_cache_dir
from taloop.teachers.collect import check_trainable, collect_or_exit, teacher_or_exit


def main() -> None:
    logs.setup()
    params = load_params(paths.PARAMS)
    teacher = teacher_or_exit("collect_teacher", params)
    planned = upfront_plan(params, data.examples("train"), teacher)
    check_trainable("collect_teacher", params, planned)
    cache = ReplyCache(default_cache_dir())
    with phase("teacher_collect"):
        result, metrics = collect_or_exit(
            "collect_teacher", params, planned, teacher, cache, data.tasks(params)
        )
    with phase("write_outputs"):
        write_jsonl(paths.RESPONSES, result.rows)
        write_json(paths.TEACHER_METRICS, metrics)
        seeds = {"teacher.seed": params.teacher.seed, "budget.order_seed": params.budget.order_seed}
        write_json(paths.TEACHER_DIR / "manifest.json", build_manifest("collect_teacher", seeds))


if __name__ == "__main__":
    run(main)
