from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
from psycopg_pool import AsyncConnectionPool

from brokers.base import BrokerSpec, ReportSink
from brokers.kraken import SPEC
from brokers.kraken.execution import KrakenBroker
from core.domain import Instrument
from core.instruments import InstrumentCatalog
from devstack.venues.kraken.venue import KrakenVenue
from tests.brokers.contract import ReportCollector
from tests.brokers.kraken.kit import Forwarder, KrakenPair, running_pair
from tests.brokers.storage import FailingPool


@pytest.fixture
def spec() -> BrokerSpec:
    return SPEC


@pytest.fixture(scope="module")
def kraken_storage(pool: AsyncConnectionPool) -> FailingPool:
    """The adapter's records' pool (the venue keeps its own), failing on demand."""
    return FailingPool(pool)


@pytest.fixture(scope="module")
async def kraken_pair(
    pool: AsyncConnectionPool, instruments: InstrumentCatalog, database_url: str, kraken_storage: FailingPool
) -> AsyncIterator[KrakenPair]:
    """One local Kraken venue (journaled in Postgres) and one adapter per test module (each test its own sink)."""
    async with running_pair(
        pool,
        instruments,
        sink=Forwarder(),
        journal_url=database_url,
        store_pool=kraken_storage,  # type: ignore[arg-type]
    ) as pair:
        yield pair


@pytest.fixture
def storage(kraken_storage: FailingPool) -> Iterator[FailingPool]:
    kraken_storage.down = False
    yield kraken_storage
    kraken_storage.down = False


@pytest.fixture
def broker(kraken_pair: KrakenPair, reports: ReportCollector) -> KrakenBroker:
    assert isinstance(kraken_pair.sink, Forwarder)
    kraken_pair.sink.target = reports
    kraken_pair.venue.faults.pending.clear()
    kraken_pair.venue.faults.latency = 0
    kraken_pair.venue.throttle(0, 1.0)
    return kraken_pair.broker


@pytest.fixture
def market(kraken_pair: KrakenPair) -> KrakenVenue:
    return kraken_pair.venue


@pytest.fixture
def contract_instrument(instruments: InstrumentCatalog) -> Instrument:
    inst = instruments.get("BTC-USD")
    assert inst is not None
    return inst


_OPS = {"submit": "AddOrder", "cancel": "CancelOrder", "replace": "AmendOrder", "status": "OpenOrders"}


class KrakenFaults:
    """``FaultControl`` over the local Kraken venue: it injects every fault the contract knows."""

    def __init__(self, pair: KrakenPair) -> None:
        self.pair = pair

    def offers(self, kind: str, op: str = "") -> bool:
        return True

    def _add(self, kind: str, op: str, times: int = 1, **kw: object) -> None:
        self.pair.venue.faults.add(kind, method=_OPS[op], times=times, **kw)  # type: ignore[arg-type]

    def lose_answer(self, op: str) -> None:
        self._add("drop_after", op)

    def stall(self, op: str) -> None:
        self._add("stall_after", op, seconds=self.pair.settings.request_timeout_seconds + 1)

    def fail_before(self, op: str, times: int = 1) -> None:
        # Kraken's own "the engine is not there": EService:Unavailable, with HTTP 200.
        self._add("error_before", op, times=times, errors=["EService:Unavailable"])

    def throttle(self, requests: int, per_seconds: float) -> None:
        self.pair.venue.throttle(requests, requests / per_seconds if requests else 1.0)

    @property
    def throttled(self) -> int:
        return self.pair.venue.throttled

    async def restart(self, sink: ReportSink) -> KrakenBroker:
        assert isinstance(self.pair.sink, Forwarder)
        self.pair.sink.target = sink
        return await self.pair.restart()


@pytest.fixture
def faults(kraken_pair: KrakenPair) -> KrakenFaults:
    return KrakenFaults(kraken_pair)
