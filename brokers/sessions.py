"""Broker session state in Postgres, so the risk check can refuse new orders while a session is down.

The worker that owns a stateful session (FIX) records every logon and logout in ``broker_sessions`` and
refreshes a heartbeat while it runs; ``session_check_for(broker)`` builds the ``SessionCheck`` the risk
activity calls. A session that is logged out, or whose owner stopped refreshing the heartbeat (the worker
died), refuses new orders with the reason; orders already working stay in flight until it is back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from datetime import datetime, timedelta

from brokers.base import SessionCheck
from core.domain import utcnow
from core.tasks import stop_tasks
from store import Conn, Pool
from store.sessions import heartbeat, record_session, session_of

__all__ = ["OWNER_STALE_SECONDS", "SessionRecorder", "session_check_for"]

log = logging.getLogger(__name__)

#: A session whose owner has not refreshed its heartbeat for this long has no owner (the worker died).
OWNER_STALE_SECONDS = 20.0


class SessionRecorder:
    """Writes one broker session's state and keeps its heartbeat fresh."""

    def __init__(self, pool: Pool, *, broker: str, session: str, heartbeat_seconds: float = 5.0) -> None:
        """Record ``session`` of ``broker`` through ``pool``."""
        self._pool = pool
        self.broker = broker
        self.session = session
        self._interval = heartbeat_seconds
        self._task: asyncio.Task[None] | None = None
        self._pending: set[asyncio.Task[None]] = set()
        #: When a call to the broker last succeeded (REST brokers set it); written with each heartbeat.
        self.last_call: Callable[[], datetime | None] | None = None

    async def start(self) -> None:
        """Record the session as connecting and start the heartbeat."""
        await self._write(False, "connecting")
        self._task = asyncio.create_task(self._beat(), name=f"{self.broker}-session-heartbeat")

    async def stop(self) -> None:
        """Record the session as stopped."""
        if self._task is not None:
            task, self._task = self._task, None
            await stop_tasks([task], what=f"{self.broker} session heartbeat")
        for task in list(self._pending):
            with contextlib.suppress(Exception):
                await task
        with contextlib.suppress(Exception):
            await self._write(False, "stopped")

    def changed(self, logged_on: bool, detail: str = "") -> None:
        """Note a logon or logout (call from the event loop; the write happens in the background)."""
        task = asyncio.create_task(self._write(logged_on, detail or ("logged on" if logged_on else "logged out")))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _write(self, logged_on: bool, detail: str) -> None:
        try:
            async with self._pool.connection() as conn:
                await record_session(conn, broker=self.broker, session=self.session, logged_on=logged_on, detail=detail)
        except Exception:
            log.exception("%s: recording the session state failed", self.broker)

    async def _beat(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            try:
                async with self._pool.connection() as conn:
                    last = self.last_call() if self.last_call is not None else None
                    await heartbeat(conn, self.broker, last_call_at=last)
            except Exception:
                log.exception("%s: session heartbeat failed", self.broker)


def session_check_for(broker: str, *, stale_after: float = OWNER_STALE_SECONDS) -> SessionCheck:
    """A ``SessionCheck`` that refuses new orders while ``broker``'s session is down or unowned."""

    async def check(conn: Conn, account: str) -> str | None:
        row = await session_of(conn, broker)
        if row is None:
            return f"no worker has started the {broker} session yet"
        now = utcnow()
        if now - row["heartbeat_at"] > timedelta(seconds=stale_after):
            return (
                f"the {broker} session {row['session']} has had no owner for "
                f"{(now - row['heartbeat_at']).total_seconds():.0f} s (is the worker that owns it running?)"
            )
        if not row["logged_on"]:
            since = row["changed_at"].strftime("%H:%M:%S")
            return f"the {broker} session {row['session']} is not logged on ({row['detail']}) since {since} UTC"
        return None

    return check
