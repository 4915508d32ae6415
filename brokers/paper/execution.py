"""The paper broker: the ``Broker`` protocol in front of the in-process simulated venue.

The venue (``sim.venue.SimVenue``) is built by the paper spec's venue hook (``brokers/paper/__init__.py``); this
module never imports ``sim``. The venue journals its book and its undelivered reports itself, so the paper broker
hands the shared ``ReportDelivery`` the venue's undelivered reports at start and its delivery marks.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import TYPE_CHECKING

from brokers.base import ReportSink, storage_boundary
from brokers.journal import ReportDelivery
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
from core.marketdata import Quote, QuoteSink
from store.quotes import QuoteWriter

if TYPE_CHECKING:
    from sim.venue import SimVenue

__all__ = ["PAPER_CAPABILITIES", "PaperBroker", "feed_publisher"]


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


@storage_boundary
class PaperBroker:
    """Paper trading against ``SimVenue`` (the venue's journal is the only foreign error source)."""

    capabilities = PAPER_CAPABILITIES

    def __init__(self, venue: SimVenue, *, quotes: QuoteSink | None = None) -> None:
        """Wrap ``venue``; publish its feed to ``quotes`` (source ``paper``) when given."""
        self.venue = venue
        self.name = venue.name
        self.delivery: ReportDelivery | None = None
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
        delivery = self.delivery = ReportDelivery(sink, mark=self.venue.mark_delivered)
        self.venue.add_listener(delivery.put)
        await delivery.start(pending=await self.venue.start())

    async def close(self) -> None:
        """Stop delivering and stop the venue."""
        if self.delivery is not None:
            await self.delivery.stop()
            self.delivery = None
        await self.venue.stop()

    async def submit_order(self, order: SubmitOrder) -> BrokerAck:
        """Submit to the venue."""
        return await self.venue.submit(order)

    async def cancel_order(self, request: CancelOrder) -> BrokerAck:
        """Cancel at the venue."""
        return await self.venue.cancel(request)

    async def replace_order(self, request: ReplaceOrder) -> BrokerAck:
        """Cancel/replace at the venue."""
        return await self.venue.replace(request)

    async def get_order_status(self, cl_ord_id: str) -> OrderStatusReport | None:
        """The venue's view of an order."""
        return await self.venue.status(cl_ord_id)

    async def open_orders(self) -> list[OrderStatusReport]:
        """Orders still working at the venue."""
        return await self.venue.open_orders()

    async def fills_since(self, since: datetime) -> list[ExecutionReport]:
        """Fills after ``since``."""
        return await self.venue.fills_since(since)

    async def positions(self) -> list[PositionReport]:
        """The venue's net positions per account and symbol, from its own fills."""
        return await self.venue.positions()
