from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
from psycopg_pool import AsyncConnectionPool

from brokers.base import ReportSink
from brokers.fix.execution import FixBroker
from core.domain import Instrument
from core.instruments import InstrumentCatalog
from devstack.venues.fix.venue import FixVenue
from tests.brokers.contract import ReportCollector
from tests.brokers.fix.kit import FixPair, Forwarder, running_pair
from tests.brokers.storage import FailingPool


@pytest.fixture(scope="module", params=["FIX.4.2", "FIX.4.4", "FIXT.1.1"])
async def fix_pair(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    pool: AsyncConnectionPool,
    instruments: InstrumentCatalog,
) -> AsyncIterator[FixPair]:
    """One venue and one adapter per FIX version, shared by a module's tests (each gets its own sink)."""
    async with running_pair(
        tmp_path_factory.mktemp("fix"), pool, instruments, sink=Forwarder(), begin_string=request.param
    ) as pair:
        yield pair


@pytest.fixture
def broker(fix_pair: FixPair, reports: ReportCollector) -> FixBroker:
    assert isinstance(fix_pair.sink, Forwarder)
    fix_pair.sink.target = reports
    return fix_pair.broker


@pytest.fixture
def market(fix_pair: FixPair) -> FixVenue:
    return fix_pair.venue


@pytest.fixture
def contract_instrument(instruments: InstrumentCatalog) -> Instrument:
    inst = instruments.get("AAPL")
    assert inst is not None
    return inst


# ------------------------------------------------------------------------------------------ the resilience contract

#: The FIX request of each contract operation.
_MSG_TYPES = {"submit": "D", "cancel": "F", "replace": "G", "status": "H"}


class FixFaults:
    """``FaultControl`` over the local FIX venue: answers lost with the connection, late, or requests swallowed."""

    def __init__(self, pair: FixPair) -> None:
        self.pair = pair

    def offers(self, kind: str, op: str = "") -> bool:
        if kind == "restart":
            return True
        if kind in ("lose_answer", "stall"):
            return op in ("submit", "cancel", "replace")
        # A request the venue never saw; a status request lost so is a timeout, which a FIX lookup does not ride out
        # by itself (the order workflow asks again). FIX has no throttle answer.
        return kind == "fail_before" and op in ("submit", "cancel")

    def lose_answer(self, op: str) -> None:
        self.pair.venue.faults.drop_first[_MSG_TYPES[op]] = 1

    def stall(self, op: str) -> None:
        timeout = self.pair.settings.fix.request_timeout_seconds
        self.pair.venue.faults.hold_answers[_MSG_TYPES[op]] = timeout + 1

    def fail_before(self, op: str, times: int = 1) -> None:
        self.pair.venue.faults.swallow[_MSG_TYPES[op]] = times

    def throttle(self, requests: int, per_seconds: float) -> None:
        raise NotImplementedError("FIX has no throttle answer")

    @property
    def throttled(self) -> int:
        return 0

    async def restart(self, sink: ReportSink) -> FixBroker:
        assert isinstance(self.pair.sink, Forwarder)
        self.pair.sink.target = sink
        return await self.pair.restart_broker()


@pytest.fixture(scope="module")
def fix_storage(pool: AsyncConnectionPool) -> FailingPool:
    """The adapter's records' pool, failing on demand."""
    return FailingPool(pool)


@pytest.fixture(scope="module")
async def fix_resilient_pair(
    tmp_path_factory: pytest.TempPathFactory,
    fix_storage: FailingPool,
    instruments: InstrumentCatalog,
) -> AsyncIterator[FixPair]:
    """One FIX 4.4 venue and adapter for the resilience contract, the adapter's records on a failing pool."""
    async with running_pair(
        tmp_path_factory.mktemp("fix-resilience"),
        fix_storage,  # type: ignore[arg-type]
        instruments,
        sink=Forwarder(),
        request_timeout_seconds=3,
    ) as pair:
        yield pair


@pytest.fixture
def fix_faults(fix_resilient_pair: FixPair) -> Iterator[FixFaults]:
    faults = fix_resilient_pair.venue.faults
    yield FixFaults(fix_resilient_pair)
    faults.swallow.clear()
    faults.drop_first.clear()
    faults.hold_answers.clear()
