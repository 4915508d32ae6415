"""A Postgres journal for a simulated venue (tables ``sim_orders``, ``sim_reports``, ``sim_duplicate_submits``).

One process owns a venue's journal at a time: it holds a session-level advisory lock on a connection of its
own. Postgres drops that lock with the connection (a restart of Postgres, a network cut), so before every
save the journal checks the connection without a round trip and takes the lock again on a new one; if
another process took it meanwhile, the save fails and the venue stops answering.

Delivery marks (``mark_delivered``) ride the next save's transaction instead of a transaction of their own;
if no save comes within ``mark_delay`` seconds they are written alone, and ``load`` and ``release`` write them
first. A mark lost with the process only means its report is handed out again at the next start, which its
receiver tells apart (the dispatcher finds the order already had it).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import psycopg
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool
from pydantic import BaseModel

from core.db import connection_alive, pipelined_transaction
from core.domain import ExecutionReport
from core.errors import ConfigError
from core.tasks import stop_tasks
from sim.matching import MatchResult, SimOrder

__all__ = ["PostgresVenueJournal"]

log = logging.getLogger(__name__)


class PostgresVenueJournal:
    """Keeps one venue's book in Postgres; one process owns it at a time (advisory lock)."""

    def __init__(
        self,
        pool: AsyncConnectionPool[Any],
        url: str,
        *,
        venue: str,
        lock_wait_seconds: float = 15.0,
        mark_delay: float = 1.0,
    ) -> None:
        """Journal for ``venue`` using ``pool``; ``url`` opens the connection that holds the lock.

        ``lock_wait_seconds``: how long ``acquire`` waits for a lock another session holds (a process that
        was just killed may hold it for a moment) before refusing. ``mark_delay``: how long delivery marks wait
        for a save to carry them.
        """
        self._pool = pool
        self._url = url
        self.venue = venue
        self._lock_wait = lock_wait_seconds
        self._lock_conn: psycopg.AsyncConnection | None = None
        self._owned = False
        self._mark_delay = mark_delay
        #: Reports delivered and not yet marked so in the journal.
        self._marks: list[str] = []
        self._mark_timer: asyncio.Task[None] | None = None

    async def acquire(self) -> None:
        """Take the venue's advisory lock; fail if another process keeps it for ``lock_wait_seconds``."""
        deadline = time.monotonic() + self._lock_wait
        delay = 0.2
        while not await self._try_lock():
            if time.monotonic() >= deadline:
                raise ConfigError(
                    f"simulated venue {self.venue!r} is already run by another process on this database; "
                    "only one worker may own a venue's session"
                )
            log.info("venue %s: another session holds the journal's lock; retrying in %.1fs", self.venue, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)
        self._owned = True

    async def _try_lock(self) -> bool:
        conn = await psycopg.AsyncConnection.connect(self._url, autocommit=True)
        try:
            cur = await conn.execute("SELECT pg_try_advisory_lock(hashtext(%s))", (f"exodus-sim-venue:{self.venue}",))
            row = await cur.fetchone()
        except BaseException:
            await conn.close()
            raise
        if not row or not row[0]:
            await conn.close()
            return False
        old, self._lock_conn = self._lock_conn, conn
        if old is not None:
            await old.close()
        return True

    async def _ensure_owner(self) -> None:
        if not self._owned or (self._lock_conn is not None and connection_alive(self._lock_conn)):
            return
        log.warning("venue %s: the connection holding the journal's lock was lost; taking the lock again", self.venue)
        if not await self._try_lock():
            raise ConfigError(
                f"simulated venue {self.venue!r}: another process took the journal's lock while this one had lost "
                "its connection; this process no longer owns the venue"
            )

    async def release(self) -> None:
        """Write the pending delivery marks, then release the lock (closing the connection releases it)."""
        if self._mark_timer is not None:
            await stop_tasks([self._mark_timer], what=f"venue {self.venue}: delivery marks")
        try:
            await self.write_marks()
        except Exception as e:  # the reports are handed out again at the next start: no loss
            log.warning("venue %s: %d delivery marks not written at release, was %r", self.venue, len(self._marks), e)
        self._owned = False
        if self._lock_conn is not None:
            await self._lock_conn.close()
            self._lock_conn = None

    async def load(self) -> tuple[list[SimOrder], list[ExecutionReport]]:
        """Every journaled order and the undelivered reports, oldest first (pending delivery marks written first)."""
        await self.write_marks()
        async with self._pool.connection() as conn:
            cur = await conn.execute("SELECT body FROM sim_orders WHERE venue = %s", (self.venue,))
            orders = [SimOrder.model_validate(row["body"]) for row in await cur.fetchall()]
            cur = await conn.execute(
                "SELECT body FROM sim_reports WHERE venue = %s AND delivered_at IS NULL ORDER BY created_at, exec_id",
                (self.venue,),
            )
            reports = [ExecutionReport.model_validate(row["body"]) for row in await cur.fetchall()]
        return orders, reports

    async def save(self, result: MatchResult) -> None:
        """Upsert changed orders, insert new reports and refused duplicates, in one transaction (idempotent).

        In pipeline mode: BEGIN, the statements and COMMIT go out together, one round trip
        (``core.db.pipelined_transaction``; the venue's lock is held meanwhile, so every submission waits for this).
        The delivery marks pending go in the same transaction.
        """
        await self._ensure_owner()
        marks, self._marks = self._marks, []
        try:
            await self._save(result, marks)
        except BaseException:
            self._marks = marks + self._marks
            raise

    async def _save(self, result: MatchResult, marks: list[str]) -> None:
        async with self._pool.connection() as conn, pipelined_transaction(conn):
            if marks:
                await conn.execute(_MARK, (self.venue, marks))
            async with conn.cursor() as cur:
                if result.changed:
                    await cur.executemany(
                        "INSERT INTO sim_orders (venue, venue_order_id, client_order_id, status, body, updated_at)"
                        " VALUES (%s, %s, %s, %s, %s, %s)"
                        " ON CONFLICT (venue, venue_order_id) DO UPDATE SET client_order_id = EXCLUDED.client_order_id,"
                        " status = EXCLUDED.status, body = EXCLUDED.body, updated_at = EXCLUDED.updated_at",
                        [
                            (
                                self.venue,
                                o.venue_order_id,
                                o.cl_ord_id,
                                o.status.value,
                                Jsonb(o, _json),
                                o.updated_at,
                            )
                            for o in result.changed
                        ],
                    )
                if result.reports:
                    await cur.executemany(
                        "INSERT INTO sim_reports (venue, exec_id, client_order_id, body) VALUES (%s, %s, %s, %s)"
                        " ON CONFLICT DO NOTHING",
                        [(self.venue, r.exec_id, r.cl_ord_id, Jsonb(r, _json)) for r in result.reports],
                    )
                if result.duplicates:
                    await cur.executemany(
                        "INSERT INTO sim_duplicate_submits (venue, client_order_id, event_id) VALUES (%s, %s, %s)"
                        " ON CONFLICT (venue, event_id) DO NOTHING",
                        [(self.venue, d.cl_ord_id, d.event_id) for d in result.duplicates],
                    )

    async def mark_delivered(self, exec_ids: list[str]) -> None:
        """Mark reports delivered: with the next save, or on their own after ``mark_delay`` seconds."""
        if not exec_ids:
            return
        self._marks.extend(exec_ids)
        if self._mark_timer is None or self._mark_timer.done():
            self._mark_timer = asyncio.get_running_loop().create_task(self._write_marks_later())

    async def _write_marks_later(self) -> None:
        await asyncio.sleep(self._mark_delay)
        try:
            await self.write_marks()
        except Exception as e:  # kept for the next save, load or release
            log.warning("venue %s: writing %d delivery marks failed, was %r", self.venue, len(self._marks), e)

    async def write_marks(self) -> None:
        """Write the pending delivery marks now (kept for the next try if this fails)."""
        marks, self._marks = self._marks, []
        if not marks:
            return
        try:
            async with self._pool.connection() as conn:
                await conn.execute(_MARK, (self.venue, marks))
        except BaseException:
            self._marks = marks + self._marks
            raise


def _json(model: BaseModel) -> str:
    """A journaled body: the model's JSON text straight from pydantic.

    The document ``model_dump(mode="json")`` describes, without building it as Python objects and encoding those.
    """
    return model.model_dump_json()


_MARK = "UPDATE sim_reports SET delivered_at = now() WHERE venue = %s AND exec_id = ANY(%s) AND delivered_at IS NULL"
