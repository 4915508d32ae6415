"""Deliver execution reports to their consumer in order per order, in parallel across orders.

A broker adapter puts every report it learns of into the outbox and forgets it; the outbox hands it to
the sink (the worker's dispatcher, which signals the order workflow and only returns once the report is
delivered or can never be), then tells the adapter which reports are done so a journal can mark them.
Reports of one order go through one shard, so they arrive in the order the broker produced them.
"""

from __future__ import annotations

import asyncio
import logging
import zlib
from collections.abc import Awaitable, Callable

from brokers.base import ReportSink
from core.domain import ExecutionReport
from core.tasks import stop_tasks

__all__ = ["ReportOutbox"]

log = logging.getLogger(__name__)


class ReportOutbox:
    """Sharded, ordered-per-order delivery of execution reports."""

    def __init__(
        self,
        sink: ReportSink,
        *,
        on_delivered: Callable[[list[str]], Awaitable[None]] | None = None,
        shards: int = 16,
        retry_delay: float = 1.0,
    ) -> None:
        """Deliver to ``sink``; report delivered exec ids to ``on_delivered`` in batches."""
        self._sink = sink
        self._on_delivered = on_delivered
        self._queues: list[asyncio.Queue[ExecutionReport]] = [asyncio.Queue() for _ in range(shards)]
        self._tasks: list[asyncio.Task[None]] = []
        self._delivered: list[str] = []
        self._retry_delay = retry_delay
        self._flush_wakeup = asyncio.Event()

    def start(self) -> None:
        """Start the shard consumers and the delivered-marks flusher."""
        self._tasks = [asyncio.create_task(self._consume(q), name=f"outbox-{i}") for i, q in enumerate(self._queues)]
        self._tasks.append(asyncio.create_task(self._flush_forever(), name="outbox-flush"))

    async def stop(self) -> None:
        """Stop delivering; undelivered reports stay undelivered (a journal re-delivers them)."""
        tasks, self._tasks = self._tasks, []
        await stop_tasks(tasks, what="report outbox")
        await self._flush()

    def put(self, report: ExecutionReport) -> None:
        """Queue a report for delivery."""
        shard = zlib.crc32(report.order_id.encode()) % len(self._queues)
        self._queues[shard].put_nowait(report)

    async def drain(self, timeout: float = 10.0) -> None:
        """Wait until every queued report has been delivered (tests)."""
        async with asyncio.timeout(timeout):
            for q in self._queues:
                await q.join()
            await self._flush()

    @property
    def pending(self) -> int:
        """Reports queued but not yet delivered."""
        return sum(q.qsize() for q in self._queues)

    async def _consume(self, queue: asyncio.Queue[ExecutionReport]) -> None:
        while True:
            report = await queue.get()
            try:
                while True:
                    try:
                        await self._sink(report)
                        break
                    except asyncio.CancelledError:
                        raise
                    except Exception:
                        log.exception("delivering report %s failed; retrying", report.exec_id)
                        await asyncio.sleep(self._retry_delay)
                self._delivered.append(report.exec_id)
                self._flush_wakeup.set()
            finally:
                queue.task_done()

    async def _flush_forever(self) -> None:
        while True:
            await self._flush_wakeup.wait()
            self._flush_wakeup.clear()
            await asyncio.sleep(0.05)  # gather a batch
            try:
                await self._flush()
            except Exception:
                log.exception("marking reports delivered failed; will retry")

    async def _flush(self) -> None:
        if not self._delivered or self._on_delivered is None:
            self._delivered.clear()
            return
        batch, self._delivered = self._delivered, []
        try:
            await self._on_delivered(batch)
        except Exception:
            self._delivered[:0] = batch
            raise
