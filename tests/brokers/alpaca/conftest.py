from __future__ import annotations

import pytest

from tests.brokers.alpaca.kit import AlpacaPair, running_pair
from tests.brokers.pairfixtures import (  # noqa: F401 (fixtures)
    broker,
    contract_instrument,
    market,
    storage,
    venue_pair_fixture,
    venue_storage,
)
from tests.brokers.venuekit import PairFaults

venue_pair = venue_pair_fixture(running_pair)


@pytest.fixture(scope="module")
def alpaca_pair(venue_pair: AlpacaPair) -> AlpacaPair:
    return venue_pair


@pytest.fixture
def contract_symbol() -> str:
    return "AAPL"


_OPS = {
    "submit": ("POST", "/v2/orders"),
    "cancel": ("DELETE", "/v2/orders/"),
    "replace": ("PATCH", "/v2/orders/"),
    "status": ("GET", "/v2/orders:by_client_order_id"),
}


class AlpacaFaults(PairFaults[AlpacaPair]):
    """``FaultControl`` over the local Alpaca venue: it injects every fault the contract knows."""

    ops = _OPS

    def throttle(self, requests: int, per_seconds: float) -> None:
        self.pair.venue.rate_limit.per_minute = requests
        self.pair.venue.rate_limit.window = per_seconds

    @property
    def throttled(self) -> int:
        return self.pair.venue.rate_limit.refused


@pytest.fixture
def faults(venue_pair: AlpacaPair) -> AlpacaFaults:
    return AlpacaFaults(venue_pair)
