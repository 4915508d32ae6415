"""The chaos run's check of working orders' reservations, against the real Postgres.

The check reads each order's row and reservation in one statement: the market keeps moving while the checks run,
so a resting order can fill between two reads, and the check must not take that for a lost reservation.
"""

from __future__ import annotations

import uuid

import psycopg
import pytest

from devstack.chaos import Order, _working_terms
from tests.conftest import create_database


async def _order(url: str, order_id: str, *, status: str, filled: int, released: bool) -> None:
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        await conn.execute(
            "INSERT INTO orders (order_id, workflow_id, idempotency_key, request_hash, client_id, client_order_id,"
            " account, symbol, side, type, time_in_force, qty, price, broker, status, filled_qty, created_at,"
            " updated_at) VALUES (%s, %s, %s, %s, 'desk-1', %s, 'desk-1', 'AAPL', 'BUY', 'LIMIT', 'GTC', 10, 190,"
            " 'paper', %s, %s, now(), now())",
            (order_id, f"order-{order_id}", f"k/{order_id}", uuid.uuid4().hex, f"co-{order_id}", status, filled),
        )
        await conn.execute(
            "INSERT INTO risk_reservations (order_id, account, client_id, symbol, side, qty_open, price, quote_rate,"
            " leverage, notional, margin, released_at) VALUES (%s, 'desk-1', 'desk-1', 'AAPL', 'BUY', %s, 190, 1, 4,"
            " 0, 0, CASE WHEN %s THEN now() END)",
            (order_id, 0 if released else 10 - filled, released),
        )


def _working(order_id: str) -> Order:
    order = Order(client_id="desk-1", client_order_id=f"co-{order_id}", kind="limit-far", body={})
    order.order_id = order_id  # the run derives it from the client's ids; the rows here use readable ones
    return order


@pytest.fixture
async def url(postgres_admin_url: str) -> str:
    from core.db import apply_migrations

    url = await create_database(postgres_admin_url, prefix="exodus_chaos")
    await apply_migrations(url)
    return url


async def test_an_order_that_filled_since_the_quiescence_check_is_left_to_the_final_checks(url: str) -> None:
    # Seen as PARTIALLY_FILLED by the quiescence check, then filled and released before this check read it.
    await _order(url, "filled-meanwhile", status="FILLED", filled=10, released=True)
    assert await _working_terms(url, [_working("filled-meanwhile")], {}) == []


async def test_a_working_order_without_its_reservation_is_reported(url: str) -> None:
    await _order(url, "lost-hold", status="PARTIALLY_FILLED", filled=4, released=True)
    await _order(url, "held", status="PARTIALLY_FILLED", filled=4, released=False)
    problems = await _working_terms(url, [_working("lost-hold"), _working("held")], {})
    assert problems == ["lost-hold: PARTIALLY_FILLED without a held reservation"]


async def test_a_reservation_for_other_terms_is_reported(url: str) -> None:
    await _order(url, "stale-hold", status="ACCEPTED", filled=0, released=False)
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        await conn.execute("UPDATE risk_reservations SET qty_open = 12 WHERE order_id = 'stale-hold'")
    problems = await _working_terms(url, [_working("stale-hold")], {})
    assert problems == ["stale-hold: reservation 12 @ 190, open terms 10 @ 190"]
