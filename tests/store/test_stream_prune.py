"""``store/stream.py``'s retention: only a run of old rows from the start goes, and the floor says where it ends."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
from psycopg import AsyncConnection
from psycopg.rows import DictRow, dict_row
from psycopg_pool import AsyncConnectionPool

from store import Conn, Pool
from store.risk import set_trading_state
from store.stream import floor, last_seq, prune, read_page
from tests.conftest import create_database

pytestmark = pytest.mark.asyncio

DAY = timedelta(days=1)


@pytest.fixture(scope="module")
async def own(postgres_admin_url: str) -> AsyncIterator[Pool]:
    # A database of its own: pruning deletes from the start of the stream, whoever wrote it.
    url = await create_database(postgres_admin_url, "exodus_prune")
    pool: Pool = AsyncConnectionPool(
        url,
        connection_class=AsyncConnection[DictRow],
        min_size=1,
        max_size=3,
        kwargs={"autocommit": True, "row_factory": dict_row},
        open=False,
    )
    await pool.open(wait=True)
    yield pool
    await pool.close()


async def _book(conn: Conn, *keys: str) -> list[int]:
    seqs = []
    for key in keys:
        await set_trading_state(conn, scope="SYMBOL", key=key, state="HALTED", reason=key, actor="tests")
        seqs.append(await last_seq(conn))
    return seqs


async def _age(conn: Conn, *seqs: int) -> None:
    await conn.execute(
        "UPDATE stream_events SET booked_at = booked_at - interval '3 days' WHERE seq = ANY(%s)", (list(seqs),)
    )


async def _prune(conn: Conn, batch: int = 5000) -> int | None:
    async with conn.transaction():
        return await prune(conn, older_than=DAY, batch=batch)


async def test_only_old_rows_from_the_start_are_pruned_and_the_floor_follows(own: Pool) -> None:
    async with own.connection() as conn:
        a, b, c, d = await _book(conn, "A", "B", "C", "D")
        assert await floor(conn) == 0 and await _prune(conn) == 0  # nothing is old yet
        await _age(conn, a, c)  # b is young: c must stay, or the floor would hide that b is still there
        assert await _prune(conn) == 1
        assert await floor(conn) == a
        await _age(conn, b)
        assert await _prune(conn, batch=1) == 1  # a full batch: the caller goes on
        assert await _prune(conn, batch=1) == 1
        assert await _prune(conn, batch=1) == 0  # d is young
        assert await floor(conn) == c
        cur = await conn.execute("SELECT seq FROM stream_events ORDER BY seq")
        assert [r["seq"] for r in await cur.fetchall()] == [d]


async def test_a_reader_below_the_floor_is_told_and_one_at_it_reads_on(own: Pool) -> None:
    async with own.connection() as conn:
        [e, f] = await _book(conn, "E", "F")
        await _age(conn, *range(1, e + 1))
        assert await _prune(conn) is not None
        assert await floor(conn) == e
        assert await read_page(conn, e - 1, limit=10) == (e, [])  # events after e-1 are gone: told, not skipped
        pruned, rows = await read_page(conn, e, limit=10)
        assert pruned == e and [r["seq"] for r in rows] == [f]


async def test_a_second_pruner_waits_for_nothing_and_does_nothing(own: Pool) -> None:
    async with own.connection() as holder, own.connection() as other:
        async with holder.transaction():
            await holder.execute("SELECT seq FROM stream_floor FOR UPDATE")
            assert await _prune(other) is None
