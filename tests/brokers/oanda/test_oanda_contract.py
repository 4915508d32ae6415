"""The OANDA adapter passes the broker contract, and the resilience contract (unknown is not failed), against the
local OANDA venue over loopback HTTP (REST and the chunked transaction stream); every answer it gets is checked
against OANDA's v20 document."""

from tests.brokers.contract import BrokerContract, ResilienceContract


class TestOandaBroker(BrokerContract):
    pass


class TestOandaResilience(ResilienceContract):
    pass
