from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from psycopg_pool import AsyncConnectionPool

from brokers.fix.execution import FixBroker
from core.domain import Instrument
from core.instruments import InstrumentCatalog
from sim.fix_venue import FixVenue
from tests.brokers.contract import ReportCollector
from tests.brokers.fix.kit import FixPair, Forwarder, running_pair


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
