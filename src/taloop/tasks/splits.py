"""Seeded train/val/test splits per task, and the fixed task-stratified purchase order."""

from __future__ import annotations

import random
from collections import defaultdict
from itertools import zip_longest
from typing import TYPE_CHECKING

from taloop.core.errors import UsageError
from taloop.tasks.base import Example
from taloop.tasks.registry import get_task

if TYPE_CHECKING:
    from taloop.params.schema import DataConfig

SPLITS = ("train", "val", "test")


class SplitError(UsageError, ValueError):
    pass


def make_splits(data: DataConfig) -> dict[str, list[Example]]:
    """Test is drawn first, then val, then train: growing the train pool never moves an
    item out of test or val, and ids are unique across splits by construction."""
    sizes = {"test": data.test_per_task, "val": data.val_per_task, "train": data.train_per_task}
    out: dict[str, list[Example]] = {s: [] for s in SPLITS}
    for name, spec in data.tasks.items():
        needed = sum(sizes.values())
        seen: set[str] = set()
        unique: list[Example] = []
        for example in get_task(name, spec).stream(data.seed, needed):
            if example.id not in seen:
                seen.add(example.id)
                unique.append(example)
            if len(unique) == needed:
                break
        if len(unique) < needed:
            raise SplitError(
                f"data.tasks.{name}: only {len(unique)} distinct questions, but "
                f"data.test_per_task + val_per_task + train_per_task = {needed}"
            )
        start = 0
        for split in ("test", "val", "train"):
            out[split].extend(unique[start : start + sizes[split]])
            start += sizes[split]
    check_disjoint(out)
    return out


def check_disjoint(splits: dict[str, list[Example]]) -> None:
    owner: dict[str, str] = {}
    for split, examples in splits.items():
        for ex in examples:
            if ex.id in owner:
                raise SplitError(f"example {ex.id} ({ex.task}) is in both {owner[ex.id]} and {split}")
            owner[ex.id] = split


def stratified_order(pool: list[Example], seed: int) -> list[Example]:
    """Round-robin over tasks (in name order), each task's items in a seeded shuffle.

    Any prefix is as even over tasks as possible, and a longer prefix extends a shorter
    one: raising the budget buys only the new items.
    """
    by_task: dict[str, list[Example]] = defaultdict(list)
    for ex in sorted(pool, key=lambda e: e.id):
        by_task[ex.task].append(ex)
    queues = []
    for task in sorted(by_task):
        items = by_task[task]
        random.Random(f"{seed}:{task}").shuffle(items)
        queues.append(items)
    return [ex for group in zip_longest(*queues) for ex in group if ex is not None]
