"""``reconciliation_breaks`` (what does not reconcile, with a lifecycle) and ``unmatched_reports``.

A break is kept once per order, kind and detail; ``add_break`` says whether this call opened it (callers
count new breaks in ``exodus_reconciliation_breaks_total``). An order's breaks are typed
(``core.domain.Break``, its kind a ``BreakKind``) and go in through ``add_order_break``: the kind column
holds the kind, the detail column the break's text (``"KIND: detail"``, as the order's flags show it).
Adapters' own breaks (``FIX_CANCEL_UNSUPPORTED``, MT5's position checks...) use ``add_break`` with their
kind. A report that reached no order workflow is kept in ``unmatched_reports`` once per broker and
execution id, under the id it was sent to the broker with (its ``cl_ord_id``; the column keeps its old
name, ``client_order_id``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, TypedDict, cast

from core.domain import Break
from store import Conn
from store.text import jsonb, pg_text, pg_value

__all__ = [
    "BreakRow",
    "add_break",
    "add_break_once_open",
    "add_order_break",
    "add_unmatched_report",
    "breaks_of",
]


class BreakRow(TypedDict):
    """One break as an order's history shows it."""

    id: int
    order_id: str | None
    broker: str
    kind: str
    detail: str
    detected_at: datetime
    resolved_at: datetime | None


async def add_break(conn: Conn, *, order_id: str | None, broker: str, kind: str, detail: str) -> bool:
    """Open a break (once per order, kind and detail); True if this call opened it."""
    cur = await conn.execute(
        "INSERT INTO reconciliation_breaks (order_id, broker, kind, detail) VALUES (%s, %s, %s, %s)"
        " ON CONFLICT DO NOTHING RETURNING id",
        (None if order_id is None else pg_text(order_id), broker, pg_text(kind), pg_text(detail)),
    )
    return await cur.fetchone() is not None


async def add_order_break(conn: Conn, brk: Break, *, order_id: str, broker: str) -> bool:
    """Open an order's break ``brk`` (its kind, and its text as the detail); True if this call opened it."""
    return await add_break(conn, order_id=order_id, broker=broker, kind=brk.kind.value, detail=brk.text)


async def add_break_once_open(conn: Conn, *, order_id: str | None, broker: str, kind: str, detail: str) -> None:
    """Open a break unless an identical one (broker, kind, detail) is open, whatever its order."""
    await conn.execute(
        "INSERT INTO reconciliation_breaks (order_id, broker, kind, detail)"
        " SELECT %s, %s, %s, %s WHERE NOT EXISTS (SELECT 1 FROM reconciliation_breaks"
        "  WHERE broker = %s AND kind = %s AND detail = %s AND resolved_at IS NULL)"
        " ON CONFLICT DO NOTHING",
        (order_id, broker, kind, detail, broker, kind, detail),
    )


async def add_unmatched_report(
    conn: Conn, *, broker: str, exec_id: str, cl_ord_id: str, reason: str, report: dict[str, Any]
) -> None:
    """Keep a report that reached no order workflow (once per broker and execution id), by its ``cl_ord_id``."""
    await conn.execute(
        "INSERT INTO unmatched_reports (broker, exec_id, client_order_id, reason, report)"
        " VALUES (%s,%s,%s,%s,%s) ON CONFLICT DO NOTHING",
        (broker, pg_text(exec_id), pg_text(cl_ord_id), pg_text(reason), jsonb(pg_value(report))),
    )


async def breaks_of(conn: Conn, order_id: str) -> list[BreakRow]:
    """The breaks of one order, oldest first."""
    cur = await conn.execute(
        "SELECT id, order_id, broker, kind, detail, detected_at, resolved_at FROM reconciliation_breaks"
        " WHERE order_id = %s ORDER BY id",
        (order_id,),
    )
    return cast(list[BreakRow], await cur.fetchall())
