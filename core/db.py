"""Postgres access: the connection pool factory, the migration runner, and waiting for Postgres at start-up.

Migrations are plain SQL files in ``migrations/`` named ``NNNN_description.sql``, applied in order at
start-up under an advisory lock (so a worker and an API starting together do not race), each in its own
transaction and recorded in ``schema_migrations``.

Pools check a connection as they hand it out, without a round trip (``connection_alive``): after Postgres
restarts, the dead connections are dropped and replaced instead of failing the next request that gets one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import psycopg
from psycopg import AsyncConnection, sql
from psycopg.pq import ConnStatus, TransactionStatus
from psycopg.rows import DictRow, dict_row
from psycopg_pool import AsyncConnectionPool

from core.settings import Settings
from core.startup import wait_until_up

__all__ = [
    "MIGRATIONS_DIR",
    "app_role_configure",
    "apply_migrations",
    "connection_alive",
    "database_location",
    "open_pool",
    "ping",
    "pipelined_transaction",
    "wait_for_postgres",
]

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"
_MIGRATION_LOCK = 0x45584F44  # "EXOD"


def connection_alive(conn: AsyncConnection[Any]) -> bool:
    """Whether an idle connection is still connected, without a round trip.

    Reads whatever the server sent unasked: a server that went away has sent its goodbye and closed the
    socket, which the second read sees (libpq's socket never blocks).
    """
    if conn.closed or conn.pgconn.status != ConnStatus.OK:
        return False
    try:
        for _ in range(3):
            conn.pgconn.consume_input()
    except psycopg.OperationalError:
        return False
    return conn.pgconn.status == ConnStatus.OK


async def _check_alive(conn: AsyncConnection[Any]) -> None:
    if not connection_alive(conn):
        raise psycopg.OperationalError("the connection was closed by the server")


def app_role_configure(role: str) -> Callable[[AsyncConnection[Any]], Awaitable[None]] | None:
    """A pool's ``configure``: every new connection takes the application role (migration 0022).

    The role may append to the audit log but neither change nor delete its rows, nor disable the triggers
    that refuse it. A login that already is ``role`` (or an empty ``role``) is left as it is.
    """
    if not role:
        return None
    statement = sql.SQL("SET ROLE {}").format(sql.Identifier(role))

    async def configure(conn: AsyncConnection[Any]) -> None:
        if conn.info.parameter_status("session_authorization") != role:
            await conn.execute(statement)

    return configure


async def open_pool(
    settings: Settings, *, name: str = "exodus", timeout: float | None = None
) -> AsyncConnectionPool[AsyncConnection[DictRow]]:
    """Open a connection pool to ``DATABASE_URL`` and wait until it can serve a connection.

    Connections are in autocommit mode (a caller that wants a transaction opens one) and return rows as
    dicts (``store.Conn``), as the application role (``database.app_role``, see ``app_role_configure``).
    ``timeout``: how long a caller waits for a connection before ``PoolTimeout``
    (psycopg's default 30 s).
    """
    pool = AsyncConnectionPool(
        settings.require_database_url(),
        connection_class=AsyncConnection[DictRow],
        min_size=settings.database.pool_min,
        max_size=settings.database.pool_max,
        kwargs={"autocommit": True, "row_factory": dict_row},
        name=name,
        open=False,
        check=_check_alive,
        configure=app_role_configure(settings.database.app_role),
        timeout=30.0 if timeout is None else timeout,
    )
    await pool.open(wait=True, timeout=30)
    return pool


@contextlib.asynccontextmanager
async def pipelined_transaction(conn: AsyncConnection[Any]) -> AsyncIterator[None]:
    """A transaction in pipeline mode whose BEGIN and COMMIT travel with its statements.

    psycopg's ``conn.transaction()`` inside ``conn.pipeline()`` waits for the server at BEGIN, before the
    COMMIT, at the COMMIT and at the pipeline's end: four round trips of its own. Here BEGIN goes out with the
    first statements and COMMIT with the last, so the caller waits only where it reads a result, and once at the
    end for the commit's answer. Anything raised inside (a statement's error, found when a result is read or at
    the end, or the caller's own exception) rolls the transaction back: nothing of it is committed.

    For a connection in autocommit mode (``open_pool``'s), outside any transaction.
    """
    if not conn.autocommit or conn.info.transaction_status != TransactionStatus.IDLE:
        raise psycopg.ProgrammingError("pipelined_transaction needs an idle connection in autocommit mode")
    try:
        async with conn.pipeline():
            await conn.execute("BEGIN")
            yield
            await conn.execute("COMMIT")
    except BaseException:
        # A statement failed (the server skipped the rest, COMMIT included) or the caller gave up: roll back
        # what is open. If even that fails, the pool discards the connection (it is not idle).
        if not conn.closed and conn.info.transaction_status != TransactionStatus.IDLE:
            with contextlib.suppress(psycopg.Error):
                await conn.execute("ROLLBACK")
        raise


async def ping(conn: AsyncConnection[Any]) -> None:
    """One round trip (readiness)."""
    await conn.execute("SELECT 1")


def database_location(url: str) -> str:
    """``host:port/dbname`` of a Postgres URL, without credentials (for log lines)."""
    try:
        params = psycopg.conninfo.conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        return "(unparsable DATABASE_URL)"
    host = str(params.get("host") or "localhost")
    return f"{host}:{params.get('port') or 5432}/{params.get('dbname') or params.get('user') or ''}"


async def wait_for_postgres(url: str, *, stop: asyncio.Event | None = None, max_delay: float = 10.0) -> list[str]:
    """Wait until Postgres at ``url`` answers (logging each failed try), then apply the migrations.

    Only connection failures are waited out; a migration that fails for another reason raises.
    """
    return await wait_until_up(
        "Postgres",
        database_location(url),
        lambda: apply_migrations(url),
        retry_on=(psycopg.OperationalError, OSError),
        stop=stop,
        max_delay=max_delay,
    )


async def apply_migrations(url: str, directory: Path = MIGRATIONS_DIR) -> list[str]:
    """Apply the migrations not yet recorded; return the names applied."""
    applied: list[str] = []
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        await conn.execute("SELECT pg_advisory_lock(%s)", (_MIGRATION_LOCK,))
        try:
            await conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                " version text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
            )
            cur = await conn.execute("SELECT version FROM schema_migrations")
            done = {row[0] for row in await cur.fetchall()}
            for path in sorted(directory.glob("[0-9][0-9][0-9][0-9]_*.sql")):
                if path.stem in done:
                    continue
                async with conn.transaction():
                    await conn.execute(path.read_text().encode())
                    await conn.execute("INSERT INTO schema_migrations (version) VALUES (%s)", (path.stem,))
                applied.append(path.stem)
                log.info("applied migration %s", path.stem)
        finally:
            await conn.execute("SELECT pg_advisory_unlock(%s)", (_MIGRATION_LOCK,))
    return applied


def _main() -> None:
    """``python -m core.db``: apply the migrations to ``DATABASE_URL`` (the compose ``prestart`` step)."""
    import asyncio

    from core.settings import get_settings

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    applied = asyncio.run(apply_migrations(get_settings().require_database_url()))
    print(f"migrations applied: {', '.join(applied) or 'none (up to date)'}")


if __name__ == "__main__":
    _main()
