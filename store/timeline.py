"""``order_events``: an order's timeline, one row per event, numbered by its workflow (``seq``).

The timeline converges on what Temporal recorded: a booking writes its events over their ``seq`` and drops
rows beyond the order's event count (``activities/persistence.py`` says why), and only a booking at least as
new as the order row writes at all.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import datetime
from typing import TypedDict, cast

from psycopg import AsyncCursor
from psycopg.rows import DictRow

from core.domain import EventKind, OrderEvent
from store import Conn
from store._pending import Pending
from store.text import jsonb, pg_text, pg_value

__all__ = ["EventRow", "KnownEvent", "events_of", "report_on_timeline", "send_events", "write_events"]


class EventRow(TypedDict):
    """One event as the API shows it (``kind``: a ``core.domain.EventKind`` value)."""

    seq: int
    at: datetime
    kind: str
    status: str
    detail: str
    actor: str | None


class KnownEvent(TypedDict):
    """An event the order already had, by what it is (kind, and the report's execution id if any)."""

    kind: str
    exec_id: str | None


async def write_events(
    conn: Conn, *, order_id: str, version: int, events: Sequence[OrderEvent], watched: Collection[EventKind] = ()
) -> list[KnownEvent]:
    """Write ``events`` over their ``seq`` and drop rows beyond ``version`` (the order's event count).

    Only when the order row is at ``version`` or older (a late, stale booking changes nothing). Returns the
    events of the ``watched`` kinds the order had before this write (read first, in the same pipeline).
    """
    return await (await send_events(conn, order_id=order_id, version=version, events=events, watched=watched)).result()


async def send_events(
    conn: Conn, *, order_id: str, version: int, events: Sequence[OrderEvent], watched: Collection[EventKind] = ()
) -> Pending[list[KnownEvent]]:
    """``write_events``, its answer (the ``watched`` events the order had before) read later (pipeline mode)."""
    if not events:
        return Pending(None, _known, [])
    known_cur = None
    if watched:
        known_cur = await conn.execute(
            "SELECT kind, data->>'exec_id' AS exec_id FROM order_events WHERE order_id = %s AND kind = ANY(%s)",
            (order_id, sorted(k.value for k in watched)),
        )
    await conn.execute(
        "INSERT INTO order_events (order_id, seq, at, kind, status, detail, actor, data)"
        " SELECT %s, * FROM unnest(%s::int[], %s::timestamptz[], %s::text[], %s::text[], %s::text[], %s::text[],"
        " %s::jsonb[]) WHERE (SELECT version FROM orders WHERE order_id = %s) <= %s"
        " ON CONFLICT (order_id, seq) DO UPDATE SET at = EXCLUDED.at, kind = EXCLUDED.kind,"
        " status = EXCLUDED.status, detail = EXCLUDED.detail, actor = EXCLUDED.actor, data = EXCLUDED.data"
        " WHERE (order_events.at, order_events.kind, order_events.status, order_events.detail,"
        " order_events.actor, order_events.data) IS DISTINCT FROM"
        " (EXCLUDED.at, EXCLUDED.kind, EXCLUDED.status, EXCLUDED.detail, EXCLUDED.actor, EXCLUDED.data)",
        (
            order_id,
            [e.seq for e in events],
            [e.at for e in events],
            [e.kind.value for e in events],
            [e.status.value for e in events],
            [pg_text(e.detail) for e in events],
            [None if e.actor is None else pg_text(e.actor) for e in events],
            [jsonb(pg_value(e.data)) for e in events],
            order_id,
            version,
        ),
    )
    await conn.execute(
        "DELETE FROM order_events WHERE order_id = %s AND seq > %s"
        " AND (SELECT version FROM orders WHERE order_id = %s) = %s",
        (order_id, version, order_id, version),
    )
    return Pending(known_cur, _known, [])


async def _known(cur: AsyncCursor[DictRow]) -> list[KnownEvent]:
    return cast(list[KnownEvent], await cur.fetchall())


async def events_of(conn: Conn, order_id: str) -> list[EventRow]:
    """An order's timeline in order."""
    cur = await conn.execute(
        "SELECT seq, at, kind, status, detail, actor FROM order_events WHERE order_id = %s ORDER BY seq",
        (order_id,),
    )
    return cast(list[EventRow], await cur.fetchall())


async def report_on_timeline(conn: Conn, *, order_id: str, exec_id: str) -> bool:
    """Whether the order's booked timeline has an event from the broker report ``exec_id``."""
    cur = await conn.execute(
        "SELECT 1 FROM order_events WHERE order_id = %s AND data ->> 'exec_id' = %s LIMIT 1",
        (order_id, pg_text(exec_id)),
    )
    return await cur.fetchone() is not None
