"""Buy teacher replies for a fixed, task-stratified prefix of the train pool.

Every planned reply is looked up in the cache first (free); the rest are bought one at a
time under the budget ledger, each made durable in the cache before it counts.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from tqdm import tqdm

from taloop.config import Params
from taloop.tasks.base import Example, Task
from taloop.tasks.prompts import render
from taloop.tasks.splits import stratified_order
from taloop.teachers.base import Teacher, TeacherReply, TeacherRequest, price_usd
from taloop.teachers.budget import BudgetExhausted, Ledger
from taloop.teachers.cache import ReplyCache, cache_key

log = logging.getLogger(__name__)


class CacheMissError(RuntimeError):
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


def plan_queries(params: Params, pool: list[Example], teacher: Teacher) -> list[PlannedQuery]:
    """The first ``budget.queries`` (question, sample) pairs of the fixed purchase order."""
    cfg = params.teacher
    settings = teacher.settings()
    planned = []
    for ex in stratified_order(pool, params.budget.order_seed):
        prompt = render(cfg.prompt_template, question=ex.question)
        for sample in range(cfg.samples):
            key = cache_key(teacher.backend, teacher.model, prompt, settings, sample)
            planned.append(PlannedQuery(TeacherRequest(ex, prompt, sample), key))
            if len(planned) == params.budget.queries:
                return planned
    return planned


def check_cache_only(planned: list[PlannedQuery], cache: ReplyCache) -> None:
    missing = [q for q in planned if q.key not in cache]
    if missing:
        shown = ", ".join(f"{q.request.example.id}#{q.request.sample}" for q in missing[:10])
        more = f" and {len(missing) - 10} more" if len(missing) > 10 else ""
        raise CacheMissError(
            f"teacher.cache_only is set but {len(missing)} of {len(planned)} replies are not cached "
            f"(example#sample: {shown}{more}); unset teacher.cache_only to buy them"
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
        "usd": price_usd(reply.input_tokens, reply.output_tokens, params.teacher.price),
        "meta": reply.meta,
    }


def collect(
    params: Params, pool: list[Example], teacher: Teacher, cache: ReplyCache, tasks: dict[str, Task]
) -> tuple[Collection, Ledger]:
    cfg = params.teacher
    planned = plan_queries(params, pool, teacher)
    if cfg.cache_only:
        check_cache_only(planned, cache)
    ledger = Ledger(params.budget.queries, params.budget.usd)
    result = Collection()
    for i, query in enumerate(tqdm(planned, desc="teacher", unit="reply")):
        reply = cache.get(query.key)
        if reply is not None:
            result.cache_hits += 1
        else:
            upper = price_usd(teacher.count_tokens(query.request.prompt), cfg.max_tokens, cfg.price)
            try:
                reservation = ledger.reserve(upper)
            except BudgetExhausted as err:
                result.stop_reason = str(err)
                result.unbought = len(planned) - i
                log.warning("stopped buying: %s; %d planned replies not bought", err, result.unbought)
                break
            try:
                reply = teacher.query(query.request)
            except BaseException:
                ledger.release(reservation)
                raise
            usd = price_usd(reply.input_tokens, reply.output_tokens, cfg.price)
            record = {"model": teacher.model, "prompt_template": cfg.prompt_template, "usd": usd}
            cache.put(query.key, reply, record)
            ledger.settle(reservation, usd)
        task = tasks[query.request.example.task]
        result.rows.append(reply_row(params, query, reply, task, teacher))
    return result, ledger


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
        "budget": {
            "queries": params.budget.queries,
            "usd": params.budget.usd,
            "exhausted": result.stop_reason is not None,
            "unbought": result.unbought,
        },
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
