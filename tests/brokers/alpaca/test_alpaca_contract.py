"""The Alpaca adapter passes the broker contract, and the resilience contract (unknown is not failed), against the
local Alpaca venue over loopback HTTP and WebSocket; every answer it gets is checked against Alpaca's OpenAPI
document."""

from tests.brokers.contract import BrokerContract, ResilienceContract


class TestAlpacaBroker(BrokerContract):
    pass


class TestAlpacaResilience(ResilienceContract):
    pass
