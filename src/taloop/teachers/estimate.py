"""What a collection would buy and cost, computed before anything is sent."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from taloop.core.errors import UsageError
from taloop.params.schema import Params
from taloop.teachers.base import TeacherRequest, price_usd


class OverBudgetError(UsageError, RuntimeError):
    pass


@dataclass(frozen=True)
class Estimate:
    planned: int
    cached: int
    to_buy: int
    input_tokens: int  # counted with the teacher's tokenizer, or a byte upper bound for hosted models
    max_output_tokens: int  # to_buy x teacher.max_tokens
    usd_upper: float  # list price
    usd_upper_batch: float  # with the batch discount

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def estimate(params: Params, to_buy: Sequence[TeacherRequest], planned: int) -> Estimate:
    cfg = params.teacher
    tokens_in = sum(r.prompt_tokens for r in to_buy)
    tokens_out = len(to_buy) * cfg.max_tokens
    return Estimate(
        planned=planned,
        cached=planned - len(to_buy),
        to_buy=len(to_buy),
        input_tokens=tokens_in,
        max_output_tokens=tokens_out,
        usd_upper=price_usd(tokens_in, tokens_out, cfg.price),
        usd_upper_batch=price_usd(tokens_in, tokens_out, cfg.price, batch=True),
    )


def check_affordable(params: Params, est: Estimate, cap: float | None) -> None:
    """Refuse to start a collection that might cost more than ``cap`` (what is left of
    budget.usd), unless the user asked to buy what fits and stop (budget.stop_at_budget)."""
    bound = est.usd_upper_batch if params.teacher.batch_api else est.usd_upper
    if cap is not None and bound > cap and not params.budget.stop_at_budget:
        raise OverBudgetError(
            f"budget.usd: {est.to_buy} replies may cost up to USD {bound:.4f} (prompts plus "
            f"teacher.max_tokens each), over the USD {cap:.4f} left of the cap; raise budget.usd, lower "
            "budget.queries or teacher.max_tokens, or set budget.stop_at_budget: true to buy what fits"
        )


def render(est: Estimate, backend: str, model: str) -> str:
    return "\n".join([
        f"teacher {backend}:{model}: {est.planned} replies planned, {est.cached} in the cache, "
        f"{est.to_buy} to buy",
        f"tokens: up to {est.input_tokens} prompt + up to {est.max_output_tokens} completion",
        f"USD upper bound: {est.usd_upper:.4f} at list price, "
        f"{est.usd_upper_batch:.4f} with the batch discount",
    ])  # fmt: skip
