"""A hostile client against the API's edge: every refusal is a 4xx naming the field, and nothing starts.

Control characters in every free-text field of every body, numbers the domain math cannot carry, extreme times,
huge or control-laden query and path parameters and headers, oversized bodies, unknown fields and wrong types.
Bodies are sent as JSON text (``json.dumps`` escapes control characters and lone surrogates as ``\\uXXXX``, which
is valid JSON), and numbers as literal JSON number text where the text matters.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from pydantic import SecretStr
from temporalio.service import RPCError, RPCStatusCode

from api.main import create_app
from core.domain import derive_order_id, workflow_id_for
from core.settings import ApiSettings, Mt5AccountSettings, Mt5Settings
from tests.harness import Stack, reached, register_accounts, unique

pytestmark = pytest.mark.asyncio

D = Decimal
GOLDEN = Path(__file__).parents[1] / "brokers" / "mt5" / "golden"
BRIDGE_ACCOUNT = "edge-mt5"
BRIDGE = f"/api/v1/bridge/mt5/accounts/{BRIDGE_ACCOUNT}"
BRIDGE_AUTH = {"Authorization": "Bearer tok-edge"}
NOBODY = "EXAAAAAAAAAAAAAAAA"  # a well-formed order id no order has

#: Control characters (C0, DEL, C1) and lone surrogates; each must be refused wherever text is taken.
CONTROLS = ["\x00", "\x01", "\x1f", "\x7f", "\x85", "\x9f", "\ud800", "\udfff"]
CONTROL_IDS = [f"U+{ord(c):04X}" for c in CONTROLS]


@pytest.fixture
async def http(stack: Stack) -> AsyncIterator[httpx.AsyncClient]:
    settings = stack.settings.model_copy(
        update={"mt5": Mt5Settings(accounts={BRIDGE_ACCOUNT: Mt5AccountSettings(token="tok-edge")})}
    )
    # No automatic account registration: hostile bodies go out as they are (valid orders register below).
    async with stack.api(settings, register_accounts=False) as client:
        yield client


def order_body(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "clientId": unique("edge"),
        "clientOrderId": unique("co"),
        "symbol": "AAPL",
        "side": "BUY",
        "qty": 10,
    }
    body.update(overrides)
    return body


def golden(name: str) -> dict[str, Any]:
    return json.loads((GOLDEN / f"{name}.json").read_text())


def put(doc: Any, path: tuple[str | int, ...], value: Any) -> Any:
    target = doc
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = value
    return doc


def dumps(doc: Any, numbers: dict[str, str] | None = None) -> str:
    """JSON text; each string value ``"<<name>>"`` is replaced by the literal number text ``numbers[name]``."""
    text = json.dumps(doc)
    for name, literal in (numbers or {}).items():
        text = text.replace(f'"<<{name}>>"', literal)
    return text


async def send(
    http: httpx.AsyncClient, method: str, url: str, text: str, headers: dict[str, str] | None = None
) -> httpx.Response:
    return await http.request(
        method, url, content=text.encode(), headers={"Content-Type": "application/json", **(headers or {})}
    )


def assert_refused(r: httpx.Response, field: str, status: int = 422) -> None:
    assert r.status_code == status, r.text
    payload = r.json()
    assert payload["status"] == "rejected", payload
    fields = [reason.get("field") for reason in payload["reasons"]]
    assert field in fields, payload
    assert field.split(".")[-1] in payload["message"], payload


async def assert_nothing_started(stack: Stack, body: dict[str, Any], key: str | None = None) -> None:
    """No order row and no workflow for the order id this body (and key) would have."""
    idem = f"{body['clientId']}/key/{key}" if key else f"{body['clientId']}/order/{body['clientOrderId']}"
    order_id = derive_order_id(idem.encode("utf-8", "surrogatepass").decode("utf-8", "replace"))
    assert await stack.fetch("SELECT order_id FROM orders WHERE order_id = %s", order_id) == []
    if isinstance(body.get("clientId"), str) and body["clientId"].isprintable():
        assert await stack.fetch("SELECT order_id FROM orders WHERE client_id = %s", body["clientId"]) == []
    with pytest.raises(RPCError) as e:
        await stack.client.get_workflow_handle(workflow_id_for(order_id)).describe()
    assert e.value.status == RPCStatusCode.NOT_FOUND


async def post_order(stack: Stack, http: httpx.AsyncClient, body: dict[str, Any]) -> httpx.Response:
    """A valid order, its account registered first (as an admin would have)."""
    await register_accounts(stack.pool, body.get("account") or body["clientId"])
    return await http.post("/api/v1/orders", json=body)


async def working_order(http: httpx.AsyncClient, stack: Stack, symbol: str = "NVDA") -> str:
    await stack.venue.set_mid(symbol, D("120.00"))
    r = await post_order(stack, http, order_body(symbol=symbol, type="LIMIT", price="100.00", timeInForce="GTC"))
    assert r.status_code == 201, r.text
    order_id = r.json()["internalOrderId"]
    await reached(http, stack, order_id, "ACCEPTED")
    return order_id


async def signals(stack: Stack, order_id: str) -> list[str]:
    history = await stack.client.get_workflow_handle(workflow_id_for(order_id)).fetch_history()
    return [
        e.workflow_execution_signaled_event_attributes.signal_name
        for e in history.events
        if e.HasField("workflow_execution_signaled_event_attributes")
    ]


async def signaled(stack: Stack, order_id: str, name: str, *, timeout: float = 60) -> list[str]:
    """The order's signals once ``name`` is among them.

    A signal that arrives while a workflow task is running is buffered by the server and joins the history only
    when that task completes, so a signal sent a moment ago may not be in the history yet.
    """
    deadline = asyncio.get_running_loop().time() + timeout
    while name not in (seen := await signals(stack, order_id)):
        assert asyncio.get_running_loop().time() < deadline, f"no {name!r} signal within {timeout:g} s: {seen}"
        await asyncio.sleep(0.05)
    return seen


# ------------------------------------------------------------------------------------------------ routes


async def test_every_route_of_the_app_takes_the_edge_checks(http: httpx.AsyncClient) -> None:
    """Each operation of the OpenAPI document refuses a NUL in a query parameter before doing anything."""
    operations = [
        (method.upper(), path)
        for path, item in create_app().openapi()["paths"].items()
        for method in item
        if method in ("get", "post", "put", "patch", "delete")
    ]
    assert len(operations) > 15
    for method, path in operations:
        bridge = "/bridge/" in path
        url = re.sub(r"\{[^}]+\}", "x", path.replace("{account}", BRIDGE_ACCOUNT) if bridge else path)
        r = await http.request(method, url, params={"probe": "\x00"}, headers=BRIDGE_AUTH if bridge else None)
        assert r.status_code == 422 and r.json()["reasons"][0]["field"] == "probe", (method, path, r.text)


# ------------------------------------------------------------------------------------------------ text

ORDER_TEXT_FIELDS = [
    "clientOrderId",
    "clientId",
    "symbol",
    "side",
    "type",
    "timeInForce",
    "broker",
    "account",
    "pegType",
    "expireAt",
]


@pytest.mark.parametrize("char", CONTROLS, ids=CONTROL_IDS)
@pytest.mark.parametrize("field", ORDER_TEXT_FIELDS)
async def test_control_characters_in_order_fields_are_refused(
    stack: Stack, http: httpx.AsyncClient, field: str, char: str
) -> None:
    body = order_body()
    body[field] = f"{body.get(field, 'x')}{char}tail"
    r = await send(http, "POST", "/api/v1/orders", dumps(body))
    assert_refused(r, field)
    assert "control character" in r.text
    await assert_nothing_started(stack, body)


def _policy_change(current: dict[str, Any]) -> dict[str, Any]:
    return {"policy": current, "reason": "edge test"}


#: (name, method, url, body, path of the text field in the body, the field as the answer names it)
OTHER_TEXT_FIELDS: list[tuple[str, str, str, Any, tuple[str | int, ...], str]] = [
    ("cancel.reason", "POST", f"/api/v1/orders/{NOBODY}/cancel", {"reason": "x"}, ("reason",), "reason"),
    (
        "trading-state.reason",
        "POST",
        "/api/v1/operator/trading-state",
        {"state": "HALTED", "reason": "x"},
        ("reason",),
        "reason",
    ),
    (
        "trading-state.key",
        "POST",
        "/api/v1/operator/trading-state",
        {"scope": "ACCOUNT", "key": "a", "state": "HALTED", "reason": "x"},
        ("key",),
        "key",
    ),
    (
        "trading-state.state",
        "POST",
        "/api/v1/operator/trading-state",
        {"state": "HALTED", "reason": "x"},
        ("state",),
        "state",
    ),
    (
        "trading-state.scope",
        "POST",
        "/api/v1/operator/trading-state",
        {"scope": "GLOBAL", "state": "HALTED", "reason": "x"},
        ("scope",),
        "scope",
    ),
    (
        "cancel-all.reason",
        "POST",
        "/api/v1/operator/cancel-all",
        {"scope": "account", "value": "nobody", "reason": "x"},
        ("reason",),
        "reason",
    ),
    (
        "cancel-all.value",
        "POST",
        "/api/v1/operator/cancel-all",
        {"scope": "account", "value": "nobody", "reason": "x"},
        ("value",),
        "value",
    ),
    (
        "cancel-all.scope",
        "POST",
        "/api/v1/operator/cancel-all",
        {"scope": "all", "reason": "x"},
        ("scope",),
        "scope",
    ),
    ("policy.reason", "PUT", "/api/v1/risk/policy", "POLICY", ("reason",), "reason"),
    ("policy.currency", "PUT", "/api/v1/risk/policy", "POLICY", ("policy", "currency"), "policy.currency"),
    (
        "account-overrides.reason",
        "PUT",
        "/api/v1/risk/policy/accounts/edge-acct",
        {"overrides": {"max_gross_exposure": "1000"}, "reason": "x"},
        ("reason",),
        "reason",
    ),
    (
        "instrument-overrides.reason",
        "PUT",
        "/api/v1/risk/policy/instruments/AAPL",
        {"overrides": {"price_band_pct": "5"}, "reason": "x"},
        ("reason",),
        "reason",
    ),
    ("heartbeat.ea_version", "POST", f"{BRIDGE}/heartbeat", "heartbeat", ("ea_version",), "ea_version"),
    ("heartbeat.terminal.name", "POST", f"{BRIDGE}/heartbeat", "heartbeat", ("terminal", "name"), "terminal.name"),
    (
        "heartbeat.account.currency",
        "POST",
        f"{BRIDGE}/heartbeat",
        "heartbeat",
        ("account", "currency"),
        "account.currency",
    ),
    (
        "heartbeat.positions.comment",
        "POST",
        f"{BRIDGE}/heartbeat",
        "heartbeat",
        ("positions", 0, "comment"),
        "positions.0.comment",
    ),
    ("poll.terminal_id", "POST", f"{BRIDGE}/commands/poll", "poll_request", ("terminal_id",), "terminal_id"),
    ("ack.message", "POST", f"{BRIDGE}/acks", "ack_done", ("message",), "message"),
    ("ack.comment", "POST", f"{BRIDGE}/acks", "ack_done", ("comment",), "comment"),
    ("trades.deals.comment", "POST", f"{BRIDGE}/trades", "trades", ("deals", 0, "comment"), "deals.0.comment"),
    ("trades.orders.symbol", "POST", f"{BRIDGE}/trades", "trades", ("orders", 0, "symbol"), "orders.0.symbol"),
    (
        "ticks.broker_symbol",
        "POST",
        f"{BRIDGE}/ticks",
        "ticks",
        ("ticks", 0, "broker_symbol"),
        "ticks.0.broker_symbol",
    ),
]


async def _body(http: httpx.AsyncClient, body: Any) -> Any:
    if body == "POLICY":
        return _policy_change((await http.get("/api/v1/risk/policy")).json()["policy"])
    if isinstance(body, str):
        return golden(body)
    return json.loads(json.dumps(body))


@pytest.mark.parametrize("char", ["\x00", "\x01", "\x85", "\ud800"], ids=["NUL", "SOH", "NEL", "surrogate"])
@pytest.mark.parametrize(
    ("method", "url", "body", "path", "field"),
    [c[1:] for c in OTHER_TEXT_FIELDS],
    ids=[c[0] for c in OTHER_TEXT_FIELDS],
)
async def test_control_characters_in_every_other_body_are_refused(
    stack: Stack, http: httpx.AsyncClient, method: str, url: str, body: Any, path: tuple, field: str, char: str
) -> None:
    doc = await _body(http, body)
    put(doc, path, f"ab{char}cd")
    before = await stack.fetch("SELECT count(*) AS n FROM audit_log")
    r = await send(http, method, url, dumps(doc), BRIDGE_AUTH if url.startswith(BRIDGE) else None)
    assert_refused(r, field)
    assert await stack.fetch("SELECT count(*) AS n FROM audit_log") == before  # nothing was done


async def test_a_nul_in_a_cancel_reason_is_refused_and_nothing_is_sent(stack: Stack, http: httpx.AsyncClient) -> None:
    order_id = await working_order(http, stack)
    r = await send(http, "POST", f"/api/v1/orders/{order_id}/cancel", json.dumps({"reason": "fat\u0000finger"}))
    assert_refused(r, "reason")
    assert "cancel" not in await signals(stack, order_id)
    assert (await http.get(f"/api/v1/orders/{order_id}")).json()["status"] == "ACCEPTED"
    ok = await http.post(f"/api/v1/orders/{order_id}/cancel", json={"reason": "a clean reason"})
    assert ok.status_code == 202
    # Once the clean cancel is in the history, the refused one cannot be hiding in the server's buffer.
    assert (await signaled(stack, order_id, "cancel")).count("cancel") == 1


async def test_a_control_character_in_a_cancel_all_reason_is_refused_and_nothing_is_sent(
    stack: Stack, http: httpx.AsyncClient
) -> None:
    order_id = await working_order(http, stack)
    account = (await http.get(f"/api/v1/orders/{order_id}")).json()["account"]
    for reason in ("flatten\u0000", "flatten\u0001now"):
        r = await send(
            http,
            "POST",
            "/api/v1/operator/cancel-all",
            json.dumps({"scope": "account", "value": account, "reason": reason}),
        )
        assert_refused(r, "reason")
    assert "cancel" not in await signals(stack, order_id)
    done = await http.post("/api/v1/operator/cancel-all", json={"scope": "account", "value": account, "reason": "ok"})
    assert done.status_code == 200 and done.json()["orderIds"] == [order_id]
    assert (await signaled(stack, order_id, "cancel")).count("cancel") == 1


# ------------------------------------------------------------------------------------------------ numbers

#: (name, method, url, body, path of the number, its literal JSON text, the field as the answer names it)
NUMBERS: list[tuple[str, str, str, Any, tuple[str | int, ...], str, str]] = [
    ("qty-1e24", "POST", "/api/v1/orders", "ORDER", ("qty",), "1e24", "qty"),
    ("qty-40-digits", "POST", "/api/v1/orders", "ORDER", ("qty",), "1234567890123456789012345678901234567890", "qty"),
    ("qty-int-1e30", "POST", "/api/v1/orders", "ORDER", ("qty",), "1" + "0" * 30, "qty"),
    ("qty-1e400", "POST", "/api/v1/orders", "ORDER", ("qty",), "1e400", "qty"),
    ("qty-tiny", "POST", "/api/v1/orders", "ORDER", ("qty",), "1e-20", "qty"),
    ("qty-17-places", "POST", "/api/v1/orders", "ORDER", ("qty",), "100.00000000000000001", "qty"),
    ("qty-5000-digits", "POST", "/api/v1/orders", "ORDER", ("qty",), "9" * 5000, "qty"),
    ("price-1e30", "POST", "/api/v1/orders", "LIMIT", ("price",), "1e30", "price"),
    (
        "price-40-digits",
        "POST",
        "/api/v1/orders",
        "LIMIT",
        ("price",),
        "1234567890123456789012345678901234567.89",
        "price",
    ),
    ("stopPrice-1e30", "POST", "/api/v1/orders", "STOP", ("stopPrice",), "1e30", "stopPrice"),
    ("pegOffset-1e30", "POST", "/api/v1/orders", "PEGGED", ("pegOffset",), "1e30", "pegOffset"),
    ("pegOffset--1e30", "POST", "/api/v1/orders", "PEGGED", ("pegOffset",), "-1e30", "pegOffset"),
    ("pegOffset-12-places", "POST", "/api/v1/orders", "PEGGED", ("pegOffset",), "0.000000000001", "pegOffset"),
    ("trailAmount-1e30", "POST", "/api/v1/orders", "TRAILING", ("trailAmount",), "1e30", "trailAmount"),
    ("trailAmount-0", "POST", "/api/v1/orders", "TRAILING", ("trailAmount",), "0", "trailAmount"),
    ("trailPercent-100", "POST", "/api/v1/orders", "TRAILING_PCT", ("trailPercent",), "100", "trailPercent"),
    ("trailPercent-5-places", "POST", "/api/v1/orders", "TRAILING_PCT", ("trailPercent",), "0.00001", "trailPercent"),
    ("activationPrice-1e30", "POST", "/api/v1/orders", "TRAILING", ("activationPrice",), "1e30", "activationPrice"),
    ("amend-qty-1e28", "PATCH", f"/api/v1/orders/{NOBODY}", {"qty": 1}, ("qty",), "1e28", "qty"),
    ("amend-price-1e30", "PATCH", f"/api/v1/orders/{NOBODY}", {"price": 1}, ("price",), "1e30", "price"),
    (
        "amend-stop-40-digits",
        "PATCH",
        f"/api/v1/orders/{NOBODY}",
        {"stopPrice": 1},
        ("stopPrice",),
        "9" * 40,
        "stopPrice",
    ),
    (
        "policy-notional-1e30",
        "PUT",
        "/api/v1/risk/policy",
        "POLICY",
        ("policy", "max_notional_per_order"),
        "1e30",
        "policy.max_notional_per_order",
    ),
    (
        "policy-notional-1e16",
        "PUT",
        "/api/v1/risk/policy",
        "POLICY",
        ("policy", "max_notional_per_order"),
        "1e16",
        "policy.max_notional_per_order",
    ),
    (
        "policy-open-orders-1e30",
        "PUT",
        "/api/v1/risk/policy",
        "POLICY",
        ("policy", "max_open_orders_per_client"),
        "1" + "0" * 30,
        "policy.max_open_orders_per_client",
    ),
    (
        "policy-band-12-places",
        "PUT",
        "/api/v1/risk/policy",
        "POLICY",
        ("policy", "classes", "FX", "price_band_pct"),
        "2.000000000001",
        "policy.classes.FX.price_band_pct",
    ),
    (
        "account-loss-1e40",
        "PUT",
        "/api/v1/risk/policy/accounts/edge-acct",
        {"overrides": {"daily_loss_limit": 1}, "reason": "x"},
        ("overrides", "daily_loss_limit"),
        "1e40",
        "overrides.daily_loss_limit",
    ),
    (
        "instrument-position-1e16",
        "PUT",
        "/api/v1/risk/policy/instruments/AAPL",
        {"overrides": {"max_position_qty": 1}, "reason": "x"},
        ("overrides", "max_position_qty"),
        "1e16",
        "overrides.max_position_qty",
    ),
    (
        "heartbeat-balance-1e30",
        "POST",
        f"{BRIDGE}/heartbeat",
        "heartbeat",
        ("account", "balance"),
        "1e30",
        "account.balance",
    ),
    (
        "heartbeat-equity-1e16",
        "POST",
        f"{BRIDGE}/heartbeat",
        "heartbeat",
        ("account", "equity"),
        "1e16",
        "account.equity",
    ),
    (
        "heartbeat-login-2e64",
        "POST",
        f"{BRIDGE}/heartbeat",
        "heartbeat",
        ("account", "login"),
        str(2**64),
        "account.login",
    ),
    (
        "trades-time-year-5000",
        "POST",
        f"{BRIDGE}/trades",
        "trades",
        ("deals", 0, "time_msc"),
        str(10**17),
        "deals.0.time_msc",
    ),
    ("trades-volume-nan", "POST", f"{BRIDGE}/trades", "trades", ("deals", 0, "volume"), '"NaN"', "deals.0.volume"),
    ("ack-msc-negative", "POST", f"{BRIDGE}/acks", "ack_done", ("executed_at_msc",), "-1", "executed_at_msc"),
    (
        "ticks-time-year-5000",
        "POST",
        f"{BRIDGE}/ticks",
        "ticks",
        ("ticks", 0, "time_msc"),
        str(10**17),
        "ticks.0.time_msc",
    ),
    ("ticks-sent-year-5000", "POST", f"{BRIDGE}/ticks", "ticks", ("sent_at_msc",), str(10**17), "sent_at_msc"),
    ("ticks-bid-1e16", "POST", f"{BRIDGE}/ticks", "ticks", ("ticks", 0, "bid"), "1e16", "ticks.0.bid"),
]

_ORDER_SHAPES = {
    "ORDER": {},
    "LIMIT": {"type": "LIMIT", "price": "190.00", "timeInForce": "GTC"},
    "STOP": {"type": "STOP", "stopPrice": "200.00", "timeInForce": "GTC"},
    "PEGGED": {"type": "PEGGED", "pegType": "MIDPOINT", "pegOffset": "0.01", "timeInForce": "GTC"},
    "TRAILING": {"type": "TRAILING_STOP", "trailAmount": "1.00", "timeInForce": "GTC"},
    "TRAILING_PCT": {"type": "TRAILING_STOP", "trailPercent": "1.5", "timeInForce": "GTC"},
}


@pytest.mark.parametrize(
    ("method", "url", "body", "path", "literal", "field"), [c[1:] for c in NUMBERS], ids=[c[0] for c in NUMBERS]
)
async def test_numbers_the_domain_cannot_carry_are_refused(
    stack: Stack, http: httpx.AsyncClient, method: str, url: str, body: Any, path: tuple, literal: str, field: str
) -> None:
    shape = body if isinstance(body, str) and body in _ORDER_SHAPES else None
    doc = order_body(**_ORDER_SHAPES[shape]) if shape else await _body(http, body)
    put(doc, path, "<<n>>")
    before = await stack.fetch("SELECT count(*) AS n FROM audit_log")
    r = await send(http, method, url, dumps(doc, {"n": literal}), BRIDGE_AUTH if url.startswith(BRIDGE) else None)
    assert_refused(r, field)
    assert await stack.fetch("SELECT count(*) AS n FROM audit_log") == before
    if shape:
        await assert_nothing_started(stack, doc)


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity"])
async def test_non_finite_json_numbers_are_invalid_json(stack: Stack, http: httpx.AsyncClient, literal: str) -> None:
    body = order_body(qty="<<n>>")
    r = await send(http, "POST", "/api/v1/orders", dumps(body, {"n": literal}))
    assert_refused(r, "body", 400)
    await assert_nothing_started(stack, body)


async def test_an_oversized_amend_is_refused_and_the_order_keeps_working(stack: Stack, http: httpx.AsyncClient) -> None:
    order_id = await working_order(http, stack)
    r = await send(http, "PATCH", f"/api/v1/orders/{order_id}", '{"qty": 1e28}')
    assert_refused(r, "qty")
    assert "amend" not in [u for u in await signals(stack, order_id)]
    order = (await http.get(f"/api/v1/orders/{order_id}")).json()
    assert order["status"] == "ACCEPTED" and D(order["qty"]) == 10
    assert (await http.post(f"/api/v1/orders/{order_id}/cancel")).status_code == 202


async def test_json_numbers_arrive_as_exact_decimals(http: httpx.AsyncClient) -> None:
    account = unique("exact")
    text = (
        '{"overrides": {"max_gross_exposure": 123456789012345.1234,'
        ' "max_open_orders_per_client": 12345678901234567}, "reason": "exact"}'
    )
    r = await send(http, "PUT", f"/api/v1/risk/policy/accounts/{account}", text)
    assert r.status_code == 200, r.text
    stored = (await http.get("/api/v1/risk/policy")).json()["accounts"][account]
    assert stored == {"max_gross_exposure": "123456789012345.1234", "max_open_orders_per_client": 12345678901234567}
    # A float parser would have read 100.0 and taken the order; the exact value has too many decimal places.
    r = await send(http, "POST", "/api/v1/orders", dumps(order_body(qty="<<n>>"), {"n": "100.00000000000000001"}))
    assert_refused(r, "qty")
    assert "decimal point" in r.json()["message"]


# ------------------------------------------------------------------------------------------------ times


@pytest.mark.parametrize(
    "expire_at",
    [
        "9999-12-31T23:00:00-05:00",
        "9999-12-31T23:59:59-23:59",
        "9999-12-31T23:59:59+14:00",
        "0001-01-01T00:00:00+01:00",
        "1969-12-31T23:59:59Z",
        "2200-01-01T00:00:00Z",
        "2199-12-31T23:00:00-02:00",
        "2030-01-01T00:00:00",
        "<<n>>",
    ],
)
async def test_times_outside_1970_2200_or_without_a_zone_are_refused(
    stack: Stack, http: httpx.AsyncClient, expire_at: str
) -> None:
    body = order_body(type="LIMIT", price="180.00", timeInForce="GTD", expireAt=expire_at)
    r = await send(http, "POST", "/api/v1/orders", dumps(body, {"n": "253402300799"}))
    assert_refused(r, "expireAt")
    await assert_nothing_started(stack, body)


async def test_times_are_stored_in_utc(stack: Stack, http: httpx.AsyncClient) -> None:
    await stack.venue.set_mid("AAPL", D("190.00"))
    body = order_body(type="LIMIT", price="180.00", timeInForce="GTD", expireAt="2199-06-01T12:00:00+02:00")
    r = await post_order(stack, http, body)
    assert r.status_code == 201, r.text
    order_id = r.json()["internalOrderId"]
    [row] = await stack.fetch("SELECT expire_at FROM orders WHERE order_id = %s", order_id)
    assert row["expire_at"].isoformat() == "2199-06-01T10:00:00+00:00"
    got = (await http.get(f"/api/v1/orders/{order_id}")).json()
    assert got["expireAt"] in ("2199-06-01T10:00:00Z", "2199-06-01T10:00:00+00:00")
    assert (await http.get("/api/v1/orders", params={"clientId": body["clientId"]})).status_code == 200
    await http.post(f"/api/v1/orders/{order_id}/cancel")


# ------------------------------------------------------------------------------------------------ parameters

PARAMETERS: list[tuple[str, str, str, dict[str, str] | None, str]] = [
    ("offset-1e30", "GET", "/api/v1/orders", {"offset": str(10**30)}, "offset"),
    ("limit-1e30", "GET", "/api/v1/orders", {"limit": str(10**30)}, "limit"),
    ("orders-symbol-nul", "GET", "/api/v1/orders", {"symbol": "AA\x00PL"}, "symbol"),
    ("orders-client-soh", "GET", "/api/v1/orders", {"clientId": "desk\x01"}, "clientId"),
    ("orders-account-c1", "GET", "/api/v1/orders", {"account": "desk\x85"}, "account"),
    ("orders-broker-long", "GET", "/api/v1/orders", {"broker": "b" * 300}, "broker"),
    ("orders-unknown-key-nul", "GET", "/api/v1/orders", {"x\x00": "1"}, "x\\x00"),
    ("positions-account-nul", "GET", "/api/v1/positions", {"account": "\x00"}, "account"),
    ("positions-symbol-nul", "GET", "/api/v1/positions", {"symbol": "AAPL\x00"}, "symbol"),
    ("reservations-account-nul", "GET", "/api/v1/risk/reservations", {"account": "\x00"}, "account"),
    ("history-limit-huge", "GET", "/api/v1/risk/policy/history", {"limit": str(10**30)}, "limit"),
    ("delete-override-reason-nul", "DELETE", "/api/v1/risk/policy/instruments/AAPL", {"reason": "x\x00"}, "reason"),
    ("health-nul", "GET", "/health", {"probe": "\x00"}, "probe"),
    ("order-id-nul", "GET", "/api/v1/orders/EX%00", None, "order_id"),
    ("cancel-id-nul", "POST", "/api/v1/orders/%00/cancel", None, "order_id"),
    ("override-symbol-nul", "DELETE", "/api/v1/risk/policy/instruments/AA%00PL?reason=x", None, "symbol"),
    ("override-account-soh", "DELETE", "/api/v1/risk/policy/accounts/a%01b?reason=x", None, "account"),
    ("bridge-nul", "POST", f"{BRIDGE}/commands/poll", {"x": "\x00"}, "x"),
    ("quotes-symbol-nul", "GET", "/api/v1/quotes", {"symbol": "EUR\x00USD"}, "symbol"),
    ("quote-path-nul", "GET", "/api/v1/quotes/EUR%00USD", None, "symbol"),
    ("admin-key-soh", "DELETE", "/api/v1/admin/keys/k%01", None, "key_id"),
    ("admin-account-long", "DELETE", "/api/v1/admin/accounts/" + "a" * 300, None, "account"),
]


@pytest.mark.parametrize(
    ("method", "url", "params", "field"), [p[1:] for p in PARAMETERS], ids=[p[0] for p in PARAMETERS]
)
async def test_query_and_path_parameters_are_bounded_and_control_free(
    stack: Stack, http: httpx.AsyncClient, method: str, url: str, params: dict[str, str] | None, field: str
) -> None:
    before = await stack.fetch("SELECT count(*) AS n FROM audit_log")
    r = await http.request(method, url, params=params, headers=BRIDGE_AUTH if url.startswith(BRIDGE) else None)
    assert_refused(r, field)
    assert await stack.fetch("SELECT count(*) AS n FROM audit_log") == before


@pytest.mark.parametrize(
    ("header", "value"),
    [
        ("X-Idempotency-Key", "key\x01one"),
        ("X-Idempotency-Key", "key\x7f"),
        ("X-Idempotency-Key", "k" * 129),
        ("X-Actor", "ops\x1bjane"),
        ("X-Actor", "a" * 101),
    ],
    ids=["key-soh", "key-del", "key-long", "actor-esc", "actor-long"],
)
async def test_headers_the_api_reads_are_bounded_and_control_free(
    stack: Stack, http: httpx.AsyncClient, header: str, value: str
) -> None:
    body = order_body()
    r = await http.post("/api/v1/orders", json=body, headers={header: value})
    assert_refused(r, header)
    await assert_nothing_started(stack, body, value if header == "X-Idempotency-Key" else None)
    r = await http.post("/api/v1/operator/cancel-all", json={"scope": "all", "reason": "x"}, headers={header: value})
    assert_refused(r, header)


# ------------------------------------------------------------------------------------------------ shapes

SHAPES: list[tuple[str, str, str, str, str, int]] = [
    ("order-unknown", "POST", "/api/v1/orders", "ORDER+surprise", "surprise", 422),
    ("order-qty-bool", "POST", "/api/v1/orders", "ORDER+qty=true", "qty", 422),
    ("order-qty-list", "POST", "/api/v1/orders", "ORDER+qty=[1]", "qty", 422),
    ("order-side-object", "POST", "/api/v1/orders", 'ORDER+side={"a":1}', "side", 422),
    ("order-reduce-only-text", "POST", "/api/v1/orders", 'ORDER+reduceOnly="maybe"', "reduceOnly", 422),
    ("order-expire-number", "POST", "/api/v1/orders", "GTD+expireAt=1893456000", "expireAt", 422),
    ("cancel-unknown", "POST", f"/api/v1/orders/{NOBODY}/cancel", '{"reason": "x", "force": true}', "force", 422),
    ("cancel-reason-number", "POST", f"/api/v1/orders/{NOBODY}/cancel", '{"reason": 5}', "reason", 422),
    ("amend-unknown", "PATCH", f"/api/v1/orders/{NOBODY}", '{"qty": 1, "side": "SELL"}', "side", 422),
    ("amend-qty-text", "PATCH", f"/api/v1/orders/{NOBODY}", '{"qty": "lots"}', "qty", 422),
    (
        "state-reason-number",
        "POST",
        "/api/v1/operator/trading-state",
        '{"state": "HALTED", "reason": 5}',
        "reason",
        422,
    ),
    (
        "cancel-all-unknown",
        "POST",
        "/api/v1/operator/cancel-all",
        '{"scope": "all", "reason": "x", "now": 1}',
        "now",
        422,
    ),
    ("policy-not-object", "PUT", "/api/v1/risk/policy", '{"policy": [], "reason": "x"}', "policy", 422),
    ("nested-too-deep", "POST", "/api/v1/orders", "[" * 100 + "]" * 100, "body", 422),
    ("nested-beyond-python", "POST", "/api/v1/orders", "[" * 30000 + "]" * 30000, "body", 400),
    ("not-utf8", "POST", "/api/v1/orders", "\udcff", "body", 400),
]


@pytest.mark.parametrize(
    ("method", "url", "text", "field", "status"), [s[1:] for s in SHAPES], ids=[s[0] for s in SHAPES]
)
async def test_unknown_fields_and_wrong_types_name_the_field(
    stack: Stack, http: httpx.AsyncClient, method: str, url: str, text: str, field: str, status: int
) -> None:
    body = order_body()
    if text.startswith(("ORDER+", "GTD+")):
        shape, _, extra = text.partition("+")
        if shape == "GTD":
            body.update(type="LIMIT", price="180.00", timeInForce="GTD")
        name, _, literal = extra.partition("=")
        body[name] = "<<n>>"
        text = dumps(body, {"n": literal or "1"})
    raw = text.encode("utf-8", "surrogateescape")
    r = await http.request(method, url, content=raw, headers={"Content-Type": "application/json"})
    assert_refused(r, field, status)
    await assert_nothing_started(stack, body)


# ------------------------------------------------------------------------------------------------ size


async def test_bodies_above_the_limit_are_413_with_or_without_content_length(
    stack: Stack, http: httpx.AsyncClient
) -> None:
    body = order_body()
    body["clientOrderId"] = "x" * (70 * 1024)
    text = json.dumps(body).encode()
    r = await http.post("/api/v1/orders", content=text, headers={"Content-Type": "application/json"})
    assert_refused(r, "body", 413)

    async def chunks() -> AsyncIterator[bytes]:
        for i in range(0, len(text), 4096):
            yield text[i : i + 4096]

    r = await http.post("/api/v1/orders", content=chunks(), headers={"Content-Type": "application/json"})
    assert "content-length" not in r.request.headers
    assert_refused(r, "body", 413)
    await assert_nothing_started(stack, body)
    # The bridge takes whole accounts: a 100 KiB heartbeat is not refused for its size.
    heartbeat = golden("heartbeat")
    heartbeat["positions"] = heartbeat["positions"] * 600
    big = json.dumps(heartbeat).encode()
    assert len(big) > 100 * 1024
    r = await http.post(f"{BRIDGE}/heartbeat", content=big, headers={"Content-Type": "application/json", **BRIDGE_AUTH})
    assert r.status_code != 413, r.text


async def test_the_body_limit_is_a_setting(stack: Stack) -> None:
    settings = stack.settings.model_copy(update={"api": ApiSettings(max_body_bytes=2048)})
    body = order_body(clientOrderId="c" * 60)
    body["account"] = "a" * 60
    padded = json.dumps(body) + " " * 3000
    async with stack.api(settings) as http:
        r = await http.post("/api/v1/orders", content=padded, headers={"Content-Type": "application/json"})
        assert_refused(r, "body", 413)
        assert "2048 bytes" in r.json()["message"]
        assert (await http.post("/api/v1/orders", json=order_body())).status_code == 201


# ------------------------------------------------------------------------------------------------ cancels


async def test_a_cancel_the_audit_log_cannot_record_is_not_sent(
    stack: Stack, http: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Issue 17: the audit entry is written before the cancel is sent; a cancel it cannot record is not sent.
    import api.audited as audited

    order_id = await working_order(http, stack)
    real = audited.append_audit

    async def broken_audit(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("audit log unavailable")

    monkeypatch.setattr(audited, "append_audit", broken_audit)
    r = await http.post(f"/api/v1/orders/{order_id}/cancel", json={"reason": "desk request"})
    assert r.status_code == 503, r.text
    assert "nothing was sent" in r.text and r.headers["retry-after"] == "2"
    assert "cancel" not in await signals(stack, order_id)

    # The request's entry written, the outcome's not: the cancel is sent and the answer says what is missing.
    calls: list[str] = []

    async def outcome_fails(conn: Any, **entry: Any) -> str:
        calls.append(entry["action"])
        if entry["action"] != "CANCEL_REQUESTED":
            raise RuntimeError("audit log unavailable")
        return await real(conn, **entry)

    monkeypatch.setattr(audited, "append_audit", outcome_fails)
    r = await http.post(f"/api/v1/orders/{order_id}/cancel", json={"reason": "desk request"})
    assert r.status_code == 202, r.text
    assert r.json()["status"] == "cancel_requested"
    assert "outcome's audit entry could not be written" in r.json()["warnings"][0]
    assert calls == ["CANCEL_REQUESTED", "CANCEL_SENT"]
    assert "cancel" in await signaled(stack, order_id, "cancel")
    monkeypatch.undo()
    rows = await stack.fetch("SELECT action FROM audit_log WHERE subject = %s ORDER BY id", order_id)
    assert [r["action"] for r in rows if r["action"].startswith("CANCEL")] == ["CANCEL_REQUESTED"]
    await reached(http, stack, order_id, "CANCELED")
    r = await http.post(f"/api/v1/orders/{order_id}/cancel", json={"reason": "again"})
    assert r.status_code == 409


async def test_cancel_and_amend_of_a_terminated_workflow_are_409_naming_it(
    stack: Stack, http: httpx.AsyncClient
) -> None:
    order_id = await working_order(http, stack)
    await stack.client.get_workflow_handle(workflow_id_for(order_id)).terminate(reason="edge test")
    c = await http.post(f"/api/v1/orders/{order_id}/cancel", json={"reason": "too late"})
    assert c.status_code == 409, c.text
    assert "terminated" in c.json()["message"] and "ACCEPTED" in c.json()["message"]
    a = await http.patch(f"/api/v1/orders/{order_id}", json={"qty": 20})
    assert a.status_code == 409, a.text
    assert "terminated" in a.json()["message"]
    # Reads still answer (from the row).
    assert (await http.get(f"/api/v1/orders/{order_id}")).json()["status"] == "ACCEPTED"


async def test_the_access_rule_comes_before_the_edge_checks(stack: Stack) -> None:
    """An unauthenticated caller gets its 401 (audited) and learns nothing about the bounds."""
    settings = stack.settings.model_copy(update={"api": ApiSettings(tokens={"desk-edge": SecretStr("s3cret")})})
    body = dumps(order_body(clientId="desk-edge", qty="<<n>>", reason="x\u0000"), {"n": "1e24"})
    async with stack.api(settings, register_accounts=False) as http:
        anonymous = [
            await http.get("/api/v1/orders", params={"symbol": "\x00"}),
            await send(http, "POST", "/api/v1/orders", body),
            await http.get("/api/v1/orders/" + "p" * 300),
        ]
        assert [r.status_code for r in anonymous] == [401, 401, 401], [r.text for r in anonymous]
        auth = {"Authorization": "Bearer s3cret"}
        assert_refused(await http.get("/api/v1/orders", params={"symbol": "\x00"}, headers=auth), "symbol")
        assert_refused(await send(http, "POST", "/api/v1/orders", body, auth), "qty")
        assert_refused(await http.get("/api/v1/orders/" + "p" * 300, headers=auth), "order_id")


async def test_migration_0008_repairs_expiries_stored_outside_the_window(stack: Stack, http: httpx.AsyncClient) -> None:
    """A row stored before the bounds (year 10000 UTC) broke every page holding it; 0008 clamps and flags it."""
    client = unique("y10k")
    order_id = derive_order_id(f"{client}/order/x")
    async with stack.pool.connection() as conn:
        await conn.execute(
            "INSERT INTO orders (order_id, workflow_id, idempotency_key, request_hash, client_id, client_order_id,"
            " account, symbol, side, type, time_in_force, qty, price, expire_at, broker, status, created_at,"
            " updated_at) VALUES (%s, %s, %s, 'h', %s, 'x', %s, 'AAPL', 'BUY', 'LIMIT', 'GTD', 1, 180,"
            " timestamptz '10000-01-01 04:00:00+00', 'paper', 'EXPIRED', now(), now())",
            (order_id, workflow_id_for(order_id), f"{client}/order/x", client, client),
        )
    with pytest.raises(psycopg.DataError, match="year 10K"):  # a 500: what such a row did before 0008
        await http.get("/api/v1/orders", params={"clientId": client})
    migration = Path(__file__).parents[2] / "migrations" / "0008_expire_at_window.sql"
    async with stack.pool.connection() as conn:
        await conn.execute(migration.read_text())  # type: ignore[arg-type]
    page = await http.get("/api/v1/orders", params={"clientId": client})
    assert page.status_code == 200, page.text
    [order] = page.json()["data"]
    assert order["expireAt"].startswith("2199-12-31T23:59:59") and "EXPIRE_AT_OUT_OF_RANGE" in order["flags"]
