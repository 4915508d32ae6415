"""The risk activity's transaction against a real Postgres (no Temporal): serialization, counters, amends, totality.

Each test works on its own accounts in a database of this module; tests that change the global policy put
the previous one back.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

import pytest
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from activities.persistence import OrderSnapshot, OrderStoreActivities, PersistInput
from activities.risk import AmendCheck, RiskActivities
from brokers import capabilities
from brokers.sessions import session_check_for
from core.domain import (
    InstrumentClass,
    OrderEvent,
    OrderRequest,
    OrderStatus,
    OrderTerms,
    RiskDecision,
    RiskReason,
    utcnow,
)
from core.instruments import InstrumentCatalog
from core.marketdata import MarketData, Quote, StoredQuote
from core.risk import RiskPolicy
from core.settings import MarketDataClassSettings, MarketDataSettings
from store.policy import PolicyStore
from store.quotes import upsert_quotes
from tests.conftest import create_database, make_settings
from tests.harness import make_order, static_instruments, unique
from tests.pgtrace import TracingPool

pytestmark = pytest.mark.asyncio
D = Decimal


async def publish_quotes(pool: AsyncConnectionPool, instruments: InstrumentCatalog, *symbols: str) -> None:
    """The paper feed's quotes of ``symbols`` (default: every instrument) at the catalogue's prices, now: the
    mid of AAPL is 190. (``make_settings`` keeps quotes fresh for a day, longer than this module runs.)"""
    now = utcnow()
    rows = [
        StoredQuote(Quote(symbol=i.symbol, source="paper", bid=i.initial_price, ask=i.initial_price, at=now), now)
        for i in instruments
        if not symbols or i.symbol in symbols
    ]
    async with pool.connection() as conn:
        await upsert_quotes(conn, rows)


@dataclass
class Rig:
    pool: AsyncConnectionPool
    url: str
    risk: RiskActivities
    store: OrderStoreActivities
    policy: PolicyStore
    market: MarketData
    instruments: InstrumentCatalog

    async def fetch(self, sql: str, *params: Any) -> list[dict[str, Any]]:
        async with self.pool.connection() as conn:
            cur = await conn.execute(sql, params)  # type: ignore[arg-type]
            return await cur.fetchall()  # type: ignore[return-value]

    async def put(self, scope: str, key: str, body: dict[str, Any] | None) -> None:
        async with self.pool.connection() as conn, conn.transaction():
            await self.policy.put(conn, scope=scope, key=key, body=body, actor="test", reason="test")  # type: ignore[arg-type]

    async def held(self, order_id: str) -> dict[str, Any]:
        [row] = await self.fetch("SELECT * FROM risk_reservations WHERE order_id = %s", order_id)
        return row


@pytest.fixture(scope="module")
async def rig(postgres_admin_url: str) -> AsyncIterator[Rig]:
    url = await create_database(postgres_admin_url, "exodus_decisions")
    settings = make_settings(url, "127.0.0.1:1")
    instruments = static_instruments()
    pool = AsyncConnectionPool(
        url, min_size=1, max_size=40, kwargs={"autocommit": True, "row_factory": dict_row}, open=False
    )
    await pool.open(wait=True)
    policy = PolicyStore(settings.risk)
    await publish_quotes(pool, instruments)
    market = MarketData(settings.market_data, instruments)
    risk = RiskActivities(
        pool=pool,
        settings=settings,
        instruments=instruments,
        market=market,
        capabilities=capabilities(),
        policy=policy,
    )
    store = OrderStoreActivities(pool=pool, instruments=instruments, policy=policy)
    try:
        yield Rig(pool, url, risk, store, policy, market, instruments)
    finally:
        await pool.close()


@contextlib.asynccontextmanager
async def global_policy(rig: Rig, **changes: Any) -> AsyncIterator[None]:
    async with rig.pool.connection() as conn:
        before = (await rig.policy.load(conn)).policy
    changed = RiskPolicy.model_validate({**before.model_dump(), **changes})
    await rig.put("GLOBAL", "", changed.model_dump(mode="json"))
    try:
        yield
    finally:
        await rig.put("GLOBAL", "", before.model_dump(mode="json"))


def limit_buy(account: str, qty: str = "10", **kw: Any) -> OrderRequest:
    kw.setdefault("client_id", unique("c"))
    return make_order(account=account, qty=qty, type="LIMIT", price=kw.pop("price", "180.00"), **kw)


def snapshot(
    order: OrderRequest, status: OrderStatus, *, qty: Decimal, version: int, filled: str = "0"
) -> PersistInput:
    now = utcnow()
    return PersistInput(
        snapshot=OrderSnapshot(
            order_id=order.order_id,
            idempotency_key=order.idempotency_key,
            request_hash=order.request_hash,
            client_id=order.client_id,
            client_order_id=order.client_order_id,
            account=order.account,
            symbol=order.symbol,
            side=order.side.value,
            type=order.type.value,
            time_in_force=order.time_in_force.value,
            qty=qty,
            price=order.price,
            stop_price=order.stop_price,
            expire_at=order.expire_at,
            broker=order.broker,
            broker_order_id="B1",
            status=status,
            filled_qty=D(filled),
            avg_price=None,
            reason=None,
            flags=[],
            version=version,
            created_at=order.received_at,
            updated_at=now,
        )
    )


def codes(decision: RiskDecision) -> list[str]:
    return [r.code for r in decision.reasons]


# -- amends hold the larger of old and new -----------------------------------------------------------------------


async def test_an_amend_to_a_smaller_size_frees_nothing_until_the_broker_confirms(rig: Rig) -> None:
    account = unique("amend")
    await rig.put("ACCOUNT", account, {"max_gross_exposure": "1900"})  # 10 AAPL at the 190 mark
    first = limit_buy(account, "10")
    assert (await rig.risk.check_order(first)).approved
    await rig.store.persist_order(snapshot(first, OrderStatus.ACCEPTED, qty=D(10), version=3))

    smaller = first.model_copy(update={"qty": D(4)})
    decision = await rig.risk.check_amend(AmendCheck(order=smaller, requested_by="desk"))
    assert decision.approved
    assert (await rig.held(first.order_id))["qty_open"] == 10  # still the old terms
    await rig.store.persist_order(snapshot(first, OrderStatus.PENDING_UPDATE, qty=D(10), version=4))
    other = limit_buy(account, "6")
    refused = await rig.risk.check_order(other)
    assert codes(refused) == ["MAX_GROSS_EXPOSURE"], refused.reasons

    # The broker confirms the replace: the booking sets the new terms, and the room is there.
    await rig.store.persist_order(snapshot(first, OrderStatus.ACCEPTED, qty=D(4), version=5))
    assert (await rig.held(first.order_id))["qty_open"] == 4
    assert (await rig.risk.check_order(limit_buy(account, "6"))).approved


async def test_a_rejected_replace_leaves_the_old_reservation(rig: Rig) -> None:
    account = unique("amend")
    await rig.put("ACCOUNT", account, {"max_gross_exposure": "3800"})
    first = limit_buy(account, "10")
    assert (await rig.risk.check_order(first)).approved
    await rig.store.persist_order(snapshot(first, OrderStatus.ACCEPTED, qty=D(10), version=3))

    # Down: nothing is freed, and when the broker refuses, the order holds its old terms.
    down = await rig.risk.check_amend(AmendCheck(order=first.model_copy(update={"qty": D(2)}), requested_by="d"))
    assert down.approved and (await rig.held(first.order_id))["qty_open"] == 10
    await rig.store.persist_order(snapshot(first, OrderStatus.PENDING_UPDATE, qty=D(10), version=4))
    await rig.store.persist_order(snapshot(first, OrderStatus.ACCEPTED, qty=D(10), version=5))  # UPDATE_REJECTED
    assert (await rig.held(first.order_id))["qty_open"] == 10

    # Up and at a higher price: held at the larger of both at once, back to the old terms after a refusal.
    up = first.model_copy(update={"qty": D(15), "price": D("185.00")})
    assert (await rig.risk.check_amend(AmendCheck(order=up, requested_by="d"))).approved
    row = await rig.held(first.order_id)
    assert (row["qty_open"], row["price"]) == (15, D("185.00"))
    assert (await rig.risk.check_order(limit_buy(account, "6"))).approved is False  # 15 + 6 > 20
    await rig.store.persist_order(snapshot(first, OrderStatus.ACCEPTED, qty=D(10), version=7))
    row = await rig.held(first.order_id)
    assert (row["qty_open"], row["price"]) == (10, D("180.00"))


async def test_a_booking_that_commits_after_the_amend_check_keeps_the_hold(rig: Rig) -> None:
    # The workflow's flusher had a booking of version 4 (old terms, 10) in flight when the amend to 18 was
    # checked at version 4; the booking commits after the check. The hold must stay at 18 until the broker
    # answers, and no other order may be approved into it.
    account = unique("amend")
    await rig.put("ACCOUNT", account, {"max_gross_exposure": "3800"})  # 20 AAPL at the 190 mark
    first = limit_buy(account, "10")
    assert (await rig.risk.check_order(first)).approved
    await rig.store.persist_order(snapshot(first, OrderStatus.ACCEPTED, qty=D(10), version=3))

    up = first.model_copy(update={"qty": D(18)})
    assert (await rig.risk.check_amend(AmendCheck(order=up, requested_by="d", version=4))).approved
    await rig.store.persist_order(snapshot(first, OrderStatus.ACCEPTED, qty=D(10), version=4))  # the late one
    assert (await rig.held(first.order_id))["qty_open"] == 18
    assert codes(await rig.risk.check_order(limit_buy(account, "10"))) == ["MAX_GROSS_EXPOSURE"]
    await rig.store.persist_order(snapshot(first, OrderStatus.PENDING_UPDATE, qty=D(10), version=5))
    assert (await rig.held(first.order_id))["qty_open"] == 18
    assert codes(await rig.risk.check_order(limit_buy(account, "10"))) == ["MAX_GROSS_EXPOSURE"]

    # A stale booking (older than the order row) changes nothing either.
    await rig.store.persist_order(snapshot(first, OrderStatus.ACCEPTED, qty=D(10), version=2))
    assert (await rig.held(first.order_id))["qty_open"] == 18

    # The broker refuses the replace: the booking of the answer (newer than the check) sets the old terms.
    await rig.store.persist_order(snapshot(first, OrderStatus.ACCEPTED, qty=D(10), version=6))
    assert (await rig.held(first.order_id))["qty_open"] == 10
    assert (await rig.risk.check_order(limit_buy(account, "10"))).approved


async def test_an_amend_confirmed_after_a_late_booking_holds_the_new_terms(rig: Rig) -> None:
    account = unique("amend")
    await rig.put("ACCOUNT", account, {"max_gross_exposure": "3800"})
    first = limit_buy(account, "10")
    assert (await rig.risk.check_order(first)).approved
    await rig.store.persist_order(snapshot(first, OrderStatus.ACCEPTED, qty=D(10), version=3))
    down = first.model_copy(update={"qty": D(4)})
    assert (await rig.risk.check_amend(AmendCheck(order=down, requested_by="d", version=3))).approved
    await rig.store.persist_order(snapshot(first, OrderStatus.ACCEPTED, qty=D(10), version=3))  # retried, late
    await rig.store.persist_order(snapshot(first, OrderStatus.PENDING_UPDATE, qty=D(10), version=4))
    assert (await rig.held(first.order_id))["qty_open"] == 10  # nothing freed before the broker's answer
    await rig.store.persist_order(snapshot(first, OrderStatus.ACCEPTED, qty=D(4), version=5))
    assert (await rig.held(first.order_id))["qty_open"] == 4
    assert (await rig.risk.check_order(limit_buy(account, "16"))).approved


async def test_concurrent_amends_and_new_orders_never_jointly_breach(rig: Rig) -> None:
    # Cap 19,000 = 100 AAPL at the mark. Five orders of 10 rest (50); each is amended up to 18 while 20 new
    # orders of 5 arrive: whatever wins, the held total never exceeds 100.
    account = unique("race")
    await rig.put("ACCOUNT", account, {"max_gross_exposure": "19000"})
    resting = [limit_buy(account, "10") for _ in range(5)]
    for o in resting:
        assert (await rig.risk.check_order(o)).approved
    amends = [
        rig.risk.check_amend(AmendCheck(order=o.model_copy(update={"qty": D(18)}), requested_by="d")) for o in resting
    ]
    news = [rig.risk.check_order(limit_buy(account, "5")) for _ in range(20)]
    await asyncio.gather(*amends, *news)
    [total] = await rig.fetch(
        "SELECT sum(qty_open) AS q FROM risk_reservations WHERE account = %s AND released_at IS NULL", account
    )
    assert 90 <= total["q"] <= 100


# -- one account at a time, never the whole firm ------------------------------------------------------------------


async def test_decisions_for_other_accounts_do_not_wait_for_a_busy_account(rig: Rig) -> None:
    from store.risk import ACCOUNT_LOCK as _ACCOUNT_LOCK

    busy, other = unique("busy"), unique("other")
    async with rig.pool.connection() as conn, conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(%s, hashtext(%s))", (_ACCOUNT_LOCK, busy))
        waiting = asyncio.create_task(rig.risk.check_order(limit_buy(busy, "1")))
        async with asyncio.timeout(5):
            assert (await rig.risk.check_order(limit_buy(other, "1"))).approved
        await asyncio.sleep(0.2)
        assert not waiting.done()  # the busy account's own decision waits for its lock
    async with asyncio.timeout(5):
        assert (await waiting).approved


async def test_the_session_check_uses_the_decisions_own_connection(rig: Rig) -> None:
    # A pool of one connection: a session check that took a second one would wait for ever.
    one = AsyncConnectionPool(
        rig.url, min_size=1, max_size=1, kwargs={"autocommit": True, "row_factory": dict_row}, open=False
    )
    await one.open(wait=True)
    try:
        async with one.connection() as conn:
            await conn.execute(
                "INSERT INTO broker_sessions (broker, session, logged_on, detail) VALUES ('paper', 's', false, 'down')"
                " ON CONFLICT (broker) DO UPDATE SET logged_on = false, heartbeat_at = now()"
            )
        settings = make_settings(rig.url, "127.0.0.1:1")
        risk = RiskActivities(
            pool=one,
            settings=settings,
            instruments=rig.instruments,
            market=rig.market,
            capabilities=capabilities(),
            session_checks={"paper": session_check_for("paper")},
            policy=PolicyStore(settings.risk),
        )
        async with asyncio.timeout(10):
            decision = await risk.check_order(limit_buy(unique("s"), "1"))
        assert codes(decision) == ["BROKER_UNAVAILABLE"] and "not logged on" in decision.reasons[0].message
    finally:
        async with one.connection() as conn:
            await conn.execute("DELETE FROM broker_sessions WHERE broker = 'paper'")
        await one.close()


async def test_a_booking_that_commits_during_the_gather_is_seen_whole(rig: Rig) -> None:
    # The account holds a resting BUY 100 (the cap: 19,000 = 100 at the mark). While a decision reads the
    # account, a booking moves those 100 from the order into the position. Read apart, the position (before)
    # and the orders (after) would miss the 100 and approve another one.
    account = unique("torn")
    await rig.put("ACCOUNT", account, {"max_gross_exposure": "19000"})
    resting = limit_buy(account, "100")
    assert (await rig.risk.check_order(resting)).approved
    async with rig.pool.connection() as booking:
        await booking.execute("BEGIN")
        await booking.execute("LOCK TABLE risk_reservations IN ACCESS EXCLUSIVE MODE")
        deciding = asyncio.create_task(rig.risk.check_order(limit_buy(account, "1")))
        async with asyncio.timeout(10):
            while not await rig.fetch(
                "SELECT 1 FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND wait_event = 'relation'"
                " AND datname = current_database()"
            ):
                await asyncio.sleep(0.02)
        await booking.execute(
            "INSERT INTO positions (account, symbol, qty, avg_price) VALUES (%s, 'AAPL', 100, 180)", (account,)
        )
        await booking.execute(
            "UPDATE risk_reservations SET qty_open = 0, notional = 0, margin = 0, released_at = now()"
            " WHERE order_id = %s",
            (resting.order_id,),
        )
        await booking.execute("COMMIT")
        async with asyncio.timeout(10):
            decision = await deciding
    assert codes(decision) == ["MAX_GROSS_EXPOSURE"], decision.reasons


# -- limits across accounts --------------------------------------------------------------------------------------


async def firm_gross(rig: Rig) -> Decimal:
    [row] = await rig.fetch("SELECT gross FROM risk_counters WHERE scope = 'FIRM'")
    return row["gross"]


async def empty_firm(rig: Rig) -> None:
    """Forget every account's part of the totals (the accounts of earlier tests): the firm starts empty."""
    async with rig.pool.connection() as conn:
        await conn.execute("DELETE FROM risk_contributions")
        await conn.execute("UPDATE risk_counters SET gross = 0, open_notional = 0")


async def test_firm_wide_gross_exposure_is_never_jointly_breached_by_many_accounts(rig: Rig) -> None:
    # Room for exactly ten orders of 10 AAPL (1,900 each at the mark) across the firm; 8 accounts send 5 each.
    await empty_firm(rig)
    room = D(19_000)
    async with global_policy(rig, firm_max_gross_exposure=room):
        accounts = [unique("firm") for _ in range(8)]
        orders = [limit_buy(a, "10") for a in accounts for _ in range(5)]
        decisions = await asyncio.gather(*(rig.risk.check_order(o) for o in orders))
        approved = [d for d in decisions if d.approved]
        assert len(approved) == 10, [codes(d) for d in decisions]
        assert {c for d in decisions if not d.approved for c in codes(d)} == {"FIRM_MAX_GROSS_EXPOSURE"}
        assert await firm_gross(rig) <= room
        refused = next(d for d in decisions if not d.approved)
        assert "firm-wide gross exposure" in refused.reasons[0].message


async def test_firm_wide_open_notional_and_per_broker_open_notional(rig: Rig) -> None:
    await empty_firm(rig)
    async with global_policy(rig, firm_max_open_notional=D(3 * 1800)):
        decisions = await asyncio.gather(*(rig.risk.check_order(limit_buy(unique("n"), "10")) for _ in range(6)))
        assert (
            sorted(codes(d)[0] if codes(d) else "ok" for d in decisions) == ["FIRM_MAX_OPEN_NOTIONAL"] * 3 + ["ok"] * 3
        )
    await empty_firm(rig)
    async with global_policy(rig, brokers={"paper": {"max_open_notional": str(2 * 1800)}}):
        decisions = await asyncio.gather(*(rig.risk.check_order(limit_buy(unique("b"), "10")) for _ in range(5)))
        assert (
            sorted(codes(d)[0] if codes(d) else "ok" for d in decisions)
            == ["BROKER_MAX_OPEN_NOTIONAL"] * 3 + ["ok"] * 2
        )


def bracket_entry(account: str) -> OrderRequest:
    """A bracket's entry (BUY 10 at 180: 1,800) holding its exits: take-profit 10 at 200 (2,000), stop 10 at 170."""
    entry = limit_buy(account, "10")
    exits = [
        make_order(account=account, side="SELL", qty="10", type="LIMIT", price="200.00", reduce_only=True),
        make_order(account=account, side="SELL", qty="10", type="STOP", stop_price="170.00", reduce_only=True),
    ]
    terms = tuple(OrderTerms.model_validate({k: getattr(x, k) for k in OrderTerms.model_fields}) for x in exits)
    return entry.model_copy(update={"list_exits": terms})


async def test_a_bracket_reserves_its_entry_plus_the_larger_exit_not_the_sum(rig: Rig) -> None:
    # Entry 1,800 + larger exit 2,000 = 3,800 (the sum of both exits would make it 5,500).
    await empty_firm(rig)
    async with global_policy(rig, brokers={"paper": {"max_open_notional": "4000"}}):
        entry = bracket_entry(unique("br"))
        decision = await rig.risk.check_order(entry)
        assert decision.approved, decision.reasons
        [row] = await rig.fetch(
            "SELECT open_notional FROM risk_counters WHERE scope = 'BROKER' AND scope_key = 'paper'"
        )
        assert row["open_notional"] == D(3800)
        # The entry's reservation holds it too, and keeps it when a booking follows the entry's open quantity.
        held = "SELECT notional, list_notional FROM risk_reservations WHERE order_id = %s"
        assert [(r["notional"], r["list_notional"]) for r in await rig.fetch(held, entry.order_id)] == [
            (D(3800), D(2000))
        ]
        await rig.store.persist_order(snapshot(entry, OrderStatus.ACCEPTED, qty=D(10), version=3))
        assert [r["notional"] for r in await rig.fetch(held, entry.order_id)] == [D(3800)]
    # 3,800 does not fit under 3,700, though the entry alone (1,800) would: the held exit is reserved with it.
    await empty_firm(rig)
    async with global_policy(rig, brokers={"paper": {"max_open_notional": "3700"}}):
        decision = await rig.risk.check_order(bracket_entry(unique("br")))
        assert codes(decision) == ["BROKER_MAX_OPEN_NOTIONAL"], decision.reasons
        assert (await rig.risk.check_order(limit_buy(unique("br"), "10"))).approved


async def test_an_order_that_adds_nothing_is_not_refused_by_a_full_firm(rig: Rig) -> None:
    account = unique("full")
    long = limit_buy(account, "10")
    assert (await rig.risk.check_order(long)).approved
    await rig.store.persist_order(snapshot(long, OrderStatus.FILLED, qty=D(10), version=5, filled="10"))
    async with rig.pool.connection() as conn:
        await conn.execute(
            "INSERT INTO positions (account, symbol, qty, avg_price) VALUES (%s, 'AAPL', 10, 180)", (account,)
        )
    async with global_policy(rig, firm_max_gross_exposure=D(1), firm_max_open_notional=D(1)):
        sell = make_order(account=account, side="SELL", qty="5", type="LIMIT", price="190.00")
        assert (await rig.risk.check_order(sell)).approved  # reducing: the firm total only shrinks
        assert codes(await rig.risk.check_order(limit_buy(account, "1"))) == [
            "FIRM_MAX_GROSS_EXPOSURE",
            "FIRM_MAX_OPEN_NOTIONAL",
        ]


async def test_symbol_velocity_holds_across_accounts(rig: Rig) -> None:
    # NVDA is traded by no other test here: 25 accounts at once, ten orders a minute.
    async with global_policy(rig, velocity_per_symbol={"max_orders": 10, "window_seconds": 60}):
        orders = [make_order(symbol="NVDA", qty="1", type="LIMIT", price="118.00") for _ in range(25)]
        decisions = await asyncio.gather(*(rig.risk.check_order(o) for o in orders))
        approved = [d for d in decisions if d.approved]
        assert len(approved) == 10, [codes(d) for d in decisions]
        assert {c for d in decisions if not d.approved for c in codes(d)} == {"VELOCITY_SYMBOL"}


async def test_velocity_window_slides_by_tenths_and_never_undercounts(rig: Rig) -> None:
    key = unique("SYM")

    async def take(at_ms: int, approved: bool = True) -> list[str]:
        payload = {
            "account": "x",
            "approved": approved,
            "at_ms": at_ms,
            "velocity": [{"scope": "SYMBOL", "key": key, "window_ms": 1000, "max": 3, "code": "VELOCITY_SYMBOL"}],
        }
        async with rig.pool.connection() as conn:
            cur = await conn.execute("SELECT risk_take(%s, true) AS b", (Jsonb(payload),))
            return [b["code"] for b in (await cur.fetchone())["b"]]

    t = 1_000_000_000_000
    assert [await take(t + ms) for ms in (0, 100, 200)] == [[], [], []]
    assert await take(t + 300) == ["VELOCITY_SYMBOL"]  # three in the last second (the refused one counts too)
    # (t+150, t+1150] holds 200 and 300; the bucket of 100 ([100, 200)) overlaps it and still counts: the
    # count errs by at most one tenth of the window, on the refusing side.
    assert await take(t + 1150) == ["VELOCITY_SYMBOL"]
    assert await take(t + 1350) == []  # 300 (its bucket) and 1150: two


# -- the check is total; never adopt a decision made for other terms ------------------------------------------------


async def test_absurd_quantities_are_denied_not_raised(rig: Rig) -> None:
    account = unique("huge")
    decision = await rig.risk.check_order(limit_buy(account, "1E+24"))
    assert codes(decision) == ["VALUE_OUT_OF_RANGE"]
    ok = limit_buy(account, "10")
    assert (await rig.risk.check_order(ok)).approved
    amend = await rig.risk.check_amend(AmendCheck(order=ok.model_copy(update={"qty": D("1E+28")}), requested_by="x"))
    assert codes(amend) == ["VALUE_OUT_OF_RANGE"]
    assert (await rig.held(ok.order_id))["qty_open"] == 10


async def test_an_arithmetic_error_in_a_custom_check_is_a_denial(rig: Rig) -> None:
    def broken(order: Any, limits: Any, state: Any) -> Any:
        raise InvalidOperation("[<class 'decimal.InvalidOperation'>]")

    settings = make_settings(rig.url, "127.0.0.1:1")
    risk = RiskActivities(
        pool=rig.pool,
        settings=settings,
        instruments=rig.instruments,
        market=rig.market,
        capabilities=capabilities(),
        check=broken,
        policy=PolicyStore(settings.risk),
    )
    order = limit_buy(unique("broken"), "1")
    decision = await risk.check_order(order)
    assert codes(decision) == ["RISK_CHECK_FAILED"]
    assert await rig.fetch("SELECT 1 FROM risk_reservations WHERE order_id = %s", order.order_id) == []


async def test_a_stored_decision_for_other_terms_is_never_adopted(rig: Rig) -> None:
    first = limit_buy(unique("key"), "1")
    assert (await rig.risk.check_order(first)).approved
    # The retry of the same request gets the same decision back.
    assert (await rig.risk.check_order(first)).approved
    # The same order id (idempotency key) with other terms: a refusal that takes nothing.
    other = first.model_copy(update={"qty": D(5000), "request_hash": "different", "submission_id": "s2"})
    decision = await rig.risk.check_order(other)
    assert codes(decision) == ["IDEMPOTENCY_CONFLICT"] and decision.request_hash == first.request_hash
    row = await rig.held(first.order_id)
    assert row["qty_open"] == 1
    [stored] = await rig.fetch("SELECT qty, request_hash FROM orders WHERE order_id = %s", first.order_id)
    assert (stored["qty"], stored["request_hash"]) == (1, first.request_hash)


async def test_a_run_for_other_terms_never_books_over_the_orders_row(rig: Rig) -> None:
    # A denied order (row version 2) and a later run under the same order id for other terms, refused
    # IDEMPOTENCY_CONFLICT: its DENIED booking (also version 2) must not change the row, its timeline or its
    # reservation, and the attempt is recorded as a break.
    first = limit_buy(unique("key"), "1")
    assert (await rig.risk.check_order(first)).approved
    await rig.store.persist_order(
        snapshot(first, OrderStatus.ACCEPTED, qty=D(1), version=2).model_copy(
            update={"events": [_event(1, "SUBMIT", OrderStatus.SUBMITTED), _event(2, "ACCEPT", OrderStatus.ACCEPTED)]}
        )
    )
    other = first.model_copy(update={"qty": D(5000), "request_hash": "different", "submission_id": "s2"})
    assert codes(await rig.risk.check_order(other)) == ["IDEMPOTENCY_CONFLICT"]
    for version in (2, 3):  # as new as the row, and newer
        await rig.store.persist_order(
            snapshot(other, OrderStatus.DENIED, qty=D(5000), version=version).model_copy(
                update={"events": [_event(1, "DENY", OrderStatus.DENIED)], "final": True}
            )
        )
    [row] = await rig.fetch("SELECT qty, status, request_hash, version FROM orders WHERE order_id = %s", first.order_id)
    assert (row["qty"], row["status"], row["request_hash"], row["version"]) == (1, "ACCEPTED", first.request_hash, 2)
    events = await rig.fetch("SELECT seq, kind FROM order_events WHERE order_id = %s ORDER BY seq", first.order_id)
    assert [(e["seq"], e["kind"]) for e in events] == [(1, "SUBMIT"), (2, "ACCEPT")]
    held = await rig.held(first.order_id)
    assert held["qty_open"] == 1 and held["released_at"] is None
    breaks = await rig.fetch("SELECT kind, detail FROM reconciliation_breaks WHERE order_id = %s", first.order_id)
    [refused] = breaks  # once, however often the run books
    assert refused["kind"] == "BOOKING_FOR_OTHER_TERMS"
    assert "request different" in refused["detail"] and first.request_hash in refused["detail"]


@pytest.mark.parametrize("decision_booked", [False, True], ids=["row-without-decision", "row-with-decision"])
async def test_a_risk_attempt_that_commits_after_the_orders_final_booking_reserves_nothing(
    rig: Rig, monkeypatch: pytest.MonkeyPatch, decision_booked: bool
) -> None:
    # A slow attempt of check_order: it has read everything, then the workflow gives up on it (bounded
    # retries), denies the order RISK_CHECK_FAILED and writes the final booking (which stores that decision;
    # the row of an older worker's booking has none); then the attempt records.
    order = limit_buy(unique("slow"), "10")
    gathered, release = asyncio.Event(), asyncio.Event()
    record = rig.risk._decide_and_record

    async def slow(*args: Any, **kwargs: Any) -> RiskDecision:
        gathered.set()
        await release.wait()
        return await record(*args, **kwargs)

    monkeypatch.setattr(rig.risk, "_decide_and_record", slow)
    attempt = asyncio.create_task(rig.risk.check_order(order))
    await asyncio.wait_for(gathered.wait(), 10)
    final = snapshot(order, OrderStatus.DENIED, qty=D(10), version=2).model_copy(
        update={"events": [_event(1, "RECEIVED", OrderStatus.RECEIVED), _event(2, "DENY", OrderStatus.DENIED)]}
    )
    denial = RiskDecision(
        order_id=order.order_id,
        approved=False,
        reasons=[RiskReason(code="RISK_CHECK_FAILED", message="the risk check failed after 5 attempt(s)")],
        decided_at=utcnow(),
        request_hash=order.request_hash,
    )
    await rig.store.persist_order(
        final.model_copy(update={"final": True, "decision": denial if decision_booked else None})
    )
    release.set()
    late = await asyncio.wait_for(attempt, 10)

    assert not late.approved and codes(late) == ["IDEMPOTENCY_CONFLICT"], late.reasons
    assert "closed (DENIED)" in late.reasons[0].message
    assert await rig.fetch("SELECT 1 FROM risk_reservations WHERE order_id = %s", order.order_id) == []
    [row] = await rig.fetch("SELECT status, risk_decision, version FROM orders WHERE order_id = %s", order.order_id)
    stored = denial.model_dump(mode="json") if decision_booked else None
    assert (row["status"], row["risk_decision"], row["version"]) == ("DENIED", stored, 2)
    # Nor does a later retry (or a new run under the same key) take anything for the closed order: it gets
    # the stored denial, or (no decision stored) a refusal.
    again = await rig.risk.check_order(order)
    assert codes(again) == (["RISK_CHECK_FAILED"] if decision_booked else ["IDEMPOTENCY_CONFLICT"])
    assert await rig.fetch("SELECT 1 FROM risk_reservations WHERE order_id = %s", order.order_id) == []
    other = order.model_copy(update={"request_hash": "other-terms", "qty": D(3), "submission_id": "s3"})
    conflict = await rig.risk.check_order(other)
    assert codes(conflict) == ["IDEMPOTENCY_CONFLICT"] and conflict.request_hash == order.request_hash


def _event(seq: int, kind: str, status: OrderStatus) -> OrderEvent:
    return OrderEvent(seq=seq, at=utcnow(), kind=kind, status=status)


async def test_a_denied_order_is_no_duplicate(rig: Rig) -> None:
    client = unique("dup")
    async with global_policy(rig, duplicate_window_seconds=60):
        await rig.put("ACCOUNT", client, {"max_gross_exposure": "1"})
        refused = make_order(client_id=client, qty="3", type="LIMIT", price="180.00")
        assert not (await rig.risk.check_order(refused)).approved
        await rig.put("ACCOUNT", client, None)
        again = make_order(client_id=client, qty="3", type="LIMIT", price="180.00")
        assert (await rig.risk.check_order(again)).approved
        third = make_order(client_id=client, qty="3", type="LIMIT", price="180.00")
        assert codes(await rig.risk.check_order(third)) == ["DUPLICATE_ORDER"]


async def test_orders_differing_only_in_their_stop_price_or_type_are_no_duplicates(rig: Rig) -> None:
    # Laddered stops of one size are distinct orders; a stop and a market order of one size too. The same stop
    # twice is a duplicate. (The gather compares symbol, side, quantity and limit price; the rest is confirmed.)
    client = unique("dup")
    async with global_policy(rig, duplicate_window_seconds=60):
        stop = {"client_id": client, "side": "BUY", "qty": "4", "type": "STOP"}
        assert (await rig.risk.check_order(make_order(**stop, stop_price="200.00"))).approved
        assert (await rig.risk.check_order(make_order(**stop, stop_price="201.00"))).approved
        market = make_order(client_id=client, side="BUY", qty="4")
        assert (await rig.risk.check_order(market)).approved
        again = await rig.risk.check_order(make_order(**stop, stop_price="201.00"))
        assert codes(again) == ["DUPLICATE_ORDER"], again.reasons
        assert "type and prices as order" in again.reasons[0].message


async def test_no_fx_rate_is_a_denial(rig: Rig) -> None:
    # No quote of USDJPY (nor JPYUSD) in the store: no rate from JPY to USD, so a JPY-quoted order is refused,
    # never converted at 1. (Here FX limit orders may go at their own price without a quote, so the missing
    # reference price does not refuse it first.)
    settings = make_settings(
        rig.url,
        "127.0.0.1:1",
        market_data=MarketDataSettings(
            max_age_seconds=24 * 3600,
            classes={InstrumentClass.FX: MarketDataClassSettings(own_price_without_quote=True)},
        ),
    )
    risk = RiskActivities(
        pool=rig.pool,
        settings=settings,
        instruments=rig.instruments,
        market=MarketData(settings.market_data, rig.instruments),
        capabilities=capabilities(),
        policy=PolicyStore(settings.risk),
    )
    async with rig.pool.connection() as conn:
        await conn.execute("DELETE FROM market_quotes WHERE symbol IN ('USDJPY', 'JPYUSD')")
    try:
        usdjpy = make_order(symbol="USDJPY", qty="1000", type="LIMIT", price="150.000")
        assert codes(await risk.check_order(usdjpy)) == ["NO_FX_RATE"]
    finally:
        await publish_quotes(rig.pool, rig.instruments, "USDJPY")
    # With the store's rate (1 / USDJPY) the same order is valued in USD: 1,000.
    decision = await rig.risk.check_order(make_order(symbol="USDJPY", qty="1000", type="LIMIT", price="150.000"))
    assert decision.approved and decision.notional == D(1000)


async def test_room_freed_by_another_accounts_cancel_returns_to_the_firm(rig: Rig) -> None:
    # Account A fills the firm's room with a resting order, then the order is canceled (booked by the
    # workflow, not by a decision of A). B's order finds the total full, A's part is recomputed, and it fits.
    await empty_firm(rig)
    room = D(1900)
    async with global_policy(rig, firm_max_gross_exposure=room):
        a, b = unique("quiet"), unique("busy")
        resting = limit_buy(a, "10")
        assert (await rig.risk.check_order(resting)).approved
        assert codes(await rig.risk.check_order(limit_buy(b, "10"))) == ["FIRM_MAX_GROSS_EXPOSURE"]
        await rig.store.persist_order(snapshot(resting, OrderStatus.CANCELED, qty=D(10), version=4))
        assert (await rig.risk.check_order(limit_buy(b, "10"))).approved
        [part] = await rig.fetch(
            "SELECT gross, open_notional FROM risk_contributions WHERE account = %s AND scope = 'FIRM'", a
        )
        assert (part["gross"], part["open_notional"]) == (0, 0)
        assert await firm_gross(rig) <= room


async def test_a_full_total_recomputes_another_accounts_positions_at_the_quote_store_marks(rig: Rig) -> None:
    # Account A holds 10 MSFT bought at 1,000 (the store's quote: 420) and rests a buy of 10 AAPL: its part of
    # the firm's gross is 4,200 + 1,900 = 6,100, the whole room. The resting order is canceled; B's order of
    # 10 AAPL finds the total full, A's part is recomputed (its position marked from the quote store in the
    # same statement as its rows: 4,200; at the average price it would be 10,000), and B fits exactly.
    await empty_firm(rig)
    room = D(6100)
    async with global_policy(rig, firm_max_gross_exposure=room):
        a, b = unique("held"), unique("next")
        async with rig.pool.connection() as conn:
            await conn.execute(
                "INSERT INTO positions (account, symbol, qty, avg_price) VALUES (%s, 'MSFT', 10, 1000)", (a,)
            )
        resting = limit_buy(a, "10")
        assert (await rig.risk.check_order(resting)).approved
        assert await firm_gross(rig) == room
        await rig.store.persist_order(snapshot(resting, OrderStatus.CANCELED, qty=D(10), version=4))
        assert (await rig.risk.check_order(limit_buy(b, "10"))).approved
        [part] = await rig.fetch("SELECT gross FROM risk_contributions WHERE account = %s AND scope = 'FIRM'", a)
        assert part["gross"] == D(4200)
        assert await firm_gross(rig) == room


async def test_a_decision_waits_for_postgres_twice(rig: Rig, monkeypatch: pytest.MonkeyPatch) -> None:
    # The REST answer waits for the decision: one statement reads everything (risk_gather, with the quotes), one
    # records it (risk_record), each its own transaction. A guard against a read or a write creeping in beside them.
    account = unique("trips")
    assert (await rig.risk.check_order(limit_buy(account, "1"))).approved  # the policy is cached from here on
    tracing = TracingPool(rig.pool)
    monkeypatch.setattr(rig.risk, "_pool", tracing)
    assert (await rig.risk.check_order(limit_buy(account, "2"))).approved
    [trace] = tracing.traces
    assert trace.round_trips == 2, trace.statements
    gather, record = trace.statements
    assert "risk_gather(" in gather and "risk_record(" in record


async def test_the_benchmarks_order_mix_decided_at_once_never_deadlocks_and_every_decision_is_recorded(
    rig: Rig,
) -> None:
    # Issue 18's stall at concurrency 200: the benchmark's mix (8 desks, 4 symbols, sides alternating per desk,
    # market orders) decided all at once through one pool. The decision takes per-account locks and the firm's
    # rows (totals, velocity, the audit chain's head) in every transaction; taken in different orders, two
    # transactions would deadlock, and Postgres tells only after deadlock_timeout (1 s), failing one of them.
    await empty_firm(rig)
    run = unique("mix")
    orders = [
        make_order(
            account=f"{run}-d{n % 8}",
            client_id=f"{run}-d{n % 8}",
            symbol=("AAPL", "MSFT", "NVDA", "SPY")[n % 4],
            side="BUY" if (n // 8) % 2 == 0 else "SELL",
            qty=str(1 + n % 97),
            time_in_force="DAY",
        )
        for n in range(96)
    ]
    outcomes = await asyncio.gather(*(rig.risk.check_order(o) for o in orders), return_exceptions=True)
    failures = [repr(o) for o in outcomes if isinstance(o, BaseException)]
    assert failures == []
    rows = await rig.fetch(
        "SELECT order_id, risk_decision FROM orders WHERE order_id = ANY(%s)", [o.order_id for o in orders]
    )
    assert len(rows) == len(orders)
    assert all(r["risk_decision"] is not None for r in rows)
