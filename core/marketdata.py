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
    MT5 EA ──POST …/ticks──▶ API bridge route ──▶ upsert_quotes ─┐
                                                                  ▼
                                                   market_quotes (Postgres: one row per source and symbol)
                                                                  │ read by
                                 ┌────────────────────────────────┼──────────────────────────┐
                     risk check (read with its other       GET /api/v1/quotes        exodus_quote_age_seconds
                     reads, priced through PriceBook)      (MarketData.quotes)       (refresh_quote_metrics)

``MarketData`` answers with ``Reference`` values: the source asked (the order's broker, or the source
configured for the instrument), the quote if there is one, its age, and whether it is stale (older than the
instrument class's limit). The REST brokers publish through the same sink when their adapters arrive: a
broker factory gets the sink as ``BrokerContext.quotes``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, Final, Literal

from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool
from pydantic import BaseModel, ConfigDict

from core.domain import utcnow
from core.instruments import InstrumentCatalog
from core.metrics import QUOTE_AGE, QUOTES_STALE
from core.settings import MarketDataSettings
from core.tasks import stop_tasks

__all__ = [
    "SIMULATED_SOURCES",
    "MarketData",
    "PriceBook",
    "Quote",
    "QuoteSink",
    "QuoteView",
    "QuoteWriter",
    "Reference",
    "ReferenceStatus",
    "StoredQuote",
    "fetch_quotes",
    "upsert_quotes",
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


_COLUMNS = "source, symbol, bid, ask, last, quoted_at, received_at"


def _stored(row: dict[str, Any]) -> StoredQuote:
    quote = Quote(
        symbol=row["symbol"],
        source=row["source"],
        bid=row["bid"],
        ask=row["ask"],
        last=row["last"],
        at=row["quoted_at"],
    )
    return StoredQuote(quote, row["received_at"])


async def upsert_quotes(conn: Any, quotes: Iterable[StoredQuote]) -> int:
    """Write the latest quote per (source, symbol) in one statement; an older quote never replaces a newer one.

    A quote time later than its receipt (a source's clock ahead of ours) is taken as the receipt time, so a
    skewed clock cannot make a quote look fresher than it is. Returns the number of rows sent.
    """
    latest: dict[tuple[str, str], StoredQuote] = {}
    for sq in quotes:
        q = sq.quote
        if q.bid is None and q.ask is None and q.last is None:
            continue
        key = (q.source, q.symbol)
        if key not in latest or latest[key].quote.at <= q.at:
            latest[key] = sq
    if not latest:
        return 0
    rows = list(latest.values())
    await conn.execute(
        f"""
        INSERT INTO market_quotes ({_COLUMNS})
        SELECT * FROM unnest(%s::text[], %s::text[], %s::numeric[], %s::numeric[], %s::numeric[],
                             %s::timestamptz[], %s::timestamptz[])
        ON CONFLICT (source, symbol) DO UPDATE SET bid = EXCLUDED.bid, ask = EXCLUDED.ask, last = EXCLUDED.last,
            quoted_at = EXCLUDED.quoted_at, received_at = EXCLUDED.received_at
        WHERE EXCLUDED.quoted_at >= market_quotes.quoted_at
        """,
        (
            [r.quote.source for r in rows],
            [r.quote.symbol for r in rows],
            [r.quote.bid for r in rows],
            [r.quote.ask for r in rows],
            [r.quote.last for r in rows],
            [min(r.quote.at, r.received_at) for r in rows],
            [r.received_at for r in rows],
        ),
    )
    return len(rows)


async def fetch_quotes(conn: Any, *, symbol: str | None = None, source: str | None = None) -> list[StoredQuote]:
    """Every stored quote (of one symbol and/or source), by symbol then source."""
    where, params = [], []
    if symbol is not None:
        where.append("symbol = %s")
        params.append(symbol)
    if source is not None:
        where.append("source = %s")
        params.append(source)
    clause = f"WHERE {' AND '.join(where)}" if where else ""
    cur = conn.cursor(row_factory=dict_row)
    await cur.execute(f"SELECT {_COLUMNS} FROM market_quotes {clause} ORDER BY symbol, source", params)
    return [_stored(r) for r in await cur.fetchall()]


# ------------------------------------------------------------------------------------------------ the sink


class QuoteWriter:
    """The worker's ``QuoteSink``: keeps the latest quote per (source, symbol) and writes them in batches.

    Publishing never waits for Postgres: ``__call__`` only records the quote (a later one for the same key
    replaces it) and wakes the writer task. The task writes everything pending in one multi-row upsert, then
    waits ``interval`` before the next write, so the paper feed (ten instruments every 200 ms) costs one
    statement per interval, not fifty rows a second. A quote whose prices have not changed is written again
    only every ``refresh`` seconds (its stored time then lags by at most that much, which only ever makes
    it look older). A failed write is logged and retried with the next one; what is pending stays bounded
    by the number of (source, symbol) keys.
    """

    def __init__(
        self,
        pool: AsyncConnectionPool,
        *,
        interval: float = 0.5,
        refresh: float = 5.0,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        """Write to ``pool`` at most once per ``interval`` seconds."""
        self._pool = pool
        self.interval = interval
        self.refresh = timedelta(seconds=refresh)
        self._clock = clock
        self._pending: dict[tuple[str, str], StoredQuote] = {}
        self._written: dict[tuple[str, str], tuple[Decimal | None, Decimal | None, Decimal | None, datetime]] = {}
        self._wake = asyncio.Event()
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        #: Upsert statements executed and rows sent (the tests check the throttling with these).
        self.statements = 0
        self.rows = 0

    @classmethod
    def from_settings(cls, pool: AsyncConnectionPool, settings: MarketDataSettings) -> QuoteWriter:
        """A writer with the configured interval and refresh."""
        return cls(pool, interval=settings.flush_interval_ms / 1000, refresh=settings.refresh_seconds)

    async def __call__(self, quote: Quote) -> None:
        """Take a quote (returns at once; the write happens in the background)."""
        if self._closed:
            return
        self._pending[(quote.source, quote.symbol)] = StoredQuote(quote, self._clock())
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="quote-writer")
        self._wake.set()

    @property
    def pending(self) -> int:
        """Quotes taken but not written yet."""
        return len(self._pending)

    async def flush(self) -> None:
        """Write what is pending now (raises if Postgres fails; the quotes stay pending)."""
        async with self._lock:
            batch, self._pending = self._pending, {}
            due = [sq for key, sq in batch.items() if self._due(key, sq)]
            if not due:
                return
            try:
                async with self._pool.connection() as conn:
                    sent = await upsert_quotes(conn, due)
            except BaseException:
                for key, sq in batch.items():  # keep them, unless a newer quote arrived meanwhile
                    self._pending.setdefault(key, sq)
                raise
            self.statements += 1
            self.rows += sent
            for sq in due:
                q = sq.quote
                self._written[(q.source, q.symbol)] = (q.bid, q.ask, q.last, q.at)

    async def aclose(self) -> None:
        """Stop the writer task and write what is left."""
        self._closed = True
        if self._task is not None:
            task, self._task = self._task, None
            await stop_tasks([task], what="quote writer")
        try:
            await self.flush()
        except Exception as e:
            log.warning("quote writer: the last %d quotes were not written, was %r", len(self._pending), e)

    def _due(self, key: tuple[str, str], sq: StoredQuote) -> bool:
        last = self._written.get(key)
        q = sq.quote
        if last is None or last[:3] != (q.bid, q.ask, q.last):
            return True
        return q.at - last[3] >= self.refresh

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            try:
                await self.flush()
            except Exception as e:
                log.warning("quote writer: write failed, retrying with the next one, was %r", e)
            await asyncio.sleep(self.interval)


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
    """The market data service: which source prices what, how old is too old, and reads of the quote store.

    Cheap to build (settings and the catalogue); every process makes its own. All reads go through a
    connection the caller owns. The risk decision reads its quotes itself, in the statement that reads the
    account (``activities/risk.py``: the symbols of ``conversion_pairs`` and of the order and the
    positions), and prices them through a ``PriceBook``.
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

    # -- reads ----------------------------------------------------------------------------------------

    async def price(self, conn: Any, symbol: str, broker: str, *, now: datetime | None = None) -> Reference:
        """The price of ``symbol`` for broker ``broker``, with its source and age."""
        source = self.source_for(symbol, broker)
        found = await fetch_quotes(conn, symbol=symbol, source=source)
        book = PriceBook(self, broker, found, now or utcnow())
        return book.reference(symbol)

    async def quotes(
        self, conn: Any, *, symbol: str | None = None, source: str | None = None, now: datetime | None = None
    ) -> list[QuoteView]:
        """Every stored quote (of one symbol and/or source) with its age."""
        at = now or utcnow()
        return [self.view(sq, at) for sq in await fetch_quotes(conn, symbol=symbol, source=source)]

    async def silent_sources(self, conn: Any, *, now: datetime | None = None) -> dict[str, float | None]:
        """Expected sources whose newest quote is stale, with its age (None: never heard from)."""
        at = now or utcnow()
        cur = conn.cursor(row_factory=dict_row)
        await cur.execute("SELECT source, max(quoted_at) AS newest FROM market_quotes GROUP BY source")
        newest = {r["source"]: r["newest"] for r in await cur.fetchall()}
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

    async def source_ages(self, conn: Any, *, now: datetime | None = None) -> dict[str, tuple[float, int, int]]:
        """Per source: the age of its newest quote, how many symbols it quotes, and how many of them are stale."""
        out: dict[str, tuple[float, int, int]] = {}
        for v in await self.quotes(conn, now=now):
            src = v.quote.source
            age, count, stale = out.get(src, (float("inf"), 0, 0))
            out[src] = (min(age, v.age_seconds), count + 1, stale + int(v.stale))
        return out

    async def refresh_metrics(self, conn: Any, *, now: datetime | None = None) -> None:
        """Set ``exodus_quote_age_seconds`` and ``exodus_quotes_stale`` per source from the store (at scrape time)."""
        ages = await self.source_ages(conn, now=now)
        QUOTE_AGE.clear()
        QUOTES_STALE.clear()
        for source, (age, _, stale) in ages.items():
            QUOTE_AGE.labels(source=source).set(age)
            QUOTES_STALE.labels(source=source).set(stale)
