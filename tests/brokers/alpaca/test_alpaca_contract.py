"""The Alpaca adapter passes the broker contract against the local Alpaca venue over loopback HTTP and WebSocket."""

from tests.brokers.contract import BrokerContract


class TestAlpacaBroker(BrokerContract):
    pass
