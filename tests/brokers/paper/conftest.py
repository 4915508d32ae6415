from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from brokers.paper import PaperBroker
from core.domain import Instrument
from core.instruments import InstrumentCatalog
from sim.venue import SimVenue
from tests.brokers.contract import ReportCollector


@pytest.fixture
async def paper(instruments: InstrumentCatalog, reports: ReportCollector) -> AsyncIterator[PaperBroker]:
    broker = PaperBroker(SimVenue(instruments, name="paper", tick_interval=0))
    await broker.start(reports)
    yield broker
    await broker.close()


@pytest.fixture
def broker(paper: PaperBroker) -> PaperBroker:
    return paper


@pytest.fixture
def market(paper: PaperBroker) -> SimVenue:
    return paper.venue


@pytest.fixture
def contract_instrument(instruments: InstrumentCatalog) -> Instrument:
    inst = instruments.get("AAPL")
    assert inst is not None
    return inst
