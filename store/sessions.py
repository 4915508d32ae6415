"""``broker_sessions``: each stateful broker session's state and its owner's heartbeat (read by risk)."""

from __future__ import annotations

from datetime import datetime
from typing import TypedDict, cast

from store import Conn

__all__ = [
    "SessionHealth",
    "SessionRow",
    "SessionStatus",
    "heartbeat",
    "record_session",
    "session_health",
    "session_of",
    "sessions",
]


class SessionRow(TypedDict):
    """One broker's session as its owning worker last recorded it."""

    session: str
    logged_on: bool
    detail: str
    changed_at: datetime
    heartbeat_at: datetime


async def record_session(conn: Conn, *, broker: str, session: str, logged_on: bool, detail: str) -> None:
    """Record a session's state (``changed_at`` moves only when logged on/off changes) and beat its heartbeat."""
    await conn.execute(
        "INSERT INTO broker_sessions (broker, session, logged_on, detail) VALUES (%s, %s, %s, %s)"
        " ON CONFLICT (broker) DO UPDATE SET session = EXCLUDED.session, logged_on = EXCLUDED.logged_on,"
        " detail = EXCLUDED.detail, heartbeat_at = now(),"
        " changed_at = CASE WHEN broker_sessions.logged_on = EXCLUDED.logged_on"
        " THEN broker_sessions.changed_at ELSE now() END",
        (broker, session, logged_on, detail),
    )


async def heartbeat(conn: Conn, broker: str, *, last_call_at: datetime | None = None) -> None:
    """The owner of ``broker``'s session is alive (and, for a REST broker, a call succeeded at ``last_call_at``)."""
    await conn.execute(
        "UPDATE broker_sessions SET heartbeat_at = now(),"
        " last_call_at = CASE WHEN last_call_at IS NULL OR last_call_at < %s THEN %s ELSE last_call_at END"
        " WHERE broker = %s",
        (last_call_at, last_call_at, broker),
    )


class SessionStatus(TypedDict):
    """One broker's session for the health page, with the ages the database computes (its clock)."""

    broker: str
    session: str
    logged_on: bool
    detail: str
    changed_at: datetime
    heartbeat_at: datetime
    heartbeat_age: float
    last_call_at: datetime | None
    last_call_age: float | None


async def sessions(conn: Conn) -> list[SessionStatus]:
    """Every broker's recorded session, by broker."""
    cur = await conn.execute(
        "SELECT broker, session, logged_on, detail, changed_at, heartbeat_at, last_call_at,"
        " extract(epoch FROM now() - heartbeat_at)::float8 AS heartbeat_age,"
        " extract(epoch FROM now() - last_call_at)::float8 AS last_call_age"
        " FROM broker_sessions ORDER BY broker"
    )
    return cast(list[SessionStatus], await cur.fetchall())


async def session_of(conn: Conn, broker: str) -> SessionRow | None:
    """``broker``'s session, else None (no worker has started it)."""
    cur = await conn.execute(
        "SELECT session, logged_on, detail, changed_at, heartbeat_at FROM broker_sessions WHERE broker = %s",
        (broker,),
    )
    return cast(SessionRow | None, await cur.fetchone())


class SessionHealth(TypedDict):
    """One broker's session as the metrics show it."""

    broker: str
    logged_on: bool
    heartbeat_age: float
    #: Seconds since a REST broker's last successful call (None: no call recorded, FIX for one).
    last_call_age: float | None


async def session_health(conn: Conn) -> list[SessionHealth]:
    """Every broker session: logged on or not, its owner's heartbeat age and its last call's age (seconds)."""
    cur = await conn.execute(
        "SELECT broker, logged_on, extract(epoch FROM now() - heartbeat_at)::float8 AS heartbeat_age,"
        " extract(epoch FROM now() - last_call_at)::float8 AS last_call_age"
        " FROM broker_sessions ORDER BY broker"
    )
    return cast(list[SessionHealth], await cur.fetchall())
