"""Waiting on a condition in tests: poll it to a deadline instead of sleeping a fixed time."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowHandle

__all__ = ["count_events", "history", "settled_history", "until"]


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


async def history(handle: WorkflowHandle[Any, Any]) -> list[Any]:
    """A workflow's history events as they stand."""
    return [e async for e in handle.fetch_history_events()]


async def settled_history(handle: WorkflowHandle[Any, Any]) -> list[Any]:
    """A workflow's history once its last workflow task is done (unchanged for 0.5 s)."""
    events = await history(handle)
    while True:
        await asyncio.sleep(0.5)
        again = await history(handle)
        if len(again) == len(events):
            return again
        events = again


def count_events(events: list[Any], kind: EventType.ValueType) -> int:
    """How many of ``events`` are of ``kind``."""
    return sum(1 for e in events if e.event_type == kind)
