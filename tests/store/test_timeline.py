"""``store/timeline.py``: the timeline converges on what the workflow recorded, and says what was already there."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from core.domain import EventKind, OrderEvent, OrderEventKind, OrderStatus, TimelineKind
from store import Pool
from store.orders import write_order
from store.timeline import events_of, write_events
from tests.store.kit import booked, decided

pytestmark = pytest.mark.asyncio


def ev(seq: int, kind: EventKind, status: OrderStatus = OrderStatus.ACCEPTED, **data: str) -> OrderEvent:
    return OrderEvent(seq=seq, at=datetime.now(UTC), kind=kind, status=status, detail=f"{kind} \x00", data=data)


async def test_events_are_written_over_their_seq_and_rows_beyond_the_version_dropped(db: Pool) -> None:
    async with db.connection() as conn:
        order = await decided(conn)
        first = [
            ev(1, TimelineKind.RECEIVED, OrderStatus.RECEIVED),
            ev(2, OrderEventKind.ACCEPT),
            ev(3, OrderEventKind.FILL, exec_id="x1"),
        ]
        await write_events(conn, order_id=order.order_id, version=3, events=first)
        # A retried workflow task numbered differently and has two events: the row of seq 3 goes.
        await write_order(conn, booked(order, version=2, status=OrderStatus.ACCEPTED), booking=True)
        await write_events(conn, order_id=order.order_id, version=2, events=[ev(2, TimelineKind.CANCEL_REQUESTED)])
        rows = await events_of(conn, order.order_id)
    assert [(r["seq"], r["kind"]) for r in rows] == [(1, "RECEIVED"), (2, "CANCEL_REQUESTED")]
    assert rows[1]["detail"] == "CANCEL_REQUESTED \u2400"  # a NUL is stored as ␀


async def test_a_stale_booking_writes_no_event(db: Pool) -> None:
    async with db.connection() as conn:
        order = await decided(conn)
        await write_order(conn, booked(order, version=4, status=OrderStatus.ACCEPTED), booking=True)
        await write_events(
            conn,
            order_id=order.order_id,
            version=2,
            events=[ev(1, TimelineKind.RECEIVED), ev(2, OrderEventKind.ACCEPT)],
        )
        rows = await events_of(conn, order.order_id)
    assert rows == []


async def test_the_watched_kinds_the_order_already_had_are_returned(db: Pool) -> None:
    async with db.connection() as conn:
        order = await decided(conn)
        await write_events(
            conn,
            order_id=order.order_id,
            version=1,
            events=[ev(1, OrderEventKind.ACCEPT)],
            watched={OrderEventKind.ACCEPT},
        )
        await write_order(conn, booked(order, version=2, status=OrderStatus.ACCEPTED), booking=True)
        known = await write_events(
            conn,
            order_id=order.order_id,
            version=2,
            events=[ev(1, OrderEventKind.ACCEPT), ev(2, TimelineKind.OVERFILL_REFUSED, exec_id="e9")],
            watched={OrderEventKind.ACCEPT, TimelineKind.OVERFILL_REFUSED},
        )
    assert known == [{"kind": "ACCEPT", "exec_id": None}]
