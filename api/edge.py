"""The API's edge: what every route does to a request before its own code sees it.

Every router is built with ``route_class=EdgeRoute`` (``tests/api/test_edge.py`` checks that no route of the app
is without it). For each request, ``EdgeRoute``:

1. refuses a body larger than the configured limit with 413, whether it has a ``Content-Length`` or is
   chunked (``api.max_body_bytes``; the MT5 bridge's heartbeats carry whole accounts and get
   ``api.max_bridge_body_bytes``);
2. parses JSON bodies with every number as an exact ``Decimal`` (``100.00000000000000001`` stays that, and
   integers stay integers) and refuses ``NaN``/``Infinity`` as invalid JSON (400);
3. after the route's access rule (so an unauthenticated caller gets its 401 first), refuses control
   characters, lone surrogates and over-long values in every query parameter, path parameter and the headers
   the API reads (``X-Idempotency-Key``, ``X-Actor``), and anything in the body outside the generic bounds of
   ``core.bounds.json_problems`` (every string, key and number), with 422 naming the field.

The typed fields of each body (``api.schemas``, ``core.bounds``) then apply the domain's tighter bounds.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable, Coroutine
from decimal import Decimal
from typing import Any, Final

from fastapi import Depends, HTTPException, Request, Response
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from starlette.types import Message

from api.auth import AccessRule
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


#: Where ``DecimalJSONRequest`` leaves the body's problems for ``edge_guard`` (in the request's scope).
_BODY_PROBLEMS: Final = "exodus.edge.body_problems"


class DecimalJSONRequest(Request):
    """A request whose JSON body is read with exact numbers and checked against the generic bounds.

    A body that is not JSON raises at once (400, as FastAPI does); one outside the bounds is recorded for the
    route's guard, which refuses it after the route's access rule, so an unauthenticated caller learns nothing.
    """

    async def json(self) -> Any:
        """The decoded body (cached)."""
        if not hasattr(self, "_json"):
            doc = decode_json(await self.body())
            self.scope[_BODY_PROBLEMS] = [
                Reason(code="INVALID_FIELD", field=field_name(path), message=f"{field_name(path)}: {problem}")
                for path, problem in json_problems(doc)
            ]
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


def _guard(rule: Any) -> Callable[..., Coroutine[Any, Any, None]]:
    """The edge guard of a route: the route's access rule first (401/403 before anything else), then the bounds.

    The rule is called here as well as where the route declares it: ``authenticate`` keeps the principal on the
    request, so the second call costs nothing and a refusal happens (and is audited) once.
    """
    wanted = list(inspect.signature(rule.__call__).parameters) if rule is not None else []

    async def edge_guard(request: Request) -> None:
        if rule is not None:
            args = {name: request if name == "request" else request.path_params.get(name) for name in wanted}
            outcome = rule(**args)
            if inspect.isawaitable(outcome):
                await outcome
        reasons = _parameter_problems(request) + list(request.scope.get(_BODY_PROBLEMS, []))
        if reasons:
            raise HTTPException(422, detail=_refusal(reasons))

    return edge_guard


def _access_rule(dependant: Any) -> Any:
    for dep in dependant.dependencies:
        if isinstance(dep.call, AccessRule):
            return dep.call
        found = _access_rule(dep)
        if found is not None:
            return found
    return None


def _body_limit(request: Request) -> int:
    api = request.app.state.settings.api
    # The scope's path, not ``request.url.path``: building the URL (host header, netloc, escaping) cost as much as
    # the rest of the edge's checks; the prefix holds none of the characters the URL escapes.
    return int(api.max_bridge_body_bytes if request.scope["path"].startswith(BRIDGE_PREFIX) else api.max_body_bytes)


class EdgeRoute(APIRoute):
    """An ``APIRoute`` that applies the edge checks (see the module docstring).

    The body limit comes first (nothing is read beyond it); the parameter and body bounds are a dependency of
    the route that runs right after its access rule (``api.auth``), before FastAPI validates the parameters and
    the body against their types, and before the route's code.
    """

    def __init__(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        """Build the route with its edge guard as a route dependency that depends on the route's access rule."""
        probe = APIRoute(path, endpoint, **kwargs)
        guard = Depends(_guard(_access_rule(probe.dependant)))
        kwargs["dependencies"] = [*(kwargs.get("dependencies") or []), guard]
        super().__init__(path, endpoint, **kwargs)

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        """Wrap FastAPI's handler: the body limit and exact JSON."""
        handler = super().get_route_handler()

        async def edge_handler(request: Request) -> Response:
            limit = _body_limit(request)
            length = request.headers.get("content-length", "")
            if length.isdigit() and int(length) > limit:
                return JSONResponse(status_code=413, content=_too_large(limit).detail)
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
