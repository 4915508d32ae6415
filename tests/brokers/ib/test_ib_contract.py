"""The IB adapter passes the broker contract, and the resilience contract (unknown is not failed), against the local
TWS venue: the real ib_async client over a loopback socket speaking the TWS API protocol."""

from tests.brokers.contract import BrokerContract, ResilienceContract


class TestIBBroker(BrokerContract):
    pass


class TestIBResilience(ResilienceContract):
    pass
