"""The booking activity (``persist_order``) against a real Postgres: it writes the order row in its one shape."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from psycopg_pool import AsyncConnectionPool

from activities.persistence import OrderSnapshot, OrderStoreActivities, PersistInput
from core.domain import OrderEvent, OrderEventKind, OrderState, OrderStatus
from core.instruments import InstrumentCatalog
from core.settings import Settings
from store.policy import PolicyStore
from tests.harness import make_order

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
