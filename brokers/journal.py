"""The one report journal every adapter keeps (``broker_reports``), and the one way its reports are delivered.

Every execution report an adapter learns of is journaled once per ``(broker, stream, exec_id)`` *before* it goes
to the order workflows, and marked delivered once the sink took it; what was journaled but not delivered when a
process stopped is delivered again when the next one starts (``ReportDelivery.start``), so a restart loses and
duplicates nothing (the order workflow deduplicates by exec id). See ``migrations/0019_broker_reports.sql``.

* ``stream`` is what delivers a broker's reports: the FIX session (``FIX.4.4:EXODUS->EXVENUE``), the MT5 account
  whose terminal reported them, the broker's own name for a REST broker. A worker reads the streams it owns.
* ``ref`` is the broker's own id of the order a report is about, where the adapter needs to find reports by it
  (Alpaca's order id, which changes along a replace chain); ``source`` says how it was learnt.

The statements are ``store/reports.py``'s (the table is shared by every adapter, so its SQL lives with the other
shared tables'): functions taking a connection (the caller owns the transaction: the MT5 bridge journals a report in
the same transaction as the order row it moves), re-exported here; ``ReportJournal`` runs them on a pool for one
broker. Storage failures propagate as psycopg errors: adapters turn them into ``BrokerUnavailable`` at their one
boundary (``brokers.base.storage_boundary``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Collection, Sequence
from datetime import datetime
from decimal import Decimal

from brokers.base import ReportSink
from brokers.outbox import ReportOutbox
from core.domain import ExecutionReport
from store import Pool
from store.reports import (
    fill_reports,
    has_report,
    insert_report,
    mark_delivered,
    reports_of,
    undelivered_reports,
)

__all__ = [
    "ReportDelivery",
    "ReportJournal",
    "fill_reports",
    "insert_report",
    "mark_delivered",
    "reports_of",
    "undelivered_reports",
]

log = logging.getLogger(__name__)


class ReportJournal:
    """The journal of one broker's reports, on the streams this process owns.

    ``stream`` is where ``add`` writes by default; reads cover every stream in ``streams`` (default: ``stream``).
    """

    def __init__(
        self,
        pool: Pool,
        *,
        broker: str,
        stream: str | None = None,
        streams: Sequence[str] | None = None,
    ) -> None:
        """Reports of ``broker`` through ``pool``; ``stream`` defaults to the broker's name."""
        self._pool = pool
        self.broker = broker
        self.stream = stream or broker
        self.streams = list(streams) if streams is not None else [self.stream]

    async def add(
        self,
        report: ExecutionReport,
        *,
        stream: str | None = None,
        order_id: str | None = None,
        ref: str | None = None,
        source: str = "",
    ) -> bool:
        """Journal a report; False when its exec id was journaled before (a duplicate)."""
        async with self._pool.connection() as conn:
            return await insert_report(
                conn,
                report,
                broker=self.broker,
                stream=stream or self.stream,
                order_id=order_id,
                ref=ref,
                source=source,
            )

    async def has(self, exec_id: str) -> bool:
        """Whether a report with ``exec_id`` was journaled."""
        async with self._pool.connection() as conn:
            return await has_report(conn, broker=self.broker, streams=self.streams, exec_id=exec_id)

    async def reports(self, order_id: str) -> list[ExecutionReport]:
        """Every report of an order (its whole replace chain), in arrival order."""
        async with self._pool.connection() as conn:
            return await reports_of(conn, broker=self.broker, streams=self.streams, order_id=order_id)

    async def fills(self, *, ref: str | None = None, since: datetime | None = None) -> list[ExecutionReport]:
        """Fill reports in arrival order: of the broker's order ``ref`` only, and/or that happened after ``since``."""
        async with self._pool.connection() as conn:
            fills = await fill_reports(conn, broker=self.broker, streams=self.streams, ref=ref)
        return [f for f in fills if since is None or f.transact_at > since]

    async def filled(self, ref: str) -> tuple[Decimal, Decimal]:
        """(quantity, notional) of the fills journaled for the broker's order ``ref``."""
        fills = await self.fills(ref=ref)
        qty = sum((f.last_qty for f in fills), Decimal(0))
        notional = sum((f.last_qty * (f.last_price or 0) for f in fills), Decimal(0))
        return qty, notional

    async def undelivered(self, limit: int | None = None) -> list[ExecutionReport]:
        """Reports journaled but not yet delivered, oldest first."""
        async with self._pool.connection() as conn:
            return await undelivered_reports(conn, broker=self.broker, streams=self.streams, limit=limit)

    async def mark_delivered(self, exec_ids: Sequence[str]) -> None:
        """Note reports as delivered."""
        async with self._pool.connection() as conn:
            await mark_delivered(conn, broker=self.broker, streams=self.streams, exec_ids=exec_ids)


class ReportDelivery:
    """Delivers journaled reports to the sink, in order per order, and marks them delivered.

    ``start`` first hands over what a previous process journaled and never delivered (from ``journal``, or the
    ``pending`` reports given, for a venue that keeps its own journal); ``put`` hands over a report just journaled;
    ``sweep`` hands over whatever is journaled and undelivered and not already on its way (for journals other
    processes write into, the MT5 bridge's). Marks go to ``mark`` (default: the journal's).
    """

    def __init__(
        self,
        sink: ReportSink,
        *,
        journal: ReportJournal | None = None,
        mark: Callable[[list[str]], Awaitable[None]] | None = None,
        sweep_limit: int = 500,
    ) -> None:
        """Deliver to ``sink``; ``journal`` or ``mark`` say where delivery marks go."""
        if mark is None and journal is None:
            raise ValueError("a delivery needs a journal or a place to mark reports delivered")
        self._journal = journal
        self._mark = mark or (journal.mark_delivered if journal is not None else None)
        self._outbox = ReportOutbox(sink, on_delivered=self._delivered)
        self._in_flight: set[str] = set()
        self._sweep_limit = sweep_limit
        self._sweeping = asyncio.Lock()

    async def start(self, pending: Collection[ExecutionReport] | None = None) -> None:
        """Start delivering: first the reports left undelivered (``pending``, else the journal's)."""
        self._outbox.start()
        if pending is None:
            await self.sweep(limit=None)
        else:
            for report in pending:
                self.put(report)

    async def stop(self) -> None:
        """Stop delivering; what is undelivered stays so in the journal (the next start delivers it)."""
        await self._outbox.stop()
        self._in_flight.clear()

    def put(self, report: ExecutionReport) -> None:
        """Deliver a report that was just journaled."""
        self._in_flight.add(report.exec_id)
        self._outbox.put(report)

    async def sweep(self, limit: int | None = -1) -> int:
        """Deliver what the journal holds undelivered and is not on its way already; how many were queued.

        ``limit``: read at most this many (default: the delivery's ``sweep_limit``; None: all).
        """
        if self._journal is None:
            return 0
        async with self._sweeping:
            queued = 0
            for report in await self._journal.undelivered(limit=self._sweep_limit if limit == -1 else limit):
                if report.exec_id not in self._in_flight:
                    self.put(report)
                    queued += 1
            return queued

    async def drain(self, timeout: float = 10.0) -> None:
        """Wait until every queued report has been delivered and marked (tests, shutdown)."""
        await self._outbox.drain(timeout)

    @property
    def pending(self) -> int:
        """Reports queued and not yet delivered."""
        return self._outbox.pending

    async def _delivered(self, exec_ids: list[str]) -> None:
        assert self._mark is not None
        await self._mark(exec_ids)
        self._in_flight.difference_update(exec_ids)
