"""``store/orders.py``: one row shape, one writer (``order_write()``), and the read model's queries."""

from __future__ import annotations

import psycopg
import pytest

from core.auth import ALL, Scope
from core.domain import TERMS, OrderStatus, PegType
from store import Pool
from store.orders import (
    ORDER_COLUMNS,
    TermsColumns,
    get_order,
    list_orders,
    lock_order,
    order_ids,
    received_row,
    recorded,
    write_order,
)
from tests.harness import make_order, unique
from tests.store.kit import D, booked, decided, decision

pytestmark = pytest.mark.asyncio


async def test_the_row_shape_is_every_column_of_the_orders_table(db: Pool) -> None:
    async with db.connection() as conn:
        cur = await conn.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_name = 'orders' ORDER BY ordinal_position"
        )
        columns = [r["column_name"] for r in await cur.fetchall()]
    assert sorted(ORDER_COLUMNS) == sorted(columns)


async def test_the_terms_columns_are_the_terms_of_an_order() -> None:
    # core.domain.OrderTerms declares the terms; the table holds each under its name, no more and no fewer.
    assert tuple(TermsColumns.__annotations__) == TERMS


async def test_a_pegged_orders_peg_is_in_its_row_from_the_decision_on(db: Pool) -> None:
    order = make_order(type="PEGGED", peg_type=PegType.MIDPOINT, peg_offset=D("-0.01"))
    async with db.connection() as conn:
        await write_order(conn, received_row(order, decision(order)), booking=False)
        await write_order(conn, booked(order, version=2, status=OrderStatus.ACCEPTED), booking=True)
        stored = await get_order(conn, order.order_id)
    assert stored is not None and stored["status"] == "ACCEPTED"
    assert (stored["type"], stored["peg_type"], stored["peg_offset"]) == ("PEGGED", "MIDPOINT", D("-0.01"))


async def test_order_write_is_the_only_function_that_inserts_an_order_row(db: Pool) -> None:
    # The decision (risk_record) and the booking both go through order_write(): no second column list.
    async with db.connection() as conn:
        cur = await conn.execute(
            "SELECT p.proname FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace"
            " WHERE n.nspname = 'public' AND p.prosrc ILIKE '%%INSERT INTO orders%%'"
        )
        writers = {r["proname"] for r in await cur.fetchall()}
        cur = await conn.execute("SELECT prosrc FROM pg_proc WHERE proname = 'risk_record'")
        row = await cur.fetchone()
    assert writers == {"order_write"}
    assert row is not None and "order_write(o, false)" in row["prosrc"]


async def test_a_row_missing_a_column_is_refused_not_defaulted(db: Pool) -> None:
    order = make_order()
    row = dict(received_row(order, decision(order)))
    del row["flags"]
    async with db.connection() as conn:
        with pytest.raises(psycopg.errors.NotNullViolation):
            await write_order(conn, row, booking=False)  # type: ignore[arg-type]


async def test_the_decision_writes_a_received_row_with_every_term_and_never_replaces_a_decision(db: Pool) -> None:
    order = make_order(type="LIMIT", price="101.5", reduce_only=True)
    async with db.connection() as conn:
        await write_order(conn, received_row(order, decision(order)), booking=False)
        other = decision(order, approved=False, reason="later attempt")
        await write_order(conn, received_row(order, other), booking=False)
        stored = await get_order(conn, order.order_id)
        record = await recorded(conn, order.order_id)
        cur = await conn.execute(
            "SELECT reduce_only, version, flags FROM orders WHERE order_id = %s", (order.order_id,)
        )
        extra = await cur.fetchone()
    assert stored is not None and record is not None and extra is not None
    assert stored["status"] == "RECEIVED" and stored["price"] == D("101.5") and stored["filled_qty"] == 0
    assert stored["created_at"] == order.received_at and stored["client_order_id"] == order.client_order_id
    assert record["risk_decision"] is not None and record["risk_decision"]["approved"] is True
    assert record["request_hash"] == order.request_hash and record["account"] == order.account
    assert extra == {"reduce_only": True, "version": 0, "flags": []}


async def test_a_booking_moves_the_row_forward_only_and_only_for_its_own_terms(db: Pool) -> None:
    async with db.connection() as conn:
        order = await decided(conn)
        await write_order(
            conn, booked(order, version=3, status=OrderStatus.PARTIALLY_FILLED, filled_qty=D(4)), booking=True
        )
        await write_order(conn, booked(order, version=2, status=OrderStatus.ACCEPTED), booking=True)  # stale
        foreign = booked(order, version=9, status=OrderStatus.FILLED, request_hash="someone-else")
        await write_order(conn, foreign, booking=True)  # other terms
        stored = await get_order(conn, order.order_id)
        record = await recorded(conn, order.order_id)
    assert stored is not None and record is not None
    assert (stored["status"], stored["filled_qty"]) == ("PARTIALLY_FILLED", D(4))
    # A booking without a decision keeps the one the risk check stored.
    assert record["risk_decision"] is not None and record["request_hash"] == order.request_hash


async def test_a_booking_of_an_order_without_a_row_keeps_its_terms(db: Pool) -> None:
    # The workflow's own denial (RISK_CHECK_FAILED) is booked before any decision wrote the row.
    order = make_order(reduce_only=True)
    async with db.connection() as conn:
        await write_order(conn, booked(order, version=2, status=OrderStatus.DENIED), booking=True)
        cur = await conn.execute("SELECT status, reduce_only FROM orders WHERE order_id = %s", (order.order_id,))
        row = await cur.fetchone()
    assert row == {"status": "DENIED", "reduce_only": True}


async def test_lock_order_says_whose_the_row_is(db: Pool) -> None:
    async with db.connection() as conn:
        order = await decided(conn)
        async with conn.transaction():
            owner = await lock_order(conn, order.order_id)
            missing = await lock_order(conn, "EX" + "A" * 16)
    assert owner == {"request_hash": order.request_hash, "status": "RECEIVED"} and missing is None


async def test_listing_filters_by_scope_and_terms_newest_first_with_the_total(db: Pool) -> None:
    desk = unique("desk")
    async with db.connection() as conn:
        mine = [await decided(conn, client_id=desk, account=f"{desk}-a", symbol=s) for s in ("AAPL", "MSFT", "AAPL")]
        await decided(conn, client_id=unique("other"))
        scope = Scope(clients=[desk], accounts=ALL, brokers=ALL)
        total, page = await list_orders(conn, scope=scope, limit=2)
        total_aapl, aapl = await list_orders(conn, scope=scope, symbol="AAPL", limit=10)
        _, skipped = await list_orders(conn, scope=scope, limit=10, offset=2)
        none = await list_orders(conn, scope=Scope(clients=[], accounts=ALL, brokers=ALL), limit=10)
        done = await list_orders(conn, scope=scope, statuses=["FILLED"], limit=10)
    assert total == 3 and [r["order_id"] for r in page] == [mine[2].order_id, mine[1].order_id]
    assert total_aapl == 2 and {r["order_id"] for r in aapl} == {mine[0].order_id, mine[2].order_id}
    assert [r["order_id"] for r in skipped] == [mine[0].order_id]
    assert none == (0, []) and done == (0, [])


async def test_order_ids_of_working_orders_in_a_scope(db: Pool) -> None:
    desk = unique("desk")
    async with db.connection() as conn:
        a = await decided(conn, client_id=desk, symbol="AAPL")
        b = await decided(conn, client_id=desk, symbol="MSFT")
        await write_order(conn, booked(b, version=5, status=OrderStatus.FILLED), booking=True)
        scope = Scope(clients=[desk], accounts=ALL, brokers=ALL)
        working = await order_ids(conn, scope=scope, statuses=["RECEIVED", "ACCEPTED"])
        of_symbol = await order_ids(conn, scope=scope, statuses=["RECEIVED", "FILLED"], symbol="MSFT")
    assert working == [a.order_id] and of_symbol == [b.order_id]
