from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from psycopg_pool import AsyncConnectionPool

from core.instruments import InstrumentCatalog
from tests.brokers.alpaca.kit import AlpacaPair, Forwarder, running_pair
from tests.brokers.pairfixtures import broker, contract_instrument, market, storage, venue_storage  # noqa: F401 (fixtures)
from tests.brokers.storage import FailingPool
from tests.brokers.venuekit import PairFaults


@pytest.fixture(scope="module")
async def venue_pair(
    pool: AsyncConnectionPool,
    instruments: InstrumentCatalog,
    database_url: str,
    venue_storage: FailingPool,  # noqa: F811 (the fixture)
) -> AsyncIterator[AlpacaPair]:
    """One local Alpaca venue (journaled in Postgres) and one adapter per test module (each test its own sink)."""
    async with running_pair(
        pool,
        instruments,
        sink=Forwarder(),
        journal_url=database_url,
        store_pool=venue_storage,  # type: ignore[arg-type]
    ) as pair:
        yield pair


@pytest.fixture(scope="module")
def alpaca_pair(venue_pair: AlpacaPair) -> AlpacaPair:
    return venue_pair


@pytest.fixture
def contract_symbol() -> str:
    return "AAPL"


_OPS = {
    "submit": ("POST", "/v2/orders"),
    "cancel": ("DELETE", "/v2/orders/"),
    "replace": ("PATCH", "/v2/orders/"),
    "status": ("GET", "/v2/orders:by_client_order_id"),
}


class AlpacaFaults(PairFaults[AlpacaPair]):
    """``FaultControl`` over the local Alpaca venue: it injects every fault the contract knows."""

    def _add(self, kind: str, op: str, times: int = 1, **kw: object) -> None:
        method, path = _OPS[op]
        self.pair.venue.faults.add(kind, method=method, path=path, times=times, **kw)  # type: ignore[arg-type]

    def throttle(self, requests: int, per_seconds: float) -> None:
        self.pair.venue.rate_limit.per_minute = requests
        self.pair.venue.rate_limit.window = per_seconds

    @property
    def throttled(self) -> int:
        return self.pair.venue.rate_limit.refused


@pytest.fixture
def faults(venue_pair: AlpacaPair) -> AlpacaFaults:
    return AlpacaFaults(venue_pair)
