"""The paper broker: the ``Broker`` protocol in front of the in-process simulated venue."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import datetime
from typing import TypeVar

import psycopg

from brokers.base import ReportSink
from brokers.outbox import ReportOutbox
from brokers.paper.config import PAPER_CAPABILITIES
from core.domain import (
    BrokerAck,
    CancelOrder,
    ExecutionReport,
    OrderStatusReport,
    PositionReport,
    ReplaceOrder,
    SubmitOrder,
    utcnow,
)
from core.errors import BrokerUnavailable
from core.marketdata import Quote, QuoteSink
from sim.venue import SimVenue
from store.quotes import QuoteWriter

__all__ = ["PAPER_CAPABILITIES", "PaperBroker", "feed_publisher"]

T = TypeVar("T")


@asynccontextmanager
async def _map_errors() -> AsyncIterator[None]:
    # The venue's journal is the only foreign error source: a database hiccup is an unknown outcome.
    try:
        yield
    except (psycopg.Error, OSError) as e:
        raise BrokerUnavailable(f"paper venue storage failed, was {e!r}") from e


def feed_publisher(venue: SimVenue, sink: QuoteSink, *, source: str) -> Callable[[list[str], bool], Awaitable[None]]:
    """A feed listener that publishes the venue's top of book to ``sink`` as quotes of ``source``.

    A move made by hand (a test's or demo's ``set_mid``) is written through at once when the sink is the
    worker's ``QuoteWriter``, so the next risk check sees it; the ticker's moves are left to its batching.
    """

    async def publish(symbols: list[str], by_hand: bool) -> None:
        at = utcnow()
        for symbol in symbols:
            top = venue.feed.quote(symbol)
            await sink(Quote(symbol=symbol, source=source, bid=top.bid, ask=top.ask, at=at))
        if by_hand and isinstance(sink, QuoteWriter):
            await sink.flush()

    return publish


class PaperBroker:
    """Paper trading against ``SimVenue``."""

    capabilities = PAPER_CAPABILITIES

    def __init__(self, venue: SimVenue, *, quotes: QuoteSink | None = None) -> None:
        """Wrap ``venue``; publish its feed to ``quotes`` (source ``paper``) when given."""
        self.venue = venue
        self.name = venue.name
        self.outbox: ReportOutbox | None = None
        self.quotes: QuoteSink | None = None
        if quotes is not None:
            self.publish_quotes(quotes)

    def publish_quotes(self, sink: QuoteSink) -> None:
        """Publish the venue's feed to ``sink`` (source: the venue's name, ``paper``) from now on."""
        if self.quotes is not None:
            raise RuntimeError(f"{self.name} already publishes its quotes")
        self.quotes = sink
        self.venue.add_feed_listener(feed_publisher(self.venue, sink, source=self.name))

    async def start(self, sink: ReportSink) -> None:
        """Start the venue and deliver its reports (first those a previous process left undelivered)."""
        self.outbox = ReportOutbox(sink, on_delivered=self.venue.mark_delivered)
        self.outbox.start()
        self.venue.add_listener(self.outbox.put)
        for report in await self.venue.start():
            self.outbox.put(report)

    async def close(self) -> None:
        """Stop delivering and stop the venue."""
        if self.outbox is not None:
            await self.outbox.stop()
            self.outbox = None
        await self.venue.stop()

    async def _call(self, op: Callable[[], Awaitable[T]]) -> T:
        async with _map_errors():
            return await op()

    async def submit_order(self, order: SubmitOrder) -> BrokerAck:
        """Submit to the venue."""
        return await self._call(lambda: self.venue.submit(order))

    async def cancel_order(self, request: CancelOrder) -> BrokerAck:
        """Cancel at the venue."""
        return await self._call(lambda: self.venue.cancel(request))

    async def replace_order(self, request: ReplaceOrder) -> BrokerAck:
        """Cancel/replace at the venue."""
        return await self._call(lambda: self.venue.replace(request))

    async def get_order_status(self, client_order_id: str) -> OrderStatusReport | None:
        """The venue's view of an order."""
        return await self._call(lambda: self.venue.status(client_order_id))

    async def open_orders(self) -> list[OrderStatusReport]:
        """Orders still working at the venue."""
        return await self._call(self.venue.open_orders)

    async def fills_since(self, since: datetime) -> list[ExecutionReport]:
        """Fills after ``since``."""
        return await self._call(lambda: self.venue.fills_since(since))

    async def positions(self) -> list[PositionReport]:
        """The paper venue keeps no positions of its own; the ledger is the only book."""
        return []
