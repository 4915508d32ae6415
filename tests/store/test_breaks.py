"""``store/breaks.py``: breaks are opened once; unmatched reports are kept once, whatever their text."""

from __future__ import annotations

import pytest

from core.auth import ALL, Scope
from core.domain import Break, BreakKind
from store import Pool
from store.breaks import (
    add_break,
    add_break_once_open,
    add_order_break,
    add_unmatched_report,
    list_breaks,
    list_unmatched,
    resolve_break,
    resolve_unmatched,
    unmatched_by_id,
)
from tests.harness import unique
from tests.store.kit import decided

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


async def test_an_order_break_is_stored_as_its_kind_and_its_text_and_loads_back(db: Pool) -> None:
    order_id = unique("o")
    brk = Break(kind=BreakKind.QTY_MISMATCH, detail="broker reports 5 filled, the ledger 3")
    async with db.connection() as conn:
        assert await add_order_break(conn, brk, order_id=order_id, broker="paper") is True
        assert await add_order_break(conn, brk, order_id=order_id, broker="paper") is False
        cur = await conn.execute("SELECT kind, detail FROM reconciliation_breaks WHERE order_id = %s", (order_id,))
        rows = await cur.fetchall()
    assert rows == [{"kind": "QTY_MISMATCH", "detail": "QTY_MISMATCH: broker reports 5 filled, the ledger 3"}]
    assert Break.model_validate(rows[0]["detail"]) == brk


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
                conn, broker="paper", exec_id=exec_id, cl_ord_id="EX1", reason=reason, report={"t": "a\x00"}
            )
        cur = await conn.execute("SELECT reason, report FROM unmatched_reports WHERE exec_id = %s", (exec_id,))
        rows = await cur.fetchall()
    assert rows == [{"reason": "no workflow\u2400", "report": {"t": "a\u2400"}}]


async def test_breaks_are_listed_in_scope_and_resolved_once_with_who_and_why(db: Pool) -> None:
    async with db.connection() as conn:
        mine = await decided(conn, client_id="desk-a", account="desk-a")
        theirs = await decided(conn, client_id="desk-b", account="desk-b")
        kind = unique("KIND")
        for order in (mine, theirs):
            await add_break(conn, order_id=order.order_id, broker="paper", kind=kind, detail="differs")
        await add_break(conn, order_id=None, broker="paper", kind=kind, detail="no order")
        desk = Scope(clients=["desk-a"], accounts=["desk-a"], brokers=ALL)
        seen = await list_breaks(conn, scope=desk, kind=kind)
        assert [(b["order_id"], b["client_id"], b["account"]) for b in seen] == [(mine.order_id, "desk-a", "desk-a")]
        everything = await list_breaks(conn, scope=Scope.everything(), kind=kind)
        assert [b["order_id"] for b in everything] == [None, theirs.order_id, mine.order_id]  # newest first
        other_broker = Scope(clients=ALL, accounts=ALL, brokers=["fix"])
        assert await list_breaks(conn, scope=other_broker, kind=kind) == []
        page = await list_breaks(conn, scope=Scope.everything(), kind=kind, limit=2)
        rest = await list_breaks(conn, scope=Scope.everything(), kind=kind, before=page[-1]["id"])
        assert [b["id"] for b in page + rest] == [b["id"] for b in everything]

        target = seen[0]["id"]
        resolved = await resolve_break(conn, target, actor="ops-1", resolution="booked by hand")
        assert resolved is not None
        assert (resolved["resolved_by"], resolved["resolution"]) == ("ops-1", "booked by hand")
        assert resolved["resolved_at"] is not None and resolved["client_id"] == "desk-a"
        assert await resolve_break(conn, target, actor="ops-2", resolution="again") is None
        assert await resolve_break(conn, 2**62, actor="ops-2", resolution="unknown") is None
        assert [b["id"] for b in await list_breaks(conn, scope=Scope.everything(), kind=kind, status="resolved")] == [
            target
        ]
        assert target not in [b["id"] for b in await list_breaks(conn, scope=Scope.everything(), kind=kind)]
        assert len(await list_breaks(conn, scope=Scope.everything(), kind=kind, status="all")) == 3
        cur = await conn.execute(
            "SELECT data FROM stream_events WHERE kind = 'BREAK_RESOLVED' AND (data->>'id')::bigint = %s", (target,)
        )
        [announced] = await cur.fetchall()
    assert announced["data"]["resolvedBy"] == "ops-1" and announced["data"]["resolution"] == "booked by hand"


async def test_unmatched_reports_are_listed_by_broker_and_resolved_once(db: Pool) -> None:
    exec_id = unique("x")
    async with db.connection() as conn:
        await add_unmatched_report(
            conn, broker="fix", exec_id=exec_id, cl_ord_id="C1", reason="unknown order", report={"a": 1}
        )
        [row] = [
            r for r in await list_unmatched(conn, scope=Scope.everything(), broker="fix") if r["exec_id"] == exec_id
        ]
        assert row["report"] == {"a": 1} and row["resolved_at"] is None
        assert await list_unmatched(conn, scope=Scope(clients=ALL, accounts=ALL, brokers=["paper"]), broker="fix") == []
        resolved = await resolve_unmatched(conn, row["id"], actor="ops-1", resolution="a test order of the venue")
        assert resolved is not None and resolved["resolved_by"] == "ops-1" and resolved["exec_id"] == exec_id
        assert await resolve_unmatched(conn, row["id"], actor="ops-1", resolution="again") is None
        assert row["id"] not in [r["id"] for r in await list_unmatched(conn, scope=Scope.everything())]
        assert (await unmatched_by_id(conn, row["id"]) or {}).get("resolution") == "a test order of the venue"
        cur = await conn.execute(
            "SELECT data FROM stream_events WHERE kind = 'UNMATCHED_RESOLVED' AND data->>'execId' = %s", (exec_id,)
        )
        [announced] = await cur.fetchall()
    assert announced["data"]["resolvedBy"] == "ops-1" and announced["data"]["id"] == row["id"]
