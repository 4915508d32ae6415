"""Each request's id (``X-Request-Id``, or a new one) bound to its log lines and answered back; one access line.

The id is taken from the caller when it is a sane token (letters, digits, ``._:-``, at most 128), so a desk can
follow its own id through the API's lines, the order's workflow and its activities (``core.propagation``);
otherwise a new one is made. Every answer carries it in ``X-Request-Id``.
"""

from __future__ import annotations

import logging
import re
import time
import uuid

from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from core.logs import bind

__all__ = ["REQUEST_ID_HEADER", "RequestContext", "request_id_from"]

REQUEST_ID_HEADER = "X-Request-Id"
_SANE = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")
_QUIET = frozenset({"/health", "/ready", "/metrics"})

access = logging.getLogger("api.access")


def request_id_from(value: str | None) -> str:
    """The caller's id if it is a sane token, else a new one."""
    if value and _SANE.match(value):
        return value
    return uuid.uuid4().hex


class RequestContext:
    """ASGI wrapper: binds the request id for the request's lines, answers it, logs one access line."""

    def __init__(self, app: ASGIApp) -> None:
        """Wrap ``app``."""
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Run the request with its id bound."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = request_id_from(Headers(scope=scope).get(REQUEST_ID_HEADER))
        status = 500
        started = time.perf_counter()

        async def answered(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                MutableHeaders(scope=message)[REQUEST_ID_HEADER] = request_id
            await send(message)

        with bind(request_id=request_id):
            try:
                await self.app(scope, receive, answered)
            finally:
                path = scope.get("path", "")
                if path not in _QUIET or status >= 500:
                    access.info(
                        "%s %s %d %.1f ms",
                        scope.get("method", ""),
                        path,
                        status,
                        (time.perf_counter() - started) * 1000,
                    )
