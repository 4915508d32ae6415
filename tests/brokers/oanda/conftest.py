from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
from psycopg_pool import AsyncConnectionPool

from brokers.base import BrokerSpec, ReportSink
from brokers.oanda import SPEC
from brokers.oanda.execution import OandaBroker
from core.domain import Instrument
from core.instruments import InstrumentCatalog
from devstack.venues.oanda.venue import OandaVenue
from tests.brokers.contract import ReportCollector
from tests.brokers.oanda.kit import Forwarder, OandaPair, running_pair
from tests.brokers.storage import FailingPool


@pytest.fixture
def spec() -> BrokerSpec:
    return SPEC


@pytest.fixture(scope="module")
def oanda_storage(pool: AsyncConnectionPool) -> FailingPool:
    """The adapter's records' pool (the venue keeps its own), failing on demand."""
    return FailingPool(pool)


@pytest.fixture(scope="module")
async def oanda_pair(
    pool: AsyncConnectionPool, instruments: InstrumentCatalog, database_url: str, oanda_storage: FailingPool
) -> AsyncIterator[OandaPair]:
    """One local OANDA venue (journaled in Postgres) and one adapter per test module (each test its own sink)."""
    async with running_pair(
        pool,
        instruments,
        sink=Forwarder(),
        journal_url=database_url,
        store_pool=oanda_storage,  # type: ignore[arg-type]
    ) as pair:
        yield pair


@pytest.fixture
def storage(oanda_storage: FailingPool) -> Iterator[FailingPool]:
    oanda_storage.down = False
    yield oanda_storage
    oanda_storage.down = False


@pytest.fixture
def broker(oanda_pair: OandaPair, reports: ReportCollector) -> OandaBroker:
    assert isinstance(oanda_pair.sink, Forwarder)
    oanda_pair.sink.target = reports
    oanda_pair.venue.faults.pending.clear()
    oanda_pair.venue.faults.latency = 0
    oanda_pair.venue.rate_limit.limit = 0
    oanda_pair.venue.rate_limit.window = 1.0
    return oanda_pair.broker


@pytest.fixture
def market(oanda_pair: OandaPair) -> OandaVenue:
    return oanda_pair.venue


@pytest.fixture
def contract_instrument(instruments: InstrumentCatalog) -> Instrument:
    inst = instruments.get("EURUSD")
    assert inst is not None
    return inst


#: The contract's operations: (method, regular expression of the path after /v3/accounts/{id}).
_OPS = {
    "submit": ("POST", r"^/orders$"),
    "cancel": ("PUT", r"^/orders/[^/]+/cancel$"),
    "replace": ("PUT", r"^/orders/[^/]+$"),
    "status": ("GET", r"^/orders/@"),
}


class OandaFaults:
    """``FaultControl`` over the local OANDA venue: it injects every fault the contract knows."""

    def __init__(self, pair: OandaPair) -> None:
        self.pair = pair

    def offers(self, kind: str, op: str = "") -> bool:
        return True

    def _add(self, kind: str, op: str, times: int = 1, **kw: object) -> None:
        method, path = _OPS[op]
        self.pair.venue.faults.add(kind, method=method, path=path, times=times, **kw)  # type: ignore[arg-type]

    def lose_answer(self, op: str) -> None:
        self._add("drop_after", op)

    def stall(self, op: str) -> None:
        self._add("stall_after", op, seconds=self.pair.settings.request_timeout_seconds + 1)

    def fail_before(self, op: str, times: int = 1) -> None:
        self._add("error_before", op, times=times, status=503)

    def throttle(self, requests: int, per_seconds: float) -> None:
        self.pair.venue.rate_limit.limit = requests
        self.pair.venue.rate_limit.window = per_seconds

    @property
    def throttled(self) -> int:
        return self.pair.venue.rate_limit.refused

    async def restart(self, sink: ReportSink) -> OandaBroker:
        assert isinstance(self.pair.sink, Forwarder)
        self.pair.sink.target = sink
        return await self.pair.restart()


@pytest.fixture
def faults(oanda_pair: OandaPair) -> OandaFaults:
    return OandaFaults(oanda_pair)
