"""The load generator's REST client: one kept-alive connection per concurrent caller, reused across its orders.

A shared client with a pool of N connections scanned all N for every request (its CPU per order grew with the
concurrency), and connections idle longer than 5 s (an order's life at concurrency 200) were closed and opened
again for the next order. Behaviour only: which connections the server sees, never a timing.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest

from benchmarks.load import Connections

pytestmark = pytest.mark.asyncio


class CountingServer:
    """An HTTP/1.1 keep-alive server answering ``ok`` to every request; counts the connections it accepts."""

    def __init__(self) -> None:
        self.accepted = 0
        self.requests = 0
        self.url = ""

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.decode("latin-1").split("\r\n"):
                    name, _, value = line.partition(":")
                    if name.strip().lower() == "content-length":
                        length = int(value)
                if length:
                    await reader.readexactly(length)
                await asyncio.sleep(0.01)  # an answer that takes a moment, so concurrent callers overlap
                self.requests += 1
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: text/plain\r\n\r\nok")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[CountingServer]:
        server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}/"
        async with server:
            yield self


async def test_a_caller_reuses_its_connection_across_orders() -> None:
    async with CountingServer().running() as server, Connections() as connections:
        for _ in range(12):
            async with connections.lane() as http:
                assert (await http.post(server.url, json={"n": 1})).text == "ok"
        assert connections.lanes == 1
    assert server.requests == 12
    assert server.accepted == 1


async def test_concurrent_callers_each_keep_one_connection() -> None:
    callers, rounds = 8, 5
    async with CountingServer().running() as server, Connections() as connections:
        in_flight = 0
        peak = 0

        async def caller() -> None:
            nonlocal in_flight, peak
            for _ in range(rounds):
                async with connections.lane() as http:
                    in_flight += 1
                    peak = max(peak, in_flight)
                    assert (await http.post(server.url, json={})).text == "ok"
                    in_flight -= 1

        await asyncio.gather(*(caller() for _ in range(callers)))
        # One lane (and connection) per call in flight at the peak, never one per order.
        assert connections.lanes == peak == callers
    assert server.requests == callers * rounds
    assert server.accepted == callers


async def test_idle_connections_outlive_the_default_keep_alive() -> None:
    # An order at concurrency 200 runs for seconds; httpx closes idle connections after 5 s by default.
    connections = Connections()
    async with connections.lane() as http:
        assert http._transport._pool._keepalive_expiry >= 60  # type: ignore[attr-defined]
        assert http._transport._pool._max_connections == 1  # type: ignore[attr-defined]
    await connections.aclose()
