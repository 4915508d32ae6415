"""The Kraken adapter's records in Postgres: ``kraken_orders`` and ``kraken_nonces`` (``migrations/0024_kraken.sql``).

Kraken keeps the orders; this keeps what the adapter learned of them: the orders it sent (the open ones are
polled), the ``cl_ord_id`` and txid of each, an amend whose answer is still unknown, and the nonce ceiling of each
API key. Every report it derived is in the shared report journal (``brokers/journal.py``, ``ref``: the txid).
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from decimal import Decimal
from typing import Any

from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from pydantic import BaseModel, ConfigDict, SerializerFunctionWrapHandler, model_serializer, model_validator

from brokers.journal import AdapterStore
from core.domain import OrderSide, OrderStatus, renamed, utcnow
from store import Pool

__all__ = ["KrakenOrder", "KrakenStore", "PendingAmend"]


class PendingAmend(BaseModel):
    """An AmendOrder sent whose outcome is not known yet."""

    model_config = ConfigDict(extra="forbid", serialize_by_alias=True)

    #: The ``cl_ord_id`` the amend gives the order.
    cl_ord_id: str = renamed("client_order_id", "cl_ord_id")
    qty: Decimal
    price: Decimal | None = None
    stop_price: Decimal | None = None


class KrakenOrder(BaseModel):
    """An order as the adapter sent it, with what it heard of it since.

    Two ids: ``cl_ord_id`` is ours (the domain's, ``.n`` after the n-th amend), ``kraken_cl_ord_id`` is what
    Kraken knows the order by (Kraken's own field is called ``cl_ord_id``; it stays the same through every amend).
    Bodies written before issue 19's names reached this adapter held ours as ``client_order_id`` and Kraken's as
    ``cl_ord_id``: they load, and this release still writes them so (a previous release reads what it writes).
    """

    model_config = ConfigDict(extra="forbid")

    order_id: str
    #: Our ``cl_ord_id`` of the order's current terms (``.n`` after the n-th amend).
    cl_ord_id: str
    #: What Kraken knows it by (Kraken's ``cl_ord_id``, the same through every amend).
    kraken_cl_ord_id: str
    txid: str | None = None
    account: str
    symbol: str
    side: OrderSide
    qty: Decimal
    #: SUBMITTED until Kraken answers.
    status: OrderStatus = OrderStatus.SUBMITTED
    #: Kraken's amend ids already reported as REPLACED.
    amend_ids: list[str] = []
    pending_amend: PendingAmend | None = None
    created_at: datetime
    updated_at: datetime

    @property
    def open(self) -> bool:
        """Whether the order may still work at Kraken (including an unanswered submission)."""
        return not self.status.is_terminal

    @model_validator(mode="before")
    @classmethod
    def _earlier_names(cls, data: Any) -> Any:
        # The body as earlier releases wrote it: ``client_order_id`` ours, ``cl_ord_id`` Kraken's.
        if isinstance(data, dict) and "client_order_id" in data:
            data = dict(data)
            if "cl_ord_id" in data:
                data["kraken_cl_ord_id"] = data.pop("cl_ord_id")
            data["cl_ord_id"] = data.pop("client_order_id")
        return data

    @model_serializer(mode="wrap")
    def _write_earlier_names(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        data: dict[str, Any] = handler(self)
        data["client_order_id"] = data.pop("cl_ord_id")
        data["cl_ord_id"] = data.pop("kraken_cl_ord_id")
        return data


class KrakenStore(AdapterStore[KrakenOrder]):
    """The records of one Kraken broker (by name); its journal's ``ref`` is the Kraken txid a report is about."""

    record = KrakenOrder

    def __init__(self, pool: Pool, *, broker: str = "kraken") -> None:
        """Records of ``broker`` through ``pool``."""
        super().__init__(pool, broker=broker)

    async def add_order(self, order: KrakenOrder) -> tuple[KrakenOrder, bool]:
        """Record a new order; (the record, True) or, when its order id is known already, (that record, False)."""
        return await self._add(
            order,
            order.order_id,
            "INSERT INTO kraken_orders (broker, order_id, client_order_id, cl_ord_id, txid, status, open, body)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT (broker, order_id) DO NOTHING"
            " RETURNING order_id",
            (
                self.broker,
                order.order_id,
                order.cl_ord_id,
                order.kraken_cl_ord_id,
                order.txid,
                order.status.value,
                order.open,
                Jsonb(order.model_dump(mode="json")),
            ),
        )

    async def save_order(self, order: KrakenOrder) -> None:
        """Write an order's current record."""
        order.updated_at = utcnow()
        await self._execute(
            "UPDATE kraken_orders SET client_order_id = %s, txid = %s, status = %s, open = %s, body = %s,"
            " updated_at = now() WHERE broker = %s AND order_id = %s",
            (
                order.cl_ord_id,
                order.txid,
                order.status.value,
                order.open,
                Jsonb(order.model_dump(mode="json")),
                self.broker,
                order.order_id,
            ),
        )

    async def order(self, order_id: str) -> KrakenOrder | None:
        """The record of ``order_id`` (the base order id)."""
        return await self._first("SELECT body FROM kraken_orders WHERE broker = %s AND order_id = %s", order_id)

    async def by_txid(self, txid: str) -> KrakenOrder | None:
        """The record of Kraken's order ``txid``."""
        return await self._first("SELECT body FROM kraken_orders WHERE broker = %s AND txid = %s", txid)

    async def by_kraken_cl_ord_id(self, kraken_id: str) -> KrakenOrder | None:
        """The record of the order Kraken knows by its ``cl_ord_id`` ``kraken_id``."""
        return await self._first(
            "SELECT body FROM kraken_orders WHERE broker = %s AND cl_ord_id = %s ORDER BY created_at DESC LIMIT 1",
            kraken_id,
        )

    async def open_orders(self) -> list[KrakenOrder]:
        """Orders that may still work at Kraken, oldest first."""
        return await self._records("SELECT body FROM kraken_orders WHERE broker = %s AND open ORDER BY created_at")

    # -- nonces ----------------------------------------------------------------------------------------------

    @staticmethod
    def key_id(api_key: str) -> str:
        """How the nonce table names an API key (a digest, never the key)."""
        return hashlib.sha256(api_key.encode()).hexdigest()[:24]

    async def nonce_ceiling(self, api_key: str) -> int:
        """The highest nonce ceiling reserved for ``api_key`` (0: none yet)."""
        rows = await self._rows(
            "SELECT ceiling FROM kraken_nonces WHERE broker = %s AND key_id = %s", self.key_id(api_key)
        )
        return int(rows[0]["ceiling"]) if rows else 0

    async def reserve_nonces(self, api_key: str, ceiling: int) -> int:
        """Reserve nonces up to ``ceiling`` for ``api_key``; the ceiling now recorded (never lower than before)."""
        async with self._pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(
                "INSERT INTO kraken_nonces (broker, key_id, ceiling) VALUES (%s, %s, %s)"
                " ON CONFLICT (broker, key_id) DO UPDATE SET ceiling = greatest(kraken_nonces.ceiling,"
                " excluded.ceiling), updated_at = now() RETURNING ceiling",
                (self.broker, self.key_id(api_key), ceiling),
            )
            row = await cur.fetchone()
            assert row is not None
            return int(row["ceiling"])
