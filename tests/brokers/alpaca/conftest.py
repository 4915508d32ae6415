from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
from psycopg_pool import AsyncConnectionPool

from brokers.alpaca.execution import AlpacaBroker
from brokers.base import ReportSink
from core.domain import Instrument
from core.instruments import InstrumentCatalog
from devstack.venues.alpaca.venue import AlpacaVenue
from tests.brokers.alpaca.kit import AlpacaPair, Forwarder, running_pair
from tests.brokers.contract import ReportCollector
from tests.brokers.storage import FailingPool


@pytest.fixture(scope="module")
def alpaca_storage(pool: AsyncConnectionPool) -> FailingPool:
    """The adapter's records' pool (the venue keeps its own), failing on demand."""
    return FailingPool(pool)


@pytest.fixture(scope="module")
async def alpaca_pair(
    pool: AsyncConnectionPool, instruments: InstrumentCatalog, database_url: str, alpaca_storage: FailingPool
) -> AsyncIterator[AlpacaPair]:
    """One local Alpaca venue (journaled in Postgres) and one adapter per test module (each test its own sink)."""
    async with running_pair(
        pool,
        instruments,
        sink=Forwarder(),
        journal_url=database_url,
        store_pool=alpaca_storage,  # type: ignore[arg-type]
    ) as pair:
        yield pair


@pytest.fixture
def storage(alpaca_storage: FailingPool) -> Iterator[FailingPool]:
    alpaca_storage.down = False
    yield alpaca_storage
    alpaca_storage.down = False


@pytest.fixture
def broker(alpaca_pair: AlpacaPair, reports: ReportCollector) -> AlpacaBroker:
    assert isinstance(alpaca_pair.sink, Forwarder)
    alpaca_pair.sink.target = reports
    alpaca_pair.venue.faults.pending.clear()
    alpaca_pair.venue.faults.latency = 0
    alpaca_pair.venue.rate_limit.per_minute = 0
    alpaca_pair.venue.rate_limit.window = 60.0
    return alpaca_pair.broker


@pytest.fixture
def market(alpaca_pair: AlpacaPair) -> AlpacaVenue:
    return alpaca_pair.venue


@pytest.fixture
def contract_instrument(instruments: InstrumentCatalog) -> Instrument:
    inst = instruments.get("AAPL")
    assert inst is not None
    return inst


_OPS = {
    "submit": ("POST", "/v2/orders"),
    "cancel": ("DELETE", "/v2/orders/"),
    "replace": ("PATCH", "/v2/orders/"),
    "status": ("GET", "/v2/orders:by_client_order_id"),
}


class AlpacaFaults:
    """``FaultControl`` over the local Alpaca venue: it injects every fault the contract knows."""

    def __init__(self, pair: AlpacaPair) -> None:
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
        self.pair.venue.rate_limit.per_minute = requests
        self.pair.venue.rate_limit.window = per_seconds

    @property
    def throttled(self) -> int:
        return self.pair.venue.rate_limit.refused

    async def restart(self, sink: ReportSink) -> AlpacaBroker:
        assert isinstance(self.pair.sink, Forwarder)
        self.pair.sink.target = sink
        return await self.pair.restart()


@pytest.fixture
def faults(alpaca_pair: AlpacaPair) -> AlpacaFaults:
    return AlpacaFaults(alpaca_pair)
