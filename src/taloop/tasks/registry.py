"""Task registry: names in params.yaml -> task objects, and the catalogue params are checked
against (:func:`taloop.params.validate_params`)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from taloop.tasks.files import FileTask
from taloop.tasks.prompts import available_templates
from taloop.tasks.reasoning_gym_tasks import BUILTIN_TASKS, ReasoningGymTask

if TYPE_CHECKING:
    from taloop.params.schema import TaskSpec
    from taloop.tasks.base import Task


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
        return ReasoningGymTask(name, spec.config)
    return FileTask(name, spec)


@dataclasses.dataclass(frozen=True)
class Catalogue:
    """What the params schema checks task names, generator settings and templates against
    (it satisfies :class:`taloop.params.schema.TaskCatalogue`)."""

    builtin_tasks: Mapping[str, str]
    check_generator_config: Callable[[str, dict[str, Any]], str | None]
    templates: Callable[[], list[str]]


CATALOGUE = Catalogue(BUILTIN_TASKS, check_generator_config, available_templates)
