"""The shared report journal (``broker_reports``), its delivery, and migration 0019 that made it from three tables."""

from __future__ import annotations

import asyncio
import shutil
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from brokers.journal import ReportDelivery, ReportJournal
from core.db import MIGRATIONS_DIR, apply_migrations
from core.domain import ExecutionReport, ReportKind, derive_order_id
from tests.brokers.contract import ReportCollector
from tests.harness import execution_report

D = Decimal


_report = execution_report


def _cid() -> str:
    return derive_order_id(uuid.uuid4().hex)


async def test_a_report_is_journaled_once_per_stream_and_read_back_in_arrival_order(pool: AsyncConnectionPool) -> None:
    broker = f"b{uuid.uuid4().hex[:6]}"
    one = ReportJournal(pool, broker=broker, stream="s1")
    two = ReportJournal(pool, broker=broker, stream="s2")
    both = ReportJournal(pool, broker=broker, streams=["s1", "s2"])
    cid = _cid()
    accepted = _report(cid, "e1", ReportKind.ACCEPTED)
    fill = _report(cid, "e2")
    assert await one.add(accepted)
    assert await one.add(fill, ref="A1", source="stream:fill")
    assert not await one.add(fill, ref="A1")  # the same exec id again: a duplicate, nothing written
    assert await two.add(fill)  # another stream keeps its own
    assert [r.exec_id for r in await one.reports(cid.split(".")[0])] == ["e1", "e2"]
    assert await one.has("e2") and not await one.has("e9")
    assert [r.exec_id for r in await both.fills()] == ["e2", "e2"]
    assert await one.filled("A1") == (D(10), D(1000))
    later = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(seconds=1)
    assert await one.fills(since=later) == []
    assert [r.exec_id for r in await one.undelivered()] == ["e1", "e2"]
    await one.mark_delivered(["e1"])
    assert [r.exec_id for r in await one.undelivered()] == ["e2"]
    assert [r.exec_id for r in await two.undelivered()] == ["e2"]  # marks are per stream


async def test_delivery_hands_over_what_a_previous_process_left_undelivered_then_marks_it(
    pool: AsyncConnectionPool,
) -> None:
    journal = ReportJournal(pool, broker=f"b{uuid.uuid4().hex[:6]}")
    cid = _cid()
    for i in range(3):
        assert await journal.add(_report(cid, f"e{i}", qty=str(i + 1)))
    sink = ReportCollector()
    delivery = ReportDelivery(sink, journal=journal)
    await delivery.start()
    await delivery.drain()
    assert [r.exec_id for r in sink.reports] == ["e0", "e1", "e2"]  # in order, one shard per order
    assert await journal.undelivered() == []
    # A report journaled now is handed over once, whether put or swept.
    new = _report(cid, "e3")
    assert await journal.add(new)
    delivery.put(new)
    assert await delivery.sweep() in (0, 1)
    await delivery.drain()
    assert [r.exec_id for r in sink.reports].count("e3") == 1
    await delivery.stop()


async def test_undelivered_reports_stay_journaled_when_the_sink_fails(pool: AsyncConnectionPool) -> None:
    journal = ReportJournal(pool, broker=f"b{uuid.uuid4().hex[:6]}")
    report = _report(_cid(), "e1")
    assert await journal.add(report)
    calls = 0

    async def down(_: ExecutionReport) -> None:
        nonlocal calls
        calls += 1
        raise RuntimeError("the consumer is down")

    delivery = ReportDelivery(down, journal=journal)
    await delivery.start()
    while calls < 1:
        await asyncio.sleep(0.01)
    await delivery.stop()
    assert [r.exec_id for r in await journal.undelivered()] == ["e1"]  # the next start delivers it


async def test_migration_0019_moves_the_three_report_tables_into_the_journal_with_their_marks(
    postgres_admin_url: str, tmp_path: Path
) -> None:
    name = f"exodus_mig_{uuid.uuid4().hex[:8]}"
    async with await psycopg.AsyncConnection.connect(postgres_admin_url, autocommit=True) as conn:
        await conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    params = psycopg.conninfo.conninfo_to_dict(postgres_admin_url)
    params["dbname"] = name
    url = psycopg.conninfo.make_conninfo(**params)  # type: ignore[arg-type]
    before = tmp_path / "before"
    before.mkdir()
    for path in MIGRATIONS_DIR.glob("*.sql"):
        if path.name < "0019":
            shutil.copy(path, before / path.name)
    await apply_migrations(url, before)
    cid, delivered = _cid(), datetime(2026, 1, 2, tzinfo=UTC)
    order_id = cid

    def body(exec_id: str, kind: ReportKind = ReportKind.FILL) -> Jsonb:
        return Jsonb(_report(cid, exec_id, kind).model_dump(mode="json"))

    async with await psycopg.AsyncConnection.connect(url, autocommit=True, row_factory=dict_row) as conn:
        for exec_id, mark in (("f2", None), ("f1", delivered)):  # arrival order f2, f1
            await conn.execute(
                "INSERT INTO fix_reports (session, exec_id, order_id, client_order_id, kind, body, delivered_at)"
                " VALUES ('FIX.4.4:A->B', %s, %s, %s, 'FILL', %s, %s)",
                (exec_id, order_id, cid, body(exec_id), mark),
            )
        await conn.execute(
            "INSERT INTO alpaca_reports (broker, exec_id, order_id, alpaca_id, kind, source, body)"
            " VALUES ('alpaca', 'a1', %s, 'ALP-1', 'FILL', 'stream:fill', %s)",
            (order_id, body("a1")),
        )
        await conn.execute(
            "INSERT INTO mt5_reports (exec_id, account, order_id, kind, body, delivered_at)"
            " VALUES ('m1', 'xm-1', %s, 'ACCEPTED', %s, %s)",
            (order_id, body("m1", ReportKind.ACCEPTED), delivered),
        )
    # 0019 first; later migrations (other brokers' own tables) may follow it.
    assert (await apply_migrations(url))[0] == "0019_broker_reports"
    async with await psycopg.AsyncConnection.connect(url, autocommit=True, row_factory=dict_row) as conn:
        cur = await conn.execute(
            "SELECT broker, stream, exec_id, order_id, kind, ref, source, delivered_at FROM broker_reports ORDER BY seq"
        )
        rows = await cur.fetchall()
        cur = await conn.execute("SELECT to_regclass('fix_reports') AS f, to_regclass('mt5_reports') AS m")
        gone = await cur.fetchone()
    assert [(r["broker"], r["stream"], r["exec_id"]) for r in rows] == [
        ("fix", "FIX.4.4:A->B", "f2"),
        ("fix", "FIX.4.4:A->B", "f1"),
        ("alpaca", "alpaca", "a1"),
        ("mt5", "xm-1", "m1"),
    ]
    assert [r["delivered_at"] for r in rows] == [None, delivered, None, delivered]
    assert (rows[2]["ref"], rows[2]["source"]) == ("ALP-1", "stream:fill")
    assert {r["order_id"] for r in rows} == {order_id}
    assert gone == {"f": None, "m": None}
    # The adapters read them where they now are.
    pool = AsyncConnectionPool(
        url, min_size=1, max_size=2, kwargs={"autocommit": True, "row_factory": dict_row}, open=False
    )
    await pool.open(wait=True)
    try:
        fix = ReportJournal(pool, broker="fix", stream="FIX.4.4:A->B")
        assert [r.exec_id for r in await fix.undelivered()] == ["f2"]
        assert await ReportJournal(pool, broker="alpaca").filled("ALP-1") == (D(10), D(1000))
    finally:
        await pool.close()
    with pytest.raises(psycopg.errors.UndefinedTable):
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
            await conn.execute("SELECT 1 FROM alpaca_reports")
