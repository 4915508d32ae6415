"""The FIX adapter passes the broker contract over real QuickFIX sessions on loopback (FIX 4.2, 4.4, 5.0 SP2), and
the resilience contract (unknown is not failed) over FIX 4.4: answers lost with the connection, answers that come
after the adapter stopped waiting, requests the venue never saw, its own records failing, restarts."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from brokers.fix.execution import FixBroker
from devstack.venues.fix.venue import FixVenue
from tests.brokers.contract import BrokerContract, ReportCollector, ResilienceContract
from tests.brokers.fix.conftest import FixFaults
from tests.brokers.fix.kit import FixPair, Forwarder
from tests.brokers.storage import FailingPool


class TestFixBroker(BrokerContract):
    pass


class TestFixResilience(ResilienceContract):
    @pytest.fixture
    def broker(self, fix_resilient_pair: FixPair, reports: ReportCollector) -> FixBroker:
        assert isinstance(fix_resilient_pair.sink, Forwarder)
        fix_resilient_pair.sink.target = reports
        return fix_resilient_pair.broker

    @pytest.fixture
    def market(self, fix_resilient_pair: FixPair) -> FixVenue:
        return fix_resilient_pair.venue

    @pytest.fixture
    def faults(self, fix_faults: FixFaults) -> FixFaults:
        return fix_faults

    @pytest.fixture
    def storage(self, fix_storage: FailingPool) -> Iterator[FailingPool]:
        fix_storage.down = False
        yield fix_storage
        fix_storage.down = False
