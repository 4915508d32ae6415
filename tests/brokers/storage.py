"""A Postgres pool that fails on demand, for the adapters' storage-failure tests (``StorageControl``)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import psycopg
from psycopg_pool import AsyncConnectionPool

__all__ = ["FailingPool"]


class _Connection:
    """A pooled connection whose statements fail while its pool is told to."""

    def __init__(self, conn: Any, pool: FailingPool) -> None:
        self._conn, self._pool = conn, pool

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)

    async def execute(self, query: Any, params: Any = None, **kw: Any) -> Any:
        self._pool.check(str(query))
        return await self._conn.execute(query, params, **kw)


class FailingPool:
    """The test's Postgres pool, except that it fails as Postgres would while ``down`` or ``fail_on`` say so.

    ``down``: no connection can be had (``OperationalError``, as the pool raises for an unreachable server).
    ``fail_on``: a statement it matches fails on its connection (``AdminShutdown``, a server that went away).
    """

    def __init__(self, pool: AsyncConnectionPool) -> None:
        self._pool = pool
        self.down = False
        self.fail_on: Callable[[str], bool] | None = None
        self.failures = 0

    def check(self, query: str) -> None:
        if self.fail_on is not None and self.fail_on(query):
            self.failures += 1
            raise psycopg.errors.AdminShutdown("injected: terminating connection due to administrator command")

    @contextlib.asynccontextmanager
    async def connection(self) -> AsyncIterator[Any]:
        if self.down:
            self.failures += 1
            raise psycopg.OperationalError("injected: connection refused, is the server running?")
        async with self._pool.connection() as conn:
            yield _Connection(conn, self)
