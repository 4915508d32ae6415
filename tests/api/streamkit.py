"""Real API processes for the stream tests: apps served by uvicorn on free ports, WebSocket and SSE clients.

Each app has its own pool and its own hub (its own LISTEN connection), as two API processes would; they share
only the database. Events are booked straight through ``store`` (what the workflow's booking does).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import uvicorn
import websockets
from psycopg import AsyncConnection
from psycopg.rows import DictRow, dict_row
from psycopg_pool import AsyncConnectionPool

from api.main import create_app
from core.settings import Settings
from store import Pool
from store.risk import set_trading_state


@dataclass
class Served:
    """One API process: its address and app."""

    url: str
    app: Any
    pool: Pool

    @property
    def ws(self) -> str:
        return self.url.replace("http://", "ws://") + "/api/v1/stream"


@contextlib.asynccontextmanager
async def open_pool(url: str, size: int = 6) -> AsyncIterator[Pool]:
    pool: Pool = AsyncConnectionPool(
        url,
        connection_class=AsyncConnection[DictRow],
        min_size=1,
        max_size=size,
        kwargs={"autocommit": True, "row_factory": dict_row},
        open=False,
    )
    await pool.open(wait=True)
    try:
        yield pool
    finally:
        await pool.close()


@contextlib.asynccontextmanager
async def serve(settings: Settings) -> AsyncIterator[Served]:
    """An API process for ``settings`` (its own pool), served on a free port until the block ends."""
    async with open_pool(settings.require_database_url()) as pool:
        app = create_app(settings, pool=pool)
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        config = uvicorn.Config(app, lifespan="off", log_level="warning", ws="websockets-sansio")
        server = uvicorn.Server(config)
        task = asyncio.create_task(server.serve(sockets=[sock]))
        try:
            while not server.started:
                if task.done():
                    task.result()
                await asyncio.sleep(0.01)
            yield Served(f"http://127.0.0.1:{port}", app, pool)
        finally:
            server.should_exit = True
            server.force_exit = True
            with contextlib.suppress(Exception):
                await asyncio.wait_for(task, 10)
            if app.state.stream_hub is not None:
                await app.state.stream_hub.stop()
            sock.close()


async def book_states(pool: Pool, names: list[str], *, state: str = "HALTED") -> None:
    """One trading-state change per name (SYMBOL scope), each in its own transaction, in order."""
    for name in names:
        async with pool.connection() as conn:
            await set_trading_state(conn, scope="SYMBOL", key=name, state=state, reason=name, actor="tests")


async def next_message(ws: Any, timeout: float = 15.0) -> dict[str, Any]:
    """The next JSON message of a WebSocket."""
    return json.loads(await asyncio.wait_for(ws.recv(), timeout))  # type: ignore[no-any-return]


async def events(ws: Any, count: int, *, timeout: float = 30.0) -> list[dict[str, Any]]:
    """The next ``count`` events (heartbeats skipped)."""
    got: list[dict[str, Any]] = []
    async with asyncio.timeout(timeout):
        while len(got) < count:
            message = await next_message(ws, timeout)
            if message["type"] == "event":
                got.append(message)
            elif message["type"] == "lagging":
                raise AssertionError(f"unexpectedly lagging: {message}")
    return got


def connect(served: Served, query: str = "", headers: dict[str, str] | None = None) -> Any:
    """A WebSocket client to the stream."""
    return websockets.connect(served.ws + (f"?{query}" if query else ""), additional_headers=headers, open_timeout=10)


async def sse_messages(
    http: httpx.AsyncClient, url: str, count: int, *, headers: dict[str, str] | None = None, want: str = "event"
) -> list[tuple[str | None, dict[str, Any]]]:
    """The first ``count`` SSE messages of type ``want`` as (id, message)."""
    out: list[tuple[str | None, dict[str, Any]]] = []
    async with http.stream("GET", url, headers=headers) as r:
        assert r.status_code == 200, await r.aread()
        assert r.headers["content-type"].startswith("text/event-stream")
        frame: dict[str, str] = {}
        async for line in r.aiter_lines():
            if line:
                key, _, value = line.partition(": ")
                frame[key] = value
                continue
            message = json.loads(frame["data"])
            if message["type"] == want:
                out.append((frame.get("id"), message))
                if len(out) == count:
                    return out
            frame = {}
    return out
