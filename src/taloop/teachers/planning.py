"""`taloop estimate`: the collection plan and its cost, from params alone (no key, no
request, no pipeline stage needed)."""

from __future__ import annotations

from taloop.params.schema import Params
from taloop.tasks.splits import make_splits
from taloop.teachers.cache import ReplyCache, default_cache_dir
from taloop.teachers.collect import plan_queries
from taloop.teachers.estimate import estimate, render
from taloop.teachers.factory import make_teacher


def estimate_collection(params: Params) -> str:
    teacher = make_teacher(params, with_key=False)
    pool = make_splits(params.data)["train"]
    planned = plan_queries(params, pool, teacher)
    cache = ReplyCache(default_cache_dir())
    to_buy = [q.request for q in planned if q.key not in cache]
    return render(estimate(params, to_buy, len(planned)), teacher.backend, teacher.model)
