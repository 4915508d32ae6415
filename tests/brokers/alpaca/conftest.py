from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from psycopg_pool import AsyncConnectionPool

from brokers.alpaca.execution import AlpacaBroker
from core.domain import Instrument
from core.instruments import InstrumentCatalog
from devstack.venues.alpaca.venue import AlpacaVenue
from tests.brokers.alpaca.kit import AlpacaPair, Forwarder, running_pair
from tests.brokers.contract import ReportCollector


@pytest.fixture(scope="module")
async def alpaca_pair(
    pool: AsyncConnectionPool, instruments: InstrumentCatalog, database_url: str
) -> AsyncIterator[AlpacaPair]:
    """One local Alpaca venue (journaled in Postgres) and one adapter per test module (each test its own sink)."""
    async with running_pair(pool, instruments, sink=Forwarder(), journal_url=database_url) as pair:
        yield pair


@pytest.fixture
def broker(alpaca_pair: AlpacaPair, reports: ReportCollector) -> AlpacaBroker:
    assert isinstance(alpaca_pair.sink, Forwarder)
    alpaca_pair.sink.target = reports
    alpaca_pair.venue.faults.pending.clear()
    alpaca_pair.venue.faults.latency = 0
    alpaca_pair.venue.rate_limit.per_minute = 0
    return alpaca_pair.broker


@pytest.fixture
def market(alpaca_pair: AlpacaPair) -> AlpacaVenue:
    return alpaca_pair.venue


@pytest.fixture
def contract_instrument(instruments: InstrumentCatalog) -> Instrument:
    inst = instruments.get("AAPL")
    assert inst is not None
    return inst
