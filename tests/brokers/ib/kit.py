"""Test kit for the IB adapter: the local TWS venue on a loopback port, and an adapter (real ib_async) against it."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from psycopg_pool import AsyncConnectionPool

from brokers.base import ReportSink
from brokers.ib.execution import IBBroker
from core.instruments import InstrumentCatalog
from core.settings import IBSettings
from devstack.venues.ib import LOCAL_IB_ACCOUNT
from devstack.venues.ib.venue import IBVenue, IBVenueServer
from sim.venue import SimVenue
from tests.brokers.venuekit import Forwarder, VenuePair, eventually, serving

__all__ = ["Forwarder", "IBPair", "eventually", "ib_settings", "running_pair"]


def ib_settings(port: int, **overrides: Any) -> IBSettings:
    """Settings of an adapter talking to the local venue on ``port`` (short timeouts and backoffs)."""
    values: dict[str, Any] = {
        "host": "127.0.0.1",
        "port": port,
        "client_id": 7,
        "account": LOCAL_IB_ACCOUNT,
        "request_timeout_seconds": 2.0,
        "connect_timeout_seconds": 5.0,
        "reconnect_initial_seconds": 0.1,
        "reconnect_max_seconds": 0.5,
        "commission_wait_seconds": 1.0,
    }
    values.update(overrides)
    return IBSettings(**values)


@dataclass(kw_only=True)
class IBPair(VenuePair[IBBroker]):
    """A local TWS venue and an adapter started against it."""

    instruments: InstrumentCatalog

    @property
    def venue(self) -> IBVenue:
        return self.server.venue  # type: ignore[no-any-return]

    def new_broker(self, **overrides: Any) -> IBBroker:
        return IBBroker(self._settings(overrides), pool=self.pool, name=self.name, instruments=self.instruments)


@contextlib.asynccontextmanager
async def running_pair(
    pool: AsyncConnectionPool,
    instruments: InstrumentCatalog,
    *,
    sink: ReportSink,
    name: str | None = None,
    store_pool: AsyncConnectionPool | None = None,
    **overrides: Any,
) -> AsyncIterator[IBPair]:
    """A venue on a free loopback port and an adapter connected to it (caught up).

    ``store_pool``: where the adapter keeps its records, when not ``pool`` (a ``FailingPool`` in storage tests).
    """
    name = name or f"ib-{uuid.uuid4().hex[:6]}"
    sim = SimVenue(instruments, name="ibvenue", tick_interval=0)
    venue = IBVenue(sim, list(instruments), accounts=[LOCAL_IB_ACCOUNT])
    server = IBVenueServer(venue)
    await server.start()
    pair = IBPair(
        server=server,
        settings=ib_settings(server.port, **overrides),
        pool=store_pool or pool,
        sink=sink,
        name=name,
        instruments=instruments,
    )
    async with serving(pair) as pair:
        yield pair
