"""The SQL of the bridge's tables (``mt5_*``, ``migrations/0003_mt5_bridge.sql``), in one place.

Plain statements as functions that take a connection; the caller owns the transaction. Kept together so that
they can move as a unit (issue 19's ``store/`` package holds the shared tables).
"""

from __future__ import annotations

import json
from typing import Any

from psycopg import AsyncConnection
from psycopg.types.json import Jsonb

from brokers.mt5.rows import BRIDGE_CHANNEL, BROKER

__all__ = ["add_break", "add_event", "notify"]


async def notify(conn: AsyncConnection[Any], payload: str) -> None:
    """NOTIFY the bridge's channel (delivered when the transaction commits)."""
    await conn.execute("SELECT pg_notify(%s, %s)", (BRIDGE_CHANNEL, payload))


async def add_event(conn: AsyncConnection[Any], account: str, kind: str, **detail: Any) -> None:
    """Record what happened to an account's link (``mt5_account_events``)."""
    await conn.execute(
        "INSERT INTO mt5_account_events (account, kind, detail) VALUES (%s, %s, %s)",
        (account, kind, Jsonb(json.loads(json.dumps(detail, default=str)))),
    )


async def add_break(conn: AsyncConnection[Any], kind: str, detail: str, *, order_id: str | None = None) -> None:
    """Record a reconciliation break of broker ``mt5``, once while an identical one is open."""
    await conn.execute(
        "INSERT INTO reconciliation_breaks (order_id, broker, kind, detail)"
        " SELECT %s, %s, %s, %s WHERE NOT EXISTS (SELECT 1 FROM reconciliation_breaks"
        "  WHERE broker = %s AND kind = %s AND detail = %s AND resolved_at IS NULL)"
        " ON CONFLICT DO NOTHING",
        (order_id, BROKER, kind, detail, BROKER, kind, detail),
    )
