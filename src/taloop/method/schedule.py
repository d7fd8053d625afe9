"""Which teacher replies each variant trains on, with which weights, from which start."""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from taloop.core import precision
from taloop.method.acquisition import warm_count
from taloop.method.selection import SignalPlan, example_weights, task_diagnostics
from taloop.params.schema import ConfigError, Params, TrainingConfig
from taloop.student.training import TrainExample, TrainSettings


def settings(params: Params, cfg: TrainingConfig, steps: int) -> TrainSettings:
    lora = params.student.lora
    return TrainSettings(
        steps=steps, learning_rate=cfg.learning_rate, batch_size=cfg.batch_size,
        max_length=params.student.max_length, seed=cfg.seed,
        lora_r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout, lora_top_layers=lora.top_layers,
        bf16=precision.student(params.student.bf16).bf16,
    )  # fmt: skip


def teacher_data_fingerprint(responses: Sequence[dict[str, Any]]) -> str:
    """Identifies the teacher replies a variant was given; equal across variants = equal budget."""
    keys = "\n".join(f"{r['id']}#{r['sample']}" for r in responses)
    return hashlib.sha256(keys.encode()).hexdigest()[:16]


def split_warmup(responses: Sequence[dict[str, Any]], params: Params) -> tuple[list[dict], list[dict]]:
    """Random acquisition: replies are in the fixed task-stratified purchase order, so a
    prefix is stratified too. Active: the warm-up is what was bought up front, stage 2 what
    the acquire stage bought."""
    if params.acquisition.mode == "active":
        return [r for r in responses if not r.get("acquired")], [r for r in responses if r.get("acquired")]
    n_warm = warm_count(len(responses), params.warmup.fraction)
    return list(responses[:n_warm]), list(responses[n_warm:])


def epoch_steps(examples: int, cfg: TrainingConfig) -> int:
    """Optimiser steps of ``cfg.epochs`` passes over ``examples`` in batches of ``cfg.batch_size``."""
    return math.ceil(math.ceil(examples / cfg.batch_size) * cfg.epochs)


@dataclass(frozen=True)
class StepBudget:
    """Optimiser steps of one comparison: every variant takes ``total`` steps, the one-stage
    ones all at once, the two-stage ones ``warmup`` then ``stage2``."""

    warmup: int
    stage2: int
    total: int


def step_budget(responses: Sequence[dict[str, Any]], params: Params) -> StepBudget:
    """ft's step count (stage2 settings over every reply) is the comparison's budget; the
    warm-up takes its own epochs over its share and stage 2 the rest of the budget."""
    warm, _ = split_warmup(responses, params)
    total = epoch_steps(len(responses), params.stage2)
    warm_steps = epoch_steps(len(warm), params.warmup)
    if total <= warm_steps:
        raise ConfigError([(
            "stage2.epochs",
            f"ft's {total} optimiser steps leave none for stage 2 after the warm-up's {warm_steps} "
            "(raise stage2.epochs or lower warmup.epochs/warmup.fraction)",
        )])  # fmt: skip
    return StepBudget(warmup=warm_steps, stage2=total - warm_steps, total=total)


def to_example(reply: dict[str, Any], prompt: str, weight: float = 1.0) -> TrainExample:
    return TrainExample(prompt=prompt, completion=reply["rationale"], weight=weight)


@dataclass(frozen=True)
class TrainPlan:
    examples: list[TrainExample]
    from_warmup: bool
    replies_available: int  # teacher replies the variant was given (equal for every variant)
    kept: int
    weight_min: float
    weight_max: float
    steps: int  # optimiser steps of this stage
    total_steps: int  # including the warm-up's, equal for every variant of a comparison
    per_task: dict[str, dict[str, float]]


def plan_variant(
    params: Params,
    name: str,
    responses: Sequence[dict[str, Any]],
    signals: dict[tuple[str, int], dict[str, Any]],
    prompts: dict[str, str],
    signal_plan: SignalPlan | None,
) -> TrainPlan:
    """``signals`` maps (id, sample) of a reply to its signal row; ``prompts`` id -> prompt;
    ``signal_plan`` how the variant's signals become weights (None: no signals)."""
    variant = params.variants[name]
    _, rest = split_warmup(responses, params)
    two_stage = variant.schedule == "two_stage"
    pool = rest if two_stage else list(responses)
    needs_signals = bool(variant.signals)
    rows = []
    for reply in pool:
        key = (reply["id"], reply["sample"])
        if needs_signals and key not in signals:
            raise KeyError(
                f"variant {name}: no signals for reply {key[0]}#{key[1]} (see signals.base_student)"
            )
        rows.append({"task": reply["task"], "teacher_correct": reply["correct"], **signals.get(key, {})})
    # One-stage variants score with the base student: there is no warmed-up one.
    prefix = "" if two_stage else "base_"
    plan = signal_plan if needs_signals else None
    weights = example_weights(rows, variant, params.stage2, plan, prefix) if rows else np.ones(0)
    budget = step_budget(responses, params)
    # The teacher's token count of a reply stands in for its completion tokens in the
    # loss-share diagnostic (the same tokenizer for the simulated teacher).
    counts = [r["output_tokens"] for r in pool]
    examples = [
        to_example(reply, prompts[reply["id"]], float(w))
        for reply, w in zip(pool, weights, strict=True)
        if w > 0
    ]
    kept = weights[weights > 0]
    return TrainPlan(
        examples=examples,
        from_warmup=two_stage,
        replies_available=len(responses),
        kept=len(examples),
        weight_min=float(kept.min()) if kept.size else 0.0,
        weight_max=float(kept.max()) if kept.size else 0.0,
        steps=budget.stage2 if two_stage else budget.total,
        total_steps=budget.total,
        per_task=task_diagnostics(rows, weights, counts),
    )


def plan_record(
    variant: str,
    plan: TrainPlan,
    responses: Sequence[dict[str, Any]],
    how: SignalPlan | None,
    shares: dict[str, float],
    ta: str,
) -> dict[str, Any]:
    """``plan`` as plan_stage2 writes it for train_stage2: everything but the examples is
    copied into the variant's stage-2 metrics. ``ta``: the TA behind the signals (named on
    the model card)."""
    return {
        "variant": variant,
        "teacher_data_fingerprint": teacher_data_fingerprint(responses),
        "signal_plan": None
        if how is None
        else {
            "ta": ta,
            "measure": how.measure,
            "signs": how.signs,
            "weighting": how.weighting,
            **(
                {"combine": how.combine, "validation_wrong_loss_share_by_combine": shares}
                if how.weighting == "rank"
                else {
                    "need_gain": how.need_gain,
                    "p_right": how.p_right.describe() if how.p_right else None,
                    "p_need": how.p_need.describe() if how.p_need else None,
                }
            ),
        },
        **asdict(plan),
    }


def plan_examples(record: dict[str, Any]) -> list[TrainExample]:
    return [TrainExample(**ex) for ex in record["examples"]]
