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
