"""The contract's fixtures for a REST broker's tests (Alpaca, OANDA, Kraken), over one pair per test module.

The broker's ``conftest.py`` imports these, makes its ``venue_pair`` with :func:`venue_pair_fixture` over its kit's
``running_pair`` (a :class:`~tests.brokers.venuekit.RestPair`), and provides ``contract_symbol`` and ``faults``.
Each test gets the pair's adapter reporting to its own ``reports``, the venue calmed
(:meth:`~tests.brokers.venuekit.RestPair.calm`) and its records up. (IB's conftest takes ``venue_storage``,
``storage`` and ``contract_instrument`` from here too.)
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
from psycopg_pool import AsyncConnectionPool

from core.domain import Instrument
from core.instruments import InstrumentCatalog
from tests.brokers.contract import ReportCollector
from tests.brokers.storage import FailingPool
from tests.brokers.venuekit import Forwarder, RestPair

__all__ = ["broker", "contract_instrument", "market", "storage", "venue_pair_fixture", "venue_storage"]


@pytest.fixture(scope="module")
def venue_storage(pool: AsyncConnectionPool) -> FailingPool:
    """The adapter's records' pool (the venue keeps its own), failing on demand."""
    return FailingPool(pool)


@pytest.fixture
def storage(venue_storage: FailingPool) -> Iterator[FailingPool]:
    venue_storage.down = False
    yield venue_storage
    venue_storage.down = False


@pytest.fixture
def broker(venue_pair: RestPair[Any], reports: ReportCollector) -> Any:
    assert isinstance(venue_pair.sink, Forwarder)
    venue_pair.sink.target = reports
    venue_pair.calm()
    return venue_pair.broker


@pytest.fixture
def market(venue_pair: RestPair[Any]) -> Any:
    return venue_pair.venue


@pytest.fixture
def contract_instrument(instruments: InstrumentCatalog, contract_symbol: str) -> Instrument:
    inst = instruments.get(contract_symbol)
    assert inst is not None
    return inst


def venue_pair_fixture(running_pair: Callable[..., contextlib.AbstractAsyncContextManager[Any]]) -> Any:
    """The ``venue_pair`` fixture of a kit's ``running_pair``: one local venue (journaled in Postgres) and one adapter
    per test module (each test its own sink), the adapter's records in ``venue_storage``."""

    @pytest.fixture(scope="module")
    async def venue_pair(
        pool: AsyncConnectionPool, instruments: InstrumentCatalog, database_url: str, venue_storage: FailingPool
    ) -> AsyncIterator[Any]:
        async with running_pair(
            pool, instruments, sink=Forwarder(), journal_url=database_url, store_pool=venue_storage
        ) as pair:
            yield pair

    return venue_pair
