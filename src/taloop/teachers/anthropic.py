"""Teacher over Anthropic's Messages API with the official `anthropic` client; optional
Message Batches."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Sequence
from typing import Any, ClassVar

import anthropic

from taloop.teachers.api import ApiTeacher
from taloop.teachers.base import TeacherReply, TeacherRequest
from taloop.teachers.batch import BatchOutcome, BatchState

log = logging.getLogger(__name__)


def _reply(message: Any) -> TeacherReply:
    return TeacherReply(
        text="".join(block.text for block in message.content if block.type == "text"),
        input_tokens=message.usage.input_tokens,
        output_tokens=message.usage.output_tokens,
        meta={"truncated": message.stop_reason == "max_tokens", "finish_reason": message.stop_reason},
    )


class AnthropicTeacher(ApiTeacher):
    backend = "anthropic"
    default_key_env = "ANTHROPIC_API_KEY"
    client_class = anthropic.AsyncAnthropic
    http_clients: ClassVar[dict[str, Any]] = {
        "aiohttp": anthropic.DefaultAioHttpClient,
        "httpx": anthropic.DefaultAsyncHttpxClient,
    }
    fatal = (anthropic.AuthenticationError, anthropic.PermissionDeniedError, anthropic.NotFoundError)
    failed = (anthropic.APIStatusError, anthropic.APIConnectionError)  # incl. timeouts, 529
    malformed = (json.JSONDecodeError, anthropic.APIResponseValidationError)

    def settings(self) -> dict[str, Any]:
        # The Messages API of this client version has no sampling temperature to send.
        return {"max_tokens": self.cfg.max_tokens, "base_url": self.cfg.base_url}

    def params(self, request: TeacherRequest) -> dict[str, Any]:
        return {
            "model": self.model,
            "max_tokens": self.cfg.max_tokens,
            "messages": [{"role": "user", "content": request.prompt}],
        }

    async def send(self, request: TeacherRequest) -> TeacherReply:
        message = await self.client.messages.create(
            **self.params(request), extra_headers={"Idempotency-Key": request.key}
        )
        return _reply(message)

    async def run_batch(self, requests: Sequence[TeacherRequest], state: BatchState) -> BatchOutcome:
        batches = self.client.messages.batches
        batch_id = state.load()
        if batch_id is None:
            payload = [{"custom_id": r.key, "params": self.params(r)} for r in requests]
            batch = await self.call(lambda: batches.create(requests=payload), "batch create")
            batch_id = batch.id
            state.save(batch_id)
            log.info("submitted Anthropic message batch %s with %d requests", batch_id, len(requests))
        else:
            log.info("resuming Anthropic message batch %s", batch_id)
        while True:
            batch = await self.call(lambda: batches.retrieve(batch_id), "batch poll")
            if batch.processing_status == "ended":
                break
            await asyncio.sleep(self.cfg.batch_poll_s)
        outcome = BatchOutcome(batch_id=batch_id, status=batch.processing_status)
        results = await self.call(lambda: batches.results(batch_id), "batch results")
        async for entry in results:
            result = entry.result
            if result.type == "succeeded":
                outcome.replies[entry.custom_id] = _reply(result.message)
            else:
                detail = getattr(getattr(result, "error", None), "error", None)
                outcome.failed[entry.custom_id] = f"{result.type}: {getattr(detail, 'message', '')}".rstrip(
                    ": "
                )
        outcome.mark_missing([r.key for r in requests], "no result in the batch")
        return outcome
