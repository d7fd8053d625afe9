"""Adapters that mean something outside this repository.

PEFT records the base model as the path it was loaded from (models/base/student), and TRL's
card says "fine-tuned version of None". An adapter folder here instead names the upstream hub
model (the GGUF it was de-quantised from is in the card), and its README.md, a huggingface_hub
model card, says which variant, teacher, budget and signals made it and, once evaluated, how
accurate it is.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from taloop.core import paths
from taloop.core.io import read_json, write_json
from taloop.student.models import ORIGIN_FILE
from taloop.tasks import data

CARD = "README.md"


def combination_label(plan: dict[str, Any]) -> str:
    """How a recorded signal plan (plan_stage2's ``signal_plan``) combined its signals."""
    if plan.get("weighting", "rank") == "calibrated":  # plans recorded before weighting existed: rank
        return f"calibrated probabilities, need gain {plan['need_gain']:g}"
    return plan["combine"]


@dataclass(frozen=True)
class CardFacts:
    """What a card says; ``evaluation`` is None until the adapter has been evaluated."""

    name: str
    description: str
    origin: dict[str, str]
    teacher: dict[str, Any]
    training: dict[str, Any]
    evaluation: dict[str, Any] | None = None
    pending: str = "not evaluated on its own"  # the accuracy row while evaluation is None


def base_origin(base_dir: Path) -> dict[str, str]:
    return read_json(base_dir / ORIGIN_FILE)


def teacher_facts(replies: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The teacher data behind an adapter, from the replies themselves: not from
    metrics/teacher.json, whose spend and cache hits change when the same replies are
    collected again, which would retrain every variant for a card's sake."""
    backends = sorted({f"{r['backend']}:{r['model']}" for r in replies})
    return {
        "teacher": ", ".join(backends),
        "simulated": all(r["backend"] == "simulated" for r in replies),
        "replies": len(replies),
        "usd_value": sum(r["usd"] for r in replies),
    }


def variant_facts(variant: str, description: str, evaluation: dict[str, Any] | None = None) -> CardFacts:
    """A stage-2 variant's card facts, from the files its training stage wrote."""
    training = read_json(paths.stage2_metrics(variant))
    return CardFacts(
        name=variant,
        description=description,
        origin=base_origin(paths.BASE_STUDENT),
        teacher=teacher_facts(data.responses()),
        training=training,
        evaluation=evaluation,
        pending=f"see models/release/{variant} (written by the evaluate stage)",
    )


def point_to_upstream(adapter_dir: Path, base_dir: Path) -> None:
    """Set adapter_config.json's base model to the upstream id, so PEFT's
    ``AutoPeftModelForCausalLM.from_pretrained(adapter_dir)`` works from any directory."""
    config_path = adapter_dir / "adapter_config.json"
    config = read_json(config_path)
    config["base_model_name_or_path"] = base_origin(base_dir)["upstream"]
    write_json(config_path, config)


def _percent(x: float) -> str:
    return f"{100 * x:.1f}%"


def _rows(facts: CardFacts) -> list[tuple[str, str]]:
    teacher = facts.teacher
    simulated = " (simulated: taloop's offline teacher, wrong on purpose at a set rate)"
    rows = [
        ("base model", f"{facts.origin['upstream']} — quantisation: {facts.origin['quantisation']}"),
        ("variant", f"{facts.name}: {facts.description}" if facts.description else facts.name),
        ("teacher", teacher["teacher"] + (simulated if teacher["simulated"] else "")),
        (
            "teacher replies",
            f"{teacher['replies']} in the run's data, USD {teacher['usd_value']:.4f} at list price",
        ),
    ]
    training = facts.training
    plan = training.get("signal_plan")
    signals = (
        (f"TA {plan['ta']}, measure" if "ta" in plan else "TA measure")
        + f" {plan['measure']}, signs {plan['signs']}, combined by {combination_label(plan)}"
        if plan
        else "none (every reply weighted equally)"
    )
    rows += [
        ("signals", signals),
        ("training", f"{training['examples_trained']} examples, optimiser steps: {int(training['steps'])}"),
    ]
    if facts.evaluation is None:
        rows.append(("accuracy", facts.pending))
        return rows
    ev = facts.evaluation
    rows.append((
        f"{ev['split']} accuracy",
        f"{_percent(ev['accuracy'])} (95% CI {_percent(ev['ci_low'])}–{_percent(ev['ci_high'])}, "
        f"n = {ev['n']})",
    ))  # fmt: skip
    vs = ev.get("vs_baseline")
    if vs and ev["baseline"] != facts.name:
        rel = vs["relative_improvement"]  # None when the baseline scored 0
        change = f"{100 * vs['diff']:+.1f} points" + (f" ({rel:+.1%} relative)" if rel is not None else "")
        rows.append((f"vs {ev['baseline']}", f"{change}, p = {vs['p_value']:.3f} (paired, same items)"))
    return rows


def render(facts: CardFacts) -> str:
    from huggingface_hub import ModelCard, ModelCardData

    data = ModelCardData(
        base_model=facts.origin["upstream"],
        library_name="peft",
        pipeline_tag="text-generation",
        tags=["taloop", "lora", "distillation", f"variant:{facts.name}"],
    )
    table = "\n".join(f"| {k} | {v} |" for k, v in _rows(facts))
    body = (
        f"# taloop adapter: {facts.name}\n\n"
        "A LoRA adapter distilled from teacher replies by taloop (teaching-assistant-in-the-loop "
        "distillation).\n\n"
        f"| | |\n|---|---|\n{table}\n\n"
        "## Use\n\n"
        "```python\n"
        "from peft import AutoPeftModelForCausalLM\n"
        "model = AutoPeftModelForCausalLM.from_pretrained('path/to/this/folder')\n"
        "```\n"
    )
    if facts.origin["quantisation"] != "none":
        body += (
            "\nIt was trained on the de-quantised weights named above, so results on the original "
            "full-precision weights may differ slightly.\n"
        )
    return str(ModelCard(f"---\n{data.to_yaml()}\n---\n\n{body}"))


def write_card(adapter_dir: Path, facts: CardFacts) -> None:
    (adapter_dir / CARD).write_text(render(facts), encoding="utf-8")


def release(adapter_dir: Path, out_dir: Path, facts: CardFacts) -> None:
    """A self-contained copy of the adapter with its evaluated card, to share as it is."""
    if out_dir.exists():
        shutil.rmtree(out_dir)
    shutil.copytree(adapter_dir, out_dir, ignore=shutil.ignore_patterns(CARD))
    write_card(out_dir, facts)
