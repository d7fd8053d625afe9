"""Client-side request and token rate limits over a sliding one-minute window."""

from __future__ import annotations

import asyncio
import time
from collections import deque

WINDOW_S = 60.0


class RateLimiter:
    def __init__(self, requests_per_minute: int | None, tokens_per_minute: int | None) -> None:
        self.rpm = requests_per_minute
        self.tpm = tokens_per_minute
        self._sent: deque[tuple[float, int]] = deque()  # (time, tokens) of requests in the window
        self._tokens = 0

    async def acquire(self, tokens: int) -> None:
        """Wait until one more request of ``tokens`` fits both limits, then count it."""
        if self.rpm is None and self.tpm is None:
            return
        while True:
            now = time.monotonic()
            while self._sent and now - self._sent[0][0] >= WINDOW_S:
                self._tokens -= self._sent.popleft()[1]
            fits_requests = self.rpm is None or len(self._sent) < self.rpm
            # A request larger than the whole limit still goes, alone in its window.
            fits_tokens = self.tpm is None or self._tokens + tokens <= self.tpm or not self._sent
            if fits_requests and fits_tokens:
                self._sent.append((now, tokens))
                self._tokens += tokens
                return
            await asyncio.sleep(max(0.01, WINDOW_S - (now - self._sent[0][0])))
