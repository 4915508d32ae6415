"""The FIX adapter's records in Postgres: ``fix_orders``, ``fix_unprocessed``, and its stream of the report journal.

See ``migrations/0002_fix.sql`` and ``0010_fix_unprocessed.sql``. QuickFIX's own store keeps the session
(sequence numbers); this one keeps what the adapter learned: the orders it sent, every report it received,
once per ExecID, with its delivery mark (the shared journal, ``brokers/journal.py``, one stream per session),
and every message it could not apply, with a reconciliation break for its order.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from pydantic import ConfigDict

from brokers.journal import ReportJournal
from core.domain import (
    OrderStatus,
    OrderTerms,
    base_order_id,
    renamed,
    utcnow,
)
from core.metrics import RECONCILIATION_BREAKS
from store import Pool, breaks

__all__ = ["FixOrder", "FixStore"]


class FixOrder(OrderTerms):
    """An order as the adapter sent it (its terms, the latest replacement's), with what it heard of it since."""

    model_config = ConfigDict(frozen=False, extra="forbid", serialize_by_alias=True)

    order_id: str
    #: The ClOrdID the venue knows the order by now (changes with each replacement).
    cl_ord_id: str = renamed("client_order_id", "cl_ord_id")
    broker_order_id: str | None = None
    #: SUBMITTED until the venue answers.
    status: OrderStatus = OrderStatus.SUBMITTED
    #: Cumulative quantity up to which fills were synthesized from a status answer; a fill report arriving
    #: later with a CumQty up to this is already counted.
    synthesized_cum: Decimal = Decimal(0)
    created_at: datetime
    updated_at: datetime

    @property
    def open(self) -> bool:
        """Whether the order may still work at the venue (including an unanswered submission)."""
        return not self.status.is_terminal


class FixStore:
    """``fix_orders``, ``fix_unprocessed`` and the report journal of one FIX session."""

    def __init__(self, pool: Pool, *, session: str, broker: str = "fix") -> None:
        """Records of ``session`` (``FIX.4.4:EXODUS->EXVENUE``) of broker ``broker`` through ``pool``."""
        self._pool = pool
        self.session = session
        #: Every report received on the session, once per ExecID, with its delivery mark.
        self.journal = ReportJournal(pool, broker=broker, stream=session)

    async def add_order(self, order: FixOrder) -> FixOrder:
        """Record a new order; when the order id is already known, return the record that exists."""
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                "INSERT INTO fix_orders (session, order_id, client_order_id, broker_order_id, status, open, body)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT (session, order_id) DO NOTHING RETURNING order_id",
                (
                    self.session,
                    order.order_id,
                    order.cl_ord_id,
                    order.broker_order_id,
                    order.status.value,
                    order.open,
                    Jsonb(order.model_dump(mode="json")),
                ),
            )
            if await cur.fetchone() is not None:
                return order
        existing = await self.order(order.order_id)
        assert existing is not None
        return existing

    async def save_order(self, order: FixOrder) -> None:
        """Write an order's current record."""
        order.updated_at = utcnow()
        async with self._pool.connection() as conn:
            await conn.execute(
                "UPDATE fix_orders SET client_order_id = %s, broker_order_id = %s, status = %s, open = %s, body = %s,"
                " updated_at = now() WHERE session = %s AND order_id = %s",
                (
                    order.cl_ord_id,
                    order.broker_order_id,
                    order.status.value,
                    order.open,
                    Jsonb(order.model_dump(mode="json")),
                    self.session,
                    order.order_id,
                ),
            )

    async def _bodies(self, sql: str, *params: object) -> list[Any]:
        async with self._pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(sql, (self.session, *params))
            return [row["body"] for row in await cur.fetchall()]

    async def order(self, order_id: str) -> FixOrder | None:
        """The record of ``order_id`` (the base order id, without a replacement suffix)."""
        bodies = await self._bodies("SELECT body FROM fix_orders WHERE session = %s AND order_id = %s", order_id)
        return FixOrder.model_validate(bodies[0]) if bodies else None

    async def open_orders(self) -> list[FixOrder]:
        """Orders that may still work at the venue, oldest first."""
        bodies = await self._bodies("SELECT body FROM fix_orders WHERE session = %s AND open ORDER BY created_at")
        return [FixOrder.model_validate(b) for b in bodies]

    async def add_unprocessed(
        self,
        *,
        key: str,
        msg_type: str,
        cl_ord_id: str | None,
        kind: str,
        reason: str,
        message: str,
        broker: str,
    ) -> bool:
        """Keep a message that could not be applied and open a break for its order; False when kept before."""
        order_id = base_order_id(cl_ord_id) if cl_ord_id else None
        detail = f"{kind}: {reason}"
        async with self._pool.connection() as conn, conn.transaction():
            cur = await conn.execute(
                "INSERT INTO fix_unprocessed (session, key, msg_type, order_id, client_order_id, kind, reason, message)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT (session, key) DO NOTHING RETURNING key",
                (self.session, key, msg_type, order_id, cl_ord_id, kind, reason, message),
            )
            if await cur.fetchone() is None:
                return False
            await breaks.add_break(conn, order_id=order_id, broker=broker, kind=kind, detail=detail)
        RECONCILIATION_BREAKS.labels(broker=broker, kind=kind).inc()
        return True

    async def add_break(self, *, order_id: str, broker: str, kind: str, detail: str) -> bool:
        """Open a reconciliation break for an order (once per order, kind and detail)."""
        async with self._pool.connection() as conn:
            fresh = await breaks.add_break(
                conn, order_id=order_id, broker=broker, kind=kind, detail=f"{kind}: {detail}"
            )
        if fresh:
            RECONCILIATION_BREAKS.labels(broker=broker, kind=kind).inc()
        return fresh
