"""The report outbox stops even when a delivery swallows the cancel (every adapter's teardown goes through it).

A delivery that waits for a pool connection swallows a cancel that lands as the connection is handed over
(psycopg_pool waits with ``asyncio.wait_for``, which on Python 3.11 returns the result instead of raising):
the shard's loop then went back to waiting on its queue and ``stop()`` awaited it forever.
"""

from __future__ import annotations

import asyncio

import pytest

from brokers.outbox import ReportOutbox
from core.domain import ExecutionReport, OrderSide, ReportKind, utcnow

pytestmark = pytest.mark.asyncio


def _report(n: int) -> ExecutionReport:
    return ExecutionReport(
        broker="paper",
        exec_id=f"e-{n}",
        kind=ReportKind.ACCEPTED,
        cl_ord_id="c-1",
        symbol="AAPL",
        side=OrderSide.BUY,
        transact_at=utcnow(),
    )


async def test_stop_returns_when_a_delivery_swallows_the_cancel() -> None:
    delivering = asyncio.Event()
    delivered: list[str] = []

    async def sink(report: ExecutionReport) -> None:
        delivering.set()
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            pass  # what a wait for a pool connection does when the connection arrives with the cancel
        delivered.append(report.exec_id)

    outbox = ReportOutbox(sink)
    outbox.start()
    outbox.put(_report(1))
    await asyncio.wait_for(delivering.wait(), 10)
    stopping = asyncio.create_task(outbox.stop())
    done, _ = await asyncio.wait({stopping}, timeout=15)
    assert done, "ReportOutbox.stop() hangs on a shard whose delivery swallowed the cancel"
    await stopping
    assert delivered == ["e-1"]
