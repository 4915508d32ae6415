"""FIX market data over real sessions: the adapter subscribes (35=V), the local venue answers with its book
(35=W snapshot, 35=X on every move, 35=Y for a symbol it does not know), and the quotes reach the sink.

MarketDataRequest, MarketDataSnapshotFullRefresh, MarketDataIncrementalRefresh and MarketDataRequestReject exist
in FIX 4.2, 4.4 and 5.0 SP2 alike, so every test runs on the three versions.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from psycopg_pool import AsyncConnectionPool

from core.instruments import InstrumentCatalog
from core.marketdata import Quote
from tests.brokers.contract import ReportCollector
from tests.brokers.fix.kit import FixPair, eventually, running_pair

D = Decimal
VERSIONS = ["FIX.4.2", "FIX.4.4", "FIXT.1.1"]

PairFactory = Callable[..., AbstractAsyncContextManager[FixPair]]


class QuoteCollector:
    """A quote sink that remembers what it got."""

    def __init__(self) -> None:
        self.quotes: list[Quote] = []

    async def __call__(self, quote: Quote) -> None:
        self.quotes.append(quote)

    def of(self, symbol: str) -> list[Quote]:
        return [q for q in self.quotes if q.symbol == symbol]

    async def wait_for(self, symbol: str, bid: str, ask: str, *, timeout: float = 30.0) -> Quote:
        # A liveness bound, not a speed claim: on a loaded 2-core machine a re-logon and a new snapshot took
        # longer than 10 s.
        async def found() -> Quote | None:
            for q in reversed(self.of(symbol)):
                if (q.bid, q.ask) == (D(bid), D(ask)):
                    return q
            return None

        result: Quote = await eventually(found, timeout=timeout)
        return result


@pytest.fixture
def quotes() -> QuoteCollector:
    return QuoteCollector()


@pytest.fixture
def md_pair(
    tmp_path: Path,
    pool: AsyncConnectionPool,
    instruments: InstrumentCatalog,
    reports: ReportCollector,
    quotes: QuoteCollector,
) -> PairFactory:
    def make(begin_string: str, *, quote_sink: Any = None, **options: Any) -> Any:
        return running_pair(
            tmp_path / uuid.uuid4().hex[:6],
            pool,
            instruments,
            sink=reports,
            begin_string=begin_string,
            broker_options={"quotes": quote_sink or quotes, "instruments": instruments},
            **options,
        )

    return make


@pytest.mark.parametrize("begin_string", VERSIONS)
async def test_snapshot_then_updates_reach_the_sink_with_the_venues_time(
    md_pair: PairFactory, quotes: QuoteCollector, begin_string: str
) -> None:
    before = datetime.now(UTC)
    async with md_pair(begin_string, market_data=True, market_data_symbols=["AAPL", "EURUSD", "NOPE"]) as pair:
        venue, broker = pair.venue, pair.broker
        assert broker.market_data is not None
        # The snapshots of the subscribed symbols; the one the venue does not know is refused (35=Y).
        aapl = await quotes.wait_for("AAPL", "189.99", "190.01")
        await quotes.wait_for("EURUSD", "1.08499", "1.08501")
        await eventually(lambda: "NOPE" in broker.market_data.rejected)
        assert "unknown symbol" in broker.market_data.rejected["NOPE"]
        assert aapl.source == "fix" and aapl.mid == D("190.00")
        # The venue's time (MDEntryDate/MDEntryTime, to the millisecond), not the time of receipt.
        assert before - timedelta(seconds=1) <= aapl.at <= datetime.now(UTC) and aapl.at.microsecond % 1000 == 0
        assert venue.stats.received.get("V") == 3 and venue.stats.sent.get("W") == 2 and venue.stats.sent.get("Y") == 1
        # Every move of the venue's book comes as an incremental refresh.
        await venue.set_mid("AAPL", D("200.00"))
        moved = await quotes.wait_for("AAPL", "199.99", "200.01")
        assert moved.at >= aapl.at
        await venue.set_mid("AAPL", D("201.50"))
        await quotes.wait_for("AAPL", "201.49", "201.51")
        assert venue.stats.sent.get("X", 0) >= 2
        assert broker.market_data.books["AAPL"]["0"] == D("201.49")
        assert "MSFT" not in broker.market_data.books  # not subscribed


@pytest.mark.parametrize("begin_string", ["FIX.4.4"])
async def test_subscriptions_are_made_again_after_a_reconnect(
    md_pair: PairFactory, quotes: QuoteCollector, begin_string: str
) -> None:
    async with md_pair(begin_string, market_data=True, market_data_symbols=["MSFT"], proxy=True) as pair:
        venue, broker, network = pair.venue, pair.broker, pair.proxy
        assert network is not None
        await quotes.wait_for("MSFT", "419.99", "420.01")
        network.cut()
        await eventually(lambda: not broker.logged_on)
        await venue.set_mid("MSFT", D("425.00"))  # nobody subscribed at the venue now
        network.restore()
        await broker.wait_logged_on(15)
        await quotes.wait_for("MSFT", "424.99", "425.01")  # the new snapshot
        await venue.set_mid("MSFT", D("426.00"))
        await quotes.wait_for("MSFT", "425.99", "426.01")
        assert venue.stats.received.get("V") == 2


@pytest.mark.parametrize("begin_string", ["FIX.4.4"])
async def test_market_data_is_off_by_default_and_a_failing_sink_does_not_disturb_orders(
    md_pair: PairFactory, quotes: QuoteCollector, begin_string: str
) -> None:
    async with md_pair(begin_string) as pair:
        assert pair.broker.market_data is None
        await asyncio.sleep(0.3)
        assert pair.venue.stats.received.get("V") is None and quotes.quotes == []

    class Failing:
        calls = 0

        async def __call__(self, quote: Quote) -> None:
            Failing.calls += 1
            raise RuntimeError("quote store down")

    async with md_pair(begin_string, quote_sink=Failing(), market_data=True, market_data_symbols=["AAPL"]) as failing:
        await eventually(lambda: Failing.calls >= 1)
        await failing.venue.set_mid("AAPL", D("191.00"))
        await eventually(lambda: Failing.calls >= 2)
        assert failing.broker.logged_on and failing.broker.connector.unprocessed == 0
