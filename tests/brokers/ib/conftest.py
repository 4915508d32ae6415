from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from psycopg_pool import AsyncConnectionPool

from brokers.base import BrokerSpec, ReportSink
from brokers.ib import SPEC
from brokers.ib.execution import IBBroker
from core.instruments import InstrumentCatalog
from devstack.venues.ib import LOCAL_IB_ACCOUNT
from devstack.venues.ib.venue import IBVenue
from tests.brokers.contract import ReportCollector
from tests.brokers.ib.kit import Forwarder, IBPair, running_pair
from tests.brokers.pairfixtures import contract_instrument, storage, venue_storage  # noqa: F401 (fixtures)
from tests.brokers.storage import FailingPool


@pytest.fixture
def spec() -> BrokerSpec:
    return SPEC


@pytest.fixture(scope="module")
async def ib_pair(
    pool: AsyncConnectionPool,
    instruments: InstrumentCatalog,
    venue_storage: FailingPool,  # noqa: F811 (the fixture)
) -> AsyncIterator[IBPair]:
    """One local TWS venue and one adapter per test module (each test its own sink)."""
    async with running_pair(pool, instruments, sink=Forwarder(), store_pool=venue_storage) as pair:  # type: ignore[arg-type]
        yield pair


@pytest.fixture
def contract_account() -> str:
    return LOCAL_IB_ACCOUNT


@pytest.fixture
async def broker(ib_pair: IBPair, reports: ReportCollector) -> IBBroker:
    assert isinstance(ib_pair.sink, Forwarder)
    ib_pair.sink.target = reports
    ib_pair.venue.faults.clear()
    # A fault of the previous test may have dropped the connection: wait for the session to be back.
    await ib_pair.broker.caught_up.wait()
    return ib_pair.broker


@pytest.fixture
def market(ib_pair: IBPair) -> IBVenue:
    return ib_pair.venue


@pytest.fixture
def contract_symbol() -> str:
    return "AAPL"


_OPS = {"submit": "submit", "cancel": "cancel", "replace": "modify", "status": "status"}


class IBFaultControl:
    """``FaultControl`` over the local TWS venue.

    A lost answer is the connection dropping after the venue carried the request out; a stall holds the answer
    past the adapter's timeout; "fail before" drops the connection before the venue reads the request. The venue
    does not refuse lookups with a retryable error (TWS has no 5xx: a lost lookup is a dropped connection, which the
    lookup itself reports as unavailable), and IB has no 429 (ib_async paces on the client side).
    """

    def __init__(self, pair: IBPair) -> None:
        self.pair = pair

    def offers(self, kind: str, op: str = "") -> bool:
        if kind in ("lose_answer", "stall", "fail_before"):
            return op in ("submit", "cancel", "replace")
        return kind == "restart"

    def lose_answer(self, op: str) -> None:
        self.pair.venue.faults.add("drop_after", _OPS[op])

    def stall(self, op: str) -> None:
        self.pair.venue.faults.add("stall_after", _OPS[op], seconds=self.pair.settings.request_timeout_seconds + 1)

    def fail_before(self, op: str, times: int = 1) -> None:
        self.pair.venue.faults.add("drop_before", _OPS[op], times=times)

    def throttle(self, requests: int, per_seconds: float) -> None:
        raise NotImplementedError("IB paces on the client side (ib_async); the venue does not throttle")

    @property
    def throttled(self) -> int:
        return 0

    async def restart(self, sink: ReportSink) -> IBBroker:
        assert isinstance(self.pair.sink, Forwarder)
        self.pair.sink.target = sink
        return await self.pair.restart()


@pytest.fixture
def faults(ib_pair: IBPair) -> IBFaultControl:
    return IBFaultControl(ib_pair)
