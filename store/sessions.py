"""``broker_sessions``: each stateful broker session's state and its owner's heartbeat (read by risk)."""

from __future__ import annotations

from datetime import datetime
from typing import TypedDict, cast

from store import Conn

__all__ = ["SessionHealth", "session_health", "SessionRow", "heartbeat", "record_session", "session_of"]


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


async def heartbeat(conn: Conn, broker: str) -> None:
    """The owner of ``broker``'s session is alive."""
    await conn.execute("UPDATE broker_sessions SET heartbeat_at = now() WHERE broker = %s", (broker,))


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


async def session_health(conn: Conn) -> list[SessionHealth]:
    """Every broker session: logged on or not, and the age of its owner's heartbeat (seconds)."""
    cur = await conn.execute(
        "SELECT broker, logged_on, extract(epoch FROM now() - heartbeat_at)::float8 AS heartbeat_age"
        " FROM broker_sessions ORDER BY broker"
    )
    return cast(list[SessionHealth], await cur.fetchall())
