"""Test kit for the IB adapter: the local TWS venue on a loopback port, and an adapter (real ib_async) against it."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from psycopg_pool import AsyncConnectionPool

from brokers.base import ReportSink
from brokers.ib.execution import IBBroker
from core.domain import ExecutionReport
from core.instruments import InstrumentCatalog
from core.settings import IBSettings
from devstack.venues.ib import LOCAL_IB_ACCOUNT
from devstack.venues.ib.venue import IBVenue, IBVenueServer
from sim.venue import SimVenue

__all__ = ["Forwarder", "IBPair", "eventually", "ib_settings", "running_pair"]


class Forwarder:
    """A report sink that passes reports on to whichever sink a test sets (module-scoped pairs)."""

    def __init__(self) -> None:
        self.target: ReportSink | None = None

    async def __call__(self, report: ExecutionReport) -> None:
        if self.target is not None:
            await self.target(report)


async def eventually(check: Callable[[], Any], *, timeout: float = 10.0, interval: float = 0.05) -> Any:
    """Poll ``check`` (sync or async) until it returns something truthy."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return result
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        await asyncio.sleep(interval)


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


@dataclass
class IBPair:
    """A local TWS venue and an adapter started against it."""

    server: IBVenueServer
    broker: IBBroker
    settings: IBSettings
    pool: AsyncConnectionPool
    sink: ReportSink
    name: str
    instruments: InstrumentCatalog
    started: list[IBBroker] = field(default_factory=list)

    @property
    def venue(self) -> IBVenue:
        return self.server.venue

    def new_broker(self, **overrides: Any) -> IBBroker:
        """Another adapter over the same records (a restarted worker), not started."""
        settings = self.settings.model_copy(update=overrides) if overrides else self.settings
        return IBBroker(settings, pool=self.pool, name=self.name, instruments=self.instruments)

    async def restart(self, sink: ReportSink | None = None) -> IBBroker:
        """Close the adapter and start a new one over the same records (its reports go to ``sink``)."""
        await self.broker.close()
        broker = self.new_broker()
        self.started.append(broker)
        await broker.start(sink or self.sink)
        await asyncio.wait_for(broker.caught_up.wait(), 15)
        self.broker = broker
        return broker


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
    settings = ib_settings(server.port, **overrides)
    pair = IBPair(
        server=server,
        broker=None,  # type: ignore[arg-type]
        settings=settings,
        pool=store_pool or pool,
        sink=sink,
        name=name,
        instruments=instruments,
    )
    broker = pair.new_broker()
    pair.broker = broker
    pair.started.append(broker)
    try:
        await broker.start(sink)
        await asyncio.wait_for(broker.caught_up.wait(), 15)
        yield pair
    finally:
        for b in pair.started:
            await b.close()
        await server.stop()
