"""The teacher protocol: a prompt in; a rationale, its usage and its price out."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Protocol

from taloop.core.errors import UsageError
from taloop.params.schema import PriceConfig
from taloop.tasks.base import Example


@dataclass(frozen=True)
class TeacherRequest:
    example: Example
    prompt: str
    sample: int
    key: str = ""  # the cache key: also sent as Idempotency-Key, so a server may dedupe retries
    prompt_tokens: int = 0  # Teacher.count_tokens(prompt), counted once when planned


@dataclass(frozen=True)
class TeacherReply:
    text: str
    input_tokens: int
    output_tokens: int
    meta: dict[str, Any] = field(default_factory=dict)


class TeacherCallError(RuntimeError):
    """A request that still failed after the bounded retries; the item stays unbought."""


class TeacherFatalError(UsageError, RuntimeError):
    """A failure no other item would escape (bad key, unknown model): stop the whole run."""


class Teacher(Protocol):
    backend: str
    model: str

    def settings(self) -> dict[str, Any]:
        """Everything besides backend, model, prompt and sample index that shapes a reply
        (temperature, max_tokens, ...): part of the cache key."""
        ...

    def count_tokens(self, text: str) -> int:
        """Prompt tokens, or an upper bound on them where the teacher's tokenizer is unknown."""
        ...

    async def aquery(self, request: TeacherRequest) -> TeacherReply:
        """One reply; raises TeacherCallError (item failed) or TeacherFatalError (stop)."""
        ...

    async def aclose(self) -> None:
        """Release connections opened in this event loop (called when a collection ends)."""
        ...


def api_key(env_name: str) -> str:
    """The key from the environment, checked before anything is sent. Keys are never
    taken from params files, so they cannot reach dvc.lock, the cache or any output."""
    key = os.environ.get(env_name, "").strip()
    if not key:
        raise TeacherFatalError(
            f"teacher: environment variable {env_name} is not set; export it (or name another "
            "variable in teacher.api_key_env) before running collect_teacher"
        )
    return key


def price_usd(input_tokens: int, output_tokens: int, price: PriceConfig, batch: bool = False) -> float:
    usd = (input_tokens * price.input_per_mtok + output_tokens * price.output_per_mtok) / 1e6
    return usd * (1 - price.batch_discount) if batch else usd
