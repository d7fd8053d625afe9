"""Reading the pipeline's own data files back as typed objects."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from taloop.core import paths
from taloop.core.io import read_jsonl
from taloop.tasks.base import Example, Task
from taloop.tasks.prompts import render
from taloop.tasks.registry import get_task

if TYPE_CHECKING:
    from taloop.params.schema import Params


def examples(split: str) -> list[Example]:
    return [Example.from_row(r) for r in read_jsonl(paths.split_file(split))]


def tasks(params: Params) -> dict[str, Task]:
    return {name: get_task(name, spec) for name, spec in params.data.tasks.items()}


def responses(acquired: bool = True) -> list[dict[str, Any]]:
    """Teacher replies bought up front, then (``acquired``) those the acquire stage bought."""
    rows = read_jsonl(paths.RESPONSES)
    return rows + read_jsonl(paths.ACQUIRED) if acquired else rows


def prompts(params: Params, split: str = "train") -> dict[str, str]:
    return {ex.id: render(params.teacher.prompt_template, question=ex.question) for ex in examples(split)}
