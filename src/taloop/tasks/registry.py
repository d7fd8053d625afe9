"""Task registry: names in params.yaml -> task objects."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from taloop.config import TaskSpec
    from taloop.tasks.base import Task

# name -> answer format; the generators live in reasoning_gym_tasks.py.
BUILTIN_TASKS: dict[str, str] = {
    "gsm_symbolic": "number",
    "chain_sum": "number",
    "leg_counting": "number",
    "syllogism": "yes_no",
    "family_relationships": "text",
}


def check_generator_config(name: str, config: dict[str, Any]) -> str | None:
    """Why ``config`` is not a valid reasoning-gym config for task ``name``, or None."""
    from reasoning_gym.factory import DATASETS

    config_cls = DATASETS[name][1]
    fields = {f.name for f in dataclasses.fields(config_cls)} - {"seed", "size"}
    unknown = sorted(set(config) - fields)
    if unknown:
        return f"unknown setting(s) {', '.join(unknown)}; allowed: {', '.join(sorted(fields))}"
    try:
        config_cls(**config).validate()
    except (AssertionError, TypeError, ValueError) as err:
        detail = str(err) or "rejected by the reasoning-gym generator"
        return f"{detail} (got {config})"
    return None


def get_task(name: str, spec: TaskSpec) -> Task:
    if spec.source == "reasoning_gym":
        from taloop.tasks.reasoning_gym_tasks import ReasoningGymTask

        return ReasoningGymTask(name, spec.config)
    from taloop.tasks.files import FileTask

    return FileTask(name, spec)
