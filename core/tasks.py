"""Stopping background tasks so that a shutdown cannot hang.

``task.cancel(); with suppress(CancelledError): await task`` hangs forever when the task swallows the cancel, and
on Python 3.11 a cancel is swallowed by library code that nobody wrote to do so: ``asyncio.wait_for`` returns the
inner result when the cancel lands in the same loop iteration as the inner wait completing (fixed in 3.12), and
psycopg_pool waits for a free connection with ``wait_for``. A loop around such a wait then runs on, and whoever
awaits it waits forever. It also hides the caller's own cancellation (an enclosing timeout cannot stop it).

``stop_tasks`` cancels, waits, and cancels again while a task is still running; a task that outlives ``grace``
is logged and left behind rather than allowed to hang the shutdown. The caller's own cancellation propagates.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Iterable
from typing import Any

__all__ = ["run_later", "stop_tasks"]

log = logging.getLogger(__name__)

#: How long a cancelled task gets to finish its cleanup before it is cancelled again.
RECANCEL_SECONDS = 1.0


async def stop_tasks(tasks: Iterable[asyncio.Task[Any]], *, what: str, grace: float = 30.0) -> bool:
    """Cancel ``tasks`` and wait until they are done; whether they all ended within ``grace`` seconds.

    A task still running after ``RECANCEL_SECONDS`` is cancelled again (it swallowed the cancel). One still running
    after ``grace`` is logged as an error and abandoned. Exceptions the tasks ended with are logged, not raised.
    """
    tasks = list(tasks)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + grace
    pending = {t for t in tasks if not t.done()}
    cancels = 0
    while pending:
        for task in pending:
            task.cancel()
        cancels += 1
        remaining = deadline - loop.time()
        if remaining <= 0:
            log.error(
                "%s: %d task(s) still running %.0f s after being cancelled (%d times); left behind: %s",
                what,
                len(pending),
                grace,
                cancels,
                ", ".join(sorted(t.get_name() for t in pending)),
            )
            return False
        _, pending = await asyncio.wait(pending, timeout=min(RECANCEL_SECONDS, remaining))
        if pending:
            log.warning("%s: %d task(s) ignored a cancel; cancelling again", what, len(pending))
    for task in tasks:
        if task.done() and not task.cancelled() and task.exception() is not None:
            log.error("%s: task %s had failed: %r", what, task.get_name(), task.exception())
    return True


def run_later(tasks: set[asyncio.Task[None]], step: Awaitable[None], *, what: str) -> asyncio.Task[None]:
    """Run ``step`` as a task kept in ``tasks`` until it ends (so ``stop_tasks`` can stop it); a failure is logged.

    For work a callback must not wait for (a venue's follow-up to a fill); ``what`` names it in the log.
    """

    async def run() -> None:
        try:
            await step
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("%s failed", what)

    task = asyncio.get_running_loop().create_task(run())
    tasks.add(task)
    task.add_done_callback(tasks.discard)
    return task
