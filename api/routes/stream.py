"""``GET /api/v1/stream``: order events as they are booked, over a WebSocket or as Server-Sent Events.

The protocol (README, "The event stream"): JSON messages ``hello``, ``event`` (with ``seq``), ``heartbeat`` (with
the position to resume from), ``lagging`` (the client fell too far behind and is disconnected) and ``reset`` (the
events after its position were pruned while it caught up). Reconnect with
``since=<the last seq you got>`` to get exactly what was missed, in order, then live events. SSE frames carry
the number as ``id:`` so a browser's ``EventSource`` resumes by itself (``Last-Event-ID``).

Bad parameters are answered 422 naming the field (the WebSocket before its handshake, as an HTTP answer),
a ``since`` beyond anything the stream has numbered 422 too (a position from another database), and a ``since``
whose events were pruned 410 naming it and the first position the stream can resume from.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Mapping
from typing import Annotated, Any

from fastapi import APIRouter, FastAPI, HTTPException, Request, WebSocket, WebSocketDisconnect
from fastapi.responses import Response
from starlette.requests import HTTPConnection
from starlette.types import Receive, Scope, Send

from api.auth import requires, requires_socket
from api.edge import EdgeRoute
from api.schemas import ErrorBody, Reason
from api.streaming import StreamHub, StreamRequest, StreamSession, parse_request, pruned_message, pump
from core.auth import Permission, Principal
from core.metrics import STREAM_CLIENTS
from store import Pool
from store import stream as store_stream

__all__ = ["hub_of", "router", "socket_router"]

log = logging.getLogger(__name__)

router = APIRouter(tags=["stream"], route_class=EdgeRoute)
#: WebSocket routes take no edge route class (EdgeRoute is an HTTP route); the handler checks its parameters.
socket_router = APIRouter(tags=["stream"])


async def hub_of(app: FastAPI) -> StreamHub:
    """The app's hub, started on first use (the app's lifespan stops it)."""
    hub: StreamHub | None = getattr(app.state, "stream_hub", None)
    if hub is not None:
        return hub
    async with app.state.stream_hub_lock:
        hub = getattr(app.state, "stream_hub", None)
        if hub is None:
            settings = app.state.settings
            hub = StreamHub(app.state.pool, settings.require_database_url(), settings.stream)
            await hub.start()
            app.state.stream_hub = hub
    return hub


def _refusal(status: int, reasons: list[Reason]) -> HTTPException:
    body = ErrorBody(status="rejected", message="; ".join(r.message for r in reasons), reasons=reasons)
    return HTTPException(status, body.model_dump(mode="json", by_alias=True, exclude_none=True))


async def _checked(conn: HTTPConnection, params: Mapping[str, str], last_event_id: str | None) -> StreamRequest:
    parsed = parse_request(params, last_event_id=last_event_id)
    if isinstance(parsed, list):
        raise _refusal(422, parsed)
    if parsed.since is not None:
        pool: Pool = conn.app.state.pool
        async with pool.connection() as db:
            head = await store_stream.head(db)
            pruned = await store_stream.floor(db)
        field = "since" if "since" in params else "Last-Event-ID"
        if parsed.since > head:
            message = f"{field}: {parsed.since} is beyond the stream's last number ({head}); a position from elsewhere?"
            raise _refusal(422, [Reason(code="INVALID_FIELD", field=field, message=message)])
        if parsed.since < pruned:
            message = pruned_message(parsed.since, pruned)["message"].replace("since:", f"{field}:", 1)
            raise _refusal(410, [Reason(code="SINCE_PRUNED", field=field, message=message)])
    return parsed


def _too_many(hub: StreamHub) -> HTTPException | None:
    if hub.clients < hub.settings.max_clients:
        return None
    body = ErrorBody(status="error", message=f"this API process serves {hub.settings.max_clients} streams already")
    return HTTPException(503, body.model_dump(mode="json", exclude_none=True), {"Retry-After": "5"})


class EventStreamResponse(Response):
    """Server-Sent Events of a session; ends when the client goes away or lags."""

    media_type = "text/event-stream"

    def __init__(self, session: StreamSession) -> None:
        """Stream ``session``."""
        super().__init__(
            status_code=200,
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
            media_type=self.media_type,
        )
        self.raw_headers = [(k, v) for k, v in self.raw_headers if k != b"content-length"]
        self.session = session

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Send the headers, then one frame per message until the client leaves or lags."""
        await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})

        async def frame(message: dict[str, Any]) -> None:
            lines = []
            if message["type"] in ("event", "heartbeat"):
                lines.append(f"id: {message['seq']}")
            lines.append(f"event: {message['type']}")
            lines.append("data: " + json.dumps(message, separators=(",", ":")))
            await send({"type": "http.response.body", "body": ("\n".join(lines) + "\n\n").encode(), "more_body": True})

        async def gone() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass

        STREAM_CLIENTS.labels(transport="sse").inc()
        pumping = asyncio.ensure_future(pump(self.session, frame))
        leaving = asyncio.ensure_future(gone())
        try:
            await asyncio.wait({pumping, leaving}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            STREAM_CLIENTS.labels(transport="sse").dec()
            for task in (pumping, leaving):
                task.cancel()
            for task in (pumping, leaving):
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        with contextlib.suppress(Exception):
            await send({"type": "http.response.body", "body": b"", "more_body": False})


def _parameter(name: str, description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "description": description, "schema": schema}


_NAMES = {"type": "string", "pattern": r"^[A-Za-z0-9._:@/\-]{1,64}(,[A-Za-z0-9._:@/\-]{1,64})*$"}
_PARAMETERS = [
    _parameter(
        "since", "Resume after this number (0: from the start); absent: live only", {"type": "integer", "minimum": 0}
    ),
    _parameter("account", "Only these accounts (comma-separated)", _NAMES),
    _parameter("symbol", "Only these symbols (comma-separated)", _NAMES),
    _parameter("client", "Only these client ids (comma-separated)", _NAMES),
    _parameter("kinds", "Only these kinds (comma-separated: ACCEPT, FILL, TRADING_STATE...)", _NAMES),
]


@router.get(
    "/stream",
    response_class=EventStreamResponse,
    status_code=200,
    responses={200: {"content": {"text/event-stream": {}}}, 410: {"model": ErrorBody}, 422: {"model": ErrorBody}},
    openapi_extra={"parameters": _PARAMETERS},
)
async def stream_sse(
    request: Request, principal: Annotated[Principal, requires(Permission.ORDERS_READ)]
) -> EventStreamResponse:
    """Order events as Server-Sent Events (a WebSocket at the same path).

    ``since``, ``account``, ``symbol``, ``client``, ``kinds`` (comma-separated names); ``Last-Event-ID`` resumes
    when ``since`` is not given.
    """
    parsed = await _checked(request, request.query_params, request.headers.get("last-event-id"))
    hub = await hub_of(request.app)
    if (busy := _too_many(hub)) is not None:
        raise busy
    return EventStreamResponse(StreamSession(hub, parsed, principal.scope))


@socket_router.websocket("/stream")
async def stream_ws(
    websocket: WebSocket, principal: Annotated[Principal, requires_socket(Permission.ORDERS_READ)]
) -> None:
    """Order events over a WebSocket (the same parameters and messages as the SSE form)."""
    parsed = await _checked(websocket, websocket.query_params, None)
    hub = await hub_of(websocket.app)
    if (busy := _too_many(hub)) is not None:
        raise busy
    await websocket.accept()
    session = StreamSession(hub, parsed, principal.scope)

    async def send(message: dict[str, Any]) -> None:
        await websocket.send_text(json.dumps(message, separators=(",", ":")))

    async def gone() -> None:
        with contextlib.suppress(WebSocketDisconnect):
            while (await websocket.receive())["type"] != "websocket.disconnect":
                pass  # clients say nothing; a close ends the session

    STREAM_CLIENTS.labels(transport="websocket").inc()
    pumping = asyncio.ensure_future(pump(session, send))
    leaving = asyncio.ensure_future(gone())
    try:
        await asyncio.wait({pumping, leaving}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        STREAM_CLIENTS.labels(transport="websocket").dec()
        for task in (pumping, leaving):
            task.cancel()
        for task in (pumping, leaving):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
    code, reason = (4008, "lagging") if session.lagging else (4010, "reset") if session.reset else (1000, "")
    with contextlib.suppress(Exception):
        await websocket.close(code=code, reason=reason)
