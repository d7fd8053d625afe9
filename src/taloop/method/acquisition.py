"""Which questions the teacher is asked.

``acquisition: random`` buys the whole budget up front, in the fixed task-stratified order.
``acquisition: active`` buys only the warm-up share of that order up front; after warm-up
the rest of the budget goes to the unbought questions the warmed-up student is least sure
of (self-consistency and the within-task rank of the TA's confidence in its majority
output). Each task keeps the number of replies the random order would have given it, so the
two modes differ only in which questions are asked, not in the task mix or the spend.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from statistics import fmean
from typing import Any

from taloop.method.selection import rank_normalise
from taloop.params.schema import Params
from taloop.tasks.base import Example
from taloop.tasks.splits import stratified_order
from taloop.teachers.base import Teacher
from taloop.teachers.collect import PlannedQuery, plan_for, plan_queries


def warm_count(replies: int, fraction: float) -> int:
    """Replies used for warm-up out of ``replies`` (at least one)."""
    return max(1, math.floor(fraction * replies))


def _warm_split(
    params: Params, pool: list[Example], teacher: Teacher
) -> tuple[list[PlannedQuery], list[PlannedQuery]]:
    """The random plan cut where warm-up ends."""
    planned = plan_queries(params, pool, teacher)
    n_warm = warm_count(len(planned), params.warmup.fraction)
    return planned[:n_warm], planned[n_warm:]


def upfront_plan(params: Params, pool: list[Example], teacher: Teacher) -> list[PlannedQuery]:
    """What collect_teacher buys: everything (random) or the warm-up share (active)."""
    warm, rest = _warm_split(params, pool, teacher)
    return warm if params.acquisition.mode == "active" else warm + rest


def remaining_quotas(params: Params, pool: list[Example], teacher: Teacher) -> Counter[str]:
    """Replies per task still to buy after the up-front share: as many as random would buy."""
    _, rest = _warm_split(params, pool, teacher)
    return Counter(q.request.example.task for q in rest)


def candidates(
    params: Params, pool: list[Example], bought_ids: set[str], quotas: Counter[str]
) -> list[Example]:
    """Per task, the first ``acquisition.candidates`` x (questions to buy) unbought questions of
    the fixed order: scoring every unbought question would cost more than it tells."""
    per_question = params.teacher.samples
    wanted = {
        task: math.ceil(params.acquisition.candidates * math.ceil(n / per_question))
        for task, n in quotas.items()
    }
    taken: Counter[str] = Counter()
    out = []
    for ex in stratified_order(pool, params.budget.order_seed):
        if ex.id not in bought_ids and taken[ex.task] < wanted.get(ex.task, 0):
            taken[ex.task] += 1
            out.append(ex)
    return out


def sureness(self_consistency: float, ta_confidence: float) -> float:
    """Both signals lie in [0, 1]; their mean ranks questions from least to most sure."""
    return (self_consistency + ta_confidence) / 2


def sureness_by_question(
    scored: Sequence[Example], signals: Mapping[str, Mapping[str, Any]], ta_column: str
) -> dict[str, float]:
    """:func:`sureness` of each scored question, with the TA score (``ta_column``) replaced by
    its rank within the question's task, mapped to [0, 1]: TA measures are log-probs on
    scales that differ by measure and by task, and averaging a raw one with a share would let
    its scale, not the question, decide. Questions are only compared within a task anyway."""
    by_task: dict[str, list[str]] = defaultdict(list)
    for ex in scored:
        by_task[ex.task].append(ex.id)
    for ex in scored:
        if not math.isfinite(signals[ex.id][ta_column]):
            # A NaN would rank every question of its task as NaN and leave the order to chance.
            raise ValueError(f"{ta_column} is not finite for question {ex.id} ({ex.task})")
    sure = {}
    for ids in by_task.values():
        ranks = rank_normalise([signals[i][ta_column] for i in ids])
        sure.update({i: sureness(signals[i]["sc"], float(r)) for i, r in zip(ids, ranks, strict=True)})
    return sure


def choose(
    params: Params,
    teacher: Teacher,
    scored: list[Example],
    sure: dict[str, float],
    quotas: Counter[str],
) -> list[PlannedQuery]:
    """Per task, the least-sure ``scored`` questions (given in the fixed order, which breaks
    ties) until the task's reply quota is met."""
    by_task: dict[str, list[Example]] = defaultdict(list)
    for ex in scored:
        by_task[ex.task].append(ex)
    planned: list[PlannedQuery] = []
    for task in sorted(quotas):
        ranked = sorted(by_task[task], key=lambda ex: sure[ex.id])
        planned.extend(plan_for(params, teacher, ranked, quotas[task]))
    return planned


def acquisition_metrics(
    signals: dict[str, dict[str, Any]], sure: dict[str, float], rows: list[dict[str, Any]]
) -> dict[str, Any]:
    """How the chosen questions differ from the scored ones left unbought (gold: diagnostic)."""
    chosen = {r["id"] for r in rows}
    groups = {"chosen": [i for i in sure if i in chosen], "not_chosen": [i for i in sure if i not in chosen]}

    def mean(values: list[float]) -> float | None:
        return fmean(values) if values else None

    return {
        "scored_questions": len(sure),
        "replies": len(rows),
        **{f"sureness_mean_{g}": mean([sure[i] for i in ids]) for g, ids in groups.items()},
        **{
            f"diagnostic_student_accuracy_{g}": mean([float(signals[i]["student_correct"]) for i in ids])
            for g, ids in groups.items()
        },
        "diagnostic_teacher_accuracy_vs_gold": mean([float(r["correct"]) for r in rows]),
    }
