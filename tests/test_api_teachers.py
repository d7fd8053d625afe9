"""The OpenAI and Anthropic teachers through their official clients against a local server
speaking their wire formats, with injected faults: nothing lost, nothing bought twice,
never over budget, retries bounded."""

from __future__ import annotations

import asyncio
import gc
from pathlib import Path
from typing import Any

import pytest

from taloop.params import validate_params
from taloop.params.schema import Params
from taloop.tasks.registry import get_task
from taloop.tasks.splits import make_splits
from taloop.teachers.base import TeacherFatalError, TeacherRequest, price_usd
from taloop.teachers.batch import BatchState
from taloop.teachers.cache import ReplyCache
from taloop.teachers.collect import collect, plan_queries, teacher_metrics
from taloop.teachers.factory import make_teacher
from taloop.teachers.limits import RateLimiter

from .fake_api import FAKE_KEY, KEY_ENV, FakeAPI, Faults, api_params


def _collect(params: Params, cache_dir: Path) -> tuple[Any, dict[str, Any], ReplyCache]:
    pool = make_splits(params.data)["train"]
    tasks = {n: get_task(n, s) for n, s in params.data.tasks.items()}
    cache = ReplyCache(cache_dir)
    teacher = make_teacher(params)
    result, ledger = collect(params, plan_queries(params, pool, teacher), teacher, cache, tasks)
    return result, teacher_metrics(params, result, ledger), cache


@pytest.mark.parametrize(
    ("backend", "queries", "http_client"),
    [("openai", 300, "aiohttp"), ("openai", 120, "httpx"), ("anthropic", 120, "aiohttp")],
)
def test_faults_leave_every_item_answered_once_and_billed_once(
    backend: str,
    queries: int,
    http_client: str,
    raw_params: dict[str, Any],
    isolated_cache: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setenv(KEY_ENV[backend], FAKE_KEY)
    # A legitimately slow reply must not time out (a retry would bill it twice): generous
    # client timeout, and injected hangs longer than it.
    with FakeAPI(Faults(rate=0.3, hang_s=3.0)) as api:
        params = api_params(raw_params, api, backend, queries, max_tokens=64, http_client=http_client)
        bound = queries * price_usd(600, 64, params.teacher.price)  # prompts here are far below 600 bytes
        params = params.model_copy(update={"budget": params.budget.model_copy(update={"usd": bound})})
        result, metrics, _ = _collect(params, isolated_cache)
    gc.collect()  # an HTTP session left open would be reported as it is collected
    assert "Unclosed" not in caplog.text
    assert metrics["replies"] == len(result.rows) == queries and not result.failed
    keys = {q.key for q in plan_queries(params, make_splits(params.data)["train"], make_teacher(params))}
    cache = ReplyCache(isolated_cache)  # as a rerun would read it from disk
    assert len(keys) == queries and all(k in cache for k in keys)
    assert len(api.ledger.billed) == queries and set(api.ledger.billed.values()) == {1}
    # every kind of fault was injected, and retries stayed within their bound
    assert set(api.ledger.faults) >= {"429", "500", "timeout", "malformed", "drop"}
    assert queries < api.ledger.requests <= queries * (1 + params.teacher.max_retries)
    billed = price_usd(api.ledger.input_tokens, api.ledger.output_tokens, params.teacher.price)
    assert metrics["usd_spent"] == pytest.approx(billed, abs=1e-6) and metrics["usd_spent"] <= bound
    assert api.ledger.auth_headers == {FAKE_KEY}


def test_items_that_finally_fail_are_reported_and_the_rest_stay_bought(
    raw_params: dict[str, Any], isolated_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", FAKE_KEY)
    with FakeAPI(Faults(rate=0.5, kinds=("500",), max_per_item=99)) as api:
        params = api_params(raw_params, api, "openai", 40, max_retries=1)
        result, metrics, _ = _collect(params, isolated_cache)
        assert result.failed and len(result.rows) == 40 - len(result.failed)
        assert metrics["failed"] == len(result.failed) and all(
            ": InternalServerError" in f for f in result.failed
        )
        assert api.ledger.requests <= 40 * 2
        # a rerun without faults buys only what failed
        api.faults.rate = 0.0
        rerun, metrics, _ = _collect(params, isolated_cache)
    assert (metrics["cache_hits"], metrics["queries_sent"]) == (40 - len(result.failed), len(result.failed))
    assert len(rerun.rows) == 40 and set(api.ledger.billed.values()) == {1}


def test_a_missing_key_fails_before_anything_is_sent(raw_params: dict[str, Any], monkeypatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.setenv("MY_TEACHER_KEY", "")
    with FakeAPI() as api:
        params = api_params(raw_params, api, "openai", 8)
        with pytest.raises(TeacherFatalError, match="environment variable OPENAI_API_KEY is not set"):
            make_teacher(params)
        raw_params["teacher"]["api_key_env"] = "MY_TEACHER_KEY"
        with pytest.raises(TeacherFatalError, match="MY_TEACHER_KEY"):
            make_teacher(validate_params(raw_params))
    assert api.ledger.requests == 0


def _stop_while_polling(teacher: Any, requests: list[TeacherRequest], state: BatchState) -> None:
    """A run stopped while its batch is still in progress: stopped as soon as the batch id is
    on disk (a fixed delay instead was flaky on a loaded machine, stopping before submission)."""

    async def stopped_while_polling() -> None:
        run = asyncio.ensure_future(teacher.run_batch(requests, state))
        try:
            async with asyncio.timeout(60):
                while state.load() is None and not run.done():
                    await asyncio.sleep(0.02)
            assert not run.done(), "the batch finished instead of polling"
            run.cancel()
            with pytest.raises(asyncio.CancelledError):
                await run
        finally:
            await teacher.aclose()

    asyncio.run(stopped_while_polling())


@pytest.mark.parametrize("backend", ["openai", "anthropic"])
def test_batch_api_counts_failed_and_expired_rows_and_resumes_instead_of_resubmitting(
    backend: str, raw_params: dict[str, Any], isolated_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(KEY_ENV[backend], FAKE_KEY)
    faults = Faults(batch_failed_rows=0.1, batch_expired_rows=0.1, batch_polls=1000)
    with FakeAPI(faults) as api:
        params = api_params(raw_params, api, backend, 60, batch_api=True)
        teacher = make_teacher(params)
        requests = [q.request for q in plan_queries(params, make_splits(params.data)["train"], teacher)]
        state = BatchState(isolated_cache, backend, [r.key for r in requests])
        _stop_while_polling(teacher, requests, state)
        assert state.load() is not None and api.ledger.batches_created == 1
        faults.batch_polls = 0
        result, metrics, _ = _collect(params, isolated_cache)
    assert api.ledger.batches_created == 1  # resumed polling, not resubmitted
    assert result.failed and len(result.rows) + len(result.failed) == 60
    assert metrics["failed"] == len(result.failed)
    assert any("expired" in f or "no result" in f for f in result.failed)
    assert len(api.ledger.billed) == len(result.rows) and set(api.ledger.billed.values()) == {1}
    batch_price = price_usd(
        api.ledger.input_tokens, api.ledger.output_tokens, params.teacher.price, batch=True
    )
    assert metrics["usd_spent"] == pytest.approx(batch_price, abs=1e-6)
    # results cached: the batch is done with, as a rerun reads the state from disk
    assert BatchState(isolated_cache, backend, state.keys).load() is None


def test_a_batch_left_by_a_stopped_run_is_resumed_by_a_run_that_plans_part_of_it(
    raw_params: dict[str, Any], isolated_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", FAKE_KEY)
    faults = Faults(batch_polls=1000)
    with FakeAPI(faults) as api:
        params = api_params(raw_params, api, "openai", 60, batch_api=True)
        teacher = make_teacher(params)
        requests = [q.request for q in plan_queries(params, make_splits(params.data)["train"], teacher)]
        keys = [r.key for r in requests]
        _stop_while_polling(teacher, requests, BatchState(isolated_cache, "openai", keys))
        faults.batch_polls = 0
        # the first 20 of the same purchase order: another set of keys than the batch's
        fewer = params.model_copy(update={"budget": params.budget.model_copy(update={"queries": 20})})
        result, metrics, _ = _collect(fewer, isolated_cache)
    assert api.ledger.batches_created == 1  # found by its keys, not submitted again for the 20
    assert len(result.rows) == metrics["queries_sent"] == 20
    cache = ReplyCache(isolated_cache)  # the other 40 replies of the batch are paid for: kept too
    assert all(key in cache for key in keys)
    assert len(api.ledger.billed) == 60 and set(api.ledger.billed.values()) == {1}


def test_rate_limiter_holds_requests_past_the_limit() -> None:
    async def scenario() -> None:
        limiter = RateLimiter(requests_per_minute=3, tokens_per_minute=None)
        for _ in range(3):
            await asyncio.wait_for(limiter.acquire(10), timeout=0.1)
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(limiter.acquire(10), timeout=0.2)
        tokens = RateLimiter(requests_per_minute=None, tokens_per_minute=100)
        await asyncio.wait_for(tokens.acquire(60), timeout=0.1)
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(tokens.acquire(60), timeout=0.2)

    asyncio.run(scenario())
