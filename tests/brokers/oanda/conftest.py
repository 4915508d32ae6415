from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from psycopg_pool import AsyncConnectionPool

from brokers.base import BrokerSpec
from brokers.oanda import SPEC
from core.instruments import InstrumentCatalog
from tests.brokers.oanda.kit import Forwarder, OandaPair, running_pair
from tests.brokers.pairfixtures import broker, contract_instrument, market, storage, venue_storage  # noqa: F401 (fixtures)
from tests.brokers.storage import FailingPool
from tests.brokers.venuekit import PairFaults


@pytest.fixture
def spec() -> BrokerSpec:
    return SPEC


@pytest.fixture(scope="module")
async def venue_pair(
    pool: AsyncConnectionPool,
    instruments: InstrumentCatalog,
    database_url: str,
    venue_storage: FailingPool,  # noqa: F811 (the fixture)
) -> AsyncIterator[OandaPair]:
    """One local OANDA venue (journaled in Postgres) and one adapter per test module (each test its own sink)."""
    async with running_pair(
        pool,
        instruments,
        sink=Forwarder(),
        journal_url=database_url,
        store_pool=venue_storage,  # type: ignore[arg-type]
    ) as pair:
        yield pair


@pytest.fixture
def contract_symbol() -> str:
    return "EURUSD"


#: The contract's operations: (method, regular expression of the path after /v3/accounts/{id}).
_OPS = {
    "submit": ("POST", r"^/orders$"),
    "cancel": ("PUT", r"^/orders/[^/]+/cancel$"),
    "replace": ("PUT", r"^/orders/[^/]+$"),
    "status": ("GET", r"^/orders/@"),
}


class OandaFaults(PairFaults[OandaPair]):
    """``FaultControl`` over the local OANDA venue: it injects every fault the contract knows."""

    def _add(self, kind: str, op: str, times: int = 1, **kw: object) -> None:
        method, path = _OPS[op]
        self.pair.venue.faults.add(kind, method=method, path=path, times=times, **kw)  # type: ignore[arg-type]

    def throttle(self, requests: int, per_seconds: float) -> None:
        self.pair.venue.rate_limit.limit = requests
        self.pair.venue.rate_limit.window = per_seconds

    @property
    def throttled(self) -> int:
        return self.pair.venue.rate_limit.refused


@pytest.fixture
def faults(venue_pair: OandaPair) -> OandaFaults:
    return OandaFaults(venue_pair)
