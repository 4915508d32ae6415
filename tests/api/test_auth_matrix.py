"""Every route x every role x inside/outside the scope: allowed or refused, with real API keys and real JWTs.

One app (its own database) with every identity source on. Each role (and one multi-role principal) has two
principals: a desk principal (client desk-in, accounts desk-in, xm-in, spare-in) and a firm-wide one. Each
(route, role) pair runs as the desk principal against an object of its own desk ("in") and of another desk
("out"), and as the firm principal against the other desk's object, through one of three identity
sources in rotation (an API key, an HS256 JWT, an RS256 JWT from a JWKS file), so every source meets every
role. A request the rule lets through goes on to fail validation or to touch only this test's database;
the table says which answer proves the handler ran (``ok``).

What a refusal looks like: a role without the permission gets 403 FORBIDDEN_ROLE; an object outside the
scope gets 403 OUT_OF_SCOPE naming the field (writes), 404 (reads of one object), or is left out of a list.
A firm-wide control refuses a desk principal with 403 whatever the object.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

import pytest
from temporalio.testing import WorkflowEnvironment

from api.auth import route_rules
from core.auth import ALL, Role, Scope
from core.domain import derive_order_id
from core.instruments import InstrumentCatalog
from core.orderlist import derive_list_id
from core.risk import AccountOverrides, RiskPolicy
from store.auth import create_api_key, register_account
from store.breaks import add_break, add_unmatched_report, list_breaks, list_unmatched
from store.policy import PolicyStore
from tests.api.authkit import AuthEnv, Idp, bearer, seed_list, seed_order
from tests.conftest import temporal_address

pytestmark = pytest.mark.asyncio

GOLDEN = Path(__file__).resolve().parent.parent / "brokers" / "mt5" / "golden"
Target = Literal["in", "out"]
Effect = Literal["none", "forbid", "hide", "filter", "firm"]

ROLE_SETS: dict[str, frozenset[Role]] = {
    **{r.value: frozenset({r}) for r in Role},
    "operator+risk": frozenset({Role.OPERATOR, Role.RISK}),
}
ORDER = {t: derive_order_id(f"matrix-{t}") for t in ("in", "out")}
#: A closed bracket of each desk, in the lists' read model only (Temporal holds no workflow for it).
LIST_KEY = {t: f"desk-{t}/list/matrix-{t}" for t in ("in", "out")}
LIST = {t: derive_list_id(LIST_KEY[t]) for t in ("in", "out")}
ALL_BUT_BRIDGE = {r for r in Role if r is not Role.BRIDGE}


def desk_scope() -> Scope:
    return Scope(clients=["desk-in"], accounts=["desk-in", "xm-in", "spare-in"], brokers=ALL)


@dataclass
class Case:
    """One route: how to call it for a target, who may, how scope shows, and which answers prove it ran."""

    method: str
    path: str  # the route's path template, as the app lists it
    allowed: set[Role]
    effect: Effect
    call: Callable[[Target, Any], tuple[str, dict[str, Any]]]  # -> (url, httpx kwargs)
    ok: set[int]
    listed: Callable[[Any, Target, Any], bool] | None = None  # filter: is the target's object in the answer
    field_name: str | None = None  # forbid: the field named
    extra: dict[str, Any] = field(default_factory=dict)


def _golden(name: str) -> dict[str, Any]:
    body = json.loads((GOLDEN / name).read_text())
    body["protocol"] = 999  # valid message, wrong protocol version: 400 after authorization
    return body


def _get(url: str, **params: Any) -> tuple[str, dict[str, Any]]:
    return url, {"params": params} if params else {}


def _send(url: str, **body: Any) -> tuple[str, dict[str, Any]]:
    """A write's call: ``body`` as its JSON (none when empty)."""
    return url, {"json": body} if body else {}


def _trading_state(scope: str, state: str) -> Callable[[Target, Any], tuple[str, dict[str, Any]]]:
    """A change of the trading state: of the target desk's account, or (``GLOBAL``) of everything."""

    def call(t: Target, ctx: Any) -> tuple[str, dict[str, Any]]:
        key = {"key": f"desk-{t}"} if scope == "ACCOUNT" else {}
        return _send("/api/v1/operator/trading-state", scope=scope, **key, state=state, reason="matrix")

    return call


CASES: list[Case] = [
    Case(
        "POST",
        "/api/v1/orders",
        {Role.TRADER},
        "forbid",
        lambda t, ctx: (
            "/api/v1/orders",
            {
                "json": {
                    "clientId": f"desk-{t}",
                    "clientOrderId": uuid.uuid4().hex[:12],
                    "symbol": "NOPE",  # unknown: refused after authorization, before any workflow
                    "side": "BUY",
                    "qty": 1,
                }
            },
        ),
        {422},
        field_name="clientId",
    ),
    Case(
        "GET",
        "/api/v1/orders",
        {Role.TRADER, Role.OPERATOR, Role.AUDITOR},
        "filter",
        lambda t, ctx: _get("/api/v1/orders"),
        {200},
        listed=lambda body, t, ctx: ORDER[t] in [o["internalOrderId"] for o in body["data"]],
    ),
    Case(
        "GET",
        "/api/v1/orders/{order_id}",
        {Role.TRADER, Role.OPERATOR, Role.AUDITOR},
        "hide",
        lambda t, ctx: _get(f"/api/v1/orders/{ORDER[t]}"),
        {200},
    ),
    Case(
        "POST",
        "/api/v1/orders/{order_id}/cancel",
        {Role.TRADER, Role.OPERATOR},
        "hide",
        lambda t, ctx: _send(f"/api/v1/orders/{ORDER[t]}/cancel", reason="matrix"),
        {409},
    ),
    Case(
        "PATCH",
        "/api/v1/orders/{order_id}",
        {Role.TRADER},
        "hide",
        lambda t, ctx: (f"/api/v1/orders/{ORDER[t]}", {"json": {"qty": 5}}),
        {409},
    ),
    Case(
        "POST",
        "/api/v1/order-lists",
        {Role.TRADER},
        "forbid",
        lambda t, ctx: (
            "/api/v1/order-lists",
            {
                "json": {
                    "clientId": f"desk-{t}",
                    "clientListId": uuid.uuid4().hex[:12],
                    "contingency": "OCO",
                    "legs": [  # unknown symbol: refused after authorization, before any workflow
                        {"name": "a", "role": "MEMBER", "symbol": "NOPE", "side": "SELL", "qty": 1, "price": 2},
                        {"name": "b", "role": "MEMBER", "symbol": "NOPE", "side": "SELL", "qty": 1, "price": 1},
                    ],
                }
            },
        ),
        {422},
        field_name="clientId",
    ),
    # A closed list of each desk in the read model (no workflow): in scope it is read (200) and its cancel or
    # amend refused as closed (409); out of scope it is hidden (404).
    Case(
        "GET",
        "/api/v1/order-lists/{list_id}",
        {Role.TRADER, Role.OPERATOR, Role.AUDITOR},
        "hide",
        lambda t, ctx: _get(f"/api/v1/order-lists/{LIST[t]}"),
        {200},
    ),
    Case(
        "POST",
        "/api/v1/order-lists/{list_id}/cancel",
        {Role.TRADER, Role.OPERATOR},
        "hide",
        lambda t, ctx: _send(f"/api/v1/order-lists/{LIST[t]}/cancel", reason="matrix"),
        {409},
    ),
    Case(
        "PATCH",
        "/api/v1/order-lists/{list_id}/legs/{leg}",
        {Role.TRADER},
        "hide",
        lambda t, ctx: (f"/api/v1/order-lists/{LIST[t]}/legs/tp", {"json": {"price": 5}}),
        {409},
    ),
    Case(
        "GET",
        "/api/v1/positions",
        {Role.TRADER, Role.OPERATOR, Role.AUDITOR},
        "filter",
        lambda t, ctx: _get("/api/v1/positions"),
        {200},
        listed=lambda body, t, ctx: (
            f"desk-{t}" in {p["account"] for p in body["data"]} and f"desk-{t}" in {c["account"] for c in body["cash"]}
        ),
    ),
    Case(
        "GET",
        "/api/v1/operator/trading-state",
        {Role.OPERATOR, Role.RISK, Role.AUDITOR},
        "filter",
        lambda t, ctx: _get("/api/v1/operator/trading-state"),
        {200},
        listed=lambda body, t, ctx: ("ACCOUNT", f"desk-{t}") in {(s["scope"], s["scopeKey"]) for s in body},
    ),
    Case(
        "POST",
        "/api/v1/operator/trading-state",
        {Role.OPERATOR, Role.RISK},
        "forbid",
        _trading_state("ACCOUNT", "HALTED"),
        {200},
        field_name="key",
        extra={"variant": "account halt"},
    ),
    Case(
        "POST",
        "/api/v1/operator/trading-state",
        {Role.RISK},
        "forbid",
        _trading_state("ACCOUNT", "ACTIVE"),
        {200},
        field_name="key",
        extra={"variant": "account resume (risk only)"},
    ),
    Case(
        "POST",
        "/api/v1/operator/trading-state",
        {Role.OPERATOR, Role.RISK},
        "firm",
        _trading_state("GLOBAL", "HALTED"),
        {200},
        extra={"variant": "global halt"},
    ),
    Case(
        "POST",
        "/api/v1/operator/trading-state",
        {Role.RISK},
        "firm",
        _trading_state("GLOBAL", "ACTIVE"),
        {200},
        extra={"variant": "global resume (risk only)"},
    ),
    Case(
        "POST",
        "/api/v1/operator/cancel-all",
        {Role.OPERATOR},
        "forbid",
        lambda t, ctx: _send("/api/v1/operator/cancel-all", scope="account", value=f"desk-{t}", reason="matrix"),
        {200},
        field_name="value",
    ),
    Case(
        "GET",
        "/api/v1/risk/policy",
        {Role.RISK, Role.AUDITOR},
        "filter",
        lambda t, ctx: _get("/api/v1/risk/policy"),
        {200},
        listed=lambda body, t, ctx: f"desk-{t}" in body["accounts"],
    ),
    Case(
        "PUT",
        "/api/v1/risk/policy",
        {Role.RISK},
        "firm",
        lambda t, ctx: _send("/api/v1/risk/policy", policy=RiskPolicy().model_dump(mode="json"), reason="matrix"),
        {200},
    ),
    Case(
        "PUT",
        "/api/v1/risk/policy/accounts/{account}",
        {Role.RISK},
        "forbid",
        lambda t, ctx: _send(
            f"/api/v1/risk/policy/accounts/desk-{t}", overrides={"daily_loss_limit": "1000"}, reason="matrix"
        ),
        {200},
        field_name="account",
    ),
    Case(
        "DELETE",
        "/api/v1/risk/policy/accounts/{account}",
        {Role.RISK},
        "forbid",
        lambda t, ctx: _get(f"/api/v1/risk/policy/accounts/spare-{t}", reason="matrix"),
        {200},
        field_name="account",
    ),
    Case(
        "PUT",
        "/api/v1/risk/policy/instruments/{symbol}",
        {Role.RISK},
        "firm",
        lambda t, ctx: _send("/api/v1/risk/policy/instruments/AAPL", overrides={"tradable": True}, reason="matrix"),
        {200},
    ),
    Case(
        "DELETE",
        "/api/v1/risk/policy/instruments/{symbol}",
        {Role.RISK},
        "firm",
        lambda t, ctx: _get("/api/v1/risk/policy/instruments/AAPL", reason="matrix"),
        {200},
    ),
    Case(
        "GET",
        "/api/v1/risk/policy/history",
        {Role.RISK, Role.AUDITOR},
        "filter",
        lambda t, ctx: _get("/api/v1/risk/policy/history", limit=1000),
        {200},
        listed=lambda body, t, ctx: any(h["scope"] == "ACCOUNT" and h["key"] == f"desk-{t}" for h in body),
    ),
    Case(
        "GET",
        "/api/v1/risk/reservations",
        {Role.RISK, Role.AUDITOR},
        "filter",
        lambda t, ctx: _get("/api/v1/risk/reservations", includeReleased="true"),
        {200},
        listed=lambda body, t, ctx: ORDER[t] in {r["order_id"] for r in body["data"]},
    ),
    *[
        Case(
            "POST",
            f"/api/v1/bridge/mt5/accounts/{{account}}/{suffix}",
            {Role.BRIDGE},
            "forbid",
            lambda t, ctx, suffix=suffix, golden=golden: (
                f"/api/v1/bridge/mt5/accounts/xm-{t}/{suffix}",
                {"json": _golden(golden)},
            ),
            {400},
            field_name="account",
        )
        for suffix, golden in (
            ("heartbeat", "heartbeat.json"),
            ("commands/poll", "poll_request.json"),
            ("acks", "ack_done.json"),
            ("trades", "trades.json"),
            ("ticks", "ticks.json"),
        )
    ],
    Case(
        "GET",
        "/api/v1/admin/keys",
        {Role.ADMIN, Role.AUDITOR},
        "filter",
        lambda t, ctx: _get("/api/v1/admin/keys", includeInactive="true"),
        {200},
        listed=lambda body, t, ctx: ctx["target_keys"][t] in {k["keyId"] for k in body["data"]},
    ),
    Case(
        "POST",
        "/api/v1/admin/keys",
        {Role.ADMIN},
        "forbid",
        lambda t, ctx: (
            "/api/v1/admin/keys",
            {
                "json": {
                    "name": f"made-{t}",
                    "roles": ["trader"],
                    "scope": {"clients": [f"desk-{t}"], "accounts": [f"desk-{t}"], "brokers": "*"},
                }
            },
        ),
        {201},
        field_name="scope",
    ),
    Case(
        "POST",
        "/api/v1/admin/keys/{key_id}/rotate",
        {Role.ADMIN},
        "hide",
        lambda t, ctx: _send(f"/api/v1/admin/keys/{ctx['target_keys'][t]}/rotate"),
        {200, 409},  # 409 once the target was rotated or revoked by an earlier case
    ),
    Case(
        "DELETE",
        "/api/v1/admin/keys/{key_id}",
        {Role.ADMIN},
        "hide",
        lambda t, ctx: _send(f"/api/v1/admin/keys/{ctx['target_keys'][t]}"),
        {200, 409},
    ),
    Case(
        "GET",
        "/api/v1/admin/accounts",
        ALL_BUT_BRIDGE,
        "filter",
        lambda t, ctx: _get("/api/v1/admin/accounts"),
        {200},
        listed=lambda body, t, ctx: f"desk-{t}" in {a["account"] for a in body["data"]},
    ),
    Case(
        "PUT",
        "/api/v1/admin/accounts/{account}",
        {Role.ADMIN},
        "forbid",
        lambda t, ctx: (f"/api/v1/admin/accounts/desk-{t}", {"json": {"description": "matrix"}}),
        {200},
        field_name="account",
    ),
    Case(
        "DELETE",
        "/api/v1/admin/accounts/{account}",
        {Role.ADMIN},
        "forbid",
        lambda t, ctx: _send(f"/api/v1/admin/accounts/spare-{t}"),
        {200, 404},
        field_name="account",
    ),
    Case("GET", "/api/v1/audit", {Role.AUDITOR}, "firm", lambda t, ctx: _get("/api/v1/audit", limit=5), {200}),
    Case(
        "GET", "/api/v1/audit/verify", {Role.AUDITOR}, "firm", lambda t, ctx: _get("/api/v1/audit/verify"), {200, 409}
    ),
    Case(
        "GET",
        "/api/v1/audit/export",
        {Role.AUDITOR},
        "firm",
        lambda t, ctx: _get("/api/v1/audit/export", **{"from": "2020-01-01", "to": "2020-01-02", "kind": "orders"}),
        {200},
    ),
    Case(
        "GET",
        "/api/v1/breaks",
        {Role.TRADER, Role.OPERATOR, Role.RISK, Role.AUDITOR},
        "filter",
        lambda t, ctx: _get("/api/v1/breaks", status="all"),
        {200},
        listed=lambda body, t, ctx: ctx["breaks"][t] in {b["id"] for b in body["data"]},
    ),
    Case(
        "POST",
        "/api/v1/breaks/{break_id}/resolve",
        {Role.OPERATOR, Role.RISK},
        "hide",
        lambda t, ctx: _send(f"/api/v1/breaks/{ctx['breaks'][t]}/resolve", reason="matrix"),
        {200, 409},  # the first allowed call resolves it, the next ones are told it already is
    ),
    Case(
        "POST",
        "/api/v1/breaks/{break_id}/acknowledge",
        {Role.OPERATOR, Role.RISK},
        "hide",
        lambda t, ctx: _send(f"/api/v1/breaks/{ctx['breaks'][t]}/acknowledge", reason="matrix"),
        {200, 409},  # acknowledged by the first allowed call (or resolved by the case above): 409 after
    ),
    # Reconciliations cover every account of a broker: firm-wide. A date in the future is refused (422) after the
    # rule, so no run is started.
    Case(
        "POST",
        "/api/v1/reconciliations",
        {Role.OPERATOR, Role.RISK},
        "firm",
        lambda t, ctx: ("/api/v1/reconciliations", {"json": {"broker": "paper", "date": "9999-01-01"}}),
        {422},
    ),
    Case(
        "GET",
        "/api/v1/reconciliations",
        {Role.TRADER, Role.OPERATOR, Role.RISK, Role.AUDITOR},
        "firm",
        lambda t, ctx: _get("/api/v1/reconciliations"),
        {200},
    ),
    Case(
        "GET",
        "/api/v1/reconciliations/{run}",
        {Role.TRADER, Role.OPERATOR, Role.RISK, Role.AUDITOR},
        "firm",
        lambda t, ctx: _get("/api/v1/reconciliations/reconcile-paper-2001-01-01"),
        {404},
    ),
    Case(
        "GET",
        "/api/v1/unmatched-reports",
        {Role.TRADER, Role.OPERATOR, Role.RISK, Role.AUDITOR},
        "firm",
        lambda t, ctx: _get("/api/v1/unmatched-reports", status="all"),
        {200},
    ),
    Case(
        "POST",
        "/api/v1/unmatched-reports/{report_id}/resolve",
        {Role.OPERATOR, Role.RISK},
        "firm",
        lambda t, ctx: _send(f"/api/v1/unmatched-reports/{ctx['unmatched']}/resolve", reason="matrix"),
        {200, 409},
    ),
    Case("GET", "/api/v1/brokers/health", ALL_BUT_BRIDGE, "none", lambda t, ctx: _get("/api/v1/brokers/health"), {200}),
    Case("GET", "/health", set(Role), "none", lambda t, ctx: _get("/health"), {200}),
    Case(
        "GET",
        "/api/v1/quotes",
        {Role.TRADER, Role.OPERATOR, Role.RISK, Role.AUDITOR},
        "none",
        lambda t, ctx: _get("/api/v1/quotes"),
        {200},
    ),
    Case(
        "GET",
        "/api/v1/quotes/{symbol}",
        {Role.TRADER, Role.OPERATOR, Role.RISK, Role.AUDITOR},
        "none",
        lambda t, ctx: _get("/api/v1/quotes/AAPL"),
        {200},
    ),
    # The stream: an unknown kind is refused (422) after the rule, before anything is streamed.
    Case(
        "GET",
        "/api/v1/stream",
        {Role.TRADER, Role.OPERATOR, Role.AUDITOR},
        "none",
        lambda t, ctx: _get("/api/v1/stream", kinds="NOPE"),
        {422},
    ),
    # Its WebSocket form has the same rule; HTTP cannot open a WebSocket, so tests/api/test_stream.py checks it
    # (credentials, roles and scope over real sockets).
    Case(
        "WEBSOCKET",
        "/api/v1/stream",
        {Role.TRADER, Role.OPERATOR, Role.AUDITOR},
        "none",
        lambda t, ctx: ("", {}),
        set(),
    ),
    Case("GET", "/api/v1/me", ALL_BUT_BRIDGE, "none", lambda t, ctx: _get("/api/v1/me"), {200}),
    Case("GET", "/console", set(Role), "none", lambda t, ctx: _get("/console"), {307}),
    Case("GET", "/console/", set(Role), "none", lambda t, ctx: _get("/console/"), {200}),
    Case("GET", "/console/{name}", set(Role), "none", lambda t, ctx: _get("/console/console.js"), {200}),
    Case("GET", "/ready", ALL_BUT_BRIDGE, "none", lambda t, ctx: _get("/ready"), {200, 503}),
    Case("GET", "/metrics", ALL_BUT_BRIDGE, "none", lambda t, ctx: _get("/metrics"), {200}),
    Case("GET", "/openapi.json", ALL_BUT_BRIDGE, "none", lambda t, ctx: _get("/openapi.json"), {200}),
    Case("GET", "/docs", ALL_BUT_BRIDGE, "none", lambda t, ctx: _get("/docs"), {200}),
]


async def _seed(env: AuthEnv) -> dict[str, Any]:
    async with env.pool.connection() as conn, conn.transaction():
        for account in ("desk-in", "desk-out", "spare-in", "spare-out"):
            await register_account(conn, account=account, actor="tests")
        target_keys = {}
        for t in ("in", "out"):
            scope = Scope(clients=[f"desk-{t}"], accounts=[f"desk-{t}"], brokers=ALL)
            _, record = await create_api_key(
                conn, name=f"target-{t}", roles=[Role.TRADER], scope=scope, tenant=f"target-{t}", actor="tests"
            )
            target_keys[t] = record.key_id
        store = PolicyStore(RiskPolicy())
        for t in ("in", "out"):
            body = AccountOverrides(daily_loss_limit=Decimal(5000)).model_dump(mode="json", exclude_none=True)
            await store.put(conn, scope="ACCOUNT", key=f"desk-{t}", body=body, actor="tests", reason="seed")
            await conn.execute(
                "INSERT INTO trading_state (scope, scope_key, state, reason, updated_by)"
                " VALUES ('ACCOUNT', %s, 'ACTIVE', 'seed', 'tests')",
                (f"desk-{t}",),
            )
            await conn.execute("INSERT INTO positions (account, symbol, qty) VALUES (%s, 'AAPL', 10)", (f"desk-{t}",))
            await conn.execute(
                "INSERT INTO cash (account, currency, balance) VALUES (%s, 'USD', -1900)", (f"desk-{t}",)
            )
    for t in ("in", "out"):
        await seed_order(env, ORDER[t], client_id=f"desk-{t}", account=f"desk-{t}")
        assert await seed_list(env, LIST_KEY[t], client_id=f"desk-{t}", account=f"desk-{t}") == LIST[t]
        await env.execute(
            "INSERT INTO risk_reservations (order_id, account, client_id, symbol, side, qty_open, price, quote_rate,"
            " leverage, notional, margin) VALUES (%s, %s, %s, 'AAPL', 'BUY', 10, 190, 1, 4, 1900, 475)",
            ORDER[t],
            f"desk-{t}",
            f"desk-{t}",
        )
    breaks: dict[str, int] = {}
    async with env.pool.connection() as conn:
        for t in ("in", "out"):
            await add_break(conn, order_id=ORDER[t], broker="paper", kind="MATRIX", detail=f"break of {t}")
            [row] = await list_breaks(conn, scope=Scope.everything(), order_id=ORDER[t])
            breaks[t] = row["id"]
        await add_unmatched_report(
            conn, broker="paper", exec_id="matrix-x", cl_ord_id="matrix", reason="matrix", report={}
        )
        [stray] = await list_unmatched(conn, scope=Scope.everything())
    return {"target_keys": target_keys, "breaks": breaks, "unmatched": stray["id"]}


async def _credentials(env: AuthEnv) -> dict[tuple[str, str, str], str]:
    """(role set, desk|firm, api-key|hs256|rs256) -> bearer credential."""
    creds: dict[tuple[str, str, str], str] = {}
    for label, roles in ROLE_SETS.items():
        for kind, scope in (("desk", desk_scope()), ("firm", Scope.everything())):
            name = f"{label}-{kind}"
            creds[(label, kind, "api-key")] = await env.key(name, sorted(roles), scope)
            claims = Idp.claims(name, [r.value for r in roles], scope)
            creds[(label, kind, "hs256")] = env.idp.hs256(claims)
            creds[(label, kind, "rs256")] = env.idp.rs256(claims)
    return creds


def _expected(case: Case, roles: frozenset[Role], kind: str, target: Target) -> str:
    if not roles & case.allowed:
        return "forbidden-role"
    inside = kind == "firm" or target == "in"
    if case.effect == "forbid" and not inside:
        return "out-of-scope"
    if case.effect == "hide" and not inside:
        return "hidden"
    if case.effect == "firm" and kind != "firm":
        return "out-of-scope"
    if case.effect == "filter":
        return "listed" if inside else "not-listed"
    return "allowed"


async def test_every_route_every_role_inside_and_outside_the_scope(
    temporal_env: WorkflowEnvironment, postgres_admin_url: str, instruments: InstrumentCatalog, tmp_path: Path
) -> None:
    async with AuthEnv.open(
        postgres_admin_url, temporal_env.client, temporal_address(temporal_env), instruments, tmp_path
    ) as env:
        # The table covers every route of the app, and nothing else.
        declared = set(route_rules(env.app))
        covered = {f"{c.method} {c.path}" for c in CASES}
        assert covered == declared, (declared - covered, covered - declared)

        ctx = await _seed(env)
        creds = await _credentials(env)
        kinds = ["api-key", "hs256", "rs256"]
        failures: list[str] = []
        requests = 0
        for i, case in enumerate(CASES):
            if case.method == "WEBSOCKET":
                continue
            # Without credentials: 401 everywhere but the public route.
            url, kwargs = case.call("in", ctx)
            r = await env.http.request(case.method, url, **kwargs)
            requests += 1
            want_open = case.path == "/health" or case.path.startswith("/console")
            if (r.status_code in (200, 307)) != want_open or (not want_open and r.status_code != 401):
                failures.append(f"{case.method} {url} without credentials: {r.status_code}")
            for j, (label, roles) in enumerate(ROLE_SETS.items()):
                source = kinds[(i + j) % len(kinds)]
                for kind, target in (("desk", "in"), ("desk", "out"), ("firm", "out")):
                    url, kwargs = case.call(target, ctx)
                    headers = bearer(creds[(label, kind, source)])
                    r = await env.http.request(case.method, url, headers=headers, **kwargs)
                    requests += 1
                    expected = _expected(case, roles, kind, target)
                    problem = _check(case, expected, r, target, ctx)
                    if problem:
                        variant = f" [{case.extra['variant']}]" if case.extra else ""
                        failures.append(
                            f"{case.method} {url}{variant} as {label}/{kind}/{source} ({target}): "
                            f"expected {expected}, {problem}"
                        )
        assert not failures, f"{len(failures)} of {requests} requests:\n" + "\n".join(failures)
        assert requests > 700


def _check(case: Case, expected: str, r: Any, target: Target, ctx: Any) -> str | None:
    status = r.status_code
    got = f"got {status} {r.text[:200]}"
    if expected == "forbidden-role":
        return None if status == 403 else got
    if expected == "out-of-scope":
        if status != 403:
            return got
        reason = r.json()["reasons"][0]
        if reason["code"] != "OUT_OF_SCOPE" or (case.effect == "forbid" and reason["field"] != case.field_name):
            return got
        return None
    if expected == "hidden":
        return None if status == 404 else got
    if status not in case.ok:
        return got
    if case.method == "POST" and case.path == "/api/v1/orders":
        codes = [x["code"] for x in r.json()["reasons"]]
        if "UNKNOWN_INSTRUMENT" not in codes:
            return got
    if expected in ("listed", "not-listed"):
        assert case.listed is not None
        if case.listed(r.json(), target, ctx) != (expected == "listed"):
            return f"{'missing' if expected == 'listed' else 'shown'}: {r.text[:300]}"
    return None
