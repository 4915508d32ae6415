from __future__ import annotations

import pytest

from brokers.base import BrokerSpec
from brokers.oanda import SPEC
from tests.brokers.oanda.kit import OandaPair, running_pair
from tests.brokers.pairfixtures import (  # noqa: F401 (fixtures)
    broker,
    contract_instrument,
    market,
    storage,
    venue_pair_fixture,
    venue_storage,
)
from tests.brokers.venuekit import PairFaults


@pytest.fixture
def spec() -> BrokerSpec:
    return SPEC


venue_pair = venue_pair_fixture(running_pair)


@pytest.fixture
def contract_symbol() -> str:
    return "EURUSD"


#: The contract's operations: (method, regular expression of the path after /v3/accounts/{id}).
_OPS = {
    "submit": ("POST", r"^/orders$"),
    "cancel": ("PUT", r"^/orders/[^/]+/cancel$"),
    "replace": ("PUT", r"^/orders/[^/]+$"),
    "status": ("GET", r"^/orders/@"),
}


class OandaFaults(PairFaults[OandaPair]):
    """``FaultControl`` over the local OANDA venue: it injects every fault the contract knows."""

    ops = _OPS

    def throttle(self, requests: int, per_seconds: float) -> None:
        self.pair.venue.rate_limit.limit = requests
        self.pair.venue.rate_limit.window = per_seconds

    @property
    def throttled(self) -> int:
        return self.pair.venue.rate_limit.refused


@pytest.fixture
def faults(venue_pair: OandaPair) -> OandaFaults:
    return OandaFaults(venue_pair)
