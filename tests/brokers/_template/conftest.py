"""Fixtures of the template broker's tests: copy to ``tests/brokers/<name>/conftest.py`` and write each one.

``broker`` starts your adapter against your local venue run in process (on a free port, journaled in the test
database), its reports going to ``reports``; ``market`` moves the venue's market; ``faults`` makes the venue fail
(answers lost, late, refused, throttled; restarts of the adapter over the same records); ``storage`` makes the
adapter's own records fail (build the adapter on ``tests.brokers.storage.FailingPool``). See the Alpaca and FIX
tests for complete examples (``tests/brokers/alpaca/conftest.py``, ``kit.py``).
"""

from __future__ import annotations

import pytest

from brokers._template import SPEC
from brokers.base import BrokerSpec
from core.domain import Instrument
from core.instruments import InstrumentCatalog


@pytest.fixture
def spec() -> BrokerSpec:
    return SPEC


@pytest.fixture
def broker() -> object:
    raise NotImplementedError("`broker`: start the adapter against the local venue (tests/brokers/<name>/conftest.py)")


@pytest.fixture
def market() -> object:
    raise NotImplementedError("`market`: the local venue's MarketControl (set_mid, step)")


@pytest.fixture
def faults() -> object:
    raise NotImplementedError("`faults`: a FaultControl over the local venue (tests/brokers/contract.py)")


@pytest.fixture
def contract_instrument(instruments: InstrumentCatalog) -> Instrument:
    inst = instruments.get("AAPL")  # an instrument the broker trades
    assert inst is not None
    return inst
