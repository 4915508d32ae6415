"""The API's edge: what every route does to a request before its own code sees it.

Every router is built with ``route_class=EdgeRoute`` (``tests/api/test_edge.py`` checks that no route of the app
is without it). For each request, ``EdgeRoute``:

1. refuses a body larger than the configured limit with 413, whether it has a ``Content-Length`` or is
   chunked (``api.max_body_bytes``; the MT5 bridge's heartbeats carry whole accounts and get
   ``api.max_bridge_body_bytes``);
2. refuses control characters, lone surrogates and over-long values in every query parameter, path parameter
   and the headers the API reads (``X-Idempotency-Key``, ``X-Actor``) with 422 naming the parameter;
3. parses JSON bodies with every number as an exact ``Decimal`` (``100.00000000000000001`` stays that, and
   integers stay integers), refuses ``NaN``/``Infinity`` as invalid JSON, and applies the generic bounds of
   ``core.bounds.json_problems`` to every string, key and number of the body (422 naming the field).

The typed fields of each body (``api.schemas``, ``core.bounds``) then apply the domain's tighter bounds.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Coroutine
from decimal import Decimal
from typing import Any, Final

from fastapi import HTTPException, Request, Response
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from starlette.types import Message

from api.schemas import ErrorBody, Reason
from core.bounds import json_problems, text_problem

__all__ = ["BRIDGE_PREFIX", "MAX_PARAMETER_LENGTH", "DecimalJSONRequest", "EdgeRoute", "decode_json", "field_name"]

#: Longest query or path parameter value.
MAX_PARAMETER_LENGTH: Final = 256
#: Headers the API reads, and their longest value.
_HEADERS: Final = {"x-idempotency-key": ("X-Idempotency-Key", 128), "x-actor": ("X-Actor", 100)}
#: Routes under this path prefix take the larger bridge body limit.
BRIDGE_PREFIX: Final = "/api/v1/bridge/"


def field_name(path: tuple[Any, ...]) -> str:
    """A field path as the error answers name it (``policy.classes.FX``), control characters escaped."""
    parts = [str(p).encode("unicode_escape", "backslashreplace").decode("ascii") for p in path]
    return ".".join(parts) or "body"


def _refusal(reasons: list[Reason]) -> dict[str, Any]:
    body = ErrorBody(status="rejected", message="; ".join(r.message for r in reasons), reasons=reasons)
    return body.model_dump(mode="json", by_alias=True, exclude_none=True)


def _too_large(limit: int) -> HTTPException:
    message = f"body: larger than {limit} bytes"
    reason = Reason(code="BODY_TOO_LARGE", field="body", message=message)
    return HTTPException(413, detail=_refusal([reason]))


def _not_json(message: str, doc: str = "") -> json.JSONDecodeError:
    return json.JSONDecodeError(message, doc, 0)


def _parse_int(text: str) -> int | Decimal:
    # int() refuses more than 4300 digits with a ValueError; a Decimal keeps any length, and the bounds refuse it.
    return int(text) if len(text) <= 32 else Decimal(text)


def _no_constant(name: str) -> Any:
    raise _not_json(f"{name} is not a JSON number")


def decode_json(body: bytes) -> Any:
    """Decode a JSON body with exact numbers (``Decimal``/``int``); any decoding failure is a JSONDecodeError."""
    try:
        return json.loads(body, parse_float=Decimal, parse_int=_parse_int, parse_constant=_no_constant)
    except json.JSONDecodeError:
        raise
    except RecursionError:
        raise _not_json("nested too deeply") from None
    except ValueError as e:  # invalid UTF-8, numbers Python cannot read
        raise _not_json(str(e)[:200]) from None


class DecimalJSONRequest(Request):
    """A request whose JSON body is read with exact numbers and checked against the generic bounds."""

    async def json(self) -> Any:
        """The decoded body (cached)."""
        if not hasattr(self, "_json"):
            doc = decode_json(await self.body())
            problems = json_problems(doc)
            if problems:
                reasons = [
                    Reason(code="INVALID_FIELD", field=field_name(path), message=f"{field_name(path)}: {problem}")
                    for path, problem in problems
                ]
                raise HTTPException(422, detail=_refusal(reasons))
            self._json = doc
        return self._json


def _parameter_problems(request: Request) -> list[Reason]:
    reasons: list[Reason] = []

    def check(field: str, value: str, max_length: int) -> None:
        problem = text_problem(value, max_length=max_length)
        if problem:
            name = field_name((field,))
            reasons.append(Reason(code="INVALID_FIELD", field=name, message=f"{name}: {problem}"))

    for name, value in request.path_params.items():
        if isinstance(value, str):
            check(name, value, MAX_PARAMETER_LENGTH)
    for name, value in request.query_params.multi_items():
        check(name, name, MAX_PARAMETER_LENGTH)
        check(name, value, MAX_PARAMETER_LENGTH)
    for header, (name, max_length) in _HEADERS.items():
        for value in request.headers.getlist(header):
            check(name, value, max_length)
    return reasons


def _body_limit(request: Request) -> int:
    api = request.app.state.settings.api
    return int(api.max_bridge_body_bytes if request.url.path.startswith(BRIDGE_PREFIX) else api.max_body_bytes)


class EdgeRoute(APIRoute):
    """An ``APIRoute`` that applies the edge checks (see the module docstring) before the route's own code."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        """Wrap FastAPI's handler: size limit, parameter checks, exact JSON."""
        handler = super().get_route_handler()

        async def edge_handler(request: Request) -> Response:
            limit = _body_limit(request)
            length = request.headers.get("content-length", "")
            if length.isdigit() and int(length) > limit:
                return JSONResponse(status_code=413, content=_too_large(limit).detail)
            reasons = _parameter_problems(request)
            if reasons:
                return JSONResponse(status_code=422, content=_refusal(reasons))
            received = 0
            receive = request.receive

            async def limited_receive() -> Message:
                nonlocal received
                message = await receive()
                if message["type"] == "http.request":
                    received += len(message.get("body", b""))
                    if received > limit:
                        raise _too_large(limit)
                return message

            return await handler(DecimalJSONRequest(request.scope, limited_receive, request._send))

        return edge_handler
