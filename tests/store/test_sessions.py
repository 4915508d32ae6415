"""``store/sessions.py``: a broker session's state, when it last changed, and its owner's heartbeat."""

from __future__ import annotations

import asyncio

import pytest

from store import Pool
from store.sessions import heartbeat, record_session, session_of
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
