"""The risk engine with the real worker, Temporal server, Postgres and API, in a database of its own."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import httpx
import pytest
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool
from temporalio.testing import WorkflowEnvironment

from core.domain import OrderStatus
from core.instruments import InstrumentCatalog
from store.audit import verify_chain
from tests.conftest import create_database, make_settings, temporal_address
from tests.harness import Stack, paper_broker, unique
from tests.waiting import until

pytestmark = pytest.mark.asyncio
D = Decimal


@pytest.fixture(scope="module")
async def risk_stack(
    temporal_env: WorkflowEnvironment, postgres_admin_url: str, instruments: InstrumentCatalog
) -> AsyncIterator[Stack]:
    url = await create_database(postgres_admin_url, "exodus_risk")
    settings = make_settings(url, temporal_address(temporal_env))
    pool = AsyncConnectionPool(
        url, min_size=1, max_size=20, kwargs={"autocommit": True, "row_factory": dict_row}, open=False
    )
    await pool.open(wait=True)
    brokers = {"paper": paper_broker(instruments, pool, url, journal_key="paper")}
    try:
        async with Stack.running(temporal_env.client, settings, pool, instruments, brokers) as stack:
            yield stack
    finally:
        await pool.close()


@pytest.fixture
async def http(risk_stack: Stack) -> AsyncIterator[httpx.AsyncClient]:
    await risk_stack.venue.set_mid("AAPL", D("190.00"))
    async with risk_stack.api() as client:
        yield client


async def put_policy(http: httpx.AsyncClient, reason: str = "test", **changes: Any) -> dict[str, Any]:
    current = (await http.get("/api/v1/risk/policy")).json()["policy"]
    r = await http.put(
        "/api/v1/risk/policy", json={"policy": {**current, **changes}, "reason": reason}, headers={"X-Actor": "cro"}
    )
    assert r.status_code == 200, r.text
    return r.json()


@pytest.fixture
async def default_policy(http: httpx.AsyncClient) -> AsyncIterator[None]:
    """Restore the policy each test started with."""
    before = (await http.get("/api/v1/risk/policy")).json()["policy"]
    yield
    r = await http.put("/api/v1/risk/policy", json={"policy": before, "reason": "test cleanup"})
    assert r.status_code == 200


def body(**overrides: Any) -> dict[str, Any]:
    b = {"clientId": unique("c"), "clientOrderId": unique("o"), "symbol": "AAPL", "side": "BUY", "qty": 10}
    b.update(overrides)
    return b


async def wait_status(http: httpx.AsyncClient, order_id: str, *statuses: str, timeout: float = 15) -> dict[str, Any]:
    async with asyncio.timeout(timeout):
        while True:
            order = (await http.get(f"/api/v1/orders/{order_id}")).json()
            if order["status"] in statuses:
                return order
            await asyncio.sleep(0.05)


async def reservations(stack: Stack, account: str) -> list[dict[str, Any]]:
    return await stack.fetch("SELECT * FROM risk_reservations WHERE account = %s ORDER BY created_at", account)


async def test_concurrent_orders_never_jointly_breach_the_cap(risk_stack: Stack, http: httpx.AsyncClient) -> None:
    # The account may carry 19,000 of gross exposure: ten resting orders of 10 AAPL (valued at the 190 mark).
    account = unique("acct")
    r = await http.put(
        f"/api/v1/risk/policy/accounts/{account}",
        json={"overrides": {"max_gross_exposure": "19000"}, "reason": "concurrency test"},
    )
    assert r.status_code == 200, r.text
    orders = [body(account=account, type="LIMIT", price="180.00", timeInForce="GTC") for _ in range(25)]
    answers = await asyncio.gather(*(http.post("/api/v1/orders", json=o) for o in orders))
    approved = [a for a in answers if a.status_code == 201]
    refused = [a for a in answers if a.status_code == 422]
    assert len(approved) == 10 and len(refused) == 15, [a.status_code for a in answers]
    assert {x["code"] for a in refused for x in a.json()["reasons"]} == {"MAX_GROSS_EXPOSURE"}
    held = await reservations(risk_stack, account)
    assert len(held) == 10 and sum(h["qty_open"] for h in held) == 100
    assert sum(h["qty_open"] * 190 for h in held) <= 19_000

    # Everything is released when the orders are canceled, and the room is there again.
    r = await http.post("/api/v1/operator/cancel-all", json={"scope": "account", "value": account, "reason": "cleanup"})
    assert r.status_code == 200 and r.json()["signalled"] == 10
    for a in approved:
        await wait_status(http, a.json()["internalOrderId"], "CANCELED")
    held = await reservations(risk_stack, account)
    assert all(h["released_at"] is not None and h["qty_open"] == 0 for h in held)
    again = await http.post(
        "/api/v1/orders", json=body(account=account, type="LIMIT", price="180.00", timeInForce="GTC", qty=100)
    )
    assert again.status_code == 201


async def test_reservation_follows_fills_and_is_released_when_the_order_closes(
    risk_stack: Stack, http: httpx.AsyncClient
) -> None:
    account = unique("acct")
    # Partially filled (500 of 800 shown at the touch), then canceled: the reservation shrinks, then goes.
    r = await http.post(
        "/api/v1/orders", json=body(account=account, qty=800, type="LIMIT", price="191.00", timeInForce="GTC")
    )
    order_id = r.json()["internalOrderId"]
    await wait_status(http, order_id, "PARTIALLY_FILLED")
    [held] = await reservations(risk_stack, account)
    assert held["qty_open"] == 300 and held["released_at"] is None
    await http.post(f"/api/v1/orders/{order_id}/cancel")
    await wait_status(http, order_id, "CANCELED")
    [held] = await reservations(risk_stack, account)
    assert held["qty_open"] == 0 and held["released_at"] is not None
    # A venue reject releases it too.
    risk_stack.venue.engine.reject_symbols.add("MSFT")
    try:
        r = await http.post("/api/v1/orders", json=body(account=account, symbol="MSFT"))
        await wait_status(http, r.json()["internalOrderId"], "REJECTED")
    finally:
        risk_stack.venue.engine.reject_symbols.discard("MSFT")
    assert all(h["released_at"] is not None for h in await reservations(risk_stack, account))
    # And a GTD expiry.
    from datetime import UTC, datetime, timedelta

    expire_at = (datetime.now(UTC) + timedelta(seconds=2)).isoformat()
    r = await http.post(
        "/api/v1/orders",
        json=body(account=account, type="LIMIT", price="180.00", timeInForce="GTD", expireAt=expire_at),
    )
    await wait_status(http, r.json()["internalOrderId"], "EXPIRED", timeout=20)
    assert all(h["released_at"] is not None for h in await reservations(risk_stack, account))


async def test_velocity_and_open_order_limits_use_the_stored_policy(
    risk_stack: Stack, http: httpx.AsyncClient, default_policy: None
) -> None:
    await put_policy(http, velocity_per_client={"max_orders": 3, "window_seconds": 30}, max_open_orders_per_client=500)
    client = unique("fast")
    answers = [await http.post("/api/v1/orders", json=body(clientId=client, qty=10 + i)) for i in range(4)]
    assert [a.status_code for a in answers] == [201, 201, 201, 422]
    assert answers[3].json()["reasons"][0]["code"] == "VELOCITY_CLIENT"
    await put_policy(http, velocity_per_client={"max_orders": 100, "window_seconds": 1}, max_open_orders_per_client=2)
    client = unique("busy")
    resting = [
        await http.post(
            "/api/v1/orders", json=body(clientId=client, qty=10 + i, type="LIMIT", price="180.00", timeInForce="GTC")
        )
        for i in range(3)
    ]
    assert [a.status_code for a in resting] == [201, 201, 422]
    assert resting[2].json()["reasons"][0]["code"] == "MAX_OPEN_ORDERS"
    first = resting[0].json()["internalOrderId"]
    await http.post(f"/api/v1/orders/{first}/cancel")
    await wait_status(http, first, "CANCELED")
    again = await http.post(
        "/api/v1/orders", json=body(clientId=client, qty=99, type="LIMIT", price="180.00", timeInForce="GTC")
    )
    assert again.status_code == 201
    await http.post("/api/v1/operator/cancel-all", json={"scope": "client", "value": client, "reason": "cleanup"})


async def test_daily_loss_limit_from_the_ledger(risk_stack: Stack, http: httpx.AsyncClient) -> None:
    account = unique("loser")
    await http.put(
        f"/api/v1/risk/policy/accounts/{account}",
        json={"overrides": {"account_capital": "20000", "daily_loss_limit": "1000"}, "reason": "loss test"},
    )
    r = await http.post("/api/v1/orders", json=body(account=account, qty=100))
    await wait_status(http, r.json()["internalOrderId"], "FILLED")  # long 100 at 190.01
    await risk_stack.venue.set_mid("AAPL", D("180.00"))  # marked at 180.00: down 1,001 today
    try:
        more = await http.post("/api/v1/orders", json=body(account=account, qty=1))
        assert more.status_code == 422 and [x["code"] for x in more.json()["reasons"]] == ["DAILY_LOSS_LIMIT"]
        out = await http.post("/api/v1/orders", json=body(account=account, side="SELL", qty=50))
        assert out.status_code == 201  # reducing is always allowed
        await wait_status(http, out.json()["internalOrderId"], "FILLED")
    finally:
        await risk_stack.venue.set_mid("AAPL", D("190.00"))


async def test_trading_state_scopes(risk_stack: Stack, http: httpx.AsyncClient) -> None:
    account, other = unique("acct"), unique("acct")
    filled = await http.post("/api/v1/orders", json=body(account=account, qty=100))
    await wait_status(http, filled.json()["internalOrderId"], "FILLED")

    async def set_state(scope: str, key: str | None, state: str) -> None:
        r = await http.post(
            "/api/v1/operator/trading-state", json={"scope": scope, "key": key, "state": state, "reason": "drill"}
        )
        assert r.status_code == 200, r.text

    await set_state("ACCOUNT", account, "HALTED")
    try:
        r = await http.post("/api/v1/orders", json=body(account=account, side="SELL", qty=10))
        assert r.status_code == 422 and "ACCOUNT" in r.json()["reasons"][0]["message"]
        assert (await http.post("/api/v1/orders", json=body(account=other))).status_code == 201
    finally:
        await set_state("ACCOUNT", account, "ACTIVE")

    await set_state("SYMBOL", "AAPL", "REDUCING")
    try:
        up = await http.post("/api/v1/orders", json=body(account=account, qty=10))
        assert up.status_code == 422 and up.json()["reasons"][0]["code"] == "TRADING_REDUCING"
        down = await http.post("/api/v1/orders", json=body(account=account, side="SELL", qty=10))
        assert down.status_code == 201
        assert (await http.post("/api/v1/orders", json=body(account=account, symbol="MSFT"))).status_code == 201
    finally:
        await set_state("SYMBOL", "AAPL", "ACTIVE")

    await set_state("BROKER", "paper", "HALTED")
    try:
        r = await http.post("/api/v1/orders", json=body(account=other))
        assert r.status_code == 422 and "BROKER paper" in r.json()["reasons"][0]["message"]
    finally:
        await set_state("BROKER", "paper", "ACTIVE")

    bad = await http.post("/api/v1/operator/trading-state", json={"scope": "ACCOUNT", "state": "HALTED", "reason": "x"})
    assert bad.status_code == 422 and bad.json()["reasons"][0]["field"] == "key"
    bad = await http.post(
        "/api/v1/operator/trading-state", json={"scope": "SYMBOL", "key": "NOPE", "state": "HALTED", "reason": "x"}
    )
    assert bad.status_code == 422 and bad.json()["reasons"][0]["field"] == "key"


async def test_circuit_breaker_halts_after_consecutive_broker_rejections(
    risk_stack: Stack, http: httpx.AsyncClient, default_policy: None
) -> None:
    await put_policy(http, circuit_breaker_rejections=3)
    account = unique("unlucky")
    risk_stack.venue.engine.reject_symbols.add("NVDA")
    try:
        for i in range(3):
            r = await http.post("/api/v1/orders", json=body(account=account, symbol="NVDA", qty=1 + i))
            assert r.status_code == 201, r.text
            await wait_status(http, r.json()["internalOrderId"], "REJECTED")
    finally:
        risk_stack.venue.engine.reject_symbols.discard("NVDA")
    states = {(s["scope"], s["scopeKey"]): s for s in (await http.get("/api/v1/operator/trading-state")).json()}
    tripped = states[("ACCOUNT", account)]
    assert (
        tripped["state"] == "HALTED"
        and tripped["updatedBy"] == "circuit-breaker"
        and "3 consecutive" in tripped["reason"]
    )
    assert states[("BROKER", "paper")]["state"] == "HALTED"
    audit = await risk_stack.fetch(
        "SELECT actor FROM audit_log WHERE action = 'TRADING_STATE_SET' AND subject = %s", f"ACCOUNT:{account}"
    )
    assert audit == [{"actor": "circuit-breaker"}]
    refused = await http.post("/api/v1/orders", json=body(account=account))
    assert refused.status_code == 422 and refused.json()["reasons"][0]["code"] == "TRADING_HALTED"
    for scope, key in (("ACCOUNT", account), ("BROKER", "paper")):
        r = await http.post(
            "/api/v1/operator/trading-state", json={"scope": scope, "key": key, "state": "ACTIVE", "reason": "reviewed"}
        )
        assert r.status_code == 200
    assert (await http.post("/api/v1/orders", json=body(account=account))).status_code == 201
    streaks = await risk_stack.fetch(
        "SELECT streak FROM risk_reject_streaks WHERE scope = 'ACCOUNT' AND scope_key = %s", account
    )
    assert streaks == [{"streak": 0}]


async def test_kill_switch_with_orders_in_flight_then_cancel_all_empties_the_book(
    risk_stack: Stack, http: httpx.AsyncClient
) -> None:
    account = unique("book")
    working = []
    for i in range(4):
        r = await http.post(
            "/api/v1/orders", json=body(account=account, qty=10 + i, type="LIMIT", price="180.00", timeInForce="GTC")
        )
        working.append(r.json()["internalOrderId"])
    for order_id in working:
        await wait_status(http, order_id, "ACCEPTED")
    halt = await http.post(
        "/api/v1/operator/trading-state",
        json={"state": "HALTED", "reason": "kill switch drill"},
        headers={"X-Actor": "head-of-desk"},
    )
    assert halt.status_code == 200
    try:
        refused = await http.post("/api/v1/orders", json=body(account=account))
        assert refused.status_code == 422 and refused.json()["reasons"][0]["code"] == "TRADING_HALTED"
        amend = await http.patch(f"/api/v1/orders/{working[0]}", json={"price": "181.00"})
        assert amend.status_code == 422 and "halted" in amend.json()["reasons"][0]["message"].lower()
        cancel = await http.post(f"/api/v1/orders/{working[0]}/cancel")  # cancels always pass
        assert cancel.status_code == 202
        await wait_status(http, working[0], "CANCELED")
        r = await http.post("/api/v1/operator/cancel-all", json={"scope": "all", "reason": "flatten the book"})
        assert r.status_code == 200 and set(working[1:]) <= set(r.json()["orderIds"])
        for order_id in working[1:]:
            await wait_status(http, order_id, "CANCELED")

        async def book_is_empty() -> bool:
            # The whole book, not only this test's orders: cancel-all also signalled any order an earlier test
            # left working, which may need a moment more to close than the four awaited above.
            rows = await risk_stack.fetch(
                "SELECT order_id FROM orders WHERE status NOT IN ('FILLED','CANCELED','EXPIRED','REJECTED','DENIED')"
            )
            return rows == []

        await until("every order in the book closed after cancel-all", book_is_empty)
        audit = await risk_stack.fetch(
            "SELECT actor, detail FROM audit_log WHERE action = 'CANCEL_ALL' ORDER BY id DESC LIMIT 1"
        )
        assert audit[0]["detail"]["signalled"] >= 3
    finally:
        await http.post("/api/v1/operator/trading-state", json={"state": "ACTIVE", "reason": "drill over"})
    bad = await http.post("/api/v1/operator/cancel-all", json={"scope": "account", "reason": "x"})
    assert bad.status_code == 422 and bad.json()["reasons"][0]["field"] == "value"


async def test_policy_store_is_versioned_attributed_and_audited(
    risk_stack: Stack, http: httpx.AsyncClient, default_policy: None
) -> None:
    before = (await http.get("/api/v1/risk/policy")).json()
    changed = await put_policy(http, reason="tighten notional", max_notional_per_order="1000")
    assert changed["version"] > before["version"] and changed["policy"]["max_notional_per_order"] == "1000"
    refused = await http.post("/api/v1/orders", json=body(qty=10))  # 1,900 > 1,000
    assert refused.status_code == 422 and refused.json()["reasons"][0]["code"] == "MAX_NOTIONAL"
    [latest] = (await http.get("/api/v1/risk/policy/history", params={"limit": 1})).json()
    assert latest["changedBy"] == "cro" and latest["reason"] == "tighten notional"
    assert latest["old"]["max_notional_per_order"] != "1000" and latest["new"]["max_notional_per_order"] == "1000"

    r = await http.put(
        "/api/v1/risk/policy/instruments/msft", json={"overrides": {"tradable": False}, "reason": "halted name"}
    )
    assert r.status_code == 200 and r.json()["instruments"]["MSFT"] == {"tradable": False}
    refused = await http.post("/api/v1/orders", json=body(symbol="MSFT", qty=1))
    assert refused.json()["reasons"][0]["code"] == "INSTRUMENT_NOT_TRADABLE"
    r = await http.delete("/api/v1/risk/policy/instruments/MSFT", params={"reason": "back"})
    assert r.status_code == 200 and "MSFT" not in r.json()["instruments"]

    bad = await http.put(
        "/api/v1/risk/policy", json={"policy": {**before["policy"], "max_notional_per_order": "-5"}, "reason": "x"}
    )
    assert bad.status_code == 422 and "policy.max_notional_per_order" in bad.json()["reasons"][0]["field"]
    bad = await http.put("/api/v1/risk/policy/accounts/a1", json={"overrides": {"max_leverage": 3}, "reason": "x"})
    assert bad.status_code == 422 and bad.json()["reasons"][0]["field"] == "overrides.max_leverage"
    bad = await http.put("/api/v1/risk/policy/instruments/NOPE", json={"overrides": {"tradable": False}, "reason": "x"})
    assert bad.status_code == 422
    no_reason = await http.put("/api/v1/risk/policy", json={"policy": before["policy"]})
    assert no_reason.status_code == 422 and no_reason.json()["reasons"][0]["field"] == "reason"
    async with risk_stack.pool.connection() as conn:
        assert (await verify_chain(conn))[0]


async def test_amend_is_risk_checked_against_the_reservations(risk_stack: Stack, http: httpx.AsyncClient) -> None:
    account = unique("amender")
    await http.put(
        f"/api/v1/risk/policy/accounts/{account}", json={"overrides": {"max_gross_exposure": "4000"}, "reason": "t"}
    )
    r = await http.post(
        "/api/v1/orders", json=body(account=account, qty=10, type="LIMIT", price="180.00", timeInForce="GTC")
    )
    order_id = r.json()["internalOrderId"]
    await wait_status(http, order_id, "ACCEPTED")
    ok = await http.patch(f"/api/v1/orders/{order_id}", json={"qty": 20})  # 20 x 190 = 3,800
    assert ok.status_code == 200, ok.text
    [held] = await reservations(risk_stack, account)
    assert held["qty_open"] == 20
    too_big = await http.patch(f"/api/v1/orders/{order_id}", json={"qty": 22})  # 4,180
    assert too_big.status_code == 422 and "gross exposure" in too_big.json()["reasons"][0]["message"]
    [held] = await reservations(risk_stack, account)
    assert held["qty_open"] == 20
    await http.post(f"/api/v1/orders/{order_id}/cancel")
    await wait_status(http, order_id, "CANCELED")


async def test_reservations_endpoint(risk_stack: Stack, http: httpx.AsyncClient) -> None:
    account = unique("viewer")
    r = await http.post(
        "/api/v1/orders", json=body(account=account, qty=10, type="LIMIT", price="180.00", timeInForce="GTC")
    )
    await wait_status(http, r.json()["internalOrderId"], "ACCEPTED")
    view = (await http.get("/api/v1/risk/reservations", params={"account": account})).json()
    assert [d["order_id"] for d in view["data"]] == [r.json()["internalOrderId"]]
    assert D(view["totals"][0]["notional"]) == D(1800)
    await http.post(f"/api/v1/orders/{r.json()['internalOrderId']}/cancel")
    await wait_status(http, r.json()["internalOrderId"], "CANCELED")
    assert OrderStatus.CANCELED.value == "CANCELED"


async def test_concurrent_buys_and_sells_each_get_only_their_own_sides_room(
    risk_stack: Stack, http: httpx.AsyncClient
) -> None:
    # 19,000 of gross exposure is 100 AAPL at the mark on either side: resting sells never make room for buys.
    account = unique("sides")
    r = await http.put(
        f"/api/v1/risk/policy/accounts/{account}",
        json={"overrides": {"max_gross_exposure": "19000"}, "reason": "opposite sides"},
    )
    assert r.status_code == 200, r.text
    buys = [body(account=account, type="LIMIT", price="180.00", timeInForce="GTC") for _ in range(25)]
    sells = [body(account=account, side="SELL", type="LIMIT", price="200.00", timeInForce="GTC") for _ in range(25)]
    answers = await asyncio.gather(*(http.post("/api/v1/orders", json=o) for o in [*buys, *sells]))
    approved = [o["side"] for o, a in zip([*buys, *sells], answers, strict=True) if a.status_code == 201]
    assert sorted(approved) == ["BUY"] * 10 + ["SELL"] * 10, [a.status_code for a in answers]
    held = await reservations(risk_stack, account)
    assert sum(h["qty_open"] for h in held if h["side"] == "BUY") == 100
    assert sum(h["qty_open"] for h in held if h["side"] == "SELL") == 100
    r = await http.post("/api/v1/operator/cancel-all", json={"scope": "account", "value": account, "reason": "cleanup"})
    assert r.status_code == 200 and r.json()["signalled"] == 20


async def test_many_accounts_share_the_firm_wide_limit(
    risk_stack: Stack, http: httpx.AsyncClient, default_policy: None
) -> None:
    async with risk_stack.pool.connection() as conn:  # the firm starts empty: earlier tests' accounts forgotten
        await conn.execute("DELETE FROM risk_contributions")
        await conn.execute("UPDATE risk_counters SET gross = 0, open_notional = 0")
    await put_policy(http, firm_max_gross_exposure="19000")  # ten orders of 10 at 190
    accounts = [unique("firm") for _ in range(5)]
    orders = [body(account=a, type="LIMIT", price="180.00", timeInForce="GTC") for a in accounts for _ in range(5)]
    answers = await asyncio.gather(*(http.post("/api/v1/orders", json=o) for o in orders))
    assert sorted(a.status_code for a in answers) == [201] * 10 + [422] * 15
    assert {x["code"] for a in answers if a.status_code == 422 for x in a.json()["reasons"]} == {
        "FIRM_MAX_GROSS_EXPOSURE"
    }
    for account in accounts:
        await http.post("/api/v1/operator/cancel-all", json={"scope": "account", "value": account, "reason": "x"})


async def test_an_order_refused_during_a_halt_can_be_sent_again_unchanged(
    risk_stack: Stack, http: httpx.AsyncClient, default_policy: None
) -> None:
    await put_policy(http, duplicate_window_seconds=30)
    client = unique("halted")
    halt = await http.post("/api/v1/operator/trading-state", json={"state": "HALTED", "reason": "drill"})
    assert halt.status_code == 200
    try:
        refused = await http.post("/api/v1/orders", json=body(clientId=client, qty=7))
        assert refused.status_code == 422 and refused.json()["reasons"][0]["code"] == "TRADING_HALTED"
    finally:
        await http.post("/api/v1/operator/trading-state", json={"state": "ACTIVE", "reason": "drill over"})
    again = await http.post("/api/v1/orders", json=body(clientId=client, qty=7))
    assert again.status_code == 201, again.text
    third = await http.post("/api/v1/orders", json=body(clientId=client, qty=7))
    assert third.status_code == 422 and third.json()["reasons"][0]["code"] == "DUPLICATE_ORDER"


async def test_policy_currency_must_be_a_supported_iso_code(
    risk_stack: Stack, http: httpx.AsyncClient, default_policy: None
) -> None:
    current = (await http.get("/api/v1/risk/policy")).json()["policy"]
    bad = await http.put("/api/v1/risk/policy", json={"policy": {**current, "currency": "XYZ"}, "reason": "x"})
    assert bad.status_code == 422 and bad.json()["reasons"][0]["field"] == "policy.currency"
    ok = await put_policy(http, currency="usd")
    assert ok["policy"]["currency"] == "USD"
