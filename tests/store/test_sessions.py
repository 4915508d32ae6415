"""``store/sessions.py``: a broker session's state, when it last changed, and its owner's heartbeat."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from store import Pool
from store.sessions import heartbeat, record_session, session_of, sessions
from tests.harness import unique

pytestmark = pytest.mark.asyncio


async def test_changed_at_moves_only_when_logged_on_changes_and_the_heartbeat_always(db: Pool) -> None:
    broker = unique("fix")
    async with db.connection() as conn:
        assert await session_of(conn, broker) is None
        await record_session(conn, broker=broker, session="S1", logged_on=False, detail="connecting")
        first = await session_of(conn, broker)
        await asyncio.sleep(0.01)
        await record_session(conn, broker=broker, session="S1", logged_on=False, detail="still down")
        same = await session_of(conn, broker)
        await asyncio.sleep(0.01)
        await record_session(conn, broker=broker, session="S1", logged_on=True, detail="logged on")
        up = await session_of(conn, broker)
        await asyncio.sleep(0.01)
        await heartbeat(conn, broker)
        beat = await session_of(conn, broker)
    assert first is not None and same is not None and up is not None and beat is not None
    assert same["changed_at"] == first["changed_at"] and same["heartbeat_at"] > first["heartbeat_at"]
    assert up["logged_on"] and up["changed_at"] > same["changed_at"] and up["detail"] == "logged on"
    assert beat["heartbeat_at"] > up["heartbeat_at"] and beat["changed_at"] == up["changed_at"]


async def test_the_last_successful_call_only_moves_forward_and_sessions_list_their_ages(db: Pool) -> None:
    broker = unique("alpaca")
    later = datetime.now(UTC)
    earlier = later - timedelta(minutes=5)
    async with db.connection() as conn:
        await record_session(conn, broker=broker, session="https://paper", logged_on=True, detail="stream up")
        [fresh] = [s for s in await sessions(conn) if s["broker"] == broker]
        assert fresh["last_call_at"] is None and fresh["last_call_age"] is None and 0 <= fresh["heartbeat_age"] < 60
        await heartbeat(conn, broker, last_call_at=later)
        await heartbeat(conn, broker, last_call_at=earlier)  # a late writer never moves it back
        await heartbeat(conn, broker)  # a heartbeat without a call keeps it
        [row] = [s for s in await sessions(conn) if s["broker"] == broker]
    assert row["last_call_at"] == later and row["last_call_age"] is not None and 0 <= row["last_call_age"] < 60
    assert row["logged_on"] and row["session"] == "https://paper"
