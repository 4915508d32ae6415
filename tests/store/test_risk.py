"""``store/risk.py``: the decision's statements, reservations, reject streaks and trading states."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from core.audit import audit_entry
from core.auth import ALL, Scope
from core.domain import OrderRequest, OrderStatus
from store import Conn, Pool, risk
from store.orders import get_order, received_row, recorded, write_order
from tests.harness import make_order, unique
from tests.store.kit import D, booked, decision

pytestmark = pytest.mark.asyncio


def _reserve(order: OrderRequest, qty: str = "10", price: str = "100") -> dict[str, Any]:
    return {
        "amend": False,
        "order_id": order.order_id,
        "account": order.account,
        "client_id": order.client_id,
        "symbol": order.symbol,
        "side": order.side.value,
        "qty": qty,
        "price": price,
        "rate": "1",
        "leverage": "2",
        "broker": order.broker,
        "version": None,
    }


async def _gather(
    conn: Conn,
    order: OrderRequest,
    at: datetime,
    *,
    client_from: datetime,
    dup_from: datetime | None,
    price: Decimal | None,
) -> list[risk.GatherRow]:
    """``risk.gather`` of a new ``order`` at ``at``, priced with its own symbol's quotes."""
    return await risk.gather(
        conn,
        account=order.account,
        client=order.client_id,
        order_id=order.order_id,
        symbol=order.symbol,
        broker=order.broker,
        day=at.date(),
        new_order=True,
        at=at,
        client_from=client_from,
        dup_from=dup_from,
        side=order.side.value,
        qty=order.qty,
        price=price,
        quote_symbols=[order.symbol],
    )


async def _record(conn: Conn, order: OrderRequest) -> None:
    await risk.record(
        conn,
        {
            "account": order.account,
            "client": order.client_id,
            "order": received_row(order, decision(order)),
            "reserve": _reserve(order),
            "audit": audit_entry(actor="test", action="RISK_APPROVED", subject=order.order_id),
        },
    )


async def test_record_writes_the_order_row_through_the_one_writer_and_the_reservation(db: Pool) -> None:
    order = make_order(type="LIMIT", price="100", reduce_only=True)
    async with db.connection() as conn:
        await _record(conn, order)
        row = await get_order(conn, order.order_id)
        record = await recorded(conn, order.order_id)
        [held] = await risk.reservations(conn, scope=Scope.everything(), account=order.account, limit=10)
        cur = await conn.execute("SELECT reduce_only FROM orders WHERE order_id = %s", (order.order_id,))
        reduce_only = await cur.fetchone()
    assert row is not None and row["status"] == "RECEIVED" and row["price"] == D(100)
    assert record is not None and record["risk_decision"] is not None and reduce_only == {"reduce_only": True}
    assert (held["qty_open"], held["notional"], held["margin"]) == (D(10), D(1000), D(500))


async def test_record_refuses_an_order_its_workflow_has_already_booked(db: Pool) -> None:
    order = make_order()
    async with db.connection() as conn:
        await write_order(conn, booked(order, version=3, status=OrderStatus.DENIED), booking=True)
        with pytest.raises(Exception, match="exodus-risk-closed"):
            await _record(conn, order)
        assert await risk.reservations(conn, scope=Scope.everything(), account=order.account, limit=10) == []


async def test_gather_reads_the_policy_version_the_stored_decision_and_the_account_under_its_locks(db: Pool) -> None:
    order = make_order()
    async with db.connection() as conn:
        await _record(conn, order)
        at = datetime.now(UTC)
        rows = await _gather(conn, order, at, client_from=at - timedelta(seconds=60), dup_from=None, price=order.price)
        account_rows = await risk.account_rows(conn, account=order.account, quote_symbols=[])
    kinds = {r["k"] for r in rows}
    assert {"V", "O", "C", "N", "S"} <= kinds
    [stored] = [r for r in rows if r["k"] == "O"]
    assert stored["symbol"] == order.request_hash and stored["j"]["approved"] is True
    assert [(r["k"], r["qty"]) for r in account_rows] == [("R", D(10))]


async def test_gather_prices_with_the_quotes_of_its_symbols_and_positions_planned_once_per_connection(
    db: Pool,
) -> None:
    order = make_order(symbol="GTHR1")
    at = datetime.now(UTC)
    async with db.connection() as conn:
        await conn.execute(
            "INSERT INTO positions (account, symbol, qty, avg_price) VALUES (%s, 'GTHR2', 5, 10)", (order.account,)
        )
        await conn.execute(
            "INSERT INTO market_quotes (source, symbol, bid, ask, quoted_at, received_at)"
            " SELECT 'paper', s, 1, 2, %s, %s FROM unnest(ARRAY['GTHR1', 'GTHR2', 'GTHR3']) AS s",
            (at, at),
        )
        rows = await _gather(
            conn, order, at, client_from=at - timedelta(seconds=1), dup_from=at - timedelta(seconds=1), price=None
        )
        # Migration 0042: the statement (risk_gather with the quotes' symbols) keeps one plan per connection,
        # however the plan cache would weigh a custom plan for this order's arguments.
        cur = await conn.execute(
            "SELECT proconfig FROM pg_proc WHERE proname = 'risk_gather' AND pronargs = 14 AND prorettype <> 0"
        )
        [config] = await cur.fetchall()
    quotes = sorted((r["symbol"], r["broker"], r["quoted_at"]) for r in rows if r["k"] == "Q")
    assert quotes == [("GTHR1", "paper", at), ("GTHR2", "paper", at)]
    assert [(r["k"], r["symbol"], r["qty"]) for r in rows if r["k"] == "P"] == [("P", "GTHR2", D(5))]
    assert all(r["quoted_at"] is None for r in rows if r["k"] != "Q")
    assert config["proconfig"] == ["plan_cache_mode=force_generic_plan"]


async def test_a_reservation_follows_its_order_then_is_released(db: Pool) -> None:
    order = make_order()
    async with db.connection() as conn:
        await _record(conn, order)
        await write_order(conn, booked(order, version=2, status=OrderStatus.PARTIALLY_FILLED), booking=True)
        await risk.follow_reservation(conn, order_id=order.order_id, open_qty=D(4), price=D(110), version=2)
        await risk.follow_reservation(conn, order_id=order.order_id, open_qty=D(1), price=None, version=1)  # stale
        [held] = await risk.reservations(conn, scope=Scope.everything(), account=order.account, limit=10)
        [total] = await risk.reservation_totals(conn, scope=Scope.everything(), account=order.account)
        await risk.release_reservation(conn, order.order_id)
        assert await risk.reservations(conn, scope=Scope.everything(), account=order.account, limit=10) == []
        [released] = await risk.reservations(
            conn, scope=Scope.everything(), account=order.account, include_released=True, limit=10
        )
        hidden = await risk.reservations(
            conn, scope=Scope(clients=ALL, accounts=[], brokers=ALL), include_released=True, limit=10
        )
    assert (held["qty_open"], held["price"], held["notional"]) == (D(4), D(110), D(440))
    assert total == {"account": order.account, "notional": D(440), "margin": D(220), "orders": 1}
    assert released["released_at"] is not None and released["qty_open"] == 0 and hidden == []


async def test_the_reject_streak_counts_until_an_acceptance_resets_it(db: Pool) -> None:
    key = unique("acct")
    async with db.connection() as conn:
        assert [await risk.count_rejection(conn, scope="ACCOUNT", key=key) for _ in range(3)] == [1, 2, 3]
        await risk.reset_reject_streak(conn, scope="ACCOUNT", key=key)
        assert await risk.count_rejection(conn, scope="ACCOUNT", key=key) == 1


async def test_trading_states_are_set_locked_and_listed(db: Pool) -> None:
    key = unique("acct")
    async with db.connection() as conn:
        async with conn.transaction():
            assert await risk.lock_trading_state(conn, scope="ACCOUNT", key=key) is None
            row = await risk.set_trading_state(
                conn, scope="ACCOUNT", key=key, state="HALTED", reason="test", actor="ops"
            )
        await risk.set_trading_state(conn, scope="ACCOUNT", key=key, state="REDUCING", reason="better", actor="risk")
        async with conn.transaction():
            assert await risk.lock_trading_state(conn, scope="ACCOUNT", key=key) == "REDUCING"
        states = await risk.trading_states(conn)
    assert (row["state"], row["updated_by"]) == ("HALTED", "ops")
    assert ("GLOBAL", "", "ACTIVE") in {(s["scope"], s["scope_key"], s["state"]) for s in states}
    assert [s["reason"] for s in states if s["scope_key"] == key] == ["better"]


async def test_an_account_lock_is_taken_only_if_free(db: Pool) -> None:
    account = unique("acct")
    async with db.connection() as first, db.connection() as second:
        async with first.transaction():
            assert await risk.try_lock_account(first, account) is True
            async with second.transaction():
                assert await risk.try_lock_account(second, account) is False
        async with second.transaction():
            assert await risk.try_lock_account(second, account) is True
