"""A Postgres journal for a simulated venue (tables ``sim_orders``, ``sim_reports``)."""

from __future__ import annotations

import psycopg
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from core.domain import ExecutionReport
from core.errors import ConfigError
from sim.matching import MatchResult, SimOrder

__all__ = ["PostgresVenueJournal"]


class PostgresVenueJournal:
    """Keeps one venue's book in Postgres; one process owns it at a time (advisory lock)."""

    def __init__(self, pool: AsyncConnectionPool, url: str, *, venue: str) -> None:
        """Journal for ``venue`` using ``pool``; ``url`` opens the connection that holds the lock."""
        self._pool = pool
        self._url = url
        self.venue = venue
        self._lock_conn: psycopg.AsyncConnection | None = None

    async def acquire(self) -> None:
        """Take the venue's advisory lock, or fail at once if another process holds it."""
        conn = await psycopg.AsyncConnection.connect(self._url, autocommit=True)
        cur = await conn.execute("SELECT pg_try_advisory_lock(hashtext(%s))", (f"exodus-sim-venue:{self.venue}",))
        row = await cur.fetchone()
        if not row or not row[0]:
            await conn.close()
            raise ConfigError(
                f"simulated venue {self.venue!r} is already run by another process on this database; "
                "only one worker may own a venue's session"
            )
        self._lock_conn = conn

    async def release(self) -> None:
        """Release the lock (closing the connection releases it)."""
        if self._lock_conn is not None:
            await self._lock_conn.close()
            self._lock_conn = None

    async def load(self) -> tuple[list[SimOrder], list[ExecutionReport]]:
        """Every journaled order and the undelivered reports, oldest first."""
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
        """Upsert changed orders and insert new reports in one transaction."""
        async with self._pool.connection() as conn, conn.transaction():
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
                                o.client_order_id,
                                o.status.value,
                                Jsonb(o.model_dump(mode="json")),
                                o.updated_at,
                            )
                            for o in result.changed
                        ],
                    )
                if result.reports:
                    await cur.executemany(
                        "INSERT INTO sim_reports (venue, exec_id, client_order_id, body) VALUES (%s, %s, %s, %s)"
                        " ON CONFLICT DO NOTHING",
                        [
                            (self.venue, r.exec_id, r.client_order_id, Jsonb(r.model_dump(mode="json")))
                            for r in result.reports
                        ],
                    )

    async def mark_delivered(self, exec_ids: list[str]) -> None:
        """Mark reports delivered."""
        async with self._pool.connection() as conn:
            await conn.execute(
                "UPDATE sim_reports SET delivered_at = now() WHERE venue = %s AND exec_id = ANY(%s)"
                " AND delivered_at IS NULL",
                (self.venue, exec_ids),
            )

    async def record_duplicate(self, client_order_id: str) -> None:
        """Count a submission that reused a client order id."""
        async with self._pool.connection() as conn:
            await conn.execute(
                "INSERT INTO sim_duplicate_submits (venue, client_order_id) VALUES (%s, %s)",
                (self.venue, client_order_id),
            )
