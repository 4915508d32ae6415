"""Fixtures shared by the broker adapter tests (each adapter's conftest provides ``broker``, ``market``, ``faults``)."""

from __future__ import annotations

import pytest
from psycopg_pool import AsyncConnectionPool

from brokers.base import Broker, BrokerContext, BrokerSpec
from core.instruments import InstrumentCatalog
from core.settings import Settings
from tests.brokers.contract import ReportCollector


@pytest.fixture
def reports() -> ReportCollector:
    return ReportCollector()


@pytest.fixture
def broker() -> object:
    raise NotImplementedError("`broker` needs to be implemented in the adapter's conftest.py")


@pytest.fixture
def market() -> object:
    raise NotImplementedError("`market` needs to be implemented in the adapter's conftest.py")


@pytest.fixture
def contract_account() -> str:
    """The account the contract's orders name (an adapter whose accounts are configured overrides it)."""
    return "contract"


@pytest.fixture
def spec() -> BrokerSpec:
    raise NotImplementedError("`spec` needs to be implemented in the adapter's conftest.py (its package's SPEC)")


@pytest.fixture
async def unwritten(spec: BrokerSpec, instruments: InstrumentCatalog, pool: AsyncConnectionPool) -> Broker:
    """The adapter ``spec``'s factory builds from the default settings (not started): ``UnwrittenContract``."""
    return await spec.factory(BrokerContext(settings=Settings(), instruments=instruments, pool=pool))
