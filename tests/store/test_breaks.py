"""``store/breaks.py``: breaks are opened once; unmatched reports are kept once, whatever their text."""

from __future__ import annotations

import pytest

from store import Pool
from store.breaks import add_break, add_break_once_open, add_unmatched_report
from tests.harness import unique

pytestmark = pytest.mark.asyncio


async def test_a_break_is_opened_once_per_order_kind_and_detail(db: Pool) -> None:
    order_id = unique("o")
    async with db.connection() as conn:
        assert await add_break(conn, order_id=order_id, broker="paper", kind="X", detail="X: a\x00b") is True
        assert await add_break(conn, order_id=order_id, broker="paper", kind="X", detail="X: a\x00b") is False
        assert await add_break(conn, order_id=order_id, broker="paper", kind="X", detail="X: other") is True
        cur = await conn.execute("SELECT detail FROM reconciliation_breaks WHERE order_id = %s", (order_id,))
        details = sorted(r["detail"] for r in await cur.fetchall())
    assert details == ["X: a\u2400b", "X: other"]


async def test_an_open_break_is_not_opened_again_for_another_order(db: Pool) -> None:
    detail = unique("terminal position differs")
    async with db.connection() as conn:
        await add_break_once_open(conn, order_id=None, broker="mt5", kind="POSITION", detail=detail)
        await add_break_once_open(conn, order_id="o-2", broker="mt5", kind="POSITION", detail=detail)
        cur = await conn.execute("SELECT count(*) AS n FROM reconciliation_breaks WHERE detail = %s", (detail,))
        row = await cur.fetchone()
    assert row == {"n": 1}


async def test_an_unmatched_report_is_kept_once_with_text_postgres_cannot_hold_replaced(db: Pool) -> None:
    exec_id = unique("x")
    async with db.connection() as conn:
        for reason in ("no workflow\x00", "again"):
            await add_unmatched_report(
                conn, broker="paper", exec_id=exec_id, client_order_id="EX1", reason=reason, report={"t": "a\x00"}
            )
        cur = await conn.execute("SELECT reason, report FROM unmatched_reports WHERE exec_id = %s", (exec_id,))
        rows = await cur.fetchall()
    assert rows == [{"reason": "no workflow\u2400", "report": {"t": "a\u2400"}}]
