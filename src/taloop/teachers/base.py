"""The teacher protocol: a prompt in; a rationale, its usage and its price out."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from taloop.config import PriceConfig
from taloop.tasks.base import Example


@dataclass(frozen=True)
class TeacherRequest:
    example: Example
    prompt: str
    sample: int


@dataclass(frozen=True)
class TeacherReply:
    text: str
    input_tokens: int
    output_tokens: int
    meta: dict[str, Any] = field(default_factory=dict)


class Teacher(Protocol):
    backend: str
    model: str

    def settings(self) -> dict[str, Any]:
        """Everything besides backend, model, prompt and sample index that shapes a reply
        (temperature, max_tokens, ...): part of the cache key."""
        ...

    def count_tokens(self, text: str) -> int: ...

    def query(self, request: TeacherRequest) -> TeacherReply: ...


def price_usd(input_tokens: int, output_tokens: int, price: PriceConfig, batch: bool = False) -> float:
    usd = (input_tokens * price.input_per_mtok + output_tokens * price.output_per_mtok) / 1e6
    return usd * (1 - price.batch_discount) if batch else usd
