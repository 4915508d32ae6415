from __future__ import annotations

import pytest

from brokers.base import BrokerSpec
from brokers.kraken import SPEC
from tests.brokers.kraken.kit import KrakenPair, running_pair
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
    return "BTC-USD"


_OPS = {"submit": "AddOrder", "cancel": "CancelOrder", "replace": "AmendOrder", "status": "OpenOrders"}


class KrakenFaults(PairFaults[KrakenPair]):
    """``FaultControl`` over the local Kraken venue: it injects every fault the contract knows."""

    def _add(self, kind: str, op: str, times: int = 1, **kw: object) -> None:
        self.pair.venue.faults.add(kind, method=_OPS[op], times=times, **kw)  # type: ignore[arg-type]

    def fail_before(self, op: str, times: int = 1) -> None:
        # Kraken's own "the engine is not there": EService:Unavailable, with HTTP 200.
        self._add("error_before", op, times=times, errors=["EService:Unavailable"])

    def throttle(self, requests: int, per_seconds: float) -> None:
        self.pair.venue.throttle(requests, requests / per_seconds if requests else 1.0)

    @property
    def throttled(self) -> int:
        return self.pair.venue.throttled


@pytest.fixture
def faults(venue_pair: KrakenPair) -> KrakenFaults:
    return KrakenFaults(venue_pair)
