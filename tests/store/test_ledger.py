"""``store/ledger.py``: a fill is booked once; positions and cash move only with it."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from core.auth import ALL, Scope
from core.db import pipelined_transaction
from core.domain import Fill, OrderSide
from store import Pool
from store.ledger import book_fill, cash, fill_booked, fills_of, positions, send_fills
from tests.harness import unique
from tests.pgtrace import traced
from tests.store.kit import D, decided

pytestmark = pytest.mark.asyncio


def fill(order_id: str, account: str, exec_id: str, side: OrderSide, qty: str, price: str) -> Fill:
    return Fill(
        exec_id=exec_id,
        order_id=order_id,
        broker="paper",
        account=account,
        symbol="AAPL",
        side=side,
        qty=D(qty),
        price=D(price),
        fee=D("1"),
        filled_at=datetime.now(UTC),
    )


async def test_a_fill_is_booked_once_and_moves_position_and_cash(db: Pool) -> None:
    account = unique("acct")
    async with db.connection() as conn:
        order = await decided(conn, account=account)
        buy = fill(order.order_id, account, "e1", OrderSide.BUY, "10", "100")
        assert await book_fill(conn, buy, currency="USD") is True
        assert await book_fill(conn, buy, currency="USD") is False  # a retried booking
        await book_fill(conn, fill(order.order_id, account, "e2\x00", OrderSide.SELL, "4", "110"), currency="USD")
        scope = Scope(clients=ALL, accounts=[account], brokers=ALL)
        [position] = await positions(conn, scope=scope)
        [balance] = await cash(conn, scope=scope, account=account)
        order_fills = await fills_of(conn, order.order_id)
        assert await fill_booked(conn, broker="paper", exec_id="e2\x00", order_id=order.order_id)
        assert not await fill_booked(conn, broker="paper", exec_id="e3", order_id=order.order_id)
        assert await positions(conn, scope=Scope(clients=ALL, accounts=[], brokers=ALL)) == []
    assert (position["qty"], position["avg_price"], position["realized_pnl"]) == (D(6), D(100), D(40))
    assert balance["balance"] == D(-1000) - 1 + D(440) - 1
    assert [f["exec_id"] for f in order_fills] == ["e1", "e2\u2400"]


async def test_fills_sent_together_are_booked_in_order_in_one_round_trip(db: Pool) -> None:
    # A booking with several fills sends them all before reading any answer: a fill repeated in the same call
    # is booked once, and two fills of one position move it one after the other (as booked one by one).
    account = unique("acct")
    async with db.connection() as conn:
        order = await decided(conn, account=account)
        buy = fill(order.order_id, account, unique("e"), OrderSide.BUY, "10", "100")
        sell = fill(order.order_id, account, unique("e"), OrderSide.SELL, "4", "110")
        async with traced(conn) as trace, pipelined_transaction(conn):
            pending = await send_fills(conn, [(buy, "USD"), (buy, "USD"), (sell, "USD")])
            assert await pending.settle() == [True, False, True]
        scope = Scope(clients=ALL, accounts=[account], brokers=ALL)
        [position] = await positions(conn, scope=scope)
        [balance] = await cash(conn, scope=scope, account=account)
    assert (position["qty"], position["avg_price"], position["realized_pnl"]) == (D(6), D(100), D(40))
    assert balance["balance"] == D(-1000) - 1 + D(440) - 1
    assert trace.round_trips == 2  # the answers, then the updates with the commit


async def test_a_repeated_fill_alone_creates_no_position(db: Pool) -> None:
    account = unique("acct")
    async with db.connection() as conn:
        order = await decided(conn, account=account)
        exec_id = unique("e")
        buy = fill(order.order_id, account, exec_id, OrderSide.BUY, "10", "100")
        assert await book_fill(conn, buy, currency="USD") is True
        other = fill(order.order_id, unique("other"), exec_id, OrderSide.BUY, "10", "100")  # same execution id
        assert await book_fill(conn, other, currency="USD") is False
        assert await positions(conn, scope=Scope(clients=ALL, accounts=[other.account], brokers=ALL)) == []
