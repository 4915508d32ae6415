"""The booking activity (``persist_order``) against a real Postgres: it writes the order row in its one shape."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from psycopg_pool import AsyncConnectionPool

from activities.persistence import OrderSnapshot, OrderStoreActivities, PersistInput
from core.domain import Fill, OrderEvent, OrderEventKind, OrderRequest, OrderState, OrderStatus, RiskDecision, utcnow
from core.instruments import InstrumentCatalog
from core.settings import Settings
from store.orders import received_row, write_order
from store.policy import PolicyStore
from tests.harness import make_order, unique
from tests.pgtrace import TracingPool

pytestmark = pytest.mark.asyncio


async def test_a_booking_that_writes_the_row_first_keeps_every_term_of_the_order(
    pool: AsyncConnectionPool, instruments: InstrumentCatalog, settings: Settings
) -> None:
    # The workflow denied the order itself (its risk check kept failing): no decision wrote the row, the
    # booking does, and the row is the order's whole terms (reduce_only included), as the decision writes it.
    order = make_order(type="LIMIT", price="100", reduce_only=True)
    now = datetime.now(UTC)
    event = OrderEvent(seq=1, at=now, kind=OrderEventKind.DENY, status=OrderStatus.DENIED, detail="RISK_CHECK_FAILED")
    state = OrderState(
        request=order,
        status=OrderStatus.DENIED,
        qty=order.qty,
        price=order.price,
        events=[event],
        created_at=now,
        updated_at=now,
    )
    snapshot = OrderSnapshot.of(state)
    store = OrderStoreActivities(pool=pool, instruments=instruments, policy=PolicyStore(settings.risk))
    await store.persist_order(PersistInput(snapshot=snapshot, events=[event], final=True))
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT status, reduce_only, price, version, workflow_id FROM orders WHERE order_id = %s", (order.order_id,)
        )
        row = await cur.fetchone()
    assert snapshot.reduce_only is True
    assert row is not None and (row["status"], row["reduce_only"], row["version"]) == ("DENIED", True, 1)
    assert row["workflow_id"].endswith(order.order_id)


def _approved(order: OrderRequest) -> RiskDecision:
    return RiskDecision(order_id=order.order_id, approved=True, decided_at=utcnow(), request_hash=order.request_hash)


def _filled(order: OrderRequest, exec_id: str) -> tuple[OrderSnapshot, list[OrderEvent], Fill]:
    """A market order filled by one report: its snapshot, its four events and its fill."""
    now = datetime.now(UTC)
    fill = Fill(
        exec_id=exec_id,
        order_id=order.order_id,
        broker=order.broker,
        account=order.account,
        symbol=order.symbol,
        side=order.side,
        qty=order.qty,
        price=Decimal("101"),
        fee=Decimal("1"),
        filled_at=now,
    )
    events = [
        OrderEvent(seq=1, at=now, kind=OrderEventKind.SUBMIT, status=OrderStatus.SUBMITTED),
        OrderEvent(seq=2, at=now, kind=OrderEventKind.ACCEPT, status=OrderStatus.ACCEPTED),
        OrderEvent(seq=3, at=now, kind=OrderEventKind.FILL, status=OrderStatus.FILLED, data={"exec_id": exec_id}),
    ]
    state = OrderState(
        request=order,
        status=OrderStatus.FILLED,
        qty=order.qty,
        filled_qty=order.qty,
        avg_price=Decimal("101"),
        fills=[fill],
        events=events,
        created_at=now,
        updated_at=now,
    )
    return OrderSnapshot.of(state), events, fill


async def test_a_booking_waits_for_postgres_twice_and_books_everything(
    pool: AsyncConnectionPool, instruments: InstrumentCatalog, settings: Settings
) -> None:
    # The booking of a filled order: the row, three events, a fill with its position and cash, the reservation
    # released, the reject streaks reset. One transaction in pipeline mode: one round trip for the answers it
    # needs (the row's owner, the events the order had, whether the fill is new, its position), one for the
    # commit. (psycopg's transaction() in pipeline mode took 8: BEGIN, each answer, before and at COMMIT, the end.)
    order = make_order()
    async with pool.connection() as conn:
        await write_order(conn, received_row(order, _approved(order)), booking=False)
    snapshot, events, fill = _filled(order, unique("exec"))
    tracing = TracingPool(pool)
    store = OrderStoreActivities(pool=tracing, instruments=instruments, policy=PolicyStore(settings.risk))  # type: ignore[arg-type]
    booked = await store.persist_order(PersistInput(snapshot=snapshot, events=events, fills=[fill], final=True))
    [trace] = tracing.traces
    assert trace.round_trips == 2, trace.statements
    assert booked == 1
    assert trace.statements[0] == "BEGIN" and trace.statements[-1] == "COMMIT"
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT o.status, o.version, (SELECT count(*) FROM order_events e WHERE e.order_id = o.order_id) AS events,"
            " p.qty, (SELECT count(*) FROM fills f WHERE f.order_id = o.order_id) AS fills"
            " FROM orders o JOIN positions p ON p.account = o.account AND p.symbol = o.symbol WHERE o.order_id = %s",
            (order.order_id,),
        )
        row = await cur.fetchone()
    assert row is not None
    assert (row["status"], row["version"], row["events"], row["qty"], row["fills"]) == ("FILLED", 3, 3, order.qty, 1)
    # Retried: nothing is booked twice, and it still waits twice.
    again = TracingPool(pool)
    store = OrderStoreActivities(pool=again, instruments=instruments, policy=PolicyStore(settings.risk))  # type: ignore[arg-type]
    assert await store.persist_order(PersistInput(snapshot=snapshot, events=events, fills=[fill], final=True)) == 0
    assert again.round_trips == 2


async def test_a_booking_for_other_terms_writes_nothing_of_its_own(
    pool: AsyncConnectionPool, instruments: InstrumentCatalog, settings: Settings
) -> None:
    # The booking's writes go out before it knows whose the row is: for another request's row they are rolled
    # back (no event, no fill, no position), and the refusal is recorded as a break.
    order = make_order()
    async with pool.connection() as conn:
        await write_order(conn, received_row(order, _approved(order)), booking=False)
    other = order.model_copy(update={"request_hash": "other-terms", "qty": Decimal(7)})
    snapshot, events, fill = _filled(other, unique("exec"))
    store = OrderStoreActivities(pool=pool, instruments=instruments, policy=PolicyStore(settings.risk))
    assert await store.persist_order(PersistInput(snapshot=snapshot, events=events, fills=[fill], final=True)) == 0
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT o.status, o.qty, o.request_hash,"
            " (SELECT count(*) FROM order_events e WHERE e.order_id = o.order_id) AS events,"
            " (SELECT count(*) FROM fills f WHERE f.order_id = o.order_id) AS fills,"
            " (SELECT count(*) FROM positions p WHERE p.account = o.account) AS positions,"
            " (SELECT array_agg(b.kind) FROM reconciliation_breaks b WHERE b.order_id = o.order_id) AS breaks"
            " FROM orders o WHERE o.order_id = %s",
            (order.order_id,),
        )
        row = await cur.fetchone()
    assert row is not None
    assert (row["status"], row["qty"], row["request_hash"]) == ("RECEIVED", order.qty, order.request_hash)
    assert (row["events"], row["fills"], row["positions"]) == (0, 0, 0)
    assert row["breaks"] == ["BOOKING_FOR_OTHER_TERMS"]
