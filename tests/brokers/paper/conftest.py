from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
from psycopg_pool import AsyncConnectionPool

from brokers.base import ReportSink
from brokers.paper import PaperBroker
from core.domain import Instrument
from core.instruments import InstrumentCatalog
from sim.journal import PostgresVenueJournal
from sim.venue import SimVenue
from tests.brokers.contract import ReportCollector
from tests.harness import PAPER_AUCTIONS


@pytest.fixture
async def paper(instruments: InstrumentCatalog, reports: ReportCollector) -> AsyncIterator[PaperBroker]:
    broker = PaperBroker(SimVenue(instruments, name="paper", tick_interval=0, auctions=PAPER_AUCTIONS))
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


# ------------------------------------------------------------------------------------------ the resilience contract


@dataclass
class JournaledPaper:
    """A paper broker whose venue journals its book in Postgres, and can be restarted over that journal."""

    broker: PaperBroker
    instruments: InstrumentCatalog
    pool: AsyncConnectionPool
    url: str
    key: str

    def new_broker(self) -> PaperBroker:
        journal = PostgresVenueJournal(self.pool, self.url, venue=self.key)
        return PaperBroker(
            SimVenue(self.instruments, name="paper", tick_interval=0, journal=journal, auctions=PAPER_AUCTIONS)
        )


class PaperFaults:
    """``FaultControl`` of the in-process venue: it has no wire to fail, only restarts."""

    def __init__(self, paper: JournaledPaper) -> None:
        self.paper = paper

    def offers(self, kind: str, op: str = "") -> bool:
        return kind == "restart"

    def lose_answer(self, op: str) -> None:
        raise NotImplementedError

    def stall(self, op: str) -> None:
        raise NotImplementedError

    def fail_before(self, op: str, times: int = 1) -> None:
        raise NotImplementedError

    def throttle(self, requests: int, per_seconds: float) -> None:
        raise NotImplementedError

    @property
    def throttled(self) -> int:
        return 0

    async def restart(self, sink: ReportSink) -> PaperBroker:
        await self.paper.broker.close()
        self.paper.broker = self.paper.new_broker()
        await self.paper.broker.start(sink)
        return self.paper.broker


@pytest.fixture
async def journaled_paper(
    instruments: InstrumentCatalog, pool: AsyncConnectionPool, database_url: str, reports: ReportCollector
) -> AsyncIterator[JournaledPaper]:
    paper = JournaledPaper(None, instruments, pool, database_url, f"paper-{uuid.uuid4().hex[:8]}")  # type: ignore[arg-type]
    paper.broker = paper.new_broker()
    await paper.broker.start(reports)
    try:
        yield paper
    finally:
        await paper.broker.close()
