"""The Alpaca adapter's records in Postgres: ``alpaca_orders``, ``alpaca_order_ids``, ``alpaca_reports``.

See ``migrations/0015_alpaca.sql``. Alpaca keeps the orders; this keeps what the adapter learned of them: the
orders it sent (the open ones are looked up after every reconnect), the Alpaca ids of each replace chain, and
every report it derived, once per exec id, with its delivery mark (undelivered reports are delivered again
after a restart). Written to be folded into a shared report journal (issue 12): nothing Alpaca-specific is in
``alpaca_reports`` but the ``alpaca_id`` column.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from pydantic import BaseModel, ConfigDict

from core.domain import ExecutionReport, OrderSide, OrderStatus, ReportKind, utcnow
from store import Pool

__all__ = ["AlpacaOrder", "AlpacaStore"]


class AlpacaOrder(BaseModel):
    """An order as the adapter sent it, with what it heard of it since."""

    model_config = ConfigDict(extra="forbid")

    order_id: str
    #: The client order id Alpaca knows the current order of the chain by.
    client_order_id: str
    #: Alpaca's id of the current order of the chain (None until Alpaca answered).
    alpaca_id: str | None = None
    account: str
    symbol: str
    side: OrderSide
    qty: Decimal
    #: SUBMITTED until Alpaca answers.
    status: OrderStatus = OrderStatus.SUBMITTED
    created_at: datetime
    updated_at: datetime

    @property
    def open(self) -> bool:
        """Whether the order may still work at Alpaca (including an unanswered submission)."""
        return not self.status.is_terminal


class AlpacaStore:
    """The records of one Alpaca broker (by name)."""

    def __init__(self, pool: Pool, *, broker: str = "alpaca") -> None:
        """Records of ``broker`` through ``pool``."""
        self._pool = pool
        self.broker = broker

    async def _rows(self, sql: str, *params: object) -> list[dict[str, Any]]:
        async with self._pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(sql, (self.broker, *params))
            return list(await cur.fetchall())

    # -- orders ----------------------------------------------------------------------------------------------

    async def add_order(self, order: AlpacaOrder) -> AlpacaOrder:
        """Record a new order; when its order id is already known, return the record that exists."""
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                "INSERT INTO alpaca_orders (broker, order_id, client_order_id, alpaca_id, status, open, body)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT (broker, order_id) DO NOTHING RETURNING order_id",
                (
                    self.broker,
                    order.order_id,
                    order.client_order_id,
                    order.alpaca_id,
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

    async def save_order(self, order: AlpacaOrder) -> None:
        """Write an order's current record."""
        order.updated_at = utcnow()
        async with self._pool.connection() as conn:
            await conn.execute(
                "UPDATE alpaca_orders SET client_order_id = %s, alpaca_id = %s, status = %s, open = %s, body = %s,"
                " updated_at = now() WHERE broker = %s AND order_id = %s",
                (
                    order.client_order_id,
                    order.alpaca_id,
                    order.status.value,
                    order.open,
                    Jsonb(order.model_dump(mode="json")),
                    self.broker,
                    order.order_id,
                ),
            )

    async def order(self, order_id: str) -> AlpacaOrder | None:
        """The record of ``order_id`` (the base order id)."""
        rows = await self._rows("SELECT body FROM alpaca_orders WHERE broker = %s AND order_id = %s", order_id)
        return AlpacaOrder.model_validate(rows[0]["body"]) if rows else None

    async def open_orders(self) -> list[AlpacaOrder]:
        """Orders that may still work at Alpaca, oldest first."""
        rows = await self._rows("SELECT body FROM alpaca_orders WHERE broker = %s AND open ORDER BY created_at")
        return [AlpacaOrder.model_validate(r["body"]) for r in rows]

    async def add_alpaca_id(self, alpaca_id: str, order_id: str, client_order_id: str) -> None:
        """Note that Alpaca's order ``alpaca_id`` is ``client_order_id`` of our ``order_id``."""
        async with self._pool.connection() as conn:
            await conn.execute(
                "INSERT INTO alpaca_order_ids (broker, alpaca_id, order_id, client_order_id) VALUES (%s, %s, %s, %s)"
                " ON CONFLICT DO NOTHING",
                (self.broker, alpaca_id, order_id, client_order_id),
            )

    async def client_order_id_of(self, alpaca_id: str) -> str | None:
        """Our client order id of Alpaca's order ``alpaca_id``, when we know it."""
        rows = await self._rows(
            "SELECT client_order_id FROM alpaca_order_ids WHERE broker = %s AND alpaca_id = %s", alpaca_id
        )
        return rows[0]["client_order_id"] if rows else None

    # -- reports ---------------------------------------------------------------------------------------------

    async def add_report(self, report: ExecutionReport, *, alpaca_id: str | None, source: str) -> bool:
        """Record a report; False when its exec id was recorded before (a duplicate)."""
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                "INSERT INTO alpaca_reports (broker, exec_id, order_id, alpaca_id, kind, source, body)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT (broker, exec_id) DO NOTHING RETURNING exec_id",
                (
                    self.broker,
                    report.exec_id,
                    report.order_id,
                    alpaca_id,
                    report.kind.value,
                    source,
                    Jsonb(report.model_dump(mode="json")),
                ),
            )
            return await cur.fetchone() is not None

    async def has_report(self, exec_id: str) -> bool:
        """Whether a report with ``exec_id`` was recorded."""
        return bool(await self._rows("SELECT 1 FROM alpaca_reports WHERE broker = %s AND exec_id = %s", exec_id))

    async def reports(self, order_id: str) -> list[ExecutionReport]:
        """Every report recorded for an order (its whole replace chain), in arrival order."""
        rows = await self._rows(
            "SELECT body FROM alpaca_reports WHERE broker = %s AND order_id = %s ORDER BY seq", order_id
        )
        return [ExecutionReport.model_validate(r["body"]) for r in rows]

    async def filled(self, alpaca_id: str) -> tuple[Decimal, Decimal]:
        """(quantity, notional) of the fills recorded for Alpaca's order ``alpaca_id``."""
        rows = await self._rows(
            "SELECT body FROM alpaca_reports WHERE broker = %s AND alpaca_id = %s AND kind = %s",
            alpaca_id,
            ReportKind.FILL.value,
        )
        fills = [ExecutionReport.model_validate(r["body"]) for r in rows]
        qty = sum((f.last_qty for f in fills), Decimal(0))
        notional = sum((f.last_qty * (f.last_price or 0) for f in fills), Decimal(0))
        return qty, notional

    async def undelivered(self) -> list[ExecutionReport]:
        """Reports recorded but not yet delivered to their workflow, in arrival order."""
        rows = await self._rows(
            "SELECT body FROM alpaca_reports WHERE broker = %s AND delivered_at IS NULL ORDER BY seq"
        )
        return [ExecutionReport.model_validate(r["body"]) for r in rows]

    async def mark_delivered(self, exec_ids: list[str]) -> None:
        """Note reports as delivered."""
        if not exec_ids:
            return
        async with self._pool.connection() as conn:
            await conn.execute(
                "UPDATE alpaca_reports SET delivered_at = now() WHERE broker = %s AND exec_id = ANY(%s)"
                " AND delivered_at IS NULL",
                (self.broker, exec_ids),
            )
