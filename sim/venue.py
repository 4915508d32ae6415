"""The simulated venue as a running service: feed steps on a timer, requests, journal, faults.

The journal is the venue's record of truth. The matching engine works in memory, but nothing it did is
revealed (an answer, a report, a status, a list of fills) until the journal has committed it:

* every request and feed step first saves whatever earlier changes are still unsaved, then runs, then
  saves its own changes, and only then answers and emits its reports;
* when a save fails the caller gets ``BrokerUnavailable`` (an unknown outcome, which it retries after
  asking for the order's status) and the changes stay pending; nothing else is answered until a later save
  of them succeeds, so the venue never contradicts its journal. A process that dies meanwhile restarts from
  the journal as if the unsaved changes never happened: nobody saw them;
* saving is idempotent (orders are upserted, reports inserted once), so a save whose commit went through
  but whose answer was lost is simply saved again;
* if the engine itself raises halfway through a change, the book is rebuilt from the journal before the
  next request;
* front ends (the local FIX venue) read orders through ``order()``/``recorded()``, which follow the same rule,
  never through ``engine``.

Reports that were journaled but never delivered are handed out again by ``start()``; a report is emitted
once per process.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Protocol

from core.domain import (
    BrokerAck,
    CancelOrder,
    ExecutionReport,
    Instrument,
    OrderStatusReport,
    PositionReport,
    ReplaceOrder,
    SubmitOrder,
    utcnow,
)
from core.errors import BrokerUnavailable
from core.tasks import stop_tasks
from sim.feed import PriceFeed
from sim.matching import Auctions, MatchingEngine, MatchResult, SimOrder

__all__ = ["FeedListener", "SimVenue", "VenueFaults", "VenueJournal"]

log = logging.getLogger(__name__)

Listener = Callable[[ExecutionReport], Awaitable[None] | None]
#: Called after the feed moved: the symbols whose prices may have changed, and whether the move was made by
#: hand (``set_mid``/``step``/``start``: a test or demo that expects the new prices to be visible at once).
FeedListener = Callable[[list[str], bool], Awaitable[None]]


class VenueJournal(Protocol):
    """Durable storage of a simulated venue's book."""

    async def acquire(self) -> None:
        """Take exclusive ownership of the venue's book (one process at a time)."""
        ...

    async def release(self) -> None:
        """Give up ownership."""
        ...

    async def load(self) -> tuple[list[SimOrder], list[ExecutionReport]]:
        """Every order, and the reports not yet marked delivered."""
        ...

    async def save(self, result: MatchResult) -> None:
        """Persist the orders, reports and refused duplicate submissions of engine calls, atomically.

        Must be idempotent: the same result may be saved again after a failure whose commit went through.
        """
        ...

    async def mark_delivered(self, exec_ids: list[str]) -> None:
        """Note reports as delivered to their consumer."""
        ...


@dataclass
class VenueFaults:
    """Failure injection for tests and demos."""

    #: The next N requests fail with ``BrokerUnavailable`` before the venue sees them.
    unavailable: int = 0
    #: The next N submissions are processed, but their answer is lost (``BrokerUnavailable``).
    lose_submit_answers: int = 0
    #: Reports are journaled but not emitted (lost in transit), until set back to False.
    suppress_reports: bool = False


class SimVenue:
    """A simulated venue: price feed, matching engine, optional journal, report listeners."""

    def __init__(
        self,
        instruments: Iterable[Instrument],
        *,
        name: str = "paper",
        seed: int = 7,
        tick_interval: float = 0.2,
        latency: float = 0.0,
        reject_rate: float = 0.0,
        reject_symbols: Iterable[str] = (),
        journal: VenueJournal | None = None,
        clock: Callable[[], datetime] = utcnow,
        auctions: Auctions | None = None,
    ) -> None:
        """Build the venue; call ``start()`` before use. Without ``auctions`` it refuses OPG and CLS orders."""
        instruments = list(instruments)
        self.name = name
        self.feed = PriceFeed(instruments, seed=seed)
        self.engine = MatchingEngine(
            self.feed,
            instruments,
            venue=name,
            clock=clock,
            seed=seed,
            reject_rate=reject_rate,
            reject_symbols=reject_symbols,
            auctions=auctions,
        )
        self.tick_interval = tick_interval
        self.latency = latency
        self.faults = VenueFaults()
        self.duplicate_submits = 0
        self._journal = journal
        self._listeners: list[Listener] = []
        self._feed_listeners: list[FeedListener] = []
        self._lock = asyncio.Lock()
        self._ticker: asyncio.Task[None] | None = None
        self._started = False
        #: Changes made in memory that the journal has not committed yet (never revealed while pending).
        self._unsaved = MatchResult()
        #: The engine raised halfway through a change: reload the book from the journal before going on.
        self._needs_reload = False
        #: Reports handed to the listeners by this process (a report is emitted once per process).
        self._emitted: set[str] = set()
        #: Since when saves fail (None: the journal works), and when that was last logged.
        self._failing_since: float | None = None
        self._failure_logged = 0.0
        #: Cancels wait on this while it is clear (tests hold cancels to race them against fills).
        self.cancels_open = asyncio.Event()
        self.cancels_open.set()

    def add_listener(self, listener: Listener) -> None:
        """Call ``listener`` with every report, after it is journaled."""
        self._listeners.append(listener)

    def add_feed_listener(self, listener: FeedListener) -> None:
        """Call ``listener`` after every move of the feed (the paper broker publishes its quotes with it)."""
        self._feed_listeners.append(listener)

    async def start(self) -> list[ExecutionReport]:
        """Load the journal, start the feed, and return the reports still to be delivered."""
        pending: list[ExecutionReport] = []
        if self._journal is not None:
            await self._journal.acquire()
            orders, pending = await self._journal.load()
            self.engine.load(orders)
            log.info("%s: restored %d orders, %d undelivered reports", self.name, len(orders), len(pending))
        self._emitted.update(r.exec_id for r in pending)
        await self._feed_moved(self.feed.symbols(), by_hand=True)
        if self.tick_interval > 0:
            self._ticker = asyncio.create_task(self._tick_forever(), name=f"{self.name}-ticker")
        self._started = True
        return pending

    async def stop(self) -> None:
        """Stop the feed and release the journal."""
        if self._ticker is not None:
            ticker, self._ticker = self._ticker, None
            await stop_tasks([ticker], what=f"{self.name} ticker")
        if self._journal is not None and self._started:
            await self._journal.release()
        self._started = False

    async def mark_delivered(self, exec_ids: list[str]) -> None:
        """Note reports as delivered (no-op without a journal)."""
        if self._journal is not None and exec_ids:
            await self._journal.mark_delivered(exec_ids)
        self._emitted.difference_update(exec_ids)

    @property
    def unsaved(self) -> bool:
        """Whether changes are waiting for the journal (the venue answers nothing until they are saved)."""
        return bool(self._unsaved.changed or self._unsaved.reports or self._unsaved.duplicates)

    # -- requests ---------------------------------------------------------------------------------------

    async def submit(self, order: SubmitOrder) -> BrokerAck:
        """Submit a new order."""
        await self._enter()
        result = await self._run(lambda: self.engine.submit(order))
        assert result.ack is not None
        if self.faults.lose_submit_answers > 0:
            self.faults.lose_submit_answers -= 1
            raise BrokerUnavailable(f"{self.name}: the answer to {order.cl_ord_id} was lost (injected)")
        return result.ack

    async def cancel(self, request: CancelOrder) -> BrokerAck:
        """Cancel an order."""
        await self._enter()
        await self.cancels_open.wait()
        result = await self._run(lambda: self.engine.cancel(request))
        assert result.ack is not None
        return result.ack

    async def replace(self, request: ReplaceOrder) -> BrokerAck:
        """Cancel/replace an order."""
        await self._enter()
        result = await self._run(lambda: self.engine.replace(request))
        assert result.ack is not None
        return result.ack

    async def status(self, cl_ord_id: str) -> OrderStatusReport | None:
        """The venue's view of an order."""
        await self._enter()
        async with self._lock:
            await self._sync()
            return self.engine.status(cl_ord_id)

    async def order(self, cl_ord_id: str) -> SimOrder | None:
        """The venue's record of an order (by any id of its replace chain; refused ones too), as journaled.

        Like every answer, it first saves whatever is still unsaved (``BrokerUnavailable`` if the journal cannot
        take it), so nothing shown from it differs from the journal. A copy: later changes do not show in it.
        Front ends of the venue (the local FIX venue) look orders up here, never in ``engine``.
        """
        async with self._lock:
            await self._sync()
            return self.recorded(cl_ord_id)

    def recorded(self, cl_ord_id: str) -> SimOrder | None:
        """The journaled record of an order, without waiting: for report listeners and right after an answer.

        Valid only while nothing is unsaved (a listener runs right after its reports were journaled; a caller
        that just got an answer has had no await since); otherwise ``BrokerUnavailable``, never the engine's
        unsaved view. A copy.
        """
        if self.unsaved or self._needs_reload:
            raise BrokerUnavailable(f"{self.name}: changes are waiting for the journal; the book is not readable")
        order = self.engine.find(cl_ord_id)
        return None if order is None else order.model_copy(deep=True)

    async def open_orders(self) -> list[OrderStatusReport]:
        """Orders still working."""
        async with self._lock:
            await self._sync()
            return [o.status_report(self.name) for o in self.engine.open_orders()]

    async def fills_since(self, since: datetime) -> list[ExecutionReport]:
        """Fills after ``since``."""
        async with self._lock:
            await self._sync()
            return [
                r
                for o in self.engine.all_orders()
                for r in o.reports
                if r.kind.value == "FILL" and r.transact_at > since
            ]

    async def positions(self) -> list[PositionReport]:
        """Net position per account and symbol: the sum of the venue's fills, signed (a sell is negative)."""
        async with self._lock:
            await self._sync()
            net: dict[tuple[str, str], Decimal] = {}
            for o in self.engine.all_orders():
                for r in o.reports:
                    if r.kind.value == "FILL":
                        key = (o.account, o.symbol)
                        net[key] = net.get(key, Decimal(0)) + (r.last_qty if o.side.value == "BUY" else -r.last_qty)
            return [
                PositionReport(broker=self.name, account=account, symbol=symbol, qty=qty)
                for (account, symbol), qty in sorted(net.items())
                if qty != 0
            ]

    async def step(self) -> None:
        """Move the feed one step and match resting orders (tests drive this directly)."""
        await self._run(self._step_engine)
        await self._feed_moved(self.feed.symbols(), by_hand=True)

    async def flush(self) -> None:
        """Save changes still waiting for the journal and emit their reports (``BrokerUnavailable`` if it fails)."""
        async with self._lock:
            await self._sync()

    async def set_mid(self, symbol: str, mid: Decimal) -> None:
        """Move a symbol's mid price and match resting orders at once."""

        def move() -> MatchResult:
            self.feed.set_mid(symbol, mid)
            return self.engine.step()

        await self._run(move)
        await self._feed_moved([symbol], by_hand=True)

    def reference_price(self, symbol: str) -> Decimal | None:
        """Current mid price of ``symbol``."""
        return self.feed.reference_price(symbol)

    # -- internals --------------------------------------------------------------------------------------

    def _step_engine(self) -> MatchResult:
        self.feed.step()
        return self.engine.step()

    async def _feed_moved(self, symbols: list[str], *, by_hand: bool) -> None:
        for listener in self._feed_listeners:
            try:
                await listener(symbols, by_hand)
            except Exception:
                log.exception("%s: feed listener failed", self.name)

    async def _enter(self) -> None:
        if self.latency:
            await asyncio.sleep(self.latency)
        if self.faults.unavailable > 0:
            self.faults.unavailable -= 1
            raise BrokerUnavailable(f"{self.name}: venue unavailable (injected)")

    async def _run(self, op: Callable[[], MatchResult]) -> MatchResult:
        # Journal first: earlier unsaved changes, then this one; answer and emit only what is committed.
        async with self._lock:
            await self._sync()
            try:
                result = op()
            except Exception:
                # The engine failed halfway: what it changed is unknown, so the journal's book is the truth.
                self._needs_reload = True
                raise
            self._unsaved.merge(result)
            await self._sync()
        return result

    async def _sync(self) -> None:
        """Make the journal hold everything the engine did, then emit the new reports (call under the lock)."""
        if self._needs_reload:
            await self._reload()
        if not self.unsaved:
            return
        pending = self._unsaved
        if self._journal is not None:
            try:
                await self._journal.save(pending)
            except Exception as e:
                self._journal_failed(pending, e)
                raise BrokerUnavailable(f"{self.name}: the venue's journal is unavailable, was {e!r}") from e
            if self._failing_since is not None:
                log.warning(
                    "%s: the journal works again after %.1fs; %d pending reports saved and sent",
                    self.name,
                    time.monotonic() - self._failing_since,
                    len(pending.reports),
                )
                self._failing_since = None
        self._unsaved = MatchResult()
        self.duplicate_submits += len(pending.duplicates)
        await self._emit(pending.reports)

    def _journal_failed(self, pending: MatchResult, error: Exception) -> None:
        # One line when the journal starts failing, then one every 10 s while it still does.
        now = time.monotonic()
        if self._failing_since is None:
            self._failing_since = now
        elif now - self._failure_logged < 10:
            return
        self._failure_logged = now
        log.warning(
            "%s: journaling failed for %.0fs (%d order changes, %d reports kept; nothing is answered until they "
            "are saved), was %r",
            self.name,
            now - self._failing_since,
            len(pending.changed),
            len(pending.reports),
            error,
        )

    async def _reload(self) -> None:
        if self._journal is None:
            # Nothing to rebuild from: keep the book as the engine left it.
            self._needs_reload = False
            return
        try:
            orders, pending = await self._journal.load()
        except Exception as e:
            raise BrokerUnavailable(f"{self.name}: rebuilding the book from the journal failed, was {e!r}") from e
        self.engine.reset(orders)
        self._unsaved = MatchResult()
        self._needs_reload = False
        log.warning("%s: book rebuilt from the journal (%d orders)", self.name, len(orders))
        await self._emit(pending)

    async def _emit(self, reports: list[ExecutionReport]) -> None:
        if self.faults.suppress_reports:
            self._emitted.update(r.exec_id for r in reports)
            return
        for report in reports:
            if report.exec_id in self._emitted:
                continue
            self._emitted.add(report.exec_id)
            for listener in self._listeners:
                outcome = listener(report)
                if outcome is not None:
                    await outcome

    async def _tick_forever(self) -> None:
        while True:
            await asyncio.sleep(self.tick_interval)
            try:
                await self._run(self._step_engine)
            except BrokerUnavailable:
                pass  # the journal is down (logged by _sync); the step is saved before anything else happens
            except Exception:
                # The market goes on; the book is rebuilt from the journal before the next step.
                log.exception("%s: feed step failed", self.name)
            await self._feed_moved(self.feed.symbols(), by_hand=False)
