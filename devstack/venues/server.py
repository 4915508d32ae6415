"""Serving a local REST venue over loopback: uvicorn inside the running event loop (tests, ``__main__``).

Each REST venue (Alpaca, OANDA, Kraken) exposes its ASGI ``app`` with ``start``/``stop``; its module's
``VenueServer`` subclasses :class:`HttpVenueServer` and says how to end its streams before serving stops.

What the REST venues share besides: the paper engine's lifecycle and price moves (:class:`PaperVenue`), the faults
the tests inject (:class:`Fault` queued in :class:`VenueFaults`; the venue answers them in its wire's words) and
the answer broken off mid-way (:class:`DroppedResponse`).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any, ClassVar, Generic, Protocol, TypeVar

from starlette.responses import Response
from starlette.types import Receive, Scope, Send

if TYPE_CHECKING:
    from sim.venue import SimVenue

__all__ = ["DroppedResponse", "Fault", "HttpVenueServer", "PaperVenue", "VenueFaults"]


class PaperVenue:
    """A venue in front of the paper matching engine ``sim``: its start, stop and price moves."""

    sim: SimVenue

    async def start(self) -> None:
        """Start the simulated venue (restores its journal)."""
        await self.sim.start()

    async def stop(self) -> None:
        """Stop the simulated venue."""
        await self.sim.stop()

    async def set_mid(self, symbol: str, mid: Decimal) -> None:
        """Move a symbol's mid price and match resting orders (tests and demos)."""
        await self.sim.set_mid(symbol, mid)

    async def step(self) -> None:
        """Move the feed one step and match resting orders."""
        await self.sim.step()


@dataclass
class Fault:
    """One injected failure, used up by the first request it matches."""

    #: "error_before": answer ``status`` without processing; "error_after": process, then answer ``status``;
    #: "drop_after": process, then drop the connection mid-answer; "stall_after": process, then answer only after
    #: ``seconds`` (longer than the client waits). A venue may know more.
    kind: str
    #: The request's method (None: any).
    method: str | None = None
    #: The request's path: what the venue's ``VenueFaults.matches`` compares (None: any).
    path: str | None = None
    status: int = 500
    seconds: float = 30.0


F = TypeVar("F", bound=Fault)


@dataclass
class VenueFaults(Generic[F]):
    """What tests (and demos) make go wrong: a queue of faults, each used up by the first request it matches."""

    #: Added to every REST request.
    latency: float = 0.0
    pending: list[F] = field(default_factory=list)
    #: New stream connections are refused (the adapter keeps reconnecting).
    refuse_streams: bool = False
    #: A dropped answer's status and the start of its body (as the broker's answer would start).
    dropped: ClassVar[tuple[int, bytes]] = (200, b"{")

    def fault(self, kind: str, **kw: Any) -> F:
        """A fault of the venue's kind."""
        raise NotImplementedError

    def add(self, kind: str, *, method: str | None = None, path: str | None = None, times: int = 1, **kw: Any) -> None:
        """Queue ``times`` faults of ``kind`` for requests matching ``method`` and ``path``."""
        self.pending.extend(self.fault(kind, method=method, path=path, **kw) for _ in range(times))

    def take(self, method: str, path: str = "") -> F | None:
        """The first queued fault this request matches (removed), if any."""
        for i, fault in enumerate(self.pending):
            if (fault.method is None or fault.method == method) and (
                fault.path is None or self.matches(fault.path, path)
            ):
                return self.pending.pop(i)
        return None

    async def arrive(self, method: str, path: str = "") -> F | None:
        """A request arrives: the latency first, then the fault it matches (taken from the queue), if any."""
        if self.latency:
            await asyncio.sleep(self.latency)
        return self.take(method, path)

    async def injected(self, fault: F | None, error: Callable[[F], Response]) -> Response | None:
        """After processing: the answer ``fault`` puts in the processed one's place (None: the processed one).

        "error_after": ``error(fault)`` (the venue's error answer); "drop_after": an answer broken off
        (:class:`DroppedResponse`); "stall_after": none, after waiting ``seconds``.
        """
        if fault is None:
            return None
        if fault.kind == "error_after":
            return error(fault)
        if fault.kind == "drop_after":
            return DroppedResponse(*self.dropped)
        if fault.kind == "stall_after":
            await asyncio.sleep(fault.seconds)
        return None

    @staticmethod
    def matches(pattern: str, path: str) -> bool:
        """Whether a fault's ``path`` matches the request's (here: the path starts with it)."""
        return path.startswith(pattern)


class ConnectionDropped(Exception):
    """Raised after the answer started: the server aborts the connection."""


class DroppedResponse(Response):
    """Starts a ``status`` answer whose body begins with ``start`` and breaks off: the connection closes mid-answer."""

    def __init__(self, status: int, start: bytes) -> None:
        super().__init__()
        self._status = status
        self._start = start

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Send the start of the answer, then break off."""
        await send(
            {
                "type": "http.response.start",
                "status": self._status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", b"4096")],
            }
        )
        await send({"type": "http.response.body", "body": self._start, "more_body": True})
        raise ConnectionDropped("connection dropped after the request was processed (injected)")


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
