"""Every route declares who may call it: the access rules, authentication, and refusals.

Declaring a rule (every route must; ``tests/api/test_auth_routes.py`` fails on a route without one)::

    from api.auth import public, requires
    from core.auth import Permission, Principal

    @router.get("/quotes")
    async def quotes(principal: Annotated[Principal, requires(Permission.ORDERS_READ)]) -> ...:
        ...                                   # principal.scope filters what the caller may see

    @router.get("/health", dependencies=[public("liveness probe")])

``requires(*permissions)`` authenticates the caller and lets it through when one of its roles grants one of
the permissions (``core.auth.ROLE_PERMISSIONS``); ``public(why)`` lets everyone through;
``operational(name)`` is for /ready, /metrics and /docs (open or closed by settings). Inside a route, scope
is checked with ``check_order_scope`` / ``forbid`` (403 naming the field) or, for reads of one object,
``hidden`` (answer 404, as for an id that does not exist, so ids cannot be probed).

Without an identity source (development) every caller is the development principal (every role and scope;
``X-Actor`` names it in the audit log) and every answer carries ``X-Exodus-Auth: disabled``. With one, the
audited identity is always the authenticated principal, never a header.

Each refusal is counted in ``exodus_auth_failures_total{reason}`` and written to the audit log with the
name the caller presented (never its secret), every stored text bounded in length.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any, Literal, NoReturn

from fastapi import Depends, FastAPI, HTTPException, Request, WebSocket
from fastapi.routing import APIRoute, APIWebSocketRoute
from starlette.datastructures import MutableHeaders
from starlette.requests import HTTPConnection
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.identity import Authenticator, AuthFailure
from api.schemas import ErrorBody, Reason
from core.auth import Permission, Principal, dev_principal, roles_granting
from core.logs import bind_now
from core.metrics import AUTH_FAILURES
from store.audit import append_audit

__all__ = [
    "AccessRule",
    "AuthDisabledHeader",
    "Operational",
    "Public",
    "Requires",
    "RequiresSocket",
    "authenticate",
    "check_order_scope",
    "forbid",
    "hidden",
    "operational",
    "public",
    "record_refusal",
    "refuse",
    "requires",
    "requires_socket",
    "route_rules",
]

log = logging.getLogger(__name__)

_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="exodus"'}
#: Longest texts a refusal stores in the audit log (a flood of junk credentials cannot write more).
_MAX_NAME, _MAX_SUBJECT, _MAX_MESSAGE = 64, 160, 200


def _bounded(text: str, limit: int) -> str:
    clean = "".join(ch if ch.isprintable() else "?" for ch in text[: limit * 2])
    return clean if len(clean) <= limit else clean[: limit - 1] + "…"


async def record_refusal(request: HTTPConnection, failure: AuthFailure) -> None:
    """Count a refusal and write it to the audit log (bounded; a storage failure is logged, not raised)."""
    AUTH_FAILURES.labels(reason=failure.code.lower()).inc()
    pool = getattr(request.app.state, "pool", None)
    if pool is None:
        return
    try:
        async with pool.connection() as conn, conn.transaction():
            await append_audit(
                conn,
                actor=_bounded(failure.presented or "anonymous", _MAX_NAME),
                action="ACCESS_DENIED" if failure.status in (403, 404) else "AUTH_FAILED",
                subject=_bounded(f"{getattr(request, 'method', 'WEBSOCKET')} {request.url.path}", _MAX_SUBJECT),
                detail={
                    "reason": failure.code,
                    "status": failure.status,
                    "message": _bounded(failure.message, _MAX_MESSAGE),
                },
            )
    except Exception:  # the refusal stands whether or not it could be written
        log.exception("could not write an auth refusal to the audit log")


def _http(failure: AuthFailure) -> HTTPException:
    body = ErrorBody(
        status="unauthorized" if failure.status in (401, 403) else "error",
        message=failure.message,
        reasons=[Reason(code=failure.code, field=failure.field, message=failure.message)],
    )
    headers = dict(_CHALLENGE) if failure.status == 401 else {"Retry-After": "5"} if failure.status == 503 else None
    return HTTPException(failure.status, body.model_dump(mode="json", exclude_none=True), headers)


async def refuse(request: HTTPConnection, failure: AuthFailure) -> NoReturn:
    """Count and audit a refusal, then raise it as the HTTP answer."""
    await record_refusal(request, failure)
    raise _http(failure)


def _authenticator(request: HTTPConnection) -> Authenticator:
    return request.app.state.authenticator  # type: ignore[no-any-return]


async def authenticate(request: HTTPConnection) -> Principal:
    """The caller's principal (401 when it proves none); computed once per request."""
    # Read from the scope's state dict (what ``request.state`` wraps): a miss through ``request.state`` raises and
    # catches an AttributeError, on every request's first call.
    cached: Principal | None = request.scope.get("state", {}).get("principal")
    if cached is not None:
        return cached
    auth = _authenticator(request)
    if auth.disabled:
        actor = request.headers.get("X-Actor", "").strip()[:100] or None
        principal = dev_principal(actor)
    else:
        header = request.headers.get("Authorization", "")
        scheme, _, credential = header.partition(" ")
        if not header:
            await refuse(
                request,
                AuthFailure(
                    401,
                    "TOKEN_MISSING",
                    "missing credentials: send 'Authorization: Bearer <API key or JWT>'",
                    field="Authorization",
                ),
            )
        if scheme.lower() != "bearer" or not credential.strip():
            await refuse(
                request,
                AuthFailure(
                    401,
                    "TOKEN_MALFORMED",
                    "malformed Authorization header: expected 'Bearer <API key or JWT>'",
                    field="Authorization",
                ),
            )
        try:
            principal = await auth.resolve(credential.strip(), getattr(request.app.state, "pool", None))
        except AuthFailure as e:
            await refuse(request, e)
    request.state.principal = principal
    return principal


# ------------------------------------------------------------------------------------------------ rules


class AccessRule:
    """What a route requires; every route has exactly one (found by ``route_rules``)."""

    def describe(self) -> str:
        """One line for documentation and test output."""
        raise NotImplementedError


class Public(AccessRule):
    """Anyone, without credentials."""

    def __init__(self, why: str) -> None:
        """``why`` says why the route is open (it shows in reviews and test output)."""
        self.why = why

    async def __call__(self) -> None:
        """Let the request through."""

    def describe(self) -> str:
        """What the rule lets through."""
        return f"public ({self.why})"


class Requires(AccessRule):
    """An authenticated principal with a role granting one of the permissions."""

    def __init__(self, *permissions: Permission) -> None:
        """Any one of ``permissions`` suffices."""
        if not permissions:
            raise ValueError("Requires needs at least one permission")
        self.permissions = permissions

    async def __call__(self, request: Request) -> Principal:
        """The principal, once authenticated and authorized."""
        return await self.check(request)

    async def check(self, request: HTTPConnection) -> Principal:
        """Authenticate and authorize the caller of a request or a WebSocket."""
        principal = await authenticate(request)
        bind_now(principal=principal.name)  # for the rest of this request's log lines
        if not any(principal.can(p) for p in self.permissions):
            roles = sorted({r.value for p in self.permissions for r in roles_granting(p)})
            await refuse(
                request,
                AuthFailure(
                    403,
                    "FORBIDDEN_ROLE",
                    f"{principal.name} (roles: {principal.roles_text()}) may not do this; it needs one of the roles "
                    f"{', '.join(roles)}",
                    presented=principal.name,
                ),
            )
        return principal

    def describe(self) -> str:
        """What the rule lets through."""
        return "requires " + " or ".join(p.value for p in self.permissions)


class RequiresSocket(Requires):
    """``Requires`` for a WebSocket route (a refusal is answered before the handshake, as HTTP 401/403)."""

    async def __call__(self, websocket: WebSocket) -> Principal:  # type: ignore[override]
        """The principal, once authenticated and authorized."""
        return await self.check(websocket)


class Operational(AccessRule):
    """/ready, /metrics, /docs: open or closed by settings (closed: ``system:read``)."""

    def __init__(self, which: Literal["ready", "metrics", "docs"]) -> None:
        """``which`` names the ``auth.open_<which>`` setting."""
        self.which = which
        self._closed = Requires(Permission.SYSTEM_READ)

    async def __call__(self, request: Request) -> Principal | None:
        """None when open; the principal when closed and authorized."""
        if request.app.state.settings.endpoint_open(self.which):
            return None
        return await self._closed(request)

    def describe(self) -> str:
        """What the rule lets through."""
        return f"open or system:read (EXODUS_AUTH__OPEN_{self.which.upper()})"


def requires(*permissions: Permission) -> Any:
    """Declare a route's rule: any one of ``permissions`` (see the module docstring for the two forms)."""
    return Depends(Requires(*permissions))


def requires_socket(*permissions: Permission) -> Any:
    """``requires`` for a WebSocket route."""
    return Depends(RequiresSocket(*permissions))


def public(why: str) -> Any:
    """A route's rule: open to everyone (``dependencies=[public("liveness probe")]``)."""
    return Depends(Public(why))


def operational(which: Literal["ready", "metrics", "docs"]) -> Any:
    """A route's rule for /ready, /metrics and /docs."""
    return Depends(Operational(which))


def _rules(dependant: Any) -> Iterator[AccessRule]:
    for dep in dependant.dependencies:
        if isinstance(dep.call, AccessRule):
            yield dep.call
        yield from _rules(dep)


def _effective_routes(app: FastAPI) -> list[Any]:
    # FastAPI >= 0.16x keeps included routers unflattened in app.routes; iter_route_contexts flattens them
    # (with the prefixes and the include-level dependencies). Older versions list every route directly.
    try:
        from fastapi.routing import iter_route_contexts
    except ImportError:
        return list(app.routes)
    return list(iter_route_contexts(app.routes))


def route_rules(app: FastAPI) -> dict[str, list[AccessRule]]:
    """Every route of the app (``"GET /path"``) and the rules it declares (non-API routes have none)."""
    found: dict[str, list[AccessRule]] = {}
    for route in _effective_routes(app):
        original = getattr(route, "original_route", route)
        socket = isinstance(original, APIWebSocketRoute)
        methods = ["WEBSOCKET"] if socket else sorted(getattr(route, "methods", None) or ["*"])
        path = getattr(route, "path", None) or repr(route)
        dependant = getattr(route, "dependant", None) if isinstance(original, APIRoute) or socket else None
        rules = list(_rules(dependant)) if dependant is not None else []
        for method in methods:
            found[f"{method} {path}"] = rules
    return found


# ------------------------------------------------------------------------------------------------ scope


async def forbid(request: Request, principal: Principal, *, code: str, field: str | None, message: str) -> NoReturn:
    """Refuse with 403 naming the field (counted and audited)."""
    await refuse(request, AuthFailure(403, code, message, presented=principal.name, field=field))


async def hidden(request: Request, principal: Principal, what: str) -> None:
    """Record that an object outside the scope was asked for; the caller then answers 404 as if unknown."""
    await record_refusal(
        request, AuthFailure(404, "OUT_OF_SCOPE", f"{what} is outside the scope", presented=principal.name)
    )


async def check_order_scope(
    request: Request,
    principal: Principal,
    *,
    client_id: str | None = None,
    account: str | None = None,
    broker: str | None = None,
) -> None:
    """403 naming the first of clientId, account, broker that is outside the principal's scope."""
    scope = principal.scope
    checks: list[tuple[str, str | None, Callable[[str | None], bool]]] = [
        ("clientId", client_id, scope.allows_client),
        ("account", account, scope.allows_account),
        ("broker", broker, scope.allows_broker),
    ]
    for field, value, allowed in checks:
        if value is not None and not allowed(value):
            await forbid(
                request,
                principal,
                code="OUT_OF_SCOPE",
                field=field,
                message=f"{field}: {value!r} is outside the scope of {principal.name} ({principal.scope.describe()})",
            )


# ------------------------------------------------------------------------------------------------ dev mode


class AuthDisabledHeader:
    """ASGI wrapper adding ``X-Exodus-Auth: disabled`` to every answer (development mode)."""

    def __init__(self, app: ASGIApp) -> None:
        """Wrap ``app``."""
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass the request through; mark the answer."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def marked(message: Message) -> None:
            if message["type"] == "http.response.start":
                MutableHeaders(scope=message).append("X-Exodus-Auth", "disabled")
            await send(message)

        await self.app(scope, receive, marked)
