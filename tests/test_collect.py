from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

import pytest

from taloop.params import validate_params
from taloop.params.schema import Params
from taloop.tasks.base import Example
from taloop.tasks.registry import get_task
from taloop.tasks.splits import make_splits
from taloop.teachers import cache as cache_module
from taloop.teachers.base import TeacherReply, TeacherRequest, price_usd
from taloop.teachers.budget import BudgetExhausted, Ledger
from taloop.teachers.cache import ReplyCache, cache_key, repo_root
from taloop.teachers.collect import CacheMissError, collect, plan_queries, teacher_metrics
from taloop.teachers.estimate import OverBudgetError
from taloop.teachers.factory import make_teacher


def _params(raw_params: dict[str, Any], **budget: Any) -> Params:
    raw_params["data"].update(train_per_task=12, val_per_task=2, test_per_task=2)
    raw_params["budget"].update(queries=8, **budget)
    return validate_params(raw_params)


@pytest.fixture
def setup(raw_params: dict[str, Any], isolated_cache: Path):
    def build(**overrides: Any) -> tuple[Params, list[Example], dict, ReplyCache]:
        teacher_overrides = overrides.pop("teacher", {})
        raw_params["teacher"].update(teacher_overrides)
        params = _params(raw_params, **overrides)
        pool = make_splits(params.data)["train"]
        tasks = {n: get_task(n, s) for n, s in params.data.tasks.items()}
        return params, pool, tasks, ReplyCache(isolated_cache)

    return build


def _run(params: Params, pool: list[Example], tasks: dict, cache: ReplyCache, teacher: Any = None):
    teacher = teacher or make_teacher(params)
    result, ledger = collect(params, plan_queries(params, pool, teacher), teacher, cache, tasks)
    return result, teacher_metrics(params, result, ledger)


def test_second_run_is_free_and_identical(setup) -> None:
    params, pool, tasks, cache = setup()
    first, m1 = _run(params, pool, tasks, cache)
    second, m2 = _run(params, pool, tasks, cache)
    assert (m1["queries_sent"], m1["cache_hits"]) == (8, 0)
    assert (m2["queries_sent"], m2["cache_hits"], m2["usd_spent"]) == (8 - 8, 8, 0)
    assert m1["usd_spent"] > 0
    assert first.rows == second.rows
    assert {r["task"] for r in first.rows} == set(tasks)


def test_raising_the_budget_buys_only_the_difference(setup, raw_params: dict[str, Any]) -> None:
    params, pool, tasks, cache = setup()
    small, _ = _run(params, pool, tasks, cache)
    bigger = params.model_copy(update={"budget": params.budget.model_copy(update={"queries": 20})})
    big, metrics = _run(bigger, pool, tasks, cache)
    assert (metrics["cache_hits"], metrics["queries_sent"]) == (8, 12)
    assert [r["id"] for r in big.rows[:8]] == [r["id"] for r in small.rows]


def test_cache_key_covers_everything_that_shapes_a_reply() -> None:
    base = ("openai", "gpt-x", "prompt", {"temperature": 0.0}, 0)
    key = cache_key(*base)
    assert key == cache_key(*base)
    variants = [
        ("anthropic", *base[1:]),
        (base[0], "gpt-y", *base[2:]),
        (*base[:2], "prompt!", *base[3:]),
        (*base[:3], {"temperature": 0.7}, 0),
        (*base[:4], 1),  # K samples of one prompt are K entries
    ]
    assert len({cache_key(*v) for v in variants} | {key}) == len(variants) + 1


def test_cache_only_names_missing_items_then_replays_for_free(setup) -> None:
    params, pool, tasks, cache = setup(teacher={"cache_only": True})
    with pytest.raises(
        CacheMissError, match=r"8 of 8 replies are not cached \(example#sample: [0-9a-f]{16}#0"
    ):
        _run(params, pool, tasks, cache)
    buying = params.model_copy(update={"teacher": params.teacher.model_copy(update={"cache_only": False})})
    _run(buying, pool, tasks, cache)
    _, metrics = _run(params, pool, tasks, cache)
    assert (metrics["queries_sent"], metrics["usd_spent"], metrics["replies"]) == (0, 0, 8)


def test_usd_budget_is_never_exceeded(setup) -> None:
    # Short replies (max_tokens 64) keep the reserved upper bound close to the real cost.
    params, pool, tasks, cache = setup(teacher={"max_tokens": 64})
    teacher = make_teacher(params)
    bound = max(
        price_usd(teacher.count_tokens(q.request.prompt), 64, params.teacher.price)
        for q in plan_queries(params, pool, teacher)
    )
    capped = params.model_copy(
        update={"budget": params.budget.model_copy(update={"usd": 2.5 * bound, "stop_at_budget": True})}
    )
    result, metrics = _run(capped, pool, tasks, cache)
    assert 0 < metrics["usd_spent"] <= 2.5 * bound
    assert metrics["budget"]["exhausted"] and metrics["budget"]["unbought"] == 8 - metrics["queries_sent"] > 0
    assert len(result.rows) == metrics["queries_sent"]


def test_replies_another_collection_is_buying_are_waited_for_and_what_it_leaves_is_bought(
    setup, isolated_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cache_module, "CLAIM_POLL_S", 0.01)
    params, pool, tasks, cache = setup()
    keys = [q.key for q in plan_queries(params, pool, make_teacher(params))]
    other = ReplyCache(isolated_cache)  # a collection running at once, buying the first 4
    assert asyncio.run(other.claim(keys[:4])) == keys[:4]
    bought = TeacherReply("bought by the other collection", 1, 1)

    async def buy_two_then_end() -> None:
        await asyncio.gather(*(other.put(key, bought, {}) for key in keys[:2]))
        await other.aclose()

    ends = threading.Timer(0.2, lambda: asyncio.run(buy_two_then_end()))
    ends.start()
    try:
        result, metrics = _run(params, pool, tasks, cache)
    finally:
        ends.join()
    assert (metrics["cache_hits"], metrics["queries_sent"], metrics["replies"]) == (2, 6, 8)
    assert [r["rationale"] for r in result.rows[:2]] == [bought.text] * 2


class _Crashing:
    """Delegates to a real teacher, then dies mid-collection like a killed process."""

    def __init__(self, inner: Any, after: int) -> None:
        self.inner, self.after, self.calls = inner, after, 0
        self.backend, self.model = inner.backend, inner.model

    def settings(self) -> dict[str, Any]:
        return self.inner.settings()

    def count_tokens(self, text: str) -> int:
        return self.inner.count_tokens(text)

    async def aquery(self, request: TeacherRequest) -> TeacherReply:
        self.calls += 1
        if self.calls > self.after:
            raise KeyboardInterrupt("killed")
        return await self.inner.aquery(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


def test_a_usd_cap_below_the_upper_bound_refuses_to_start(setup) -> None:
    params, pool, tasks, cache = setup(usd=0.0001)
    teacher = _Crashing(make_teacher(params), after=0)  # any request would raise
    with pytest.raises(OverBudgetError, match=r"budget.usd: 8 replies may cost up to USD .*stop_at_budget"):
        _run(params, pool, tasks, cache, teacher)
    assert teacher.calls == 0


def test_a_crash_loses_nothing_already_bought(setup) -> None:
    params, pool, tasks, cache = setup(teacher={"concurrency": 1})
    with pytest.raises(KeyboardInterrupt):
        _run(params, pool, tasks, cache, _Crashing(make_teacher(params), after=5))
    _, metrics = _run(params, pool, tasks, cache)
    assert (metrics["cache_hits"], metrics["queries_sent"]) == (5, 3)


def test_unparsable_replies_are_kept_and_counted(setup) -> None:
    params, pool, tasks, cache = setup(teacher={"max_tokens": 4})
    result, metrics = _run(params, pool, tasks, cache)
    assert metrics["replies"] == len(result.rows) == 8
    unparsed = [r for r in result.rows if not r["parsed"]]
    assert metrics["unparsable"] == len(unparsed) > 0
    assert all(r["answer"] is None and not r["correct"] for r in unparsed)


def test_ledger_reserves_before_and_settles_after() -> None:
    ledger = Ledger(max_queries=2, max_usd=1.0)
    first = ledger.reserve(0.6)
    with pytest.raises(BudgetExhausted, match="USD budget"):
        ledger.reserve(0.6)  # would overshoot while the first call is in flight
    ledger.settle(first, 0.3)
    second = ledger.reserve(0.6)
    with pytest.raises(BudgetExhausted, match="query budget"):
        ledger.reserve(0.01)
    ledger.release(second)
    assert (ledger.queries, round(ledger.usd, 6)) == (1, 0.3)
    with pytest.raises(ValueError, match="reserved bound"):
        ledger.settle(ledger.reserve(0.1), 0.2)


def test_queued_experiments_share_the_repository_cache(tmp_path: Path) -> None:
    (tmp_path / ".dvc").mkdir()
    temp_workspace = tmp_path / ".dvc" / "tmp" / "exps" / "tmpabc123"
    # a DVC temp workspace is a checkout of its own, with its own .dvc and .git: only its
    # place under .dvc/tmp/exps tells it from the user's repository
    (temp_workspace / ".dvc").mkdir(parents=True)
    (temp_workspace / ".git").write_text("gitdir: ../../../../.git\n")
    assert repo_root(temp_workspace) == tmp_path
    assert repo_root(temp_workspace / "src") == tmp_path
    assert repo_root(tmp_path / ".dvc") == tmp_path
    # a git repository without DVC (yet) is a root too
    plain = tmp_path / "elsewhere" / "plain"
    (plain / ".git").mkdir(parents=True)
    (plain / "sub").mkdir()
    assert repo_root(plain / "sub") == plain


def test_a_local_transformers_teacher_buys_through_the_same_path(setup) -> None:
    params, pool, tasks, cache = setup(teacher={"backend": "hf", "model": "tiny-random", "max_tokens": 8})
    result, metrics = _run(params, pool, tasks, cache)
    assert metrics["replies"] == metrics["queries_sent"] == 8
    assert all(r["backend"] == "hf" and r["model"] == "tiny-random" for r in result.rows)
    assert all(0 < r["output_tokens"] <= 8 and r["input_tokens"] > 0 for r in result.rows)
    _, again = _run(params, pool, tasks, cache)
    assert (again["cache_hits"], again["queries_sent"]) == (8, 0)
