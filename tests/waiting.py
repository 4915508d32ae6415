"""Waiting on a condition in tests: poll it to a deadline instead of sleeping a fixed time."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

__all__ = ["until"]


async def until(what: str, check: Callable[[], Any], *, timeout: float = 30.0, interval: float = 0.05) -> Any:
    """Poll ``check`` (sync or async) until it returns something truthy, and return that.

    For conditions that wait on Temporal, a worker or a venue: a generous deadline that costs nothing when the
    condition holds early, instead of a count of short sleeps that a loaded machine outlasts.
    """
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return result
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"{what}: not within {timeout:g}s")
        await asyncio.sleep(interval)
