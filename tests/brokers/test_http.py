"""brokers/http.py: the REST adapters' shared rate limiter and decimal JSON."""

from __future__ import annotations

import asyncio
from decimal import Decimal

from brokers.http import RateLimiter, loads


async def test_the_window_is_sliding_and_of_the_given_length() -> None:
    now = [100.0]
    limiter = RateLimiter(2, window=1.0, clock=lambda: now[0])
    await limiter.acquire()
    await limiter.acquire()
    third = asyncio.create_task(limiter.acquire())
    await asyncio.sleep(0.05)
    assert not third.done()  # two in the last second: it waits
    now[0] += 1.0
    await asyncio.wait_for(third, 5)
    assert RateLimiter(5).window == 60.0  # Alpaca's per-minute limit is the default


def test_json_numbers_are_exact_decimals_and_an_empty_body_is_none() -> None:
    assert loads(b'{"qty": 100.00000000000000001}') == {"qty": Decimal("100.00000000000000001")}
    assert loads(b"") is None
