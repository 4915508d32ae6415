"""``broker_reports``: the one report journal every broker adapter keeps (``brokers/journal.py`` runs it).

Every execution report an adapter learns of, once per ``(broker, stream, exec_id)``, with its delivery to the
order workflows (``delivered_at``); ``migrations/0019_broker_reports.sql`` says what each column holds. Shared by
every adapter (the FIX session, the Alpaca stream and catch-up, the MT5 bridge in the API and the worker), and
compared with the ledger's ``fills`` in one statement (``net_fills``), so its SQL lives here with the other shared
tables'; ``brokers.journal.ReportJournal`` and ``ReportDelivery`` are the adapters' way in. Text a broker sent is
stored as Postgres can hold it (``store.text.pg_text``: a NUL in a reject reason cannot make the journal fail for
good), and looked up the same way.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from typing import TypedDict, cast

from core.domain import ExecutionReport, ReportKind
from store import Conn
from store.text import jsonb, pg_text, pg_value

__all__ = [
    "NetFillRow",
    "fill_reports",
    "has_report",
    "insert_report",
    "mark_delivered",
    "net_fills",
    "reports_of",
    "undelivered_reports",
]


class NetFillRow(TypedDict):
    """One fill of an account: booked in the ledger, or journaled and still on its way there (``in_flight``)."""

    symbol: str
    side: str
    qty: Decimal
    in_flight: bool


def _reports(rows: Sequence[object]) -> list[ExecutionReport]:
    return [ExecutionReport.model_validate(cast(dict[str, object], row)["body"]) for row in rows]


async def insert_report(
    conn: Conn,
    report: ExecutionReport,
    *,
    broker: str,
    stream: str,
    order_id: str | None = None,
    ref: str | None = None,
    source: str = "",
) -> bool:
    """Journal a report; False (and nothing written) when its exec id was journaled before on that stream."""
    cur = await conn.execute(
        "INSERT INTO broker_reports (broker, stream, exec_id, order_id, kind, ref, source, body)"
        " VALUES (%s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT (broker, stream, exec_id) DO NOTHING RETURNING seq",
        (
            broker,
            pg_text(stream),
            pg_text(report.exec_id),
            pg_text(order_id or report.order_id),
            report.kind.value,
            None if ref is None else pg_text(ref),
            pg_text(source),
            jsonb(pg_value(report.model_dump(mode="json"))),
        ),
    )
    return await cur.fetchone() is not None


async def has_report(conn: Conn, *, broker: str, streams: Sequence[str], exec_id: str) -> bool:
    """Whether a report with ``exec_id`` was journaled on one of ``streams``."""
    cur = await conn.execute(
        "SELECT 1 FROM broker_reports WHERE broker = %s AND stream = ANY(%s) AND exec_id = %s",
        (broker, [pg_text(s) for s in streams], pg_text(exec_id)),
    )
    return await cur.fetchone() is not None


async def reports_of(
    conn: Conn, *, broker: str, order_id: str, streams: Sequence[str] | None = None
) -> list[ExecutionReport]:
    """Every report of an order (its whole replace chain) on ``streams`` (None: any), in the order journaled."""
    if streams is None:
        cur = await conn.execute(
            "SELECT body FROM broker_reports WHERE broker = %s AND order_id = %s ORDER BY seq",
            (broker, pg_text(order_id)),
        )
    else:
        cur = await conn.execute(
            "SELECT body FROM broker_reports WHERE broker = %s AND order_id = %s AND stream = ANY(%s) ORDER BY seq",
            (broker, pg_text(order_id), [pg_text(s) for s in streams]),
        )
    return _reports(await cur.fetchall())


async def fill_reports(
    conn: Conn, *, broker: str, streams: Sequence[str], ref: str | None = None
) -> list[ExecutionReport]:
    """Every fill report on ``streams`` (of the broker's order ``ref`` only, if given), in the order journaled."""
    if ref is None:
        cur = await conn.execute(
            "SELECT body FROM broker_reports WHERE broker = %s AND stream = ANY(%s) AND kind = %s ORDER BY seq",
            (broker, [pg_text(s) for s in streams], ReportKind.FILL.value),
        )
    else:
        cur = await conn.execute(
            "SELECT body FROM broker_reports WHERE broker = %s AND ref = %s AND stream = ANY(%s) AND kind = %s"
            " ORDER BY seq",
            (broker, pg_text(ref), [pg_text(s) for s in streams], ReportKind.FILL.value),
        )
    return _reports(await cur.fetchall())


async def undelivered_reports(
    conn: Conn, *, broker: str, streams: Sequence[str], limit: int | None = None
) -> list[ExecutionReport]:
    """Reports journaled but not yet delivered to their workflow, oldest first (at most ``limit``; None: all)."""
    cur = await conn.execute(
        "SELECT body FROM broker_reports WHERE broker = %s AND stream = ANY(%s) AND delivered_at IS NULL"
        " ORDER BY seq LIMIT %s",
        (broker, [pg_text(s) for s in streams], limit),
    )
    return _reports(await cur.fetchall())


async def mark_delivered(conn: Conn, *, broker: str, streams: Sequence[str], exec_ids: Sequence[str]) -> None:
    """Note reports as delivered."""
    if not exec_ids:
        return
    await conn.execute(
        "UPDATE broker_reports SET delivered_at = now() WHERE broker = %s AND stream = ANY(%s)"
        " AND exec_id = ANY(%s) AND delivered_at IS NULL",
        (broker, [pg_text(s) for s in streams], [pg_text(e) for e in exec_ids]),
    )


async def net_fills(conn: Conn, *, broker: str, account: str, stream: str) -> list[NetFillRow]:
    """Every fill of ``account`` at ``broker``: booked, or journaled on ``stream`` and not booked yet (in flight).

    One statement, so one snapshot: two queries could miss a fill booked between them (the MT5 bridge's
    reconciliation counts the fills in flight so that a reconnect reports no break that heals a second later).
    """
    cur = await conn.execute(
        """
        SELECT symbol, side, qty, false AS in_flight FROM fills WHERE broker = %(broker)s AND account = %(account)s
        UNION ALL
        SELECT body->>'symbol', body->>'side', (body->>'last_qty')::numeric, true FROM broker_reports r
        WHERE r.broker = %(broker)s AND r.stream = %(stream)s AND kind = 'FILL'
          AND NOT EXISTS (SELECT 1 FROM fills f WHERE f.broker = %(broker)s AND f.exec_id = r.exec_id)
        """,
        {"broker": broker, "account": account, "stream": pg_text(stream)},
    )
    return cast(list[NetFillRow], await cur.fetchall())
