"""Market data: the quotes risk prices orders with, and where brokers publish them.

Every broker session that can see prices (the paper feed, a FIX session's MarketDataSnapshot, the MT5 EA's
ticks, a REST broker's quote endpoint) publishes ``Quote`` values to a ``QuoteSink``. The worker wires the
sink to the market data service, which keeps the latest quote per (source, symbol) where every process can
read it; the risk check asks it for "the price of X for broker B" and gets the quote with its age. A real
broker is never priced off the simulated feed.

A quote's ``source`` is the broker it came from (``paper``, ``fix``, ``mt5``...). ``at`` is when the source
produced it (the venue's time when the message carries one, else when it was received), so a quote that sat
in a queue is not mistaken for a fresh one.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from decimal import Decimal

from pydantic import BaseModel, ConfigDict

__all__ = ["Quote", "QuoteSink"]


class Quote(BaseModel):
    """The best bid and offer (and last trade, when known) of one symbol at one source, at a time."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    symbol: str
    source: str
    bid: Decimal | None = None
    ask: Decimal | None = None
    last: Decimal | None = None
    at: datetime

    @property
    def mid(self) -> Decimal | None:
        """The mid price; one side, or the last trade, when that is all there is."""
        if self.bid is not None and self.ask is not None:
            return (self.bid + self.ask) / 2
        return self.bid if self.bid is not None else self.ask if self.ask is not None else self.last

    def age(self, now: datetime) -> timedelta:
        """How old the quote is at ``now``."""
        return now - self.at


#: Where a broker session publishes the quotes it sees (the worker wires it to the market data service).
QuoteSink = Callable[[Quote], Awaitable[None]]
