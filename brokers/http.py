"""What the REST adapters share on the wire: a client-side rate limiter and JSON read with exact decimals."""

from __future__ import annotations

import asyncio
import json
import time
from collections import deque
from decimal import Decimal
from typing import Any

__all__ = ["RateLimiter", "loads"]


class RateLimiter:
    """At most ``limit`` requests in any ``window`` seconds (a sliding window), waiting when the window is full."""

    def __init__(self, limit: int, *, window: float = 60.0, clock: Any = time.monotonic) -> None:
        """Allow ``limit`` requests per ``window`` seconds (Alpaca counts per minute, OANDA per second)."""
        self.limit = limit
        self.window = window
        self._clock = clock
        self._sent: deque[float] = deque()
        self._lock = asyncio.Lock()
        #: Set by a 429: nothing is sent before this (monotonic) time.
        self.blocked_until = 0.0

    async def acquire(self) -> None:
        """Wait for a free slot and take it."""
        async with self._lock:
            while True:
                now = self._clock()
                while self._sent and self._sent[0] <= now - self.window:
                    self._sent.popleft()
                wait = self.blocked_until - now
                if len(self._sent) >= self.limit:
                    wait = max(wait, self._sent[0] + self.window - now)
                if wait <= 0:
                    self._sent.append(now)
                    return
                await asyncio.sleep(min(wait, 1.0))


def loads(content: bytes) -> Any:
    """JSON with exact decimals (None for an empty body)."""
    return json.loads(content, parse_float=Decimal) if content else None
