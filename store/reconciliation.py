"""End-of-day reconciliation: the ledger's side of a run, its breaks, and ``reconciliation_runs`` (the reports).

``ledger_view`` reads what Exodus holds for one broker (positions as the sum of the fills booked at it, the day's
fills, its orders that should be working there, and the read-model rows of the orders the broker named).
``open_break`` opens a break unless the same one (broker, kind, ref) is still open; ``record_run`` keeps a run's
report once per workflow run (a retried activity writes nothing twice). Migration 0028.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, datetime
from decimal import Decimal
from typing import Any, TypedDict, cast

from core.auth import Scope
from core.domain import OrderSide, OrderStatus
from core.reconciliation import LIVE_STATUSES, LedgerFill, LedgerOrder, LedgerView, day_bounds
from store import Conn
from store._where import clause, scope_conditions
from store.text import jsonb, pg_text, pg_value

__all__ = [
    "RunRow",
    "acknowledge_break",
    "ledger_view",
    "list_runs",
    "open_break",
    "record_run",
    "run_of",
]


class RunRow(TypedDict):
    """One reconciliation run's report."""

    workflow_id: str
    run_id: str
    broker: str
    day: date
    started_at: datetime
    finished_at: datetime
    compared: list[str]
    counts: dict[str, int]
    new_breaks: int
    differences: list[dict[str, Any]]


_RUN = (
    "SELECT workflow_id, run_id, broker, day, started_at, finished_at, compared, counts, new_breaks, differences"
    " FROM reconciliation_runs"
)


def _order(row: dict[str, Any]) -> LedgerOrder:
    return LedgerOrder(
        order_id=row["order_id"],
        account=row["account"],
        symbol=row["symbol"],
        status=OrderStatus(row["status"]),
        updated_at=row["updated_at"],
    )


async def ledger_view(conn: Conn, *, broker: str, day: date, order_ids: Iterable[str]) -> LedgerView:
    """What the ledger and the read model hold for ``broker`` on ``day`` (and the rows of ``order_ids``).

    Positions are as of now (every fill booked at the broker), as the broker's positions are: a run for an earlier
    day compares today's positions, and only that day's fills.
    """
    start, end = day_bounds(day)
    cur = await conn.execute(
        "SELECT account, symbol, sum(CASE WHEN side = 'BUY' THEN qty ELSE -qty END) AS qty FROM fills"
        " WHERE broker = %s GROUP BY account, symbol",
        (broker,),
    )
    positions: dict[str, Decimal] = {
        f"{r['account']}/{r['symbol']}": r["qty"] for r in await cur.fetchall() if r["qty"] != 0
    }
    cur = await conn.execute(
        "SELECT exec_id, order_id, account, symbol, side, qty, price, filled_at FROM fills"
        " WHERE broker = %s AND filled_at >= %s AND filled_at < %s ORDER BY exec_id",
        (broker, start, end),
    )
    fills = [
        LedgerFill(
            exec_id=r["exec_id"],
            order_id=r["order_id"],
            account=r["account"],
            symbol=r["symbol"],
            side=OrderSide(r["side"]),
            qty=r["qty"],
            price=r["price"],
            filled_at=r["filled_at"],
        )
        for r in await cur.fetchall()
    ]
    cur = await conn.execute(
        "SELECT order_id, account, symbol, status, updated_at FROM orders WHERE broker = %s AND status = ANY(%s)"
        " ORDER BY order_id",
        (broker, sorted(s.value for s in LIVE_STATUSES)),
    )
    open_orders = [_order(r) for r in await cur.fetchall()]
    wanted = sorted({pg_text(i) for i in order_ids})
    known: dict[str, LedgerOrder] = {}
    if wanted:
        cur = await conn.execute(
            "SELECT order_id, account, symbol, status, updated_at FROM orders WHERE order_id = ANY(%s)", (wanted,)
        )
        known = {r["order_id"]: _order(r) for r in await cur.fetchall()}
    cur = await conn.execute(
        "SELECT account, broker_account FROM accounts WHERE broker = %s AND broker_account IS NOT NULL", (broker,)
    )
    broker_accounts = {r["account"]: r["broker_account"] for r in await cur.fetchall()}
    return LedgerView(
        positions=positions, fills=fills, open_orders=open_orders, known=known, broker_accounts=broker_accounts
    )


async def open_break(
    conn: Conn, *, broker: str, kind: str, ref: str, order_id: str | None, detail: str
) -> tuple[int | None, bool]:
    """Open a break unless one of (broker, kind, ref) is open: (its id, whether this call opened it).

    An identical break of the same order already resolved (same kind and detail: ``reconciliation_breaks``' unique
    key) is not opened again; its id is answered, not new.
    """
    cur = await conn.execute(
        "INSERT INTO reconciliation_breaks (order_id, broker, kind, detail, ref) VALUES (%s, %s, %s, %s, %s)"
        " ON CONFLICT DO NOTHING RETURNING id",
        (None if order_id is None else pg_text(order_id), broker, kind, pg_text(detail), pg_text(ref)),
    )
    row = await cur.fetchone()
    if row is not None:
        return int(row["id"]), True
    cur = await conn.execute(
        "SELECT id FROM reconciliation_breaks WHERE broker = %s AND kind = %s AND ref = %s"
        " ORDER BY (resolved_at IS NULL) DESC, id DESC LIMIT 1",
        (broker, kind, pg_text(ref)),
    )
    row = await cur.fetchone()
    return (None if row is None else int(row["id"])), False


async def record_run(
    conn: Conn,
    *,
    workflow_id: str,
    run_id: str,
    broker: str,
    day: date,
    started_at: datetime,
    compared: list[str],
    counts: dict[str, int],
    new_breaks: int,
    differences: list[dict[str, Any]],
) -> bool:
    """Keep a run's report (once per workflow run); True if this call wrote it."""
    cur = await conn.execute(
        "INSERT INTO reconciliation_runs (workflow_id, run_id, broker, day, started_at, compared, counts, new_breaks,"
        " differences) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING RETURNING run_id",
        (
            workflow_id,
            run_id,
            broker,
            day,
            started_at,
            compared,
            jsonb(counts),
            new_breaks,
            jsonb(pg_value(differences)),
        ),
    )
    return await cur.fetchone() is not None


async def list_runs(
    conn: Conn,
    *,
    scope: Scope,
    broker: str | None = None,
    day: date | None = None,
    limit: int = 50,
) -> list[RunRow]:
    """Runs of the brokers in ``scope``, newest first, of one broker and/or day, at most ``limit``."""
    where, params = scope_conditions(scope, brokers="broker")
    if broker is not None:
        where.append("broker = %s")
        params.append(broker)
    if day is not None:
        where.append("day = %s")
        params.append(day)
    cur = await conn.execute(f"{_RUN} {clause(where)} ORDER BY finished_at DESC LIMIT %s", (*params, limit))
    return cast(list[RunRow], await cur.fetchall())


async def run_of(conn: Conn, workflow_id: str, run_id: str | None = None) -> RunRow | None:
    """One run's report: that run of the workflow, else its latest."""
    if run_id is not None:
        cur = await conn.execute(f"{_RUN} WHERE workflow_id = %s AND run_id = %s", (workflow_id, run_id))
    else:
        cur = await conn.execute(
            f"{_RUN} WHERE workflow_id = %s ORDER BY finished_at DESC LIMIT 1", (pg_text(workflow_id),)
        )
    return cast(RunRow | None, await cur.fetchone())


async def acknowledge_break(conn: Conn, break_id: int, *, actor: str, note: str) -> bool:
    """Mark an open, unacknowledged break acknowledged by ``actor``; False when it is not (unknown, done)."""
    cur = await conn.execute(
        "UPDATE reconciliation_breaks SET acknowledged_at = now(), acknowledged_by = %s, acknowledgement = %s"
        " WHERE id = %s AND resolved_at IS NULL AND acknowledged_at IS NULL RETURNING id",
        (pg_text(actor), pg_text(note), break_id),
    )
    return await cur.fetchone() is not None
