"""The audit log's hash chain detects edits."""

from __future__ import annotations

import pytest
from psycopg_pool import AsyncConnectionPool

from store.audit import append_audit, verify_chain
from tests.conftest import create_database

pytestmark = pytest.mark.asyncio


async def test_chain_verifies_and_an_edit_breaks_it(postgres_admin_url: str) -> None:
    from psycopg.rows import dict_row

    url = await create_database(postgres_admin_url, "exodus_audit")
    async with AsyncConnectionPool(url, kwargs={"autocommit": True, "row_factory": dict_row}) as pool:
        async with pool.connection() as conn:
            for i in range(5):
                async with conn.transaction():
                    await append_audit(
                        conn, actor="ops", action="TEST", subject=f"s{i}", detail={"i": i, "why": "test"}
                    )
            assert await verify_chain(conn) == (True, 5)
            await conn.execute("UPDATE audit_log SET actor = 'mallory' WHERE subject = 's2'")
            intact, checked = await verify_chain(conn)
            assert not intact and checked == 2


async def test_entries_are_listed_newest_first_filtered_and_paged(postgres_admin_url: str) -> None:
    from psycopg.rows import dict_row

    from store.audit import entries

    url = await create_database(postgres_admin_url, "exodus_audit")
    async with AsyncConnectionPool(url, kwargs={"autocommit": True, "row_factory": dict_row}) as pool:
        async with pool.connection() as conn:
            for i in range(4):
                await append_audit(conn, actor="ops" if i % 2 else "risk", action="TEST", subject=f"s{i}")
            newest = await entries(conn, limit=2)
            by_ops = await entries(conn, actor="ops", limit=10)
            older = await entries(conn, before_id=newest[-1]["id"], limit=10)
    assert [e["subject"] for e in newest] == ["s3", "s2"]
    assert [e["subject"] for e in by_ops] == ["s3", "s1"]
    assert [e["subject"] for e in older] == ["s1", "s0"]
