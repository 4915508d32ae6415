"""The REST API: ``create_app()`` wires settings, the Temporal client, the Postgres pool and the routers.

Run it with ``python -m api`` (uvicorn). Every error answer has the same shape (``ErrorBody``): a status
word, a message, and for refusals a list of reasons that name the field at fault.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import psycopg
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from psycopg_pool import PoolTimeout
from starlette.exceptions import HTTPException as StarletteHTTPException
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from api.auth import AuthDisabledHeader, operational
from api.edge import EdgeRoute, field_name
from api.identity import Authenticator
from api.observability import RequestContext
from api.routes import (
    admin,
    audit,
    breaks,
    bridge_mt5,
    broker_health,
    console,
    health,
    operator,
    order_lists,
    orders,
    positions,
    quotes,
    reconciliations,
    risk,
    stream,
)
from api.schemas import ErrorBody, Reason
from api.streaming import prune_forever
from brokers.mt5.tables import terminals
from core.audit import take_checkpoint
from core.audit_cli import checkpoint_path
from core.db import apply_migrations, open_pool
from core.instruments import InstrumentCatalog, load_instruments
from core.marketdata import MarketData
from core.metrics import (
    BROKER_CONNECTED,
    BROKER_HEARTBEAT_AGE,
    BROKER_LAST_CALL_AGE,
    MT5_TERMINAL_CONNECTED,
    MT5_TERMINAL_HEARTBEAT_AGE,
)
from core.settings import Settings, get_settings
from core.tasks import stop_tasks
from core.temporal import connect
from core.tracing import instrument_app
from store import Pool
from store.auth import register_account
from store.policy import PolicyStore
from store.quotes import fetch_quotes
from store.sessions import session_health

__all__ = ["create_app"]

log = logging.getLogger(__name__)

_TEMPORAL_BUGS = frozenset({RPCStatusCode.INVALID_ARGUMENT, RPCStatusCode.UNIMPLEMENTED})
_STATUS_WORDS = {401: "unauthorized", 403: "unauthorized", 404: "not_found", 409: "conflict"}


def _field(loc: tuple[Any, ...]) -> str:
    return field_name(tuple(p for p in loc if p not in ("body", "query", "path", "header")))


def _validation_reasons(exc: RequestValidationError) -> tuple[int, list[Reason]]:
    status = 422
    reasons: list[Reason] = []
    for err in exc.errors():
        field = _field(tuple(err.get("loc", ())))
        kind = err.get("type", "")
        if kind == "missing":
            message = f"{field}: required"
        elif kind == "extra_forbidden":
            message = f"{field}: unknown field"
        elif kind == "json_invalid":
            status, field = 400, "body"
            message = f"body: not valid JSON ({err.get('ctx', {}).get('error', 'parse error')})"
        elif kind in ("model_attributes_type", "dict_type") and field == "body":
            status = 400
            message = "body: must be a JSON object"
        else:
            message = f"{field}: {str(err.get('msg', 'invalid')).removeprefix('Value error, ')}"
        reasons.append(Reason(code="INVALID_FIELD", field=field, message=message))
    return status, reasons


def _error(status: int, body: ErrorBody, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(
        status_code=status, content=body.model_dump(mode="json", by_alias=True, exclude_none=True), headers=headers
    )


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        status, reasons = _validation_reasons(exc)
        message = "; ".join(r.message for r in reasons)
        return _error(status, ErrorBody(status="rejected", message=message, reasons=reasons))

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        if isinstance(exc.detail, dict):
            return JSONResponse(status_code=exc.status_code, content=exc.detail, headers=exc.headers)
        word = _STATUS_WORDS.get(exc.status_code, "rejected" if exc.status_code < 500 else "error")
        return _error(exc.status_code, ErrorBody(status=word, message=str(exc.detail)), exc.headers)  # type: ignore[arg-type]

    @app.exception_handler(RPCError)
    async def _temporal(_: Request, exc: RPCError) -> JSONResponse:
        log.warning("Temporal call failed: %s", exc)
        # A request Temporal found malformed is our bug (500); anything else (unavailable, timed out, a transport
        # error while the server restarts, overloaded) is transient, and every order call is idempotent.
        if exc.status not in _TEMPORAL_BUGS:
            return _error(
                503,
                ErrorBody(
                    status="error", message="the order engine is unavailable; retry with the same idempotency key"
                ),
                {"Retry-After": "2"},
            )
        return _error(500, ErrorBody(status="error", message=f"order engine error: {exc.message}"))

    @app.exception_handler(psycopg.OperationalError)
    @app.exception_handler(PoolTimeout)
    async def _database(_: Request, exc: Exception) -> JSONResponse:
        log.warning("Postgres unavailable: %s", exc)
        return _error(
            503,
            ErrorBody(status="error", message="the database is unavailable; retry (with the same idempotency key)"),
            {"Retry-After": "2"},
        )

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error")
        # Not "nothing was changed": the failure may come after a step that took effect.
        return _error(
            500, ErrorBody(status="error", message="internal error (logged); GET the resource to see its state")
        )


async def register_configured_accounts(pool: Pool, settings: Settings) -> None:
    """Register the MT5 bridge accounts of the settings for broker mt5 (an existing registration is kept)."""
    if not settings.mt5.accounts:
        return
    async with pool.connection() as conn, conn.transaction():
        for account, cfg in settings.mt5.accounts.items():
            record = await register_account(
                conn,
                account=account,
                actor="config:mt5.accounts",
                broker="mt5",
                broker_account=None if cfg.login is None else str(cfg.login),
                description="MT5 bridge account (EXODUS_MT5__ACCOUNTS)",
                replace=False,
            )
            if record.broker not in (None, "mt5"):
                log.warning("account %s is registered for broker %s, not mt5", account, record.broker)


async def _checkpoints(pool: Pool, settings: Settings) -> None:
    """Write an audit checkpoint now and every ``audit.checkpoint_interval_seconds`` (a failure is retried)."""
    path = checkpoint_path(settings)
    key = settings.audit.checkpoint_key
    if key is None:
        log.warning("audit checkpoints are not signed: set EXODUS_AUDIT__CHECKPOINT_KEY")
    while True:
        try:
            async with pool.connection() as conn:
                await take_checkpoint(conn, path, key.get_secret_value() if key else None)
        except Exception:
            log.exception(
                "audit checkpoint not written; trying again in %.0f s", settings.audit.checkpoint_interval_seconds
            )
        await asyncio.sleep(settings.audit.checkpoint_interval_seconds)


def _openapi_with_bearer(app: FastAPI) -> dict[str, Any]:
    if app.openapi_schema is None:
        schema = app.openapi()
        components = schema.setdefault("components", {})
        components.setdefault("securitySchemes", {})["bearer"] = {
            "type": "http",
            "scheme": "bearer",
            "description": "An API key (exo_...) or a JWT from the identity provider",
        }
        schema["security"] = [{"bearer": []}]
    return app.openapi_schema  # type: ignore[return-value]


def create_app(
    settings: Settings | None = None,
    *,
    temporal: Client | None = None,
    pool: Pool | None = None,
    instruments: InstrumentCatalog | None = None,
) -> FastAPI:
    """Build the app. Pass a client and pool to share them (tests); otherwise the app opens its own.

    Refuses (``ConfigError``) a configuration that would serve without authentication where it must not
    (``Settings.check_api_security``).
    """
    settings = settings or get_settings()
    settings.check_api_security()
    authenticator = Authenticator(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        owned_pool = None
        if app.state.pool is None:
            await apply_migrations(settings.require_database_url())
            owned_pool = app.state.pool = await open_pool(
                settings, name="api", timeout=settings.api.database_wait_seconds
            )
        if app.state.temporal is None:
            app.state.temporal = await connect(settings, identity="exodus-api")
        await register_configured_accounts(app.state.pool, settings)
        if authenticator.disabled:
            log.warning(
                "AUTHENTICATION IS DISABLED (no identity source configured): every caller has every role; "
                "development only, bound to %s",
                settings.api.host,
            )
        tasks: list[asyncio.Task[None]] = []
        if owned_pool is not None and settings.audit.checkpoint_interval_seconds > 0:
            # The API process (python -m api) keeps the audit trail's checkpoints; test apps share a pool.
            tasks.append(asyncio.create_task(_checkpoints(owned_pool, settings), name="audit-checkpoints"))
        # The stream's retention: every API process prunes (one at a time: store/stream.py's prune).
        tasks.append(asyncio.create_task(prune_forever(app.state.pool, settings.stream), name="stream-prune"))
        try:
            yield
        finally:
            await stop_tasks(tasks, what="api background tasks")
            if app.state.stream_hub is not None:
                await app.state.stream_hub.stop()
            if owned_pool is not None:
                await owned_pool.close()

    app = FastAPI(
        title="Exodus",
        version="0.1.0",
        summary="Order routing on Temporal: each order is a durable workflow.",
        lifespan=lifespan,
        # Served below, behind their declared rule (open in development, closed in prod by default).
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    app.state.settings = settings
    app.state.temporal = temporal
    app.state.pool = pool
    app.state.authenticator = authenticator
    app.state.instruments = instruments or load_instruments(settings.instruments_file)
    app.state.policy = PolicyStore(settings.risk)
    app.state.market = MarketData(settings.market_data, app.state.instruments)
    # GET /api/v1/stream's reader of the table, started by the first stream (api/routes/stream.py).
    app.state.stream_hub = None
    app.state.stream_hub_lock = asyncio.Lock()
    # Every route takes the edge checks (api/edge.py): body size, parameter bounds, exact JSON numbers.
    app.router.route_class = EdgeRoute
    _install_error_handlers(app)
    app.include_router(orders.router, prefix="/api/v1")
    app.include_router(order_lists.router, prefix="/api/v1")
    app.include_router(positions.router, prefix="/api/v1")
    app.include_router(operator.router, prefix="/api/v1")
    app.include_router(risk.router, prefix="/api/v1")
    app.include_router(quotes.router, prefix="/api/v1")
    app.include_router(bridge_mt5.router, prefix="/api/v1")
    app.include_router(admin.router, prefix="/api/v1")
    app.include_router(audit.router, prefix="/api/v1")
    app.include_router(breaks.router, prefix="/api/v1")
    app.include_router(reconciliations.router, prefix="/api/v1")
    app.include_router(broker_health.router, prefix="/api/v1")
    app.include_router(stream.router, prefix="/api/v1")
    app.include_router(stream.socket_router, prefix="/api/v1")
    app.include_router(console.me_router, prefix="/api/v1")
    app.include_router(console.router)
    app.include_router(health.router)

    @app.get("/metrics", include_in_schema=False, dependencies=[operational("metrics")])
    async def metrics() -> PlainTextResponse:
        """Prometheus metrics of the API process (quote ages, broker sessions and MT5 terminals read now)."""
        try:
            async with asyncio.timeout(2), app.state.pool.connection() as conn:
                app.state.market.refresh_metrics(await fetch_quotes(conn))
                for session in await session_health(conn):
                    BROKER_CONNECTED.labels(broker=session["broker"]).set(1 if session["logged_on"] else 0)
                    BROKER_HEARTBEAT_AGE.labels(broker=session["broker"]).set(session["heartbeat_age"])
                    if session["last_call_age"] is not None:
                        BROKER_LAST_CALL_AGE.labels(broker=session["broker"]).set(session["last_call_age"])
                for terminal in await terminals(conn):
                    MT5_TERMINAL_CONNECTED.labels(account=terminal["account"]).set(1 if terminal["connected"] else 0)
                    if terminal["age"] is not None:
                        MT5_TERMINAL_HEARTBEAT_AGE.labels(account=terminal["account"]).set(terminal["age"])
        except Exception as e:  # the rest of the metrics are still worth answering with
            log.warning("quote age and broker session metrics not refreshed, was %r", e)
        return PlainTextResponse(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    @app.get("/openapi.json", include_in_schema=False, dependencies=[operational("docs")])
    async def openapi() -> JSONResponse:
        """The OpenAPI document."""
        return JSONResponse(_openapi_with_bearer(app))

    @app.get("/docs", include_in_schema=False, dependencies=[operational("docs")])
    async def docs() -> HTMLResponse:
        """Swagger UI."""
        return get_swagger_ui_html(openapi_url="/openapi.json", title="Exodus")

    instrument_app(app)  # before the wrappers below: the instrumentation wants Starlette's own stack
    build = app.build_middleware_stack
    if authenticator.disabled:
        # Outermost, so that every answer is marked, errors that reach Starlette's last handler included.
        app.build_middleware_stack = lambda: RequestContext(AuthDisabledHeader(build()))  # type: ignore[method-assign]
    else:
        app.build_middleware_stack = lambda: RequestContext(build())  # type: ignore[method-assign]
    return app
