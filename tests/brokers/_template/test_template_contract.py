"""The template broker against the contract suite: today the "not written yet" checks; in your copy, the contract.

In your copy (``tests/brokers/<name>/test_<name>_contract.py``): delete ``TestTemplateUnwritten`` once the adapter
works, and the ``skip`` marks, so that the broker contract and the resilience contract run against your local venue.
"""

from __future__ import annotations

import pytest

from tests.brokers.contract import BrokerContract, ResilienceContract, UnwrittenContract

_NOT_YET = pytest.mark.skip(reason="not written yet: delete this mark once the adapter runs (brokers/README.md, 5)")


class TestTemplateUnwritten(UnwrittenContract):
    pass


@_NOT_YET
class TestTemplateBroker(BrokerContract):
    pass


@_NOT_YET
class TestTemplateResilience(ResilienceContract):
    pass
