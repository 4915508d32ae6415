"""``reconciliation_breaks`` (what does not reconcile, with a lifecycle) and ``unmatched_reports``.

A break is kept once per order, kind and detail; ``add_break`` says whether this call opened it (callers
count new breaks in ``exodus_reconciliation_breaks_total``). An order's breaks are typed
(``core.domain.Break``, its kind a ``BreakKind``) and go in through ``add_order_break``: the kind column
holds the kind, the detail column the break's text (``"KIND: detail"``, as the order's flags show it).
Adapters' own breaks (``FIX_CANCEL_UNSUPPORTED``, MT5's position checks...) use ``add_break`` with their
kind. A report that reached no order workflow is kept in ``unmatched_reports`` once per broker and
execution id, under the id it was sent to the broker with (its ``cl_ord_id``; the column keeps its old
name, ``client_order_id``).

A person resolves either with a reason (``resolve_break``, ``resolve_unmatched``; the API audits it); the
stream announces it (``BREAK_RESOLVED``, ``UNMATCHED_RESOLVED``: migrations 0021 and 0027). Listings are newest
first, restricted to a principal's scope: a break by its order's client and account and its broker (a break of
no known order has no client or account, so only a scope with every client and account sees it, as on the
stream); an unmatched report by its broker (the API shows them to firm-wide scopes only).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal, TypedDict, cast

from core.auth import Scope
from core.domain import Break
from store import Conn
from store._where import clause, scope_conditions
from store.text import jsonb, pg_text, pg_value

__all__ = [
    "BreakRow",
    "Resolved",
    "UnmatchedStatus",
    "UnmatchedRow",
    "add_break",
    "add_break_once_open",
    "add_order_break",
    "add_unmatched_report",
    "break_by_id",
    "breaks_of",
    "list_breaks",
    "list_unmatched",
    "resolve_break",
    "resolve_unmatched",
    "unmatched_by_id",
]

#: Which rows a listing wants: open (not resolved), resolved, or all.
#: ``acknowledged``: open and acknowledged (migration 0028); ``unacknowledged``: open and not yet acknowledged.
Resolved = Literal["open", "acknowledged", "unacknowledged", "resolved", "all"]
#: Which unmatched reports a listing wants (they are resolved, never acknowledged).
UnmatchedStatus = Literal["open", "resolved", "all"]


class BreakRow(TypedDict):
    """A break, with its order's client, account and symbol (None for a break of no known order)."""

    id: int
    order_id: str | None
    broker: str
    kind: str
    detail: str
    detected_at: datetime
    resolved_at: datetime | None
    resolved_by: str | None
    resolution: str | None
    ref: str | None
    acknowledged_at: datetime | None
    acknowledged_by: str | None
    acknowledgement: str | None
    client_id: str | None
    account: str | None
    symbol: str | None


class UnmatchedRow(TypedDict):
    """A report that reached no order workflow, and its resolution."""

    id: int
    broker: str
    exec_id: str
    client_order_id: str
    reason: str
    report: dict[str, Any]
    received_at: datetime
    resolved_at: datetime | None
    resolved_by: str | None
    resolution: str | None


_BREAK = (
    "SELECT b.id, b.order_id, b.broker, b.kind, b.detail, b.detected_at, b.resolved_at, b.resolved_by,"
    " b.resolution, b.ref, b.acknowledged_at, b.acknowledged_by, b.acknowledgement, o.client_id, o.account, o.symbol"
    " FROM reconciliation_breaks b"
    " LEFT JOIN orders o ON o.order_id = b.order_id"
)
_UNMATCHED_COLUMNS = (
    "id, broker, exec_id, client_order_id, reason, report, received_at, resolved_at, resolved_by, resolution"
)
_UNMATCHED = f"SELECT {_UNMATCHED_COLUMNS} FROM unmatched_reports"


def _resolved(column: str, status: Resolved) -> list[str]:
    if status == "open":
        return [f"{column} IS NULL"]
    if status == "resolved":
        return [f"{column} IS NOT NULL"]
    if status in ("acknowledged", "unacknowledged"):
        acknowledged = column.replace("resolved_at", "acknowledged_at")
        return [f"{column} IS NULL", f"{acknowledged} IS {'NOT ' if status == 'acknowledged' else ''}NULL"]
    return []


async def list_breaks(
    conn: Conn,
    *,
    scope: Scope,
    status: Resolved = "open",
    broker: str | None = None,
    order_id: str | None = None,
    kind: str | None = None,
    before: int | None = None,
    limit: int = 100,
) -> list[BreakRow]:
    """Breaks inside ``scope`` matching every filter given, newest first (ids below ``before``), at most ``limit``."""
    where, params = scope_conditions(scope, clients="o.client_id", accounts="o.account", brokers="b.broker")
    where += _resolved("b.resolved_at", status)
    for column, value in (("b.broker", broker), ("b.order_id", order_id), ("b.kind", kind)):
        if value is not None:
            where.append(f"{column} = %s")
            params.append(value)
    if before is not None:
        where.append("b.id < %s")
        params.append(before)
    cur = await conn.execute(f"{_BREAK} {clause(where)} ORDER BY b.id DESC LIMIT %s", (*params, limit))
    return cast(list[BreakRow], await cur.fetchall())


async def break_by_id(conn: Conn, break_id: int, *, lock: bool = False) -> BreakRow | None:
    """One break (locked for a resolution when ``lock``), else None."""
    cur = await conn.execute(f"{_BREAK} WHERE b.id = %s{' FOR UPDATE OF b' if lock else ''}", (break_id,))
    return cast(BreakRow | None, await cur.fetchone())


async def resolve_break(conn: Conn, break_id: int, *, actor: str, resolution: str) -> BreakRow | None:
    """Mark an open break resolved by ``actor`` with a reason; None when it is unknown or already resolved."""
    cur = await conn.execute(
        "UPDATE reconciliation_breaks SET resolved_at = now(), resolved_by = %s, resolution = %s"
        " WHERE id = %s AND resolved_at IS NULL RETURNING id",
        (pg_text(actor), pg_text(resolution), break_id),
    )
    if await cur.fetchone() is None:
        return None
    return await break_by_id(conn, break_id)


async def list_unmatched(
    conn: Conn,
    *,
    scope: Scope,
    status: UnmatchedStatus = "open",
    broker: str | None = None,
    before: int | None = None,
    limit: int = 100,
) -> list[UnmatchedRow]:
    """Unmatched reports of the brokers inside ``scope``, newest first (ids below ``before``), at most ``limit``."""
    where, params = scope_conditions(scope, brokers="broker")
    where += _resolved("resolved_at", status)
    if broker is not None:
        where.append("broker = %s")
        params.append(broker)
    if before is not None:
        where.append("id < %s")
        params.append(before)
    cur = await conn.execute(f"{_UNMATCHED} {clause(where)} ORDER BY id DESC LIMIT %s", (*params, limit))
    return cast(list[UnmatchedRow], await cur.fetchall())


async def unmatched_by_id(conn: Conn, report_id: int, *, lock: bool = False) -> UnmatchedRow | None:
    """One unmatched report (locked for a resolution when ``lock``), else None."""
    cur = await conn.execute(f"{_UNMATCHED} WHERE id = %s{' FOR UPDATE' if lock else ''}", (report_id,))
    return cast(UnmatchedRow | None, await cur.fetchone())


async def resolve_unmatched(conn: Conn, report_id: int, *, actor: str, resolution: str) -> UnmatchedRow | None:
    """Mark an open unmatched report resolved by ``actor`` with a reason; None when unknown or already resolved."""
    cur = await conn.execute(
        "UPDATE unmatched_reports SET resolved_at = now(), resolved_by = %s, resolution = %s"
        " WHERE id = %s AND resolved_at IS NULL"
        f" RETURNING {_UNMATCHED_COLUMNS}",
        (pg_text(actor), pg_text(resolution), report_id),
    )
    return cast(UnmatchedRow | None, await cur.fetchone())


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
    """The breaks of one order, oldest first (with their resolutions)."""
    cur = await conn.execute(f"{_BREAK} WHERE b.order_id = %s ORDER BY b.id", (order_id,))
    return cast(list[BreakRow], await cur.fetchall())
