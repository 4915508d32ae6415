"""``store/ledger.py``: a fill is booked once; positions and cash move only with it."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from core.auth import ALL, Scope
from core.domain import Fill, OrderSide
from store import Pool
from store.ledger import book_fill, cash, fill_booked, fills_of, positions
from tests.harness import unique
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
