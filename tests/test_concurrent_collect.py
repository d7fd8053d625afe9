"""Collections running at once in separate processes on one cache (`dvc queue start -j 2`)
buy each reply once, one by one or as a batch, and each ends with every reply."""

from __future__ import annotations

import multiprocessing
import os
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Barrier
from pathlib import Path
from typing import Any

import pytest

from taloop.params.schema import Params
from taloop.tasks.registry import get_task
from taloop.tasks.splits import make_splits
from taloop.teachers.cache import ReplyCache
from taloop.teachers.collect import collect, plan_queries
from taloop.teachers.factory import make_teacher

from .fake_api import FAKE_KEY, FakeAPI, Faults, api_params

QUERIES = 40


def _collect_in_process(params: Params, cache_dir: Path, start: Barrier, out: Queue) -> None:
    """One queued experiment: plans, waits for the other to be ready too, then collects."""
    os.environ["OPENAI_API_KEY"] = FAKE_KEY
    teacher = make_teacher(params)
    planned = plan_queries(params, make_splits(params.data)["train"], teacher)
    tasks = {n: get_task(n, s) for n, s in params.data.tasks.items()}
    cache = ReplyCache(cache_dir)
    start.wait()
    result, ledger = collect(params, planned, teacher, cache, tasks)
    out.put({"rows": len(result.rows), "bought": ledger.queries, "cache_hits": result.cache_hits})


def _run_two_at_once(params: Params, cache_dir: Path) -> list[dict[str, Any]]:
    spawn = multiprocessing.get_context("spawn")
    start, out = spawn.Barrier(2), spawn.Queue()
    procs = [
        spawn.Process(target=_collect_in_process, args=(params, cache_dir, start, out)) for _ in range(2)
    ]
    for proc in procs:
        proc.start()
    try:
        results = [out.get(timeout=60) for _ in procs]
    finally:
        for proc in procs:
            proc.join(timeout=10)
    assert [proc.exitcode for proc in procs] == [0, 0]
    return results


@pytest.mark.parametrize(
    ("batch_api", "faults"),
    [
        # Replies take 50 ms, so each collection is still buying when the other starts.
        (False, Faults(latency_s=0.05)),
        # The batch stays in progress for a few polls, so the other collection starts meanwhile.
        (True, Faults(batch_polls=5)),
    ],
    ids=["one_by_one", "batch"],
)
def test_two_collections_at_once_buy_each_reply_once(
    batch_api: bool, faults: Faults, raw_params: dict[str, Any], isolated_cache: Path
) -> None:
    with FakeAPI(faults) as api:
        params = api_params(raw_params, api, "openai", QUERIES, batch_api=batch_api)
        results = _run_two_at_once(params, isolated_cache)
    assert len(api.ledger.billed) == QUERIES and set(api.ledger.billed.values()) == {1}
    assert api.ledger.batches_created == (1 if batch_api else 0)
    assert [r["rows"] for r in results] == [QUERIES, QUERIES]
    # what one bought, the other took from the cache
    assert sorted(r["bought"] for r in results) == [0, QUERIES]
    assert sorted(r["cache_hits"] for r in results) == [0, QUERIES]
