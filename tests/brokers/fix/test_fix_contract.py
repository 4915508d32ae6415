"""The FIX adapter passes the broker contract over real QuickFIX sessions on loopback (FIX 4.2, 4.4, 5.0 SP2)."""

from tests.brokers.contract import BrokerContract


class TestFixBroker(BrokerContract):
    pass
