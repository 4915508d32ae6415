"""The paper broker passes the broker contract against its in-process venue."""

from tests.brokers.contract import BrokerContract


class TestPaperBroker(BrokerContract):
    pass
