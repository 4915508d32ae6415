"""``order_lists``: the read model of order lists (one row per list, its book as JSON), written by the coordinator."""

from __future__ import annotations

from datetime import datetime
from typing import Any, TypedDict, cast

from psycopg.types.json import Jsonb

from store import Conn

__all__ = ["OrderListRow", "list_row", "write_list"]


class OrderListRow(TypedDict):
    """One list as its coordinator last wrote it."""

    list_id: str
    workflow_id: str
    client_id: str
    client_list_id: str
    account: str
    broker: str
    contingency: str
    status: str
    version: int
    book: dict[str, Any]
    created_at: datetime
    updated_at: datetime


async def write_list(
    conn: Conn,
    *,
    list_id: str,
    workflow_id: str,
    client_id: str,
    client_list_id: str,
    account: str,
    broker: str,
    contingency: str,
    status: str,
    version: int,
    book: dict[str, Any],
) -> bool:
    """Write the list's row unless a newer ``version`` is there already; True when written."""
    cur = await conn.execute(
        "INSERT INTO order_lists (list_id, workflow_id, client_id, client_list_id, account, broker, contingency,"
        " status, version, book) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
        " ON CONFLICT (list_id) DO UPDATE SET status = EXCLUDED.status, version = EXCLUDED.version,"
        " book = EXCLUDED.book, updated_at = now() WHERE order_lists.version < EXCLUDED.version",
        (
            list_id,
            workflow_id,
            client_id,
            client_list_id,
            account,
            broker,
            contingency,
            status,
            version,
            Jsonb(book),
        ),
    )
    return cur.rowcount > 0


async def list_row(conn: Conn, list_id: str) -> OrderListRow | None:
    """The list's row, or None."""
    cur = await conn.execute("SELECT * FROM order_lists WHERE list_id = %s", (list_id,))
    row = await cur.fetchone()
    return cast("OrderListRow | None", row)
