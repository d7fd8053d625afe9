"""What the OpenAI and Anthropic teachers share: settings in the cache key, a token upper
bound for reservations, error classification, and bounded retries of malformed replies.

Transport faults (429 with Retry-After, 5xx/529, timeouts, dropped connections) are retried
by the official clients themselves (exponential backoff with jitter, honouring Retry-After
and retry-after-ms), `teacher.max_retries` times. A 200 whose body is not valid JSON is not
retried by the clients, so it is retried here, with the same bound.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from typing import Any, ClassVar

from taloop.params.schema import TeacherConfig
from taloop.teachers.base import TeacherCallError, TeacherFatalError, TeacherReply, TeacherRequest

# Chat formats wrap the prompt in a few role/format tokens.
CHAT_OVERHEAD_TOKENS = 16
_BACKOFF_S = 0.25


def token_upper_bound(text: str) -> int:
    """No byte-level BPE token is shorter than one byte, so bytes bound the token count
    without the (unshipped) tokenizer of a hosted model."""
    return len(text.encode("utf-8")) + CHAT_OVERHEAD_TOKENS


class ApiTeacher:
    backend = ""
    default_key_env = ""
    # filled in by subclasses from their SDK: the async client class, its HTTP clients by
    # teacher.http_client, and its exception types
    client_class: Any = None
    http_clients: ClassVar[dict[str, Any]] = {}
    fatal: tuple[type[BaseException], ...] = ()
    failed: tuple[type[BaseException], ...] = ()
    malformed: tuple[type[BaseException], ...] = ()

    def __init__(self, cfg: TeacherConfig, key: str | None) -> None:
        self.cfg = cfg
        self.model = cfg.model
        self._key = key
        self._client: Any = None

    @property
    def key_env(self) -> str:
        return self.cfg.api_key_env or self.default_key_env

    @property
    def client(self) -> Any:
        """The SDK client, made on first use inside the running event loop: an aiohttp
        session belongs to the loop it was opened in, and each collection runs its own."""
        if self._key is None:
            raise TeacherFatalError("teacher built without a key (estimate only) cannot send requests")
        if self._client is None:
            self._client = self.client_class(
                api_key=self._key,
                base_url=self.cfg.base_url,
                max_retries=self.cfg.max_retries,
                timeout=self.cfg.timeout_s,
                http_client=self.http_clients[self.cfg.http_client](),
            )
        return self._client

    async def aclose(self) -> None:
        if self._client is not None:
            client, self._client = self._client, None
            await client.close()

    def settings(self) -> dict[str, Any]:
        # base_url is part of a reply's identity: the same model name on another server is
        # another model.
        return {
            "max_tokens": self.cfg.max_tokens,
            "temperature": self.cfg.temperature,
            "base_url": self.cfg.base_url,
        }

    def count_tokens(self, text: str) -> int:
        return token_upper_bound(text)

    async def send(self, request: TeacherRequest) -> TeacherReply:
        raise NotImplementedError

    async def aquery(self, request: TeacherRequest) -> TeacherReply:
        return await self.call(lambda: self.send(request), f"{request.example.id}#{request.sample}")

    async def call(self, make: Callable[[], Awaitable[Any]], what: str) -> Any:
        """Run one client call, mapping the client's exceptions onto ours."""
        for attempt in range(self.cfg.max_retries + 1):
            try:
                return await make()
            except self.fatal as err:
                raise TeacherFatalError(f"{self.backend} refused {what}: {err}") from err
            except self.malformed as err:
                if attempt == self.cfg.max_retries:
                    raise TeacherCallError(
                        f"{what}: malformed reply after {attempt + 1} attempts: {err}"
                    ) from err
                await asyncio.sleep(_BACKOFF_S * 2**attempt * random.uniform(0.5, 1.0))
            except self.failed as err:
                # the client already retried this max_retries times
                raise TeacherCallError(f"{what}: {type(err).__name__}: {err}") from err
        raise AssertionError("unreachable")
