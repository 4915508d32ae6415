"""``stop_tasks``: a shutdown that cannot hang on a task that swallows its cancel."""

from __future__ import annotations

import asyncio
import logging

import pytest

from core import tasks as tasks_module
from core.tasks import stop_tasks

pytestmark = pytest.mark.asyncio


def _swallowing(times: int, started: asyncio.Event, done: asyncio.Event | None = None) -> asyncio.Task[None]:
    """A loop that ignores its first ``times`` cancels, as a loop around a 3.11 ``wait_for`` can (ends on ``done``)."""

    async def loop() -> None:
        ignored = 0
        started.set()
        while done is None or not done.is_set():
            try:
                await asyncio.sleep(0.01)
            except asyncio.CancelledError:
                if ignored >= times:
                    raise
                ignored += 1

    return asyncio.create_task(loop(), name=f"swallows-{times}")


async def test_a_task_that_swallows_a_cancel_is_cancelled_again(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tasks_module, "RECANCEL_SECONDS", 0.05)
    started = asyncio.Event()
    task = _swallowing(2, started)
    await started.wait()
    async with asyncio.timeout(10):
        assert await stop_tasks([task], what="test")
    assert task.cancelled()


async def test_the_naive_stop_would_hang_on_the_same_task() -> None:
    # What stop_tasks replaces: one cancel, then wait. The task runs on (bounded here, so the test cannot hang).
    started = asyncio.Event()
    task = _swallowing(1, started)
    await started.wait()
    task.cancel()
    done, _ = await asyncio.wait({task}, timeout=0.5)
    assert not done
    await stop_tasks([task], what="cleanup")
    assert task.done()


async def test_a_task_that_never_stops_is_left_behind_after_the_grace(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(tasks_module, "RECANCEL_SECONDS", 0.05)
    started, done = asyncio.Event(), asyncio.Event()
    task = _swallowing(10**9, started, done)
    await started.wait()
    try:
        with caplog.at_level(logging.ERROR, logger="core.tasks"):
            async with asyncio.timeout(10):
                assert not await stop_tasks([task], what="stuck", grace=0.3)
        assert not task.done()
        assert any("stuck: 1 task(s) still running" in r.getMessage() for r in caplog.records)
    finally:
        done.set()
        await asyncio.wait({task}, timeout=5)
    assert task.done()


async def test_the_callers_cancellation_propagates() -> None:
    release = asyncio.Event()

    async def slow_cleanup() -> None:
        try:
            await asyncio.sleep(3600)
        finally:
            await release.wait()  # a cleanup that takes its time (a cancel during it is swallowed by the finally)

    task = asyncio.create_task(slow_cleanup())
    await asyncio.sleep(0)
    stopper = asyncio.create_task(stop_tasks([task], what="slow"))
    await asyncio.sleep(0.05)
    stopper.cancel()
    with pytest.raises(asyncio.CancelledError):
        await stopper
    release.set()
    await asyncio.wait({task}, timeout=5)
    assert task.done()


async def test_failures_of_the_tasks_are_logged_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    async def fails() -> None:
        raise RuntimeError("boom")

    task = asyncio.create_task(fails(), name="fails")
    await asyncio.sleep(0)
    with caplog.at_level(logging.ERROR, logger="core.tasks"):
        assert await stop_tasks([task], what="failing")
    assert any("fails had failed: RuntimeError('boom')" in r.getMessage() for r in caplog.records)
