"""``store/reports.py``: the shared report journal's statements (``broker_reports``), and the one that compares it
with the ledger."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from core.domain import ExecutionReport, Fill, OrderSide, ReportKind, derive_order_id
from store import Pool
from store.ledger import book_fill
from store.reports import (
    fill_reports,
    has_report,
    insert_report,
    mark_delivered,
    net_fills,
    reports_of,
    undelivered_reports,
)
from tests.harness import execution_report, unique
from tests.store.kit import D, decided

pytestmark = pytest.mark.asyncio


def report(
    order_id: str, exec_id: str, kind: ReportKind = ReportKind.FILL, qty: str = "10", **kw: object
) -> ExecutionReport:
    return execution_report(order_id, exec_id, kind, qty, **{"broker": "mt5", **kw})


async def test_a_report_is_journaled_once_per_stream_and_read_by_order_ref_and_delivery(db: Pool) -> None:
    broker, order_id = unique("b"), derive_order_id(unique("k"))
    async with db.connection() as conn:
        accepted, fill = report(order_id, "e1", ReportKind.ACCEPTED), report(order_id, "e2")
        assert await insert_report(conn, accepted, broker=broker, stream="s1")
        assert await insert_report(conn, fill, broker=broker, stream="s1", ref="r-1", source="stream:fill")
        assert not await insert_report(conn, fill, broker=broker, stream="s1")  # seen before on that stream
        assert await insert_report(conn, fill, broker=broker, stream="s2")  # another stream's own
        assert [r.exec_id for r in await reports_of(conn, broker=broker, order_id=order_id)] == ["e1", "e2", "e2"]
        assert [r.exec_id for r in await reports_of(conn, broker=broker, order_id=order_id, streams=["s1"])] == [
            "e1",
            "e2",
        ]
        assert [r.exec_id for r in await fill_reports(conn, broker=broker, streams=["s1"], ref="r-1")] == ["e2"]
        assert await fill_reports(conn, broker=broker, streams=["s1"], ref="r-2") == []
        assert await has_report(conn, broker=broker, streams=["s1"], exec_id="e1")
        assert not await has_report(conn, broker=broker, streams=["s2"], exec_id="e1")
        await mark_delivered(conn, broker=broker, streams=["s1"], exec_ids=["e1"])
        assert [r.exec_id for r in await undelivered_reports(conn, broker=broker, streams=["s1", "s2"])] == [
            "e2",
            "e2",
        ]
        assert len(await undelivered_reports(conn, broker=broker, streams=["s1", "s2"], limit=1)) == 1


async def test_text_postgres_cannot_hold_is_journaled_replaced_and_found_the_same_way(db: Pool) -> None:
    broker, order_id = unique("b"), derive_order_id(unique("k"))
    refused = report(order_id, "e\x001", ReportKind.REJECTED, reason="bad\x00 symbol")
    async with db.connection() as conn:
        assert await insert_report(conn, refused, broker=broker, stream="s\x00")  # never a lasting failure
        assert not await insert_report(conn, refused, broker=broker, stream="s\x00")
        assert await has_report(conn, broker=broker, streams=["s\x00"], exec_id="e\x001")
        [back] = await reports_of(conn, broker=broker, order_id=order_id)
        assert back.reason == "bad\u2400 symbol"
        await mark_delivered(conn, broker=broker, streams=["s\x00"], exec_ids=["e\x001"])
        assert await undelivered_reports(conn, broker=broker, streams=["s\x00"]) == []


async def test_net_fills_are_the_booked_ones_and_the_journaled_ones_not_booked_yet_in_one_snapshot(db: Pool) -> None:
    account = unique("acct")
    async with db.connection() as conn:
        order = await decided(conn, account=account, broker="mt5")
        booked = report(order.order_id, "x-booked", qty="3")
        in_flight = report(order.order_id, "x-in-flight", qty="2")
        other_stream = report(order.order_id, "x-other", qty="7")
        for r in (booked, in_flight):
            assert await insert_report(conn, r, broker="mt5", stream=account)
        assert await insert_report(conn, other_stream, broker="mt5", stream="another-account")
        fill = Fill(
            exec_id="x-booked",
            order_id=order.order_id,
            broker="mt5",
            account=account,
            symbol="AAPL",
            side=OrderSide.BUY,
            qty=D(3),
            price=D(100),
            fee=D(0),
            filled_at=datetime.now(UTC),
        )
        assert await book_fill(conn, fill, currency="USD")
        rows = await net_fills(conn, broker="mt5", account=account, stream=account)
    # The booked fill once (from the ledger), the journaled one not booked yet in flight; another stream's not at all.
    assert sorted((r["qty"], r["in_flight"]) for r in rows) == [(D(2), True), (D(3), False)]
    assert {(r["symbol"], r["side"]) for r in rows} == {("AAPL", "BUY")}
