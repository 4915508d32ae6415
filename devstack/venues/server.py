"""Serving a local REST venue over loopback: uvicorn inside the running event loop (tests, ``__main__``).

Each REST venue (Alpaca, OANDA, Kraken) exposes its ASGI ``app`` with ``start``/``stop``; its module's
``VenueServer`` subclasses :class:`HttpVenueServer` and says how to end its streams before serving stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from typing import Any, Generic, Protocol, TypeVar

__all__ = ["HttpVenueServer"]


class _Venue(Protocol):
    @property
    def app(self) -> Any: ...

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


V = TypeVar("V", bound=_Venue)


class HttpVenueServer(Generic[V]):
    """Serves ``venue`` with uvicorn on ``host:port``; ``port`` 0 picks a free one (see ``port``)."""

    #: The server task's name (``alpaca-venue-http``).
    task_name = "venue-http"
    #: uvicorn's WebSocket implementation, for a venue that streams over WebSocket (None: uvicorn's default).
    websockets: str | None = None

    def __init__(self, venue: V, *, host: str = "127.0.0.1", port: int = 0) -> None:
        """Bind ``host:port`` now (so ``port`` and ``base_url`` are known before ``start``)."""
        import uvicorn

        self.venue = venue
        self.host = host
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._socket.bind((host, port))
        self.port: int = self._socket.getsockname()[1]
        options: dict[str, Any] = {"ws": self.websockets} if self.websockets else {}
        config = uvicorn.Config(venue.app, log_level="warning", lifespan="off", **options)
        self._server = uvicorn.Server(config)
        self._task: asyncio.Task[None] | None = None

    @property
    def base_url(self) -> str:
        """``http://host:port``."""
        return f"http://{self.host}:{self.port}"

    async def start(self) -> None:
        """Start the venue and serve it."""
        await self.venue.start()
        self._task = asyncio.create_task(self._server.serve(sockets=[self._socket]), name=self.task_name)
        while not self._server.started:
            if self._task.done():
                self._task.result()
            await asyncio.sleep(0.02)

    async def end_streams(self) -> None:
        """End the venue's open streams before serving stops (a venue without streams has none)."""

    async def stop(self) -> None:
        """End the streams, stop serving and stop the venue."""
        await self.end_streams()
        self._server.should_exit = True
        if self._task is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._task, 10)
        self._socket.close()
        await self.venue.stop()
