"""A FIX venue and a FIX adapter wired to each other over loopback, for the FIX tests."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from psycopg_pool import AsyncConnectionPool

from brokers.base import ReportSink
from brokers.fix.execution import FixBroker
from core.instruments import InstrumentCatalog
from core.settings import FixSettings, Settings
from devstack.services import free_port
from devstack.venues.fix.venue import FixVenue
from sim.venue import SimVenue, VenueJournal
from tests.brokers.venuekit import Forwarder, eventually

__all__ = ["FixPair", "Forwarder", "TcpProxy", "eventually", "fix_settings", "running_pair"]


class TcpProxy:
    """A loopback TCP relay between the adapter and the venue that a test can cut, like a network outage.

    Cut, it closes every connection and then every new one at once, without a byte of FIX: neither side gets
    a Logout, both just lose the connection (and the initiator keeps reconnecting).
    """

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = free_port()
        self.down = False
        self.refused = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)

    async def stop(self) -> None:
        self.cut()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    def cut(self) -> None:
        """Drop every connection and refuse new ones."""
        self.down = True
        for w in list(self._writers):
            w.transport.abort()
        self._writers.clear()

    def restore(self) -> None:
        """Let connections through again."""
        self.down = False

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.down:
            self.refused += 1
            writer.transport.abort()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.transport.abort()
            return
        self._writers.update((writer, up_writer))

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                dst.transport.abort()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        self._writers.difference_update((writer, up_writer))


@dataclass
class FixPair:
    """A FIX venue and the adapter logged on to it."""

    venue: FixVenue
    broker: FixBroker
    settings: Settings
    pool: AsyncConnectionPool
    sink: ReportSink
    proxy: TcpProxy | None = None
    #: Extra arguments of ``FixBroker.from_settings`` (``quotes``, ``instruments``).
    broker_options: dict[str, Any] = field(default_factory=dict)

    def new_broker(self) -> FixBroker:
        """A fresh adapter on the same session (same store directory, same Postgres records)."""
        return FixBroker.from_settings(self.settings, pool=self.pool, **self.broker_options)

    async def restart_broker(self) -> FixBroker:
        """Stop the adapter and start a new one on the same session."""
        await self.broker.close()
        self.broker = self.new_broker()
        await self.broker.start(self.sink)
        await self.broker.wait_logged_on(15)
        await asyncio.wait_for(self.broker.resynced.wait(), 15)
        return self.broker


def fix_settings(*, port: int, begin_string: str, sender: str, target: str, **overrides: Any) -> FixSettings:
    base: dict[str, Any] = dict(
        begin_string=begin_string,
        host="127.0.0.1",
        port=port,
        sender_comp_id=sender,
        target_comp_id=target,
        reconnect_interval_seconds=1,
        heartbeat_seconds=30,
        request_timeout_seconds=5,
    )
    base.update(overrides)
    return FixSettings(**base)


@contextlib.asynccontextmanager
async def running_pair(
    directory: Path,
    pool: AsyncConnectionPool,
    instruments: InstrumentCatalog,
    *,
    sink: ReportSink,
    begin_string: str = "FIX.4.4",
    venue_options: dict[str, Any] | None = None,
    proxy: bool = False,
    broker_options: dict[str, Any] | None = None,
    venue_journal: VenueJournal | None = None,
    **fix_overrides: Any,
) -> AsyncIterator[FixPair]:
    """Start a venue (prices move only when the test says) and an adapter, wait for logon and resync.

    With ``proxy`` the adapter connects through a ``TcpProxy`` (``pair.proxy``) that the test can cut; with
    ``venue_journal`` the simulated venue behind the FIX venue journals its book there.
    """
    port = free_port()
    tag = uuid.uuid4().hex[:6].upper()
    sender, target = f"EXO{tag}", f"VEN{tag}"
    options: dict[str, Any] = dict(
        username=fix_overrides.get("username"),
        password=fix_overrides["password"].get_secret_value() if fix_overrides.get("password") else None,
    )
    options.update(venue_options or {})
    venue = FixVenue(
        SimVenue(instruments, name="fixvenue", tick_interval=0, journal=venue_journal),
        port=port,
        directory=directory / "venue",
        begin_string=begin_string,
        sender_comp_id=target,
        target_comp_id=sender,
        **options,
    )
    relay = TcpProxy(port) if proxy else None
    settings = Settings(
        data_dir=directory,
        fix=fix_settings(
            port=relay.port if relay else port, begin_string=begin_string, sender=sender, target=target, **fix_overrides
        ),
    )
    await venue.start()
    if relay is not None:
        await relay.start()
    options = dict(broker_options or {})
    pair = FixPair(venue, FixBroker.from_settings(settings, pool=pool, **options), settings, pool, sink, relay, options)
    try:
        await pair.broker.start(sink)
        await pair.broker.wait_logged_on(15)
        await asyncio.wait_for(pair.broker.resynced.wait(), 15)
        yield pair
    finally:
        await pair.broker.close()
        if relay is not None:
            await relay.stop()
        await venue.stop()
