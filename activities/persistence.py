"""Write an order's progress to Postgres: the read model, the timeline, fills, positions and cash.

The workflow calls ``persist_order`` (a local activity) with the order's current snapshot and whatever
events, fills and breaks it has not persisted yet. Every write is keyed on a natural id, so a retried
call changes nothing twice: events on ``(order_id, seq)``, fills on ``(broker, exec_id)`` (positions and
cash move only for fills this call inserted), the order row only forward (``version``).
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool
from pydantic import BaseModel, ConfigDict
from temporalio import activity

from core.domain import Fill, OrderEvent, OrderState, OrderStatus, workflow_id_for
from core.instruments import InstrumentCatalog
from core.ledger import PositionState, apply_fill, cash_delta
from core.metrics import FILLS, ORDER_LATENCY, ORDERS_COMPLETED, OVERFILLS, RECONCILIATION_BREAKS

__all__ = ["OrderSnapshot", "OrderStoreActivities", "PersistInput"]


class OrderSnapshot(BaseModel):
    """The order row's columns."""

    model_config = ConfigDict(frozen=True)

    order_id: str
    idempotency_key: str
    request_hash: str
    client_id: str
    client_order_id: str
    account: str
    symbol: str
    side: str
    type: str
    time_in_force: str
    qty: Decimal
    price: Decimal | None
    stop_price: Decimal | None
    expire_at: datetime | None
    broker: str
    broker_order_id: str | None
    status: OrderStatus
    filled_qty: Decimal
    avg_price: Decimal | None
    reason: str | None
    flags: list[str]
    version: int
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, state: OrderState) -> OrderSnapshot:
        """Snapshot an order state."""
        r = state.request
        return cls(
            order_id=r.order_id,
            idempotency_key=r.idempotency_key,
            request_hash=r.request_hash,
            client_id=r.client_id,
            client_order_id=r.client_order_id,
            account=r.account,
            symbol=r.symbol,
            side=r.side.value,
            type=r.type.value,
            time_in_force=r.time_in_force.value,
            qty=state.qty,
            price=state.price,
            stop_price=state.stop_price,
            expire_at=r.expire_at,
            broker=r.broker,
            broker_order_id=state.broker_order_id,
            status=state.status,
            filled_qty=state.filled_qty,
            avg_price=state.avg_price,
            reason=state.reason,
            flags=list(state.flags),
            version=len(state.events),
            created_at=state.created_at,
            updated_at=state.updated_at,
        )


class PersistInput(BaseModel):
    """Input of ``persist_order``."""

    model_config = ConfigDict(frozen=True)

    snapshot: OrderSnapshot
    events: list[OrderEvent] = []
    fills: list[Fill] = []
    breaks: list[str] = []
    #: Set on the last call: the order is final and reconciled.
    final: bool = False
    received_at: datetime | None = None


_UPSERT_ORDER = """
INSERT INTO orders (order_id, workflow_id, idempotency_key, request_hash, client_id, client_order_id, account,
    symbol, side, type, time_in_force, qty, price, stop_price, expire_at, broker, broker_order_id, status,
    filled_qty, avg_price, reason, flags, version, created_at, updated_at)
VALUES (%(order_id)s, %(workflow_id)s, %(idempotency_key)s, %(request_hash)s, %(client_id)s, %(client_order_id)s,
    %(account)s, %(symbol)s, %(side)s, %(type)s, %(time_in_force)s, %(qty)s, %(price)s, %(stop_price)s,
    %(expire_at)s, %(broker)s, %(broker_order_id)s, %(status)s, %(filled_qty)s, %(avg_price)s, %(reason)s,
    %(flags)s, %(version)s, %(created_at)s, %(updated_at)s)
ON CONFLICT (order_id) DO UPDATE SET
    qty = EXCLUDED.qty, price = EXCLUDED.price, stop_price = EXCLUDED.stop_price,
    broker_order_id = EXCLUDED.broker_order_id, status = EXCLUDED.status, filled_qty = EXCLUDED.filled_qty,
    avg_price = EXCLUDED.avg_price, reason = EXCLUDED.reason, flags = EXCLUDED.flags,
    version = EXCLUDED.version, updated_at = EXCLUDED.updated_at
WHERE orders.version <= EXCLUDED.version
"""


class OrderStoreActivities:
    """Writes order progress to Postgres."""

    def __init__(self, *, pool: AsyncConnectionPool, instruments: InstrumentCatalog) -> None:
        """Use ``pool``; the catalogue gives each symbol's quote currency for cash bookings."""
        self._pool = pool
        self._instruments = instruments

    @activity.defn(name="persist_order")
    async def persist_order(self, inp: PersistInput) -> int:
        """Persist a snapshot with its new events, fills and breaks; return how many fills were newly booked."""
        snap = inp.snapshot
        booked = 0
        # Pipeline mode: the statements go out together and the round trips are only where a result is
        # needed (whether a fill is new, the position to update) and at COMMIT, instead of one per statement.
        async with self._pool.connection() as conn, conn.pipeline(), conn.transaction():
            params: dict[str, Any] = snap.model_dump()
            params["status"] = snap.status.value
            params["workflow_id"] = workflow_id_for(snap.order_id)
            await conn.execute(_UPSERT_ORDER, params)
            if inp.events:
                async with conn.cursor() as cur:
                    await cur.executemany(
                        "INSERT INTO order_events (order_id, seq, at, kind, status, detail, actor, data)"
                        " VALUES (%s,%s,%s,%s,%s,%s,%s,%s) ON CONFLICT DO NOTHING",
                        [
                            (snap.order_id, e.seq, e.at, e.kind, e.status.value, e.detail, e.actor, Jsonb(e.data))
                            for e in inp.events
                        ],
                    )
            for fill in inp.fills:
                if await self._book_fill(conn, fill):
                    booked += 1
            for text in inp.breaks:
                cur = await conn.execute(
                    "INSERT INTO reconciliation_breaks (order_id, broker, kind, detail) VALUES (%s,%s,%s,%s)"
                    " ON CONFLICT DO NOTHING RETURNING id",
                    (snap.order_id, snap.broker, text.split(":", 1)[0], text),
                )
                if await cur.fetchone():
                    RECONCILIATION_BREAKS.labels(broker=snap.broker, kind=text.split(":", 1)[0]).inc()
        if booked:
            FILLS.labels(broker=snap.broker).inc(booked)
        if any(e.kind == "OVERFILL_REFUSED" for e in inp.events):
            OVERFILLS.labels(broker=snap.broker).inc()
        if inp.final:
            ORDERS_COMPLETED.labels(broker=snap.broker, status=snap.status.value).inc()
            if inp.received_at is not None:
                elapsed = (snap.updated_at - inp.received_at).total_seconds()
                ORDER_LATENCY.labels(stage="end_to_end").observe(max(elapsed, 0.0))
                if snap.status is OrderStatus.FILLED:
                    ORDER_LATENCY.labels(stage="fill").observe(max(elapsed, 0.0))
        return booked

    async def _book_fill(self, conn: Any, fill: Fill) -> bool:
        cur = await conn.execute(
            "INSERT INTO fills (broker, exec_id, order_id, account, symbol, side, qty, price, fee, filled_at)"
            " VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s) ON CONFLICT DO NOTHING RETURNING exec_id",
            (
                fill.broker,
                fill.exec_id,
                fill.order_id,
                fill.account,
                fill.symbol,
                fill.side.value,
                fill.qty,
                fill.price,
                fill.fee,
                fill.filled_at,
            ),
        )
        if await cur.fetchone() is None:
            return False  # booked by an earlier attempt
        await conn.execute(
            "INSERT INTO positions (account, symbol) VALUES (%s, %s) ON CONFLICT DO NOTHING",
            (fill.account, fill.symbol),
        )
        cur = await conn.execute(
            "SELECT qty, avg_price, realized_pnl FROM positions WHERE account = %s AND symbol = %s FOR UPDATE",
            (fill.account, fill.symbol),
        )
        row = await cur.fetchone()
        pos = apply_fill(PositionState(row["qty"], row["avg_price"], row["realized_pnl"]), fill.side, fill.qty, fill.price)
        await conn.execute(
            "UPDATE positions SET qty = %s, avg_price = %s, realized_pnl = %s, updated_at = now()"
            " WHERE account = %s AND symbol = %s",
            (pos.qty, pos.avg_price, pos.realized_pnl, fill.account, fill.symbol),
        )
        inst = self._instruments.get(fill.symbol)
        currency = inst.quote_currency if inst else "USD"
        await conn.execute(
            "INSERT INTO cash (account, currency, balance) VALUES (%s, %s, %s)"
            " ON CONFLICT (account, currency) DO UPDATE SET balance = cash.balance + EXCLUDED.balance, updated_at = now()",
            (fill.account, currency, cash_delta(fill.side, fill.qty, fill.price, fill.fee)),
        )
        return True
