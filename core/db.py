"""Postgres access: the connection pool factory and the migration runner.

Migrations are plain SQL files in ``migrations/`` named ``NNNN_description.sql``, applied in order at
start-up under an advisory lock (so a worker and an API starting together do not race), each in its own
transaction and recorded in ``schema_migrations``.
"""

from __future__ import annotations

import logging
from pathlib import Path

import psycopg
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from core.settings import Settings

__all__ = ["MIGRATIONS_DIR", "apply_migrations", "open_pool"]

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"
_MIGRATION_LOCK = 0x45584F44  # "EXOD"


async def open_pool(settings: Settings, *, name: str = "exodus") -> AsyncConnectionPool:
    """Open a connection pool to ``DATABASE_URL`` and wait until it can serve a connection."""
    pool = AsyncConnectionPool(
        settings.require_database_url(),
        min_size=settings.database.pool_min,
        max_size=settings.database.pool_max,
        kwargs={"autocommit": True, "row_factory": dict_row},
        name=name,
        open=False,
    )
    await pool.open(wait=True, timeout=30)
    return pool


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
                    await conn.execute(path.read_text())  # type: ignore[arg-type]
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
