from __future__ import annotations

import random
from collections import Counter
from typing import Any

import pytest

from taloop.method.acquisition import candidates, choose, remaining_quotas, upfront_plan, warm_count
from taloop.method.schedule import split_warmup
from taloop.params import validate_params
from taloop.params.schema import ConfigError, Params
from taloop.tasks.base import Example
from taloop.tasks.splits import make_splits
from taloop.teachers.collect import plan_queries, total_teacher_metrics
from taloop.teachers.factory import make_teacher


def _params(raw: dict[str, Any], mode: str, samples: int = 1, **acq: Any) -> Params:
    raw["data"].update(train_per_task=12, val_per_task=2, test_per_task=2)
    raw["budget"].update(queries=22)
    raw["teacher"].update(samples=samples)
    raw["acquisition"] = {"mode": mode, **acq}
    return validate_params(raw)


def _pool(params: Params) -> list[Example]:
    return make_splits(params.data)["train"]


@pytest.mark.parametrize("samples", [1, 2])
def test_active_buys_the_warmup_share_up_front_and_keeps_the_random_task_mix(
    raw_params: dict[str, Any], samples: int
) -> None:
    params = _params(raw_params, "active", samples=samples)
    pool, teacher = _pool(params), make_teacher(params)
    full = plan_queries(params, pool, teacher)
    upfront = upfront_plan(params, pool, teacher)
    assert len(upfront) == warm_count(22, params.warmup.fraction) == 5
    assert upfront == full[:5]
    quotas = remaining_quotas(params, pool, teacher)
    assert sum(quotas.values()) == 22 - 5
    assert quotas == Counter(q.request.example.task for q in full[5:])
    random_params = _params(raw_params, "random", samples=samples)
    assert upfront_plan(random_params, pool, teacher) == full


def test_least_sure_questions_are_chosen_within_each_task(raw_params: dict[str, Any]) -> None:
    params = _params(raw_params, "active", candidates=2.0)
    pool, teacher = _pool(params), make_teacher(params)
    bought = {q.request.example.id for q in upfront_plan(params, pool, teacher)}
    quotas = remaining_quotas(params, pool, teacher)
    scored = candidates(params, pool, bought, quotas)
    assert not bought & {ex.id for ex in scored}
    per_task = Counter(ex.task for ex in scored)
    assert per_task == {task: 2 * n for task, n in quotas.items()}
    rng = random.Random(0)
    sure = {ex.id: rng.random() for ex in scored}
    chosen = choose(params, teacher, scored, sure, quotas)
    assert Counter(q.request.example.task for q in chosen) == quotas
    chosen_ids = {q.request.example.id for q in chosen}
    for task in quotas:
        picked = [sure[ex.id] for ex in scored if ex.task == task and ex.id in chosen_ids]
        left = [sure[ex.id] for ex in scored if ex.task == task and ex.id not in chosen_ids]
        assert max(picked) < min(left)


def test_choose_splits_a_question_s_samples_only_at_the_quota(raw_params: dict[str, Any]) -> None:
    params = _params(raw_params, "active", samples=2, candidates=1.0)
    pool, teacher = _pool(params), make_teacher(params)
    task = sorted(params.data.tasks)[0]
    scored = [ex for ex in pool if ex.task == task][:3]
    sure = {ex.id: s for ex, s in zip(scored, [0.9, 0.1, 0.5], strict=True)}
    chosen = choose(params, teacher, scored, sure, Counter({task: 3}))
    assert [(q.request.example.id, q.request.sample) for q in chosen] == [
        (scored[1].id, 0), (scored[1].id, 1), (scored[2].id, 0),
    ]  # fmt: skip


def test_split_warmup_follows_the_acquisition_boundary(raw_params: dict[str, Any]) -> None:
    rows = [{"id": f"q{i}", "sample": 0} for i in range(8)]
    acquired = [{"id": f"a{i}", "sample": 0, "acquired": "active"} for i in range(3)]
    warm, rest = split_warmup(rows + acquired, _params(raw_params, "active"))
    assert (warm, rest) == (rows, acquired)
    warm, rest = split_warmup(rows, _params(raw_params, "random"))
    assert (len(warm), rest) == (2, rows[2:])


def test_teacher_totals_add_both_purchases() -> None:
    def part(replies: int, correct: int, usd: float) -> dict[str, Any]:
        return {
            "replies": replies, "queries_sent": replies, "cache_hits": 0, "tokens_in": 10 * replies,
            "tokens_out": 20 * replies, "unparsable": 0, "failed": 0, "usd_spent": usd, "usd_value": usd,
            "diagnostic_teacher_accuracy_vs_gold": correct / replies, "per_task": {},
        }  # fmt: skip

    total = total_teacher_metrics(part(4, 3, 0.25), part(12, 6, 0.5))
    assert total["replies"] == 16 and total["tokens_out"] == 320
    assert total["usd_spent"] == pytest.approx(0.75)
    assert total["diagnostic_teacher_accuracy_vs_gold"] == pytest.approx(9 / 16)
    assert "per_task" not in total
    assert total_teacher_metrics(part(4, 3, 0.25), None)["replies"] == 4


@pytest.mark.parametrize(
    ("acq", "field"),
    [({"mode": "smart"}, "acquisition.mode"), ({"candidates": 0.5}, "acquisition.candidates")],
)
def test_bad_acquisition_params_name_the_field(raw_params: dict[str, Any], acq: dict, field: str) -> None:
    raw_params["acquisition"] = acq
    with pytest.raises(ConfigError, match=field):
        validate_params(raw_params)
