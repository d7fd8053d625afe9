"""Examples and the task interface shared by built-in generators and user datasets."""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

from taloop.tasks import answers


def example_id(task: str, question: str) -> str:
    """Stable id: the same question of the same task always gets the same id."""
    return hashlib.sha256(f"{task}\n{question.strip()}".encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Example:
    id: str
    task: str
    question: str
    gold: str
    meta: dict[str, Any] = field(default_factory=dict)

    def to_row(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Example:
        return cls(
            id=row["id"], task=row["task"], question=row["question"], gold=row["gold"], meta=row["meta"]
        )


class Task(ABC):
    """A source of examples plus the rules to read and score answers for them."""

    answer_format: str
    vocabulary: tuple[str, ...] = ()

    def __init__(self, name: str) -> None:
        self.name = name

    @abstractmethod
    def stream(self, seed: int, needed: int) -> Iterator[Example]:
        """Examples in a seeded order; at least ``needed`` unless the source is smaller."""

    def extract(self, text: str) -> str | None:
        return answers.extract(text, self.answer_format, self.vocabulary)

    def extract_strict(self, text: str) -> str | None:
        """The answer on the "The answer is X" line only, no fallbacks (what signals read)."""
        return answers.extract_strict(text, self.answer_format, self.vocabulary)

    def is_correct(self, prediction: str | None, example: Example) -> bool:
        if prediction is None:
            return False
        if self.answer_format == "number":
            pred, gold = answers.normalize_number(prediction), answers.normalize_number(example.gold)
            return pred is not None and pred == gold
        if self.answer_format == "yes_no":
            return prediction.strip().lower() == example.gold.strip().lower()
        return answers.normalize_text(prediction) == answers.normalize_text(example.gold)
