"""The OANDA adapter's records in Postgres: ``oanda_orders`` and ``oanda_cursor`` (``migrations/0023_oanda.sql``).

OANDA keeps the orders and the transactions; this keeps what the adapter needs to use them safely: the orders it
sent (a client order id found here was sent before, so it is looked up before it is ever sent again) and the
last transaction id read without a gap (every catch-up starts after it). Reports are in the shared journal
(``brokers/journal.py``, stream: the broker's name, exec id: OANDA's transaction id, ``ref``: OANDA's order id).
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from psycopg.types.json import Jsonb
from pydantic import BaseModel, ConfigDict

from brokers.journal import AdapterStore
from core.domain import OrderSide, renamed
from store import Pool

__all__ = ["OandaOrder", "OandaStore"]


class OandaOrder(BaseModel):
    """An order as the adapter sent it."""

    model_config = ConfigDict(extra="forbid", serialize_by_alias=True)

    order_id: str
    #: The ``cl_ord_id`` of the current order of the chain (``clientExtensions.id`` at OANDA).
    cl_ord_id: str = renamed("client_order_id", "cl_ord_id")
    #: OANDA's id of the current order of the chain (None until OANDA answered).
    oanda_id: str | None = None
    account: str
    symbol: str
    side: OrderSide
    #: The order's total quantity (Exodus' view: a replacement changes it).
    qty: Decimal
    #: The last transaction id the adapter knew of when it sent the order (the transactions after it hold the
    #: order's creation, wherever an ``@id`` lookup cannot find it).
    sent_after: int | None = None
    created_at: datetime


class OandaStore(AdapterStore[OandaOrder]):
    """The records of one OANDA broker (by name); its journal's ``ref`` is the OANDA order id a report is about."""

    record = OandaOrder

    def __init__(self, pool: Pool, *, broker: str = "oanda") -> None:
        """Records of ``broker`` through ``pool``."""
        super().__init__(pool, broker=broker)

    async def add_order(self, order: OandaOrder) -> tuple[OandaOrder, bool]:
        """Record a new order: (the record, True), or (the record that exists, False) when it was sent before."""
        return await self._add(
            order,
            order.order_id,
            "INSERT INTO oanda_orders (broker, order_id, client_order_id, oanda_id, body)"
            " VALUES (%s, %s, %s, %s, %s) ON CONFLICT (broker, order_id) DO NOTHING RETURNING order_id",
            (
                self.broker,
                order.order_id,
                order.cl_ord_id,
                order.oanda_id,
                Jsonb(order.model_dump(mode="json")),
            ),
        )

    async def save_order(self, order: OandaOrder) -> None:
        """Write an order's current record."""
        await self._execute(
            "UPDATE oanda_orders SET client_order_id = %s, oanda_id = %s, body = %s, updated_at = now()"
            " WHERE broker = %s AND order_id = %s",
            (
                order.cl_ord_id,
                order.oanda_id,
                Jsonb(order.model_dump(mode="json")),
                self.broker,
                order.order_id,
            ),
        )

    async def order(self, order_id: str) -> OandaOrder | None:
        """The record of ``order_id`` (the base order id)."""
        return await self._first("SELECT body FROM oanda_orders WHERE broker = %s AND order_id = %s", order_id)

    async def cursor(self) -> int | None:
        """The last transaction id read without a gap (None: never read)."""
        rows = await self._rows("SELECT last_transaction_id FROM oanda_cursor WHERE broker = %s")
        return int(rows[0]["last_transaction_id"]) if rows else None

    async def advance(self, last_transaction_id: int) -> None:
        """Move the cursor forward (never back)."""
        await self._execute(
            "INSERT INTO oanda_cursor (broker, last_transaction_id) VALUES (%s, %s)"
            " ON CONFLICT (broker) DO UPDATE SET last_transaction_id ="
            " GREATEST(oanda_cursor.last_transaction_id, EXCLUDED.last_transaction_id), updated_at = now()",
            (self.broker, last_transaction_id),
        )
