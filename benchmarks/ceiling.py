"""``python -m benchmarks.ceiling``: the ceiling worker, in its own process like ``python -m worker``.

It polls two task queues as the Exodus worker does (workflows with their local activities on one, the
"broker" activities on the other), with the same worker limits, the same (pydantic) data converter and the
same workflow sandbox, and delivers the "execution reports" as signals from sharded background tasks as the
broker outbox does. Everything it runs is a no-op; see ``benchmarks.ceiling_workflow``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import zlib

from temporalio import activity
from temporalio.client import Client
from temporalio.service import RPCError
from temporalio.worker import Worker

from benchmarks.ceiling_workflow import Blob, CeilingWorkflow
from core.settings import get_settings
from core.temporal import connect
from worker.sandbox import CEILING_PASSED_THROUGH, cache_workflow_code, workflow_runner

__all__ = ["CeilingActivities", "broker_task_queue", "main"]

log = logging.getLogger("ceiling")


def broker_task_queue(task_queue: str) -> str:
    """The ceiling's "broker" task queue."""
    return f"{task_queue}-broker"


class CeilingActivities:
    """No-op activities that answer with payloads of the requested size."""

    def __init__(self, client: Client, shards: int = 16) -> None:
        """Signal through ``client`` from ``shards`` background senders."""
        self._client = client
        self._queues: list[asyncio.Queue[tuple[str, Blob]]] = [asyncio.Queue() for _ in range(shards)]
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        """Start the signal senders."""
        self._tasks = [asyncio.create_task(self._send(q)) for q in self._queues]

    async def stop(self) -> None:
        """Stop the signal senders."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _send(self, queue: asyncio.Queue[tuple[str, Blob]]) -> None:
        while True:
            workflow_id, report = await queue.get()
            try:
                await self._client.get_workflow_handle(workflow_id).signal("report", report)
            except RPCError:
                pass  # the workflow already closed (as Exodus' dispatcher, it would be recorded, not retried)

    @activity.defn(name="ceiling_risk")
    async def risk(self, inp: Blob) -> Blob:
        """The risk check's stand-in."""
        return Blob(pad="d" * inp.answer)

    @activity.defn(name="ceiling_persist")
    async def persist(self, inp: Blob) -> int:
        """The booking's stand-in."""
        return 0

    @activity.defn(name="ceiling_submit")
    async def submit(self, inp: Blob) -> Blob:
        """The submission's stand-in: queues the venue's reports as signals, then answers."""
        shard = zlib.crc32(inp.workflow_id.encode()) % len(self._queues)
        for i in range(inp.signals):
            self._queues[shard].put_nowait((inp.workflow_id, Blob(pad=str(i) * inp.signal_size)))
        return Blob(pad="a" * inp.answer)

    @activity.defn(name="ceiling_status")
    async def status(self, inp: Blob) -> Blob:
        """The reconciliation's stand-in."""
        return Blob(pad="s" * inp.answer)


async def main() -> None:
    """Run the ceiling worker until SIGINT/SIGTERM."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = get_settings()
    task_queue = os.environ.get("BENCH_CEILING_TASK_QUEUE", "bench-ceiling")
    client = await connect(settings, identity=f"exodus-bench-ceiling@{task_queue}")
    cache_workflow_code([CeilingWorkflow])
    acts = CeilingActivities(client)
    acts.start()
    wcfg = settings.worker
    workers = [
        Worker(
            client,
            task_queue=task_queue,
            workflows=[CeilingWorkflow],
            workflow_runner=workflow_runner(CEILING_PASSED_THROUGH),
            activities=[acts.risk, acts.persist],
            max_concurrent_workflow_tasks=wcfg.max_concurrent_workflow_tasks,
            max_concurrent_local_activities=wcfg.max_concurrent_activities,
        ),
        Worker(
            client,
            task_queue=broker_task_queue(task_queue),
            activities=[acts.submit, acts.status],
            max_concurrent_activities=wcfg.max_concurrent_activities,
        ),
    ]
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with contextlib.AsyncExitStack() as stack:
        for w in workers:
            await stack.enter_async_context(w)
        log.info("ceiling worker polling %s and %s", task_queue, broker_task_queue(task_queue))
        await stop.wait()
    await acts.stop()


if __name__ == "__main__":
    asyncio.run(main())
