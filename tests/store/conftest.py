"""A database of the store tests' own (every table starts empty), and a pool typed as the processes' pool."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from psycopg import AsyncConnection
from psycopg.rows import DictRow, dict_row
from psycopg_pool import AsyncConnectionPool

from store import Pool
from tests.conftest import create_database


@pytest.fixture(scope="package")
async def db(postgres_admin_url: str) -> AsyncIterator[Pool]:
    url = await create_database(postgres_admin_url, "exodus_store")
    pool = AsyncConnectionPool(
        url,
        connection_class=AsyncConnection[DictRow],
        min_size=1,
        max_size=4,
        kwargs={"autocommit": True, "row_factory": dict_row},
        open=False,
    )
    await pool.open(wait=True)
    yield pool
    await pool.close()
