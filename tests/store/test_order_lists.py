"""``store/order_lists.py``: a list's row, written by its coordinator; a late (older) write never wins."""

from __future__ import annotations

from typing import Any

import pytest

from store import Pool
from store.order_lists import list_row, write_list
from tests.harness import unique

pytestmark = pytest.mark.asyncio


def _row(list_id: str, version: int, status: str) -> dict[str, Any]:
    return {
        "list_id": list_id,
        "workflow_id": f"list-{list_id}",
        "client_id": "desk-1",
        "client_list_id": "br-1",
        "account": "acct-1",
        "broker": "paper",
        "contingency": "BRACKET",
        "status": status,
        "version": version,
        "book": {"status": status, "v": version},
    }


async def test_newer_versions_replace_the_row_and_older_ones_are_skipped(db: Pool) -> None:
    list_id = unique("LS")
    async with db.connection() as conn:
        assert await list_row(conn, list_id) is None
        assert await write_list(conn, **_row(list_id, 1, "RECEIVED"))
        assert await write_list(conn, **_row(list_id, 3, "DONE"))
        assert not await write_list(conn, **_row(list_id, 2, "WORKING"))
        row = await list_row(conn, list_id)
    assert row is not None
    assert row["status"] == "DONE" and row["version"] == 3 and row["book"] == {"status": "DONE", "v": 3}
    assert (row["client_id"], row["account"], row["broker"]) == ("desk-1", "acct-1", "paper")
