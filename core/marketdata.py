"""Market data: the quotes risk prices orders with, and where brokers publish them.

Every broker session that can see prices (the paper feed, a FIX session's MarketDataSnapshot, the MT5 EA's
ticks, a REST broker's quote endpoint) publishes ``Quote`` values to a ``QuoteSink``. The worker wires the
sink to the market data service, which keeps the latest quote per (source, symbol) where every process can
read it; the risk check asks it for "the price of X for broker B" and gets the quote with its age. A real
broker is never priced off the simulated feed.

A quote's ``source`` is the broker it came from (``paper``, ``fix``, ``mt5``...). ``at`` is when the source
produced it (the venue's time when the message carries one, else when it was received), so a quote that sat
in a queue is not mistaken for a fresh one.

The pieces::

    broker session ──Quote──▶ QuoteWriter (the worker's QuoteSink: latest per key, one upsert per interval)
    MT5 EA ──POST …/ticks──▶ API bridge route ──▶ upsert_quotes ─┐      (both in store/quotes.py)
                                                                  ▼
                                                   market_quotes (Postgres: one row per source and symbol)
                                                                  │ read by
                                 ┌────────────────────────────────┼──────────────────────────┐
                     risk check (read with its other       GET /api/v1/quotes        exodus_quote_age_seconds
                     reads, priced through PriceBook)      (MarketData.views)        (MarketData.refresh_metrics)

``MarketData`` answers with ``Reference`` values: the source asked (the order's broker, or the source
configured for the instrument), the quote if there is one, its age, and whether it is stale (older than the
instrument class's limit). The REST brokers publish through the same sink when their adapters arrive: a
broker factory gets the sink as ``BrokerContext.quotes``.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Final, Literal

from pydantic import BaseModel, ConfigDict

from core.domain import utcnow
from core.instruments import InstrumentCatalog
from core.metrics import QUOTE_AGE, QUOTES_STALE
from core.settings import MarketDataSettings

__all__ = [
    "SIMULATED_SOURCES",
    "MarketData",
    "PriceBook",
    "Quote",
    "QuoteSink",
    "QuoteView",
    "Reference",
    "ReferenceStatus",
    "StoredQuote",
]

log = logging.getLogger(__name__)

#: Sources whose prices are simulated: they price only orders for a simulated broker.
SIMULATED_SOURCES: Final = frozenset({"paper"})

ReferenceStatus = Literal["OK", "NO_REFERENCE_PRICE", "STALE_REFERENCE_PRICE"]


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


# ------------------------------------------------------------------------------------------------ the store


@dataclass(frozen=True, slots=True)
class StoredQuote:
    """A row of the quote store: the quote (``at`` is the source's time) and when Exodus received it."""

    quote: Quote
    received_at: datetime


# ------------------------------------------------------------------------------------------------ the service


@dataclass(frozen=True, slots=True)
class QuoteView:
    """A stored quote as risk sees it at one moment: its age and whether it is too old to price with."""

    quote: Quote
    received_at: datetime
    age_seconds: float
    max_age_seconds: float

    @property
    def stale(self) -> bool:
        """Older than the instrument class allows."""
        return self.age_seconds > self.max_age_seconds

    @property
    def mid(self) -> Decimal | None:
        """The quote's mid price."""
        return self.quote.mid


def _secs(value: float) -> str:
    return f"{value:.1f}"


@dataclass(frozen=True, slots=True)
class Reference:
    """The answer to "the price of ``symbol`` for broker ``broker``": which source was asked and what it had."""

    symbol: str
    broker: str
    source: str
    view: QuoteView | None
    #: Limit and stop orders may be valued at their own price when the status is not OK (per class).
    own_price_without_quote: bool = False

    @property
    def status(self) -> ReferenceStatus:
        """OK, or why the quote cannot price an order."""
        if self.view is None or self.view.mid is None:
            return "NO_REFERENCE_PRICE"
        return "STALE_REFERENCE_PRICE" if self.view.stale else "OK"

    @property
    def price(self) -> Decimal | None:
        """The mid price of a fresh quote (None when there is none)."""
        return self.view.mid if self.status == "OK" and self.view is not None else None

    def problem(self) -> str | None:
        """Why there is no usable reference price, naming the source and the age (None: there is one)."""
        status = self.status
        if status == "OK":
            return None
        if status == "NO_REFERENCE_PRICE" or self.view is None:
            return f"no quote for {self.symbol} from source {self.source!r} (the price source for broker {self.broker})"
        return (
            f"the {self.source} quote for {self.symbol} is {_secs(self.view.age_seconds)}s old "
            f"(quoted at {self.view.quote.at.isoformat()}); quotes older than "
            f"{self.view.max_age_seconds:g}s are stale"
        )


class PriceBook:
    """The quotes one risk decision reads, for one broker: reference prices, marks and FX rates."""

    def __init__(self, market: MarketData, broker: str, quotes: Iterable[StoredQuote], now: datetime) -> None:
        """Index ``quotes`` (read in the decision's transaction) as of ``now``."""
        self.market = market
        self.broker = broker
        self.now = now
        self._views: dict[str, dict[str, QuoteView]] = {}
        for sq in quotes:
            self._views.setdefault(sq.quote.symbol, {})[sq.quote.source] = market.view(sq, now)

    def reference(self, symbol: str) -> Reference:
        """The quote that prices an order for ``symbol`` at this book's broker."""
        source = self.market.source_for(symbol, self.broker)
        return Reference(
            symbol=symbol,
            broker=self.broker,
            source=source,
            view=self._views.get(symbol, {}).get(source),
            own_price_without_quote=self.market.own_price_without_quote(symbol),
        )

    def mark(self, symbol: str) -> Decimal | None:
        """A price to value a position with (its mid), or None.

        The reference source's fresh quote, else the freshest quote of any source this broker may use, stale
        or not: the last known price beats none.
        """
        ref = self.reference(symbol)
        if ref.price is not None:
            return ref.price
        candidates = [
            v for src, v in self._views.get(symbol, {}).items() if self.market.may_value(src, self.broker) and v.mid
        ]
        if not candidates:
            return None
        return min(candidates, key=lambda v: (v.stale, v.age_seconds)).mid

    def rate(self, quote_currency: str, currency: str) -> Decimal | None:
        """Value of one unit of ``quote_currency`` in ``currency`` (None: no quote of either pair)."""
        if quote_currency == currency:
            return Decimal(1)
        direct = self.mark(f"{quote_currency}{currency}")
        if direct:
            return direct
        inverse = self.mark(f"{currency}{quote_currency}")
        return 1 / inverse if inverse else None


class MarketData:
    """The market data service: which source prices what, how old is too old, and views of stored quotes.

    Cheap to build (settings and the catalogue); every process makes its own. It reads nothing itself: the
    caller reads the quote store (``store/quotes.py``) and hands it the rows. The risk decision reads its
    quotes in the statement that reads the account (``store.risk.gather``: the symbols of
    ``conversion_pairs`` and of the order and the positions), and prices them through a ``PriceBook``.
    """

    def __init__(self, settings: MarketDataSettings, instruments: InstrumentCatalog) -> None:
        """Use ``settings`` (sources, age limits) and ``instruments`` (classes, quote currencies)."""
        self.settings = settings
        self.instruments = instruments
        self._pairs: dict[str, list[str]] = {}

    # -- configuration --------------------------------------------------------------------------------

    @staticmethod
    def simulated(source: str) -> bool:
        """Whether ``source`` is a simulated feed."""
        return source in SIMULATED_SOURCES

    def source_for(self, symbol: str, broker: str) -> str:
        """The source that prices ``symbol`` for ``broker``: the one configured for the instrument, else the broker.

        A simulated source configured for an instrument prices only simulated brokers' orders.
        """
        configured = self.settings.sources.get(symbol)
        if configured and not (self.simulated(configured) and not self.simulated(broker)):
            return configured
        return broker

    def may_value(self, source: str, broker: str) -> bool:
        """Whether quotes from ``source`` may value positions or convert currencies for ``broker``'s orders."""
        return self.simulated(broker) or not self.simulated(source)

    def max_age_seconds(self, symbol: str) -> float:
        """How old a quote of ``symbol`` may be before it is stale."""
        inst = self.instruments.get(symbol)
        cls = self.settings.classes.get(inst.instrument_class) if inst else None
        if cls is not None and cls.max_age_seconds is not None:
            return cls.max_age_seconds
        return self.settings.max_age_seconds

    def own_price_without_quote(self, symbol: str) -> bool:
        """Whether limit and stop orders in ``symbol`` may be valued at their own price without a fresh quote."""
        inst = self.instruments.get(symbol)
        cls = self.settings.classes.get(inst.instrument_class) if inst else None
        return cls is not None and cls.own_price_without_quote

    def conversion_pairs(self, currency: str) -> list[str]:
        """FX symbols that convert the catalogue's quote currencies to ``currency`` (both directions)."""
        if currency not in self._pairs:
            others = sorted({i.quote_currency for i in self.instruments} - {currency})
            self._pairs[currency] = [p for c in others for p in (f"{c}{currency}", f"{currency}{c}")]
        return self._pairs[currency]

    def view(self, sq: StoredQuote, now: datetime) -> QuoteView:
        """A stored quote with its age at ``now``."""
        age = max((now - sq.quote.at).total_seconds(), 0.0)
        return QuoteView(sq.quote, sq.received_at, age, self.max_age_seconds(sq.quote.symbol))

    # -- reads (of rows the caller read: ``store.quotes``) --------------------------------------------

    def views(self, stored: Iterable[StoredQuote], *, now: datetime | None = None) -> list[QuoteView]:
        """Stored quotes with their ages."""
        at = now or utcnow()
        return [self.view(sq, at) for sq in stored]

    def silent_sources(self, newest: Mapping[str, datetime], *, now: datetime | None = None) -> dict[str, float | None]:
        """Expected sources whose newest quote (``newest``, per source) is stale, with its age (None: never heard)."""
        at = now or utcnow()
        expected = set(self.settings.expected_sources) or (set(newest) | set(self.settings.sources.values()))
        silent: dict[str, float | None] = {}
        for source in sorted(expected):
            if source not in newest:
                silent[source] = None
                continue
            age = max((at - newest[source]).total_seconds(), 0.0)
            if age > self.settings.max_age_seconds:
                silent[source] = age
        return silent

    def source_ages(
        self, stored: Iterable[StoredQuote], *, now: datetime | None = None
    ) -> dict[str, tuple[float, int, int]]:
        """Per source: the age of its newest quote, how many symbols it quotes, and how many of them are stale."""
        out: dict[str, tuple[float, int, int]] = {}
        for v in self.views(stored, now=now):
            src = v.quote.source
            age, count, stale = out.get(src, (float("inf"), 0, 0))
            out[src] = (min(age, v.age_seconds), count + 1, stale + int(v.stale))
        return out

    def refresh_metrics(self, stored: Iterable[StoredQuote], *, now: datetime | None = None) -> None:
        """Set ``exodus_quote_age_seconds`` and ``exodus_quotes_stale`` per source from the stored quotes."""
        ages = self.source_ages(stored, now=now)
        QUOTE_AGE.clear()
        QUOTES_STALE.clear()
        for source, (age, _, stale) in ages.items():
            QUOTE_AGE.labels(source=source).set(age)
            QUOTES_STALE.labels(source=source).set(stale)
