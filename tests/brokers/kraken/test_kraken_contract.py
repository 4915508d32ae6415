"""The Kraken adapter passes the broker contract, and the resilience contract (unknown is not failed), against the
local Kraken venue over loopback HTTP; every answer it gets is checked against Kraken's spot REST document."""

from tests.brokers.contract import BrokerContract, ResilienceContract


class TestKrakenBroker(BrokerContract):
    pass


class TestKrakenResilience(ResilienceContract):
    pass
