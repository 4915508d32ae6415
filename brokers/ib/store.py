"""The IB adapter's records in Postgres: ``ib_orders`` and ``ib_order_id_marks`` (``migrations/0025_ib.sql``).

IB keeps the orders; this keeps what the adapter must know across restarts: each order it sent (the API order id,
IB's permId, the client order id its orderRef carries now, a reject read from an error event) and the highest API
order id ever used per TWS/Gateway session, so a Gateway whose ``nextValidId`` rolled back never gets an id twice.
Reports are in the shared report journal (``brokers/journal.py``, stream: the broker's name).
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from pydantic import BaseModel, ConfigDict

from brokers.journal import ReportJournal
from core.domain import OrderSide, OrderStatus, renamed, utcnow
from store import Pool

__all__ = ["IBOrder", "IBStore"]


class IBOrder(BaseModel):
    """An order as the adapter sent it, with what it heard of it since."""

    model_config = ConfigDict(extra="forbid", serialize_by_alias=True)

    order_id: str
    #: The ``cl_ord_id`` the order's orderRef carries now (``.n`` after the n-th modification).
    cl_ord_id: str = renamed("client_order_id", "cl_ord_id")
    #: The API order id it was placed under (modifications and cancels name it).
    ib_order_id: int
    perm_id: int | None = None
    account: str
    symbol: str
    side: OrderSide
    qty: Decimal
    price: Decimal | None = None
    stop_price: Decimal | None = None
    #: SUBMITTED until IB answers.
    status: OrderStatus = OrderStatus.SUBMITTED
    #: IB's error event that refused it ("201: Order rejected - reason: ..."): its "Cancelled" is a reject.
    reject_reason: str | None = None
    created_at: datetime
    updated_at: datetime

    @property
    def open(self) -> bool:
        """Whether the order may still work at IB (including an unanswered submission)."""
        return not self.status.is_terminal


class IBStore:
    """The records of one IB broker (by name)."""

    def __init__(self, pool: Pool, *, broker: str = "ib") -> None:
        """Records of ``broker`` through ``pool``."""
        self._pool = pool
        self.broker = broker
        #: Every report derived, once per exec id.
        self.journal = ReportJournal(pool, broker=broker)

    async def _rows(self, sql: str, params: tuple[Any, ...]) -> list[dict[str, Any]]:
        async with self._pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(sql, params)
            return list(await cur.fetchall())

    async def save(self, order: IBOrder) -> None:
        """Insert or update an order's record."""
        order.updated_at = utcnow()
        async with self._pool.connection() as conn:
            await conn.execute(
                "INSERT INTO ib_orders (broker, order_id, client_order_id, ib_order_id, perm_id, status, open, body,"
                " created_at, updated_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
                " ON CONFLICT (broker, order_id) DO UPDATE SET client_order_id = EXCLUDED.client_order_id,"
                " ib_order_id = EXCLUDED.ib_order_id, perm_id = EXCLUDED.perm_id, status = EXCLUDED.status,"
                " open = EXCLUDED.open, body = EXCLUDED.body, updated_at = EXCLUDED.updated_at",
                (
                    self.broker,
                    order.order_id,
                    order.cl_ord_id,
                    order.ib_order_id,
                    order.perm_id,
                    order.status.value,
                    order.open,
                    Jsonb(order.model_dump(mode="json")),
                    order.created_at,
                    order.updated_at,
                ),
            )

    async def order(self, order_id: str) -> IBOrder | None:
        """The record of an Exodus order (by its order id)."""
        rows = await self._rows(
            "SELECT body FROM ib_orders WHERE broker = %s AND order_id = %s", (self.broker, order_id)
        )
        return IBOrder.model_validate(rows[0]["body"]) if rows else None

    async def by_ib_id(self, ib_order_id: int) -> IBOrder | None:
        """The latest order placed under an API order id."""
        rows = await self._rows(
            "SELECT body FROM ib_orders WHERE broker = %s AND ib_order_id = %s ORDER BY created_at DESC LIMIT 1",
            (self.broker, ib_order_id),
        )
        return IBOrder.model_validate(rows[0]["body"]) if rows else None

    async def open_orders(self) -> list[IBOrder]:
        """Orders that may still work at IB, oldest first."""
        rows = await self._rows(
            "SELECT body FROM ib_orders WHERE broker = %s AND open ORDER BY created_at", (self.broker,)
        )
        return [IBOrder.model_validate(r["body"]) for r in rows]

    async def last_order_id(self, session: str) -> int:
        """The highest API order id used on ``session`` (0: none)."""
        rows = await self._rows(
            "SELECT last_id FROM ib_order_id_marks WHERE broker = %s AND session = %s", (self.broker, session)
        )
        return int(rows[0]["last_id"]) if rows else 0

    async def use_order_id(self, session: str, order_id: int) -> None:
        """Note that ``order_id`` is used on ``session`` (the mark only grows)."""
        async with self._pool.connection() as conn:
            await conn.execute(
                "INSERT INTO ib_order_id_marks (broker, session, last_id) VALUES (%s, %s, %s)"
                " ON CONFLICT (broker, session) DO UPDATE SET"
                " last_id = GREATEST(ib_order_id_marks.last_id, EXCLUDED.last_id), updated_at = now()",
                (self.broker, session, order_id),
            )
