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
from typing import TYPE_CHECKING, Any, ClassVar, Generic, Protocol, Self, TypeVar

from psycopg.rows import dict_row
from pydantic import BaseModel

from brokers.base import ReportSink
from brokers.outbox import ReportOutbox
from brokers.sessions import SessionRecorder
from core.domain import ExecutionReport, OrderStatus, OrderStatusReport, ReportKind
from core.instruments import InstrumentCatalog
from core.marketdata import QuoteSink
from core.settings import Settings
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
    "AdapterStore",
    "JournaledBroker",
    "ReportDelivery",
    "ReportJournal",
    "fill_totals",
    "fill_reports",
    "insert_report",
    "mark_delivered",
    "reports_of",
    "undelivered_reports",
]

log = logging.getLogger(__name__)


def fill_totals(reports: Collection[ExecutionReport]) -> tuple[Decimal, Decimal]:
    """(quantity, notional) of the fills among ``reports``."""
    fills = [r for r in reports if r.kind is ReportKind.FILL]
    qty = sum((f.last_qty for f in fills), Decimal(0))
    notional = sum((f.last_qty * (f.last_price or 0) for f in fills), Decimal(0))
    return qty, notional


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
        return fill_totals(await self.fills(ref=ref))

    async def undelivered(self, limit: int | None = None) -> list[ExecutionReport]:
        """Reports journaled but not yet delivered, oldest first."""
        async with self._pool.connection() as conn:
            return await undelivered_reports(conn, broker=self.broker, streams=self.streams, limit=limit)

    async def mark_delivered(self, exec_ids: Sequence[str]) -> None:
        """Note reports as delivered."""
        async with self._pool.connection() as conn:
            await mark_delivered(conn, broker=self.broker, streams=self.streams, exec_ids=exec_ids)


_R = TypeVar("_R", bound=BaseModel)


class AdapterStore(Generic[_R]):
    """What an adapter's own records share: its pool, its broker's name, its report journal and the row helpers.

    A subclass (the adapter's ``store.py``) holds its own tables' statements, each taking the broker's name as its
    first parameter, and keeps an order's record as the JSON ``body`` of a row, a ``record`` model.
    """

    #: The model of an order's record (the ``body`` column of the adapter's orders table).
    record: type[_R]

    def __init__(self, pool: Pool, *, broker: str) -> None:
        """Records of ``broker`` through ``pool``."""
        self._pool = pool
        self.broker = broker
        #: Every report derived, once per exec id (``ref``: the broker's id of the order it is about).
        self.journal = ReportJournal(pool, broker=broker)

    async def order(self, order_id: str) -> _R | None:
        """The record of ``order_id`` (the base order id)."""
        raise NotImplementedError

    async def _rows(self, sql: str, *params: object) -> list[dict[str, Any]]:
        async with self._pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(sql, (self.broker, *params))
            return list(await cur.fetchall())

    async def _records(self, sql: str, *params: object) -> list[_R]:
        """The records in the ``body`` column of the rows of ``sql``."""
        return [self.record.model_validate(r["body"]) for r in await self._rows(sql, *params)]

    async def _first(self, sql: str, *params: object) -> _R | None:
        records = await self._records(sql, *params)
        return records[0] if records else None

    async def _add(self, record: _R, order_id: str, sql: str, params: Sequence[object]) -> tuple[_R, bool]:
        """Insert a new order's row (``sql``: ``INSERT ... ON CONFLICT DO NOTHING RETURNING ...``).

        (``record``, True) when it was inserted; (the record that exists, False) when ``order_id`` is known already.
        """
        async with self._pool.connection() as conn:
            cur = await conn.execute(sql, params)
            if await cur.fetchone() is not None:
                return record, True
        existing = await self.order(order_id)
        assert existing is not None
        return existing, False

    async def _execute(self, sql: str, params: Sequence[object]) -> None:
        async with self._pool.connection() as conn:
            await conn.execute(sql, params)


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


class _Closable(Protocol):
    async def aclose(self) -> None: ...


class JournaledBroker:
    """What an adapter that journals its own reports shares: its session recorder, its journal and its delivery.

    The adapter's ``start`` calls :meth:`_start_reports` first and its ``close`` :meth:`_stop_reports` (both stay the
    adapter's own methods, so ``storage_boundary`` guards them); every report it derives goes through
    :meth:`_record`, journaled before it is delivered.
    """

    #: What :meth:`from_settings` builds: the settings section (also the adapter's default name) and its store.
    settings_section: ClassVar[str]
    store_class: ClassVar[type[AdapterStore[Any]]]

    name: str
    #: Hands journaled reports to the sink (None until started).
    delivery: ReportDelivery | None
    _journal: ReportJournal
    _recorder: SessionRecorder | None
    _recording: bool

    if TYPE_CHECKING:
        # What an adapter built by ``from_settings`` takes (each declares its own, with its settings' type).
        def __init__(
            self,
            settings: Any,
            *,
            store: Any,
            name: str,
            recorder: SessionRecorder | None,
            quotes: QuoteSink | None,
            instruments: InstrumentCatalog | None,
        ) -> None: ...

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        *,
        pool: Pool,
        name: str | None = None,
        quotes: QuoteSink | None = None,
        instruments: InstrumentCatalog | None = None,
    ) -> Self:
        """Build the adapter from the application settings (named like its section unless ``name`` says)."""
        name = name or cls.settings_section
        cfg = getattr(settings, cls.settings_section)
        return cls(
            cfg,
            store=cls.store_class(pool, broker=name),
            name=name,
            recorder=SessionRecorder(pool, broker=name, session=cls.session_name(cfg)),
            quotes=quotes,
            instruments=instruments,
        )

    @staticmethod
    def session_name(settings: Any) -> str:
        """The session its recorder records (in ``broker_sessions``): the broker's URL."""
        return str(settings.base_url)

    def _init_reports(self, name: str, journal: ReportJournal, recorder: SessionRecorder | None) -> None:
        self.name = name
        self._journal = journal
        self._recorder = recorder
        self._recording = False
        self.delivery = None

    async def _start_reports(self, sink: ReportSink) -> None:
        """Start recording the session, then deliver what a previous run journaled and never delivered."""
        if self._recorder is not None:
            await self._recorder.start()
            self._recording = True
        self.delivery = ReportDelivery(sink, journal=self._journal)
        await self.delivery.start()

    async def _stop_reports(self, *clients: _Closable) -> None:
        """Stop the delivery, close ``clients`` (the REST clients), then stop recording the session (idempotent)."""
        if self.delivery is not None:
            await self.delivery.stop()
            self.delivery = None
        for client in clients:
            await client.aclose()
        if self._recorder is not None and self._recording:
            self._recording = False
            await self._recorder.stop()

    def _order_status(
        self,
        reports: list[ExecutionReport],
        *,
        cl_ord_id: str,
        broker_order_id: str | None,
        qty: Decimal,
        status: OrderStatus | None = None,
        price: Decimal | None = None,
        stop_price: Decimal | None = None,
    ) -> OrderStatusReport:
        """An order's status with its journaled ``reports``, whose fills give its filled quantity and average price.

        ``status`` None: the order works (partially filled once it has a fill).
        """
        cum, notional = fill_totals(reports)
        if status is None:
            status = OrderStatus.PARTIALLY_FILLED if cum > 0 else OrderStatus.ACCEPTED
        return OrderStatusReport(
            broker=self.name,
            cl_ord_id=cl_ord_id,
            broker_order_id=broker_order_id,
            status=status,
            qty=qty,
            cum_qty=cum,
            avg_price=notional / cum if cum > 0 else None,
            price=price,
            stop_price=stop_price,
            reports=reports,
        )

    async def _record(self, report: ExecutionReport, *, ref: str | None, source: str) -> bool:
        """Journal a report and hand it to the delivery; False when it was journaled before."""
        if not await self._journal.add(report, ref=ref, source=source):
            return False
        if self.delivery is not None:
            self.delivery.put(report)
        return True
