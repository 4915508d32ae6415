"""Record real order histories for the replay test (``tests/workflows/test_replay.py``).

A test that drives an interesting order calls ``await record_history(handle, "name")`` once the order is
closed. Normally this does nothing. With ``EXODUS_RECORD_HISTORIES=1`` (or a directory) it writes the
workflow's full event history as ``tests/workflows/histories/<name>.json``, the format Temporal's CLI and
``WorkflowHistory.from_json`` read. Record new shapes after a change to the order workflow; never re-record
the committed ones: they stand for orders started by earlier releases that must keep replaying (see the
README's section on upgrading with orders in flight).

    EXODUS_RECORD_HISTORIES=1 make test PYTEST_ARGS="tests/workflows tests/brokers/fix tests/brokers/mt5"
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

from temporalio.client import WorkflowHandle

__all__ = ["HISTORIES", "record_history"]

HISTORIES = Path(__file__).parent / "histories"


async def record_history(handle: WorkflowHandle[Any, Any], name: str, *, timeout: float = 60) -> Path | None:
    """Write the closed workflow's history as ``<name>.json`` when recording is switched on."""
    target = os.environ.get("EXODUS_RECORD_HISTORIES", "")
    if not target:
        return None
    directory = HISTORIES if target in ("1", "true", "yes") else Path(target)
    directory.mkdir(parents=True, exist_ok=True)
    async with asyncio.timeout(timeout):
        await handle.result()
    history = await handle.fetch_history()
    path = directory / f"{name}.json"
    path.write_text(history.to_json())
    return path
