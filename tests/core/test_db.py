"""``core.db.pipelined_transaction``: one transaction in pipeline mode, all or nothing, few round trips."""

from __future__ import annotations

import uuid

import psycopg
import pytest
from psycopg.pq import TransactionStatus
from psycopg_pool import AsyncConnectionPool

from core.db import pipelined_transaction
from tests.pgtrace import traced

pytestmark = pytest.mark.asyncio

_INSERT = "INSERT INTO sim_duplicate_submits (venue, client_order_id, event_id) VALUES (%s, %s, %s)"


async def _rows(pool: AsyncConnectionPool, venue: str) -> list[str]:
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT event_id FROM sim_duplicate_submits WHERE venue = %s ORDER BY event_id", (venue,)
        )
        return [r["event_id"] for r in await cur.fetchall()]


async def test_statements_and_commit_go_out_together(pool: AsyncConnectionPool) -> None:
    venue = f"tx-{uuid.uuid4().hex[:8]}"
    async with pool.connection() as conn, traced(conn) as trace:
        async with pipelined_transaction(conn):
            await conn.execute(_INSERT, (venue, "c", "e1"))
            await conn.execute(_INSERT, (venue, "c", "e2"))
        status = conn.info.transaction_status
    assert status == TransactionStatus.IDLE
    assert trace.statements[0] == "BEGIN" and trace.statements[-1] == "COMMIT" and len(trace.statements) == 4
    assert trace.round_trips == 1
    assert await _rows(pool, venue) == ["e1", "e2"]


async def test_a_read_inside_costs_one_round_trip_more(pool: AsyncConnectionPool) -> None:
    venue = f"tx-{uuid.uuid4().hex[:8]}"
    async with pool.connection() as conn, traced(conn) as trace:
        async with pipelined_transaction(conn):
            cur = await conn.execute(_INSERT + " RETURNING event_id", (venue, "c", "e1"))
            assert (await cur.fetchone())["event_id"] == "e1"
            await conn.execute(_INSERT, (venue, "c", "e2"))
    assert trace.round_trips == 2


async def test_a_failing_statement_commits_nothing(pool: AsyncConnectionPool) -> None:
    # The duplicate event id fails; the server skips what follows (COMMIT included) and the block rolls back.
    venue = f"tx-{uuid.uuid4().hex[:8]}"
    async with pool.connection() as conn:
        with pytest.raises(psycopg.errors.UniqueViolation):
            async with pipelined_transaction(conn):
                await conn.execute(_INSERT, (venue, "c", "e1"))
                await conn.execute(_INSERT, (venue, "c", "e1"))
                await conn.execute(_INSERT, (venue, "c", "e2"))
        assert conn.info.transaction_status == TransactionStatus.IDLE
    assert await _rows(pool, venue) == []


async def test_the_callers_exception_commits_nothing(pool: AsyncConnectionPool) -> None:
    venue = f"tx-{uuid.uuid4().hex[:8]}"
    async with pool.connection() as conn:
        with pytest.raises(LookupError):
            async with pipelined_transaction(conn):
                await conn.execute(_INSERT, (venue, "c", "e1"))
                cur = await conn.execute("SELECT 1 AS one")
                assert (await cur.fetchone())["one"] == 1
                raise LookupError("the caller changed its mind")
        assert conn.info.transaction_status == TransactionStatus.IDLE
    assert await _rows(pool, venue) == []


async def test_it_refuses_a_connection_inside_a_transaction(pool: AsyncConnectionPool) -> None:
    async with pool.connection() as conn, conn.transaction():
        with pytest.raises(psycopg.ProgrammingError, match="idle connection in autocommit"):
            async with pipelined_transaction(conn):
                pass
