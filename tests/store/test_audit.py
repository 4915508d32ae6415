"""The audit log's hash chain detects edits."""

from __future__ import annotations

import psycopg
import pytest
from psycopg import errors
from psycopg_pool import AsyncConnectionPool

from core.db import app_role_configure
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
            # Only an owner or superuser gets past the append-only trigger (migration 0022), e.g. as a replica.
            await conn.execute("SET session_replication_role = replica")
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


async def test_the_application_role_may_append_but_not_change_delete_or_unprotect(postgres_admin_url: str) -> None:
    from psycopg.rows import dict_row

    url = await create_database(postgres_admin_url, "exodus_audit")
    async with AsyncConnectionPool(
        url, kwargs={"autocommit": True, "row_factory": dict_row}, configure=app_role_configure("exodus_app")
    ) as pool:
        async with pool.connection() as conn:
            assert (await (await conn.execute("SELECT current_user AS u")).fetchone())["u"] == "exodus_app"
            await append_audit(conn, actor="ops", action="TEST", subject="s0")
            await append_audit(conn, actor="ops", action="TEST", subject="s1")
            for statement in (
                "UPDATE audit_log SET actor = 'mallory'",
                "DELETE FROM audit_log WHERE subject = 's1'",
                "TRUNCATE audit_log",
                "ALTER TABLE audit_log DISABLE TRIGGER audit_log_append_only",
                "ALTER TABLE audit_log DISABLE TRIGGER ALL",
                "DROP TRIGGER audit_log_append_only ON audit_log",
                "SET session_replication_role = replica",
            ):
                with pytest.raises(psycopg.Error) as refused:
                    await conn.execute(statement)
                assert isinstance(refused.value, errors.InsufficientPrivilege), (statement, refused.value)
            await conn.execute("GRANT UPDATE, DELETE ON audit_log TO exodus_app")  # a warning: nothing granted
            granted = await conn.execute(
                "SELECT has_table_privilege('audit_log', 'UPDATE') OR has_table_privilege('audit_log', 'DELETE') AS g"
            )
            assert (await granted.fetchone())["g"] is False
            # Other tables stay writable for the application.
            await conn.execute("UPDATE trading_state SET reason = reason")
            rows = await (await conn.execute("SELECT subject, actor FROM audit_log ORDER BY id")).fetchall()
            assert rows == [{"subject": "s0", "actor": "ops"}, {"subject": "s1", "actor": "ops"}]
            assert await verify_chain(conn) == (True, 2)


async def test_the_trigger_refuses_changes_even_to_the_owner(postgres_admin_url: str) -> None:
    url = await create_database(postgres_admin_url, "exodus_audit")
    from psycopg.rows import dict_row

    async with await psycopg.AsyncConnection.connect(url, autocommit=True, row_factory=dict_row) as conn:
        await append_audit(conn, actor="ops", action="TEST", subject="s0")
        for statement in ("UPDATE audit_log SET actor = 'mallory'", "DELETE FROM audit_log", "TRUNCATE audit_log"):
            with pytest.raises(errors.InsufficientPrivilege, match="append-only"):
                await conn.execute(statement)
        assert (await (await conn.execute("SELECT count(*) AS n FROM audit_log")).fetchone())["n"] == 1
