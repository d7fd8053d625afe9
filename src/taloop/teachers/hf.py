"""Teacher from a local transformers model (an alias, hub id or path, as for the student):
for users with a GPU and open weights. Costs what the price table says (often zero)."""

from __future__ import annotations

import asyncio
from typing import Any

from taloop.params.schema import TeacherConfig
from taloop.student.generation import generate
from taloop.student.models import load_source
from taloop.student.training import chat_prompt
from taloop.teachers.base import TeacherReply, TeacherRequest


class HFTeacher:
    backend = "hf"

    def __init__(self, cfg: TeacherConfig) -> None:
        self.cfg = cfg
        self.model = cfg.model
        self._model, self._tok = load_source(cfg.model)
        # One generate at a time: concurrent calls would only contend for the same device.
        self._lock = asyncio.Lock()

    def settings(self) -> dict[str, Any]:
        return {"max_tokens": self.cfg.max_tokens, "temperature": self.cfg.temperature, "seed": self.cfg.seed}

    def count_tokens(self, text: str) -> int:
        return len(self._tok(chat_prompt(self._tok, text), add_special_tokens=False).input_ids)

    def _generate(self, request: TeacherRequest) -> TeacherReply:
        ((text,),) = generate(
            self._model, self._tok, [request.prompt], max_new_tokens=self.cfg.max_tokens, batch_size=1,
            temperature=self.cfg.temperature, seed=self.cfg.seed + request.sample, desc="teacher",
        )  # fmt: skip
        out_tokens = len(self._tok(text, add_special_tokens=False).input_ids)
        return TeacherReply(
            text=text,
            input_tokens=self.count_tokens(request.prompt),
            output_tokens=out_tokens,
            meta={"truncated": out_tokens >= self.cfg.max_tokens},
        )

    async def aquery(self, request: TeacherRequest) -> TeacherReply:
        async with self._lock:
            return await asyncio.to_thread(self._generate, request)

    async def aclose(self) -> None:
        return None
