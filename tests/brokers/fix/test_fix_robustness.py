"""The FIX adapter against input and faults nobody planned for: tag injection through free text, passwords on
disk, a report whose storage fails, values FIX cannot carry, reports that say odd things or nothing usable."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg_pool import AsyncConnectionPool
from pydantic import SecretStr
from temporalio.testing import ActivityEnvironment

from activities.broker import BrokerActivities, SubmitInput
from brokers.base import ReportSink
from brokers.fix.session import FixMessage
from core.domain import (
    CancelOrder,
    ExecutionReport,
    OrderSide,
    OrderStatus,
    OrderType,
    ReportKind,
    SubmitOrder,
    TimeInForce,
    base_order_id,
)
from core.instruments import InstrumentCatalog
from tests.brokers.contract import ReportCollector
from tests.brokers.fix.kit import FixPair, eventually, running_pair

D = Decimal

PairFactory = Callable[..., AbstractAsyncContextManager[FixPair]]


def _order(
    *, qty: str = "100", price: str | None = None, tif: TimeInForce = TimeInForce.GTC, **extra: Any
) -> SubmitOrder:
    return SubmitOrder(
        cl_ord_id="EX" + uuid.uuid4().hex[:16].upper(),
        account="acc-1",
        symbol="AAPL",
        side=OrderSide.BUY,
        type=OrderType.MARKET if price is None else OrderType.LIMIT,
        time_in_force=tif,
        qty=D(qty),
        price=None if price is None else D(price),
        **extra,
    )


@pytest.fixture
def pair_factory(
    tmp_path: Path, pool: AsyncConnectionPool, instruments: InstrumentCatalog, reports: ReportCollector
) -> PairFactory:
    def make(begin_string: str = "FIX.4.4", *, sink: ReportSink | None = None, **options: Any) -> Any:
        return running_pair(
            tmp_path / uuid.uuid4().hex[:6],
            pool,
            instruments,
            sink=sink or reports,
            begin_string=begin_string,
            **options,
        )

    return make


def _spy(pair: FixPair) -> list[FixMessage]:
    """Record every application message the venue receives."""
    seen: list[FixMessage] = []
    connector = pair.venue.connector
    handler = connector._on_message

    async def spy(msg: FixMessage) -> None:
        seen.append(msg)
        await handler(msg)

    connector._on_message = spy  # type: ignore[method-assign]
    return seen


async def _rows(pool: AsyncConnectionPool, sql: str, *params: object) -> list[dict[str, Any]]:
    async with pool.connection() as conn:
        cur = await conn.execute(sql, params)  # type: ignore[arg-type]
        return await cur.fetchall()  # type: ignore[return-value]


# ------------------------------------------------------------------------------------------ tag injection


async def test_a_cancel_reason_with_soh_cannot_inject_tags(pair_factory: PairFactory, reports: ReportCollector) -> None:
    async with pair_factory() as pair:
        await pair.venue.set_mid("AAPL", D("190.00"))
        order = _order(price="180.00")
        assert (await pair.broker.submit_order(order)).accepted
        seen = _spy(pair)
        reason = "desk request\x0144=1\x0154=2\x0158=injected\x00\x7f\nend"
        cancel = CancelOrder(cl_ord_id=order.cl_ord_id, symbol="AAPL", side=OrderSide.BUY, qty=order.qty, reason=reason)
        ack = await pair.broker.cancel_order(cancel)
        assert ack.accepted, ack.reason
        [request] = [m for m in seen if m.msg_type == "F"]
        assert [tag for tag, _ in request.pairs].count(58) == 1
        assert 44 not in request.fields and request.fields[54] == "1"
        assert request.fields[58] == "desk request 44=1 54=2 58=injected   end"


# ------------------------------------------------------------------------------------------ secrets on disk


async def test_the_password_is_not_written_to_quickfix_logs_or_stores(
    pair_factory: PairFactory, tmp_path: Path
) -> None:
    secret = "s3cret-" + uuid.uuid4().hex[:8]
    async with pair_factory(username="desk", password=SecretStr(secret)) as pair:
        assert pair.broker.logged_on
        order = _order()
        await pair.venue.set_mid("AAPL", D("190.00"))
        assert (await pair.broker.submit_order(order)).accepted
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    logs = [p for p in files if p.name.endswith(".messages.current.log")]
    assert logs, "QuickFIX wrote no message log"
    assert any(b"\x01554=********\x01" in p.read_bytes() for p in logs)  # the logon is logged, masked
    leaked = [p for p in files if secret.encode() in p.read_bytes()]
    assert leaked == []


# ------------------------------------------------------------------------------------------ acknowledged once stored


async def test_a_report_whose_storage_fails_is_not_counted_and_comes_again(
    pair_factory: PairFactory, reports: ReportCollector
) -> None:
    async with pair_factory() as pair:
        venue, broker = pair.venue, pair.broker
        await venue.set_mid("AAPL", D("190.00"))
        order = _order(price="185.00")
        assert (await broker.submit_order(order)).accepted
        logons = broker.connector.logons
        _, expected_before = await broker.sequence_numbers()

        journal = broker._journal
        add_report = journal.add
        failures: list[str] = []

        async def failing(report: ExecutionReport, **kw: Any) -> bool:
            if report.kind is ReportKind.FILL and not failures:
                failures.append(report.exec_id)
                raise psycopg.OperationalError("injected: the database went away")
            return await add_report(report, **kw)

        journal.add = failing  # type: ignore[method-assign]
        await venue.set_mid("AAPL", D("184.00"))  # fills at 184.01
        await reports.wait_for(lambda _: any(r.kind is ReportKind.FILL for r in reports.of(order.cl_ord_id)))
        [fill] = [r for r in reports.of(order.cl_ord_id) if r.kind is ReportKind.FILL]
        assert failures == [fill.exec_id]  # the same report, stored the second time it came
        assert (fill.last_qty, fill.last_price) == (D(100), D("184.01"))
        assert broker.connector.unprocessed == 1 and broker.connector.logons == logons + 1
        assert broker.synthesized == 0  # the venue's own report, resent; not made up from a status answer
        await asyncio.wait_for(broker.resynced.wait(), 15)
        _, expected_after = await broker.sequence_numbers()
        assert expected_after > expected_before
        status = await broker.get_order_status(order.cl_ord_id)
        assert status is not None and status.status is OrderStatus.FILLED
        assert [r.exec_id for r in status.fills] == [fill.exec_id]


# ------------------------------------------------------------------------------------------ values FIX cannot carry


async def test_an_expiry_fix_cannot_write_is_a_definite_rejection(
    pair_factory: PairFactory, reports: ReportCollector
) -> None:
    async with pair_factory() as pair:
        seen = _spy(pair)
        far = datetime(9999, 12, 31, 23, 0, tzinfo=timezone(timedelta(hours=-5)))  # year 10000 in UTC
        order = _order(price="180.00", tif=TimeInForce.GTD, expire_at=far)
        ack = await pair.broker.submit_order(order)
        assert not ack.accepted and "UNENCODABLE" in (ack.reason or "") and "9999-12-31" in (ack.reason or "")
        # Through the activity: a definite answer, not an error that Temporal retries for ever.
        activity = BrokerActivities({"fix": pair.broker}).submit_order
        answer = await ActivityEnvironment().run(activity, SubmitInput(broker="fix", order=order))
        assert not answer.accepted and "UNENCODABLE" in (answer.reason or "")
        assert await pair.broker.get_order_status(order.cl_ord_id) is None
        await asyncio.sleep(0.2)
        assert [m for m in seen if m.msg_type == "D"] == []


# ------------------------------------------------------------------------------------------ odd reports


def _report(cl_ord_id: str, exec_id: str, **fields: str) -> list[tuple[int, str | None]]:
    base: dict[int, str] = {37: "VEN-ODD", 11: cl_ord_id, 17: exec_id, 55: "AAPL", 54: "1", 38: "100"}
    base.update({int(k[1:]): v for k, v in fields.items()})
    return list(base.items())  # type: ignore[arg-type]


@pytest.mark.parametrize("begin_string", ["FIX.4.4", "FIXT.1.1"])
async def test_reports_in_other_versions_words_are_read_and_the_unreadable_kept(
    pair_factory: PairFactory, reports: ReportCollector, pool: AsyncConnectionPool, begin_string: str
) -> None:
    async with pair_factory(begin_string) as pair:
        await pair.venue.set_mid("AAPL", D("190.00"))
        order = _order(qty="100", price="150.00")  # rests
        assert (await pair.broker.submit_order(order)).accepted
        cid, send = order.cl_ord_id, pair.venue.connector.send_nowait
        # 4.2's "partial fill" on a newer session, with 4.2's ExecTransType (no such tag in 4.4 or 5.0).
        send("8", _report(cid, "odd-1", t150="1", t20="0", t39="1", t32="30", t31="150", t14="30", t151="70", t6="150"))
        # An ExecType of no version, but LastQty and LastPx say a fill.
        send("8", _report(cid, "odd-2", t150="Z", t39="1", t32="20", t31="149", t14="50", t151="50", t6="149.6"))
        # 4.2's "fill" with neither LastQty nor LastPx: worked out from CumQty and AvgPx.
        send("8", _report(cid, "odd-3", t150="2", t39="2", t14="100", t151="0", t6="149.3"))
        # Cannot be read at all, and a trade bust: both kept, with a break, never dropped.
        send("8", _report(cid, "odd-4", t150="Z", t39="Z", t14="100", t151="0", t6="149.3"))
        send("8", _report(cid, "odd-5", t150="H", t39="2", t14="80", t151="20", t6="149.3"))
        await reports.wait_for(lambda _: sum(r.last_qty for r in reports.of(cid) if r.kind is ReportKind.FILL) == 100)
        fills = [(r.exec_id, r.last_qty, r.last_price) for r in reports.of(cid) if r.kind is ReportKind.FILL]
        assert fills == [("odd-1", D(30), D(150)), ("odd-2", D(20), D(149)), ("odd-3", D(50), D("149"))]

        async def kept() -> list[dict[str, Any]]:
            return await _rows(
                pool,
                "SELECT key, kind, reason, message FROM fix_unprocessed WHERE session = %s ORDER BY received_at",
                pair.broker.config.key,
            )

        rows = await eventually(lambda: _has(kept(), 2))
        assert [(r["key"], r["kind"]) for r in rows] == [
            ("17:odd-4", "FIX_UNINTERPRETED"),
            ("17:odd-5", "FIX_TRADE_CORRECTION"),
        ]
        assert "150=Z" in rows[0]["message"]
        breaks = await _rows(
            pool, "SELECT kind FROM reconciliation_breaks WHERE order_id = %s ORDER BY id", base_order_id(cid)
        )
        assert [b["kind"] for b in breaks] == ["FIX_UNINTERPRETED", "FIX_TRADE_CORRECTION"]
        assert pair.broker.unprocessed == 2


async def _has(rows: Any, n: int) -> Any:
    found = await rows
    return found if len(found) >= n else None


async def test_a_report_quickfix_itself_refuses_is_kept_not_lost(
    pair_factory: PairFactory, reports: ReportCollector, pool: AsyncConnectionPool
) -> None:
    import quickfix as fix  # type: ignore[import-untyped]

    async with pair_factory() as pair:
        order = _order(price="150.00")
        assert (await pair.broker.submit_order(order)).accepted
        # A report with a tag given twice outside any group: a structural error even the relaxed dictionary
        # refuses (QuickFIX answers 35=3 RepeatedTag and never hands the message to the adapter).
        raw = "\x01".join(
            [
                "8=FIX.4.4",
                "9=0",
                "35=8",
                "37=VEN-X",
                f"11={order.cl_ord_id}",
                "17=twice-58",
                "150=F",
                "39=2",
                "55=AAPL",
                "54=1",
                "32=100",
                "31=150",
                "14=100",
                "151=0",
                "6=150",
                "58=first",
                "58=second",
                "10=000",
                "",
            ]
        )
        message = fix.Message(raw, False)
        sent = await asyncio.to_thread(fix.Session.sendToTarget, message, pair.venue.connector._session_id)
        assert sent

        async def kept() -> list[dict[str, Any]]:
            return await _rows(pool, "SELECT key, kind FROM fix_unprocessed WHERE session = %s", pair.broker.config.key)

        [row] = await eventually(lambda: _has(kept(), 1))
        assert (row["key"], row["kind"]) == ("17:twice-58", "FIX_REFUSED")
