"""Buy teacher replies for a fixed, task-stratified prefix of the train pool.

Every planned reply is looked up in the cache first (free); the rest are bought
concurrently (or as one batch) under the budget ledger, each made durable in the cache
before it counts. Collections running at once on one cache (queued experiments) buy each
reply once: each buys only the replies it claims in the cache and waits for the others'
(see :mod:`taloop.teachers.cache`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from tqdm import tqdm

from taloop.core.errors import UsageError
from taloop.params.schema import Params
from taloop.tasks.base import Example, Task
from taloop.tasks.prompts import render
from taloop.tasks.splits import stratified_order
from taloop.teachers.base import (
    Teacher,
    TeacherCallError,
    TeacherFatalError,
    TeacherReply,
    TeacherRequest,
    price_usd,
)
from taloop.teachers.batch import BatchState, pending_batches
from taloop.teachers.budget import BudgetExhausted, Ledger, Reservation
from taloop.teachers.cache import ReplyCache, cache_key
from taloop.teachers.estimate import OverBudgetError, check_affordable, estimate
from taloop.teachers.estimate import render as render_estimate
from taloop.teachers.factory import make_teacher
from taloop.teachers.limits import RateLimiter

log = logging.getLogger(__name__)


class CacheMissError(UsageError, RuntimeError):
    """Cache-only mode found replies missing; names them so the run can be completed."""


@dataclass(frozen=True)
class PlannedQuery:
    request: TeacherRequest
    key: str


@dataclass
class Collection:
    rows: list[dict[str, Any]] = field(default_factory=list)
    cache_hits: int = 0
    unbought: int = 0
    stop_reason: str | None = None
    failed: list[str] = field(default_factory=list)  # "id#sample: reason" after bounded retries
    buying_seconds: float = 0.0  # wall time of the concurrent requests (not of planning or batches)


def plan_for(params: Params, teacher: Teacher, questions: list[Example], limit: int) -> list[PlannedQuery]:
    """(question, sample) pairs in question order, ``teacher.samples`` per question, ``limit`` at most."""
    cfg = params.teacher
    settings = teacher.settings()
    planned = []
    for ex in questions:
        prompt = render(cfg.prompt_template, question=ex.question)
        tokens = teacher.count_tokens(prompt)
        for sample in range(cfg.samples):
            if len(planned) == limit:
                return planned
            key = cache_key(teacher.backend, teacher.model, prompt, settings, sample)
            planned.append(PlannedQuery(TeacherRequest(ex, prompt, sample, key, tokens), key))
    return planned


def plan_queries(params: Params, pool: list[Example], teacher: Teacher) -> list[PlannedQuery]:
    """The first ``budget.queries`` (question, sample) pairs of the fixed purchase order."""
    return plan_for(params, teacher, stratified_order(pool, params.budget.order_seed), params.budget.queries)


def check_cache_only(planned: list[PlannedQuery], cache: ReplyCache) -> None:
    missing = [q for q in planned if q.key not in cache]
    if missing:
        shown = ", ".join(f"{q.request.example.id}#{q.request.sample}" for q in missing[:10])
        more = f" and {len(missing) - 10} more" if len(missing) > 10 else ""
        raise CacheMissError(
            f"teacher.cache_only is set but {len(missing)} of {len(planned)} replies are not cached "
            f"(example#sample: {shown}{more}); unset teacher.cache_only to buy them"
        )


def check_trainable(stage: str, params: Params, planned: list[PlannedQuery]) -> None:
    """Exit before anything is bought when a planned prompt leaves no room for a reply within
    student.max_length: training would refuse it, so its reply would be money spent for nothing.
    Counted with the student's tokenizer, as training counts."""
    from taloop.student.models import ModelNotFoundError, student_tokenizer
    from taloop.student.training import PromptTooLongError, prompt_ids

    try:
        tok = student_tokenizer(params.student.model)
    except ModelNotFoundError as err:
        raise ModelNotFoundError(f"student.model: {err}") from err
    refused = []
    for request in {q.request.example.id: q.request for q in planned}.values():
        try:
            prompt_ids(tok, request.prompt, params.student.max_length, f"question {request.example.id}")
        except PromptTooLongError as err:
            refused.append(str(err))
    if refused:
        more = f" (and {len(refused) - 3} more)" if len(refused) > 3 else ""
        raise SystemExit(
            f"{stage}: {len(refused)} planned questions cannot be trained on, nothing was bought: "
            f"{'; '.join(refused[:3])}{more}"
        )


def reply_row(params: Params, query: PlannedQuery, reply: TeacherReply, task: Task, teacher: Teacher) -> dict:
    ex = query.request.example
    answer = task.extract(reply.text)
    return {
        "id": ex.id,
        "task": ex.task,
        "sample": query.request.sample,
        "backend": teacher.backend,
        "model": teacher.model,
        "prompt_template": params.teacher.prompt_template,
        "rationale": reply.text,
        "answer": answer,
        "parsed": answer is not None,
        # Diagnostic only: uses gold, which a real run would not have for training data.
        "correct": task.is_correct(answer, ex),
        "input_tokens": reply.input_tokens,
        "output_tokens": reply.output_tokens,
        "usd": price_usd(
            reply.input_tokens, reply.output_tokens, params.teacher.price, batch=params.teacher.batch_api
        ),
        "meta": reply.meta,
    }


def upper_usd(params: Params, request: TeacherRequest) -> float:
    """The most a request can cost: its prompt (or a bound on it) plus max_tokens out."""
    cfg = params.teacher
    return price_usd(request.prompt_tokens, cfg.max_tokens, cfg.price, batch=cfg.batch_api)


def collect(
    params: Params,
    planned: list[PlannedQuery],
    teacher: Teacher,
    cache: ReplyCache,
    tasks: dict[str, Task],
    ledger: Ledger | None = None,
) -> tuple[Collection, Ledger]:
    """Replies for the planned queries, in plan order: cached ones free, the rest bought
    (``teacher.concurrency`` in flight, or one batch) under ``ledger`` (default: the budget)."""
    if ledger is None:
        ledger = Ledger(params.budget.queries, params.budget.usd)
    return asyncio.run(_collect(params, planned, teacher, cache, tasks, ledger))


async def _collect(
    params: Params,
    planned: list[PlannedQuery],
    teacher: Teacher,
    cache: ReplyCache,
    tasks: dict[str, Task],
    ledger: Ledger,
) -> tuple[Collection, Ledger]:
    cfg = params.teacher
    if cfg.cache_only:
        check_cache_only(planned, cache)
    replies: list[TeacherReply | None] = [cache.get(q.key) for q in planned]
    todo = [i for i, reply in enumerate(replies) if reply is None]
    est = estimate(params, [planned[i].request for i in todo], len(planned))
    log.info("%s", render_estimate(est, teacher.backend, teacher.model))
    check_affordable(params, est, ledger.max_usd)
    result = Collection(cache_hits=len(planned) - len(todo))
    buyer = _Buyer(params, teacher, cache, ledger, result, replies)
    try:
        if todo:
            await buyer.buy(planned, todo)
    finally:
        await cache.aclose()
        await teacher.aclose()
    for query, reply in zip(planned, replies, strict=True):
        if reply is not None:
            task = tasks[query.request.example.task]
            result.rows.append(reply_row(params, query, reply, task, teacher))
    return result, ledger


class _Buyer:
    """Buys the planned queries at ``todo`` indices into ``replies``; each reply is durable
    in the cache before its spend is settled, so a kill loses at most what is in flight."""

    def __init__(
        self,
        params: Params,
        teacher: Teacher,
        cache: ReplyCache,
        ledger: Ledger,
        result: Collection,
        replies: list[TeacherReply | None],
    ) -> None:
        self.params, self.teacher, self.cache, self.ledger = params, teacher, cache, ledger
        self.result, self.replies = result, replies
        self.record = {"model": teacher.model, "prompt_template": params.teacher.prompt_template}

    def _stop(self, err: BudgetExhausted, unbought: int) -> None:
        if self.result.stop_reason is None:
            self.result.stop_reason = str(err)
            log.warning("stopped buying: %s", err)
        self.result.unbought += unbought

    async def buy(self, planned: list[PlannedQuery], todo: list[int]) -> None:
        """Buy what no other collection on this cache is buying, wait for what one is, and
        buy what it leaves unbought when it ends or dies."""
        waiting = {planned[i].key: i for i in todo}
        claimed = await self.cache.claim(waiting)
        while True:
            self._take_cached(waiting)
            mine = [waiting.pop(key) for key in claimed]
            if mine:
                await self._buy(planned, mine)
            if not waiting:
                return
            claimed = await self.cache.wait_to_claim(waiting)

    def _take_cached(self, waiting: dict[str, int]) -> None:
        """Take the replies that another collection has bought meanwhile (free for this one)."""
        for key in [key for key in waiting if key in self.cache]:
            self.replies[waiting.pop(key)] = self.cache.get(key)
            self.result.cache_hits += 1

    async def _buy(self, planned: list[PlannedQuery], todo: list[int]) -> None:
        if self.params.teacher.batch_api:
            await self.batch(planned, todo)
        else:
            start = time.perf_counter()
            await self.one_by_one(planned, todo)
            self.result.buying_seconds += time.perf_counter() - start

    async def _keep(self, key: str, reply: TeacherReply) -> float:
        """Make a bought reply durable in the cache; returns its price."""
        cfg = self.params.teacher
        usd = price_usd(reply.input_tokens, reply.output_tokens, cfg.price, batch=cfg.batch_api)
        await self.cache.put(key, reply, {**self.record, "usd": usd})
        return usd

    async def _store(self, i: int, key: str, reply: TeacherReply, reservation: Reservation) -> None:
        self.ledger.settle(reservation, await self._keep(key, reply))
        self.replies[i] = reply

    async def one_by_one(self, planned: list[PlannedQuery], todo: list[int]) -> None:
        cfg = self.params.teacher
        slots = asyncio.Semaphore(cfg.concurrency)
        limiter = RateLimiter(cfg.requests_per_minute, cfg.tokens_per_minute)
        bar = tqdm(total=len(todo), desc="teacher", unit="reply")

        async def buy(i: int) -> None:
            request = planned[i].request
            async with slots:
                if self.result.stop_reason is not None:
                    self.result.unbought += 1
                    return
                try:
                    reservation = self.ledger.reserve(upper_usd(self.params, request))
                except BudgetExhausted as err:
                    self._stop(err, 1)
                    return
                try:
                    await limiter.acquire(request.prompt_tokens + cfg.max_tokens)
                    reply = await self.teacher.aquery(request)
                except TeacherCallError as err:
                    self.ledger.release(reservation)
                    self.result.failed.append(f"{request.example.id}#{request.sample}: {err}")
                    return
                except BaseException:
                    self.ledger.release(reservation)
                    raise
                # Stored while holding the slot, so a kill loses at most `concurrency`
                # replies: those in flight or in the group being written.
                await self._store(i, planned[i].key, reply, reservation)
                bar.update()

        try:
            await asyncio.gather(*(buy(i) for i in todo))
        finally:
            bar.close()

    async def batch(self, planned: list[PlannedQuery], todo: list[int]) -> None:
        """Resume the batches already submitted for any of these queries (by a run that was
        killed or died), then submit one batch for the rest."""
        cache_root, backend = self.cache.root.parent, self.teacher.backend
        left = {planned[i].key: i for i in todo}
        for state in pending_batches(cache_root, backend, set(left)):
            await self._run_batch(planned, [left.pop(key) for key in state.keys if key in left], state)
        # A pending batch that another collection finished with before it was listed here
        # has its replies in the cache by now.
        await self.cache.refresh()
        self._take_cached(left)
        if left:
            await self._run_batch(planned, list(left.values()), None)

    async def _run_batch(
        self, planned: list[PlannedQuery], todo: list[int], state: BatchState | None
    ) -> None:
        """Submit a batch for ``todo`` (or resume ``state``'s) and keep all its replies: also
        those of a resumed batch that this collection did not plan, since they are paid for."""
        reservations: dict[int, Reservation] = {}
        for n, i in enumerate(todo):
            try:
                reservations[i] = self.ledger.reserve(upper_usd(self.params, planned[i].request))
            except BudgetExhausted as err:
                self._stop(err, len(todo) - n)
                break
        requests = [planned[i].request for i in reservations]
        if state is None:
            if not requests:
                return
            state = BatchState(self.cache.root.parent, self.teacher.backend, [r.key for r in requests])
        try:
            outcome = await self.teacher.run_batch(requests, state)  # type: ignore[attr-defined]
        except BaseException:
            for reservation in reservations.values():
                self.ledger.release(reservation)
            raise
        stores = []
        for i, reservation in reservations.items():
            key = planned[i].key
            if key in outcome.replies:
                stores.append(self._store(i, key, outcome.replies[key], reservation))
            else:
                self.ledger.release(reservation)
                request = planned[i].request
                self.result.failed.append(f"{request.example.id}#{request.sample}: {outcome.failed[key]}")
        reserved = {planned[i].key for i in reservations}
        stores.extend(self._keep(k, reply) for k, reply in outcome.replies.items() if k not in reserved)
        await asyncio.gather(*stores)  # one journal write for the whole batch
        state.done()
        log.info(
            "batch %s (%s): %d replies, %d failed or expired",
            outcome.batch_id, outcome.status, len(outcome.replies), len(outcome.failed),
        )  # fmt: skip


def teacher_or_exit(stage: str, params: Params) -> Teacher:
    """The configured teacher; a missing API key ends the stage naming the variable."""
    try:
        return make_teacher(params)
    except TeacherFatalError as err:
        raise SystemExit(f"{stage}: {err}") from None


def collect_or_exit(
    stage: str,
    params: Params,
    planned: list[PlannedQuery],
    teacher: Teacher,
    cache: ReplyCache,
    tasks: dict[str, Task],
    ledger: Ledger | None = None,
) -> tuple[Collection, dict[str, Any]]:
    """:func:`collect` for a stage: a fatal error, a refused estimate or items that still
    failed end the stage with a non-zero exit saying what is kept and how to resume."""
    try:
        result, ledger = collect(params, planned, teacher, cache, tasks, ledger)
    except (TeacherFatalError, OverBudgetError, CacheMissError) as err:
        raise SystemExit(f"{stage}: {err}") from None
    metrics = teacher_metrics(params, result, ledger)
    if result.failed:
        for line in result.failed[:20]:
            log.error("failed: %s", line)
        raise SystemExit(
            f"{stage}: {len(result.failed)} replies failed after "
            f"{params.teacher.max_retries} retries each; the {metrics['queries_sent']} bought this run "
            f"are cached (USD {metrics['usd_spent']:.4f}), so a rerun buys only the failed ones"
        )
    log.info(
        "%d replies: %d bought (USD %.4f), %d from cache, %d unparsable",
        metrics["replies"], metrics["queries_sent"], metrics["usd_spent"], metrics["cache_hits"],
        metrics["unparsable"],
    )  # fmt: skip
    return result, metrics


def teacher_metrics(params: Params, result: Collection, ledger: Ledger) -> dict[str, Any]:
    rows = result.rows
    per_task: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        per_task[row["task"]].append(row)

    def accuracy(items: list[dict[str, Any]]) -> float | None:
        return sum(r["correct"] for r in items) / len(items) if items else None

    return {
        "backend": params.teacher.backend,
        "model": params.teacher.model,
        "simulated": params.teacher.backend == "simulated",
        "replies": len(rows),
        "queries_sent": ledger.queries,
        "cache_hits": result.cache_hits,
        "tokens_in": sum(r["input_tokens"] for r in rows),
        "tokens_out": sum(r["output_tokens"] for r in rows),
        "usd_spent": round(ledger.usd, 6),
        "usd_value": round(sum(r["usd"] for r in rows), 6),
        "unparsable": sum(not r["parsed"] for r in rows),
        "budget": {  # this purchase's allowance: acquire gets what collect_teacher left
            "queries": ledger.max_queries,
            "usd": ledger.max_usd,
            "exhausted": result.stop_reason is not None,
            "unbought": result.unbought,
        },
        "failed": len(result.failed),
        "diagnostic_teacher_accuracy_vs_gold": accuracy(rows),
        "per_task": {
            task: {
                "replies": len(items),
                "unparsable": sum(not r["parsed"] for r in items),
                "diagnostic_teacher_accuracy_vs_gold": accuracy(items),
            }
            for task, items in sorted(per_task.items())
        },
    }


def total_teacher_metrics(upfront: dict[str, Any], acquired: dict[str, Any] | None) -> dict[str, Any]:
    """:func:`teacher_metrics` over both purchases: collect_teacher's and the acquire stage's."""
    if not acquired:
        return upfront
    total = {k: v for k, v in upfront.items() if k != "per_task"}
    for key in ("replies", "queries_sent", "cache_hits", "tokens_in", "tokens_out", "unparsable", "failed"):
        total[key] = upfront[key] + acquired[key]
    for key in ("usd_spent", "usd_value"):
        total[key] = round(upfront[key] + acquired[key], 6)
    parts = [m for m in (upfront, acquired) if m["replies"]]
    total["diagnostic_teacher_accuracy_vs_gold"] = (
        sum(m["diagnostic_teacher_accuracy_vs_gold"] * m["replies"] for m in parts) / total["replies"]
        if parts
        else None
    )
    return total
