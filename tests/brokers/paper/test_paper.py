"""The paper broker passes the broker contract against its in-process venue, and the resilience contract as far as
an in-process venue goes: restarts over its journal (reports delivered again, open orders kept)."""

from __future__ import annotations

import pytest

from brokers.paper import PaperBroker
from sim.venue import SimVenue
from tests.brokers.contract import BrokerContract, ResilienceContract
from tests.brokers.paper.conftest import JournaledPaper, PaperFaults


class TestPaperBroker(BrokerContract):
    pass


class TestPaperResilience(ResilienceContract):
    @pytest.fixture
    def broker(self, journaled_paper: JournaledPaper) -> PaperBroker:
        return journaled_paper.broker

    @pytest.fixture
    def market(self, journaled_paper: JournaledPaper) -> SimVenue:
        return journaled_paper.broker.venue

    @pytest.fixture
    def faults(self, journaled_paper: JournaledPaper) -> PaperFaults:
        return PaperFaults(journaled_paper)
