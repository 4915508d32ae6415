"""``store/quotes.py``: the quote store and its writer (real Postgres), and which sources went silent."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from core.marketdata import Quote, StoredQuote
from store.quotes import QuoteWriter, fetch_quotes, newest_by_source, upsert_quotes
from tests.conftest import create_database
from tests.quotekit import CATALOG, NOW, market, q

D = Decimal


@pytest.fixture(scope="module")
async def md_pool(postgres_admin_url: str) -> AsyncIterator[AsyncConnectionPool]:
    """A database of its own: these tests own every row of market_quotes."""
    url = await create_database(postgres_admin_url, "exodus_md")
    p = AsyncConnectionPool(
        url, min_size=1, max_size=4, kwargs={"autocommit": True, "row_factory": dict_row}, open=False
    )
    await p.open(wait=True)
    yield p
    await p.close()


@pytest.fixture
async def empty(md_pool: AsyncConnectionPool) -> AsyncConnectionPool:
    async with md_pool.connection() as conn:
        await conn.execute("DELETE FROM market_quotes")
    return md_pool


async def stored(pool: AsyncConnectionPool, **kw: str) -> list[StoredQuote]:
    async with pool.connection() as conn:
        return await fetch_quotes(conn, **kw)


# ------------------------------------------------------------------------------------------------ the store


async def test_the_store_keeps_the_latest_quote_per_source_and_symbol_with_both_times(
    empty: AsyncConnectionPool,
) -> None:
    async with empty.connection() as conn:
        await upsert_quotes(conn, [q("AAPL", "fix", "190.00", age=5), q("AAPL", "paper", "150.00")])
        await upsert_quotes(conn, [q("AAPL", "fix", "191.00", age=1)])
        await upsert_quotes(conn, [q("AAPL", "fix", "180.00", age=30)])  # older: never replaces a newer one
    rows = {s.quote.source: s for s in await stored(empty, symbol="AAPL")}
    assert set(rows) == {"fix", "paper"}
    assert rows["fix"].quote.mid == D("191.00") and rows["fix"].quote.at == NOW - timedelta(seconds=1)
    assert rows["fix"].received_at == NOW - timedelta(seconds=1)


async def test_a_quote_time_ahead_of_its_receipt_is_stored_as_the_receipt_time(empty: AsyncConnectionPool) -> None:
    ahead = Quote(symbol="EURUSD", source="mt5", bid=D("1.1"), ask=D("1.2"), at=NOW + timedelta(hours=1))
    async with empty.connection() as conn:
        await upsert_quotes(conn, [StoredQuote(ahead, NOW)])
    [row] = await stored(empty, source="mt5")
    assert row.quote.at == NOW  # a skewed source clock cannot make a quote look fresher than it is


async def test_the_writer_batches_the_paper_feed_into_one_statement_per_interval(empty: AsyncConnectionPool) -> None:
    writer = QuoteWriter(empty, interval=5.0, refresh=5.0)
    symbols = CATALOG.symbols()
    try:
        # Ten instruments, five feed steps: fifty quotes, published as fast as the venue can.
        for step in range(5):
            for symbol in symbols:
                await writer(
                    Quote(symbol=symbol, source="paper", bid=D(100 + step), ask=D(101 + step), at=datetime.now(UTC))
                )
        async with asyncio.timeout(5):
            while writer.statements == 0:  # the writer task wakes and writes what is pending
                await asyncio.sleep(0.01)
        assert writer.statements == 1 and writer.rows == len(symbols)
        rows = await stored(empty, source="paper")
        assert len(rows) == len(symbols) and {r.quote.bid for r in rows} == {D(104)}  # only the latest
        # Within the interval nothing more is written, however many quotes come ...
        for step in range(20):
            await writer(
                Quote(symbol="AAPL", source="paper", bid=D(200 + step), ask=D(201 + step), at=datetime.now(UTC))
            )
        await asyncio.sleep(0.2)
        assert writer.statements == 1 and writer.pending == 1
    finally:
        await writer.aclose()  # ... and what is pending is written on the way out
    assert writer.statements == 2 and writer.rows == len(symbols) + 1
    [aapl] = await stored(empty, source="paper", symbol="AAPL")
    assert aapl.quote.bid == D(219)


async def test_an_unchanged_quote_is_rewritten_only_every_refresh_interval(empty: AsyncConnectionPool) -> None:
    writer = QuoteWriter(empty, interval=0.01, refresh=5.0)
    t0 = datetime.now(UTC) - timedelta(seconds=10)
    try:
        for i in range(4):
            await writer(Quote(symbol="SPY", source="paper", bid=D(1), ask=D(2), at=t0 + timedelta(seconds=i)))
            await writer.flush()
        assert writer.rows == 1  # same prices, under five seconds newer: nothing to write
        await writer(Quote(symbol="SPY", source="paper", bid=D(1), ask=D(2), at=t0 + timedelta(seconds=6)))
        await writer.flush()
        assert writer.rows == 2
        [row] = await stored(empty, source="paper", symbol="SPY")
        assert row.quote.at == t0 + timedelta(seconds=6)
    finally:
        await writer.aclose()


class _DownPool:
    """A pool whose database is down: every connection attempt fails (and is counted)."""

    def __init__(self) -> None:
        self.attempts = 0

    @contextlib.asynccontextmanager
    async def connection(self) -> AsyncIterator[None]:
        self.attempts += 1
        raise OSError("connection refused")
        yield


async def test_publishing_never_touches_postgres_and_keeps_only_the_latest_while_it_is_down() -> None:
    down = _DownPool()
    writer = QuoteWriter(down, interval=0.05)  # type: ignore[arg-type]
    for i in range(2000):
        await writer(Quote(symbol=f"S{i % 10}", source="paper", bid=D(i), ask=D(i + 1), at=datetime.now(UTC)))
    # Publishing only recorded the quotes: no connection was asked for, and only the latest per key is kept.
    assert down.attempts == 0 and writer.pending == 10
    with pytest.raises(OSError):
        await writer.flush()
    assert down.attempts == 1 and writer.pending == 10 and writer.statements == 0  # kept for the next try
    await writer.aclose()  # logs, does not raise


# ------------------------------------------------------------------------------------------------ staleness


async def test_silent_sources_are_the_expected_ones_whose_newest_quote_is_stale(empty: AsyncConnectionPool) -> None:
    now = datetime.now(UTC)
    fresh = StoredQuote(Quote(symbol="AAPL", source="paper", bid=D(1), ask=D(2), at=now), now)
    old = StoredQuote(Quote(symbol="AAPL", source="fix", bid=D(1), ask=D(2), at=now - timedelta(seconds=90)), now)
    async with empty.connection() as conn:
        await upsert_quotes(conn, [fresh, old])
        newest = await newest_by_source(conn)
        assert newest == {"paper": now, "fix": now - timedelta(seconds=90)}
        silent = market(max_age_seconds=30).silent_sources(newest)
        assert set(silent) == {"fix"} and 89 < (silent["fix"] or 0) < 120
        expected = market(max_age_seconds=30, expected_sources=["paper", "mt5"]).silent_sources(newest)
        assert expected == {"mt5": None}
        ages = market(max_age_seconds=30).source_ages(await fetch_quotes(conn))
        assert ages["fix"][1:] == (1, 1) and ages["paper"][1:] == (1, 0)
