"""The Alpaca adapter's records in Postgres: ``alpaca_orders``, ``alpaca_order_ids``, and its report journal.

See ``migrations/0015_alpaca.sql``. Alpaca keeps the orders; this keeps what the adapter learned of them: the
orders it sent (the open ones are looked up after every reconnect) and the Alpaca ids of each replace chain.
Every report it derived is in the shared report journal (``brokers/journal.py``, stream: the broker's name,
``ref``: the Alpaca order id), once per exec id, with its delivery mark (undelivered reports are delivered
again after a restart).
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from psycopg.types.json import Jsonb
from pydantic import BaseModel, ConfigDict

from brokers.journal import AdapterStore
from core.domain import OrderSide, OrderStatus, renamed, utcnow
from store import Pool

__all__ = ["AlpacaOrder", "AlpacaStore"]


class AlpacaOrder(BaseModel):
    """An order as the adapter sent it, with what it heard of it since."""

    model_config = ConfigDict(extra="forbid", serialize_by_alias=True)

    order_id: str
    #: The ``cl_ord_id`` Alpaca knows the current order of the chain by (Alpaca's ``client_order_id``).
    cl_ord_id: str = renamed("client_order_id", "cl_ord_id")
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


class AlpacaStore(AdapterStore[AlpacaOrder]):
    """The records of one Alpaca broker (by name); its journal's ``ref`` is the Alpaca order id a report is about."""

    record = AlpacaOrder

    def __init__(self, pool: Pool, *, broker: str = "alpaca") -> None:
        """Records of ``broker`` through ``pool``."""
        super().__init__(pool, broker=broker)

    # -- orders ----------------------------------------------------------------------------------------------

    async def add_order(self, order: AlpacaOrder) -> AlpacaOrder:
        """Record a new order; when its order id is already known, return the record that exists."""
        record, _ = await self._add(
            order,
            order.order_id,
            "INSERT INTO alpaca_orders (broker, order_id, client_order_id, alpaca_id, status, open, body)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT (broker, order_id) DO NOTHING RETURNING order_id",
            (
                self.broker,
                order.order_id,
                order.cl_ord_id,
                order.alpaca_id,
                order.status.value,
                order.open,
                Jsonb(order.model_dump(mode="json")),
            ),
        )
        return record

    async def save_order(self, order: AlpacaOrder) -> None:
        """Write an order's current record."""
        order.updated_at = utcnow()
        await self._execute(
            "UPDATE alpaca_orders SET client_order_id = %s, alpaca_id = %s, status = %s, open = %s, body = %s,"
            " updated_at = now() WHERE broker = %s AND order_id = %s",
            (
                order.cl_ord_id,
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
        return await self._first("SELECT body FROM alpaca_orders WHERE broker = %s AND order_id = %s", order_id)

    async def open_orders(self) -> list[AlpacaOrder]:
        """Orders that may still work at Alpaca, oldest first."""
        return await self._records("SELECT body FROM alpaca_orders WHERE broker = %s AND open ORDER BY created_at")

    async def add_alpaca_id(self, alpaca_id: str, order_id: str, cl_ord_id: str) -> None:
        """Note that Alpaca's order ``alpaca_id`` is ``cl_ord_id`` of our ``order_id``."""
        await self._execute(
            "INSERT INTO alpaca_order_ids (broker, alpaca_id, order_id, client_order_id) VALUES (%s, %s, %s, %s)"
            " ON CONFLICT DO NOTHING",
            (self.broker, alpaca_id, order_id, cl_ord_id),
        )

    async def alpaca_id_of(self, cl_ord_id: str) -> str | None:
        """Alpaca's id of our ``cl_ord_id`` when we noted it (a native list's leg: Alpaca names it otherwise)."""
        rows = await self._rows(
            "SELECT alpaca_id FROM alpaca_order_ids WHERE broker = %s AND client_order_id = %s LIMIT 1", cl_ord_id
        )
        return rows[0]["alpaca_id"] if rows else None

    async def cl_ord_id_of(self, alpaca_id: str) -> str | None:
        """Our client order id of Alpaca's order ``alpaca_id``, when we know it."""
        rows = await self._rows(
            "SELECT client_order_id FROM alpaca_order_ids WHERE broker = %s AND alpaca_id = %s", alpaca_id
        )
        return rows[0]["client_order_id"] if rows else None
