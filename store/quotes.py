"""``market_quotes``: the latest quote per source and symbol, and ``QuoteWriter``, the worker's batching writer.

Risk reads its quotes with its other reads (``store.risk.gather``); the API lists them (``fetch_quotes``) and
checks which sources went silent (``newest_by_source``). What a quote means, and how old is too old, is
``core/marketdata.py``'s.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from decimal import Decimal
from typing import TypedDict, cast

from psycopg.rows import dict_row

from core.domain import utcnow
from core.marketdata import Quote, StoredQuote
from core.settings import MarketDataSettings
from core.tasks import stop_tasks
from store import Conn, Pool

__all__ = ["QuoteRow", "QuoteWriter", "fetch_quotes", "newest_by_source", "upsert_quotes"]

log = logging.getLogger(__name__)


class QuoteRow(TypedDict):
    """``market_quotes``: a source's latest quote of a symbol (``quoted_at``: the source's time)."""

    source: str
    symbol: str
    bid: Decimal | None
    ask: Decimal | None
    last: Decimal | None
    quoted_at: datetime
    received_at: datetime


_COLUMNS = "source, symbol, bid, ask, last, quoted_at, received_at"


def _stored(row: QuoteRow) -> StoredQuote:
    quote = Quote(
        symbol=row["symbol"],
        source=row["source"],
        bid=row["bid"],
        ask=row["ask"],
        last=row["last"],
        at=row["quoted_at"],
    )
    return StoredQuote(quote, row["received_at"])


async def upsert_quotes(conn: Conn, quotes: Iterable[StoredQuote]) -> int:
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


async def fetch_quotes(conn: Conn, *, symbol: str | None = None, source: str | None = None) -> list[StoredQuote]:
    """Every stored quote (of one symbol and/or source), by symbol then source."""
    where: list[str] = []
    params: list[str] = []
    if symbol is not None:
        where.append("symbol = %s")
        params.append(symbol)
    if source is not None:
        where.append("source = %s")
        params.append(source)
    clause = f"WHERE {' AND '.join(where)}" if where else ""
    cur = conn.cursor(row_factory=dict_row)
    await cur.execute(f"SELECT {_COLUMNS} FROM market_quotes {clause} ORDER BY symbol, source", params)
    return [_stored(cast(QuoteRow, r)) for r in await cur.fetchall()]


async def newest_by_source(conn: Conn) -> dict[str, datetime]:
    """The time of each source's newest quote."""
    cur = conn.cursor(row_factory=dict_row)
    await cur.execute("SELECT source, max(quoted_at) AS newest FROM market_quotes GROUP BY source")
    return {str(r["source"]): r["newest"] for r in await cur.fetchall()}


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
        pool: Pool,
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
    def from_settings(cls, pool: Pool, settings: MarketDataSettings) -> QuoteWriter:
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
