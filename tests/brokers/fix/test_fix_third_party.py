"""The FIX adapter against a counterparty nobody here wrote (``third_party.MinimalAcceptor``): a strict plain
QuickFIX acceptor that fills at once with FIX 4.2-style values (150=2 on a 4.4 session) and refuses status and
cancel requests with a BusinessMessageReject (35=j) or a session-level Reject (35=3).

Seen on main: the fill was refused by Exodus' data-dictionary validation and dropped, the submission timed out,
the retry's status request was refused and that refusal was taken for a rejection of the order.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from psycopg_pool import AsyncConnectionPool
from temporalio.testing import ActivityEnvironment, WorkflowEnvironment

from activities.broker import BrokerActivities, SubmitInput
from brokers.fix.execution import FixBroker
from core.domain import (
    CancelOrder,
    CancelRequest,
    InstrumentClass,
    OrderSide,
    OrderStatus,
    OrderType,
    ReportKind,
    SubmitOrder,
    TimeInForce,
    base_order_id,
)
from core.errors import BrokerUnavailable
from core.instruments import InstrumentCatalog
from core.settings import MarketDataClassSettings, MarketDataSettings, Settings
from devstack.services import free_port
from tests.brokers.contract import ReportCollector
from tests.brokers.fix.kit import eventually, fix_settings
from tests.brokers.fix.third_party import MinimalAcceptor
from tests.conftest import make_settings, temporal_address
from tests.harness import Stack, make_order
from workflows.order import OrderWorkflow

D = Decimal


def _order(symbol: str = "AAPL", qty: str = "100", price: str = "190.00") -> SubmitOrder:
    return SubmitOrder(
        cl_ord_id="EX" + uuid.uuid4().hex[:16].upper(),
        account="acc-1",
        symbol=symbol,
        side=OrderSide.BUY,
        type=OrderType.LIMIT,
        time_in_force=TimeInForce.GTC,
        qty=D(qty),
        price=D(price),
    )


@asynccontextmanager
async def third_party(
    directory: Path,
    pool: AsyncConnectionPool,
    sink: Any,
    *,
    begin_string: str = "FIX.4.4",
    market_data: bool = False,
    market_data_symbols: tuple[str, ...] | list[str] = (),
    request_timeout_seconds: float = 5,
    **options: Any,
) -> AsyncIterator[tuple[MinimalAcceptor, FixBroker]]:
    fix_options = {
        "market_data": market_data,
        "market_data_symbols": list(market_data_symbols),
        "request_timeout_seconds": request_timeout_seconds,
    }
    tag = uuid.uuid4().hex[:6].upper()
    acceptor = MinimalAcceptor(
        directory / "acceptor",
        port=free_port(),
        begin_string=begin_string,
        sender_comp_id=f"TP{tag}",
        target_comp_id=f"EXO{tag}",
        **options,
    )
    acceptor.start()
    settings = Settings(
        data_dir=directory,
        fix=fix_settings(
            port=acceptor.port, begin_string=begin_string, sender=f"EXO{tag}", target=f"TP{tag}", **fix_options
        ),
    )
    broker = FixBroker.from_settings(settings, pool=pool)
    try:
        await broker.start(sink)
        await broker.wait_logged_on(15)
        await asyncio.wait_for(broker.resynced.wait(), 15)
        yield acceptor, broker
    finally:
        await broker.close()
        await asyncio.to_thread(acceptor.stop)


async def _breaks(pool: AsyncConnectionPool, order_id: str) -> list[dict[str, Any]]:
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT kind, detail FROM reconciliation_breaks WHERE order_id = %s ORDER BY id", (order_id,)
        )
        return await cur.fetchall()  # type: ignore[return-value]


@pytest.mark.parametrize(
    ("begin_string", "refuse", "exec_trans_type"),
    [
        ("FIX.4.4", "business", False),
        ("FIX.4.4", "session", True),
        ("FIX.4.4", "field", False),
        ("FIX.4.2", "business", True),
    ],
)
async def test_a_fill_in_fix_42_style_is_taken_and_a_refused_status_request_is_not_a_rejection(
    tmp_path: Path,
    pool: AsyncConnectionPool,
    reports: ReportCollector,
    begin_string: str,
    refuse: str,
    exec_trans_type: bool,
) -> None:
    async with third_party(
        tmp_path, pool, reports, begin_string=begin_string, refuse=refuse, exec_trans_type=exec_trans_type
    ) as (acceptor, broker):
        order = _order()
        ack = await broker.submit_order(order)
        assert ack.accepted, ack.reason
        [fill] = [r for r in ack.reports if r.kind is ReportKind.FILL]
        assert (fill.last_qty, fill.last_price, fill.cum_qty) == (D(100), D("190.00"), D(100))
        await reports.wait_for(lambda _: bool(reports.of(order.cl_ord_id)))
        assert [r.kind for r in reports.of(order.cl_ord_id)] == [ReportKind.FILL]
        # The venue does not answer status requests: the answer is what its reports said, never a rejection.
        status = await broker.get_order_status(order.cl_ord_id)
        assert status is not None and status.status is OrderStatus.FILLED and status.cum_qty == D(100)
        assert [r.exec_id for r in status.reports] == [fill.exec_id]
        # Refused as unsupported, status requests are given up; refused for another reason, they go on.
        assert broker.status_requests == ("order" if refuse == "field" else "none")
        asked = acceptor.seen.received_types().count("H")
        assert (await broker.get_order_status(order.cl_ord_id)) == status
        assert acceptor.seen.received_types().count("H") == asked + (1 if refuse == "field" else 0)
        # A retried submission asks first: the order is known, nothing is sent again.
        retry = SubmitInput(broker="fix", order=order, check_first=True)
        again = await ActivityEnvironment().run(BrokerActivities({"fix": broker}).submit_order, retry)
        assert again.accepted
        assert acceptor.seen.received_types().count("D") == 1


async def test_an_unanswered_order_stays_in_flight_until_the_venue_reports_it(
    tmp_path: Path, pool: AsyncConnectionPool, reports: ReportCollector
) -> None:
    async with third_party(tmp_path, pool, reports, silent_symbols=("NVDA",), request_timeout_seconds=1) as (
        acceptor,
        broker,
    ):
        order = _order(symbol="NVDA", price="120.00")
        with pytest.raises(BrokerUnavailable, match="outcome is unknown"):
            await broker.submit_order(order)
        # The retry asks; the venue refuses status requests and has reported nothing: still unknown, so the
        # activity fails to be retried later. Never REJECTED, never sent again.
        submit = BrokerActivities({"fix": broker}).submit_order
        retry = SubmitInput(broker="fix", order=order, check_first=True)
        with pytest.raises(BrokerUnavailable, match="outcome is unknown"):
            await ActivityEnvironment().run(submit, retry)
        assert acceptor.seen.received_types().count("D") == 1
        # The venue's report settles it.
        acceptor.release()
        await reports.wait_for(lambda _: bool(reports.of(order.cl_ord_id)))
        ack = await ActivityEnvironment().run(submit, retry)
        assert ack.accepted and [r.kind for r in ack.reports] == [ReportKind.FILL]
        assert acceptor.seen.received_types().count("D") == 1


async def test_market_data_the_venue_does_not_offer_is_given_up_and_orders_go_on(
    tmp_path: Path, pool: AsyncConnectionPool, reports: ReportCollector
) -> None:
    async with third_party(tmp_path, pool, reports, market_data=True, market_data_symbols=["AAPL"]) as (
        acceptor,
        broker,
    ):
        assert broker.market_data is not None
        await eventually(lambda: broker.market_data is not None and broker.market_data.unsupported)
        assert "V" in acceptor.seen.received_types()
        ack = await broker.submit_order(_order())
        assert ack.accepted and [r.kind for r in ack.reports] == [ReportKind.FILL]
        assert broker.logged_on


@pytest.mark.parametrize("refuse", ["business", "session", "field"])
async def test_a_cancel_the_venue_does_not_support_leaves_the_order_working_and_flagged(
    tmp_path: Path, pool: AsyncConnectionPool, reports: ReportCollector, refuse: str
) -> None:
    async with third_party(tmp_path, pool, reports, refuse=refuse, rest_symbols=("MSFT",)) as (acceptor, broker):
        order = _order(symbol="MSFT", price="400.00")
        ack = await broker.submit_order(order)
        assert ack.accepted and [r.kind for r in ack.reports] == [ReportKind.ACCEPTED]
        cancel = CancelOrder(cl_ord_id=order.cl_ord_id, symbol="MSFT", side=OrderSide.BUY, qty=order.qty)
        answer = await broker.cancel_order(cancel)
        assert not answer.accepted and not answer.not_found
        assert "CANCEL_UNSUPPORTED" in (answer.reason or "") and "TOO_LATE" not in (answer.reason or "")
        status = await broker.get_order_status(order.cl_ord_id)
        assert status is not None and status.status is OrderStatus.ACCEPTED
        [flag] = await _breaks(pool, base_order_id(order.cl_ord_id))
        assert flag["kind"] == "FIX_CANCEL_UNSUPPORTED"
        # A second cancel is answered the same way; the venue is not asked again for what it cannot do.
        sent_before = acceptor.seen.received_types().count("F")
        again = await broker.cancel_order(cancel)
        assert not again.accepted and "CANCEL_UNSUPPORTED" in (again.reason or "")
        # Refused as unsupported, the venue is not asked again; refused for another reason, it is.
        expected = sent_before + (1 if refuse == "field" else 0)
        if refuse != "session":  # the session-level refusal happens before the acceptor's application sees it
            assert acceptor.seen.received_types().count("F") == expected
        [flag] = await _breaks(pool, base_order_id(order.cl_ord_id))  # still one break


@pytest.mark.parametrize("refuse", ["business", "session", "field"])
async def test_a_venue_refusing_mass_status_requests_is_listed_order_by_order(
    tmp_path: Path, pool: AsyncConnectionPool, reports: ReportCollector, refuse: str
) -> None:
    # Issue 18: open_orders() (the broker sweep's request) is one OrderMassStatusRequest (35=AF). Refused as
    # unsupported (35=j 380=3, or 35=3 373=11), AF is not sent again; refused otherwise (380=5), it is asked each
    # time. Either way the answer is the orders as they would be listed without AF (here from their reports,
    # since this venue refuses 35=H as well), never an error and never a working order left out.
    async with third_party(tmp_path, pool, reports, refuse=refuse, rest_symbols=("MSFT",)) as (acceptor, broker):
        order = _order(symbol="MSFT", price="400.00")
        assert (await broker.submit_order(order)).accepted
        for _ in range(2):
            [listed] = await broker.open_orders()
            assert (listed.cl_ord_id, listed.status) == (order.cl_ord_id, OrderStatus.ACCEPTED)
        assert broker.mass_status_requests == (2 if refuse == "field" else 1)
        assert ("AF" in broker.unsupported) is (refuse != "field")
        if refuse != "session":  # the session-level refusal happens before the acceptor's application sees it
            assert acceptor.seen.received_types().count("AF") == broker.mass_status_requests


# ------------------------------------------------------------------------------------------ full stack


@pytest.fixture
async def third_party_stack(
    tmp_path: Path,
    temporal_env: WorkflowEnvironment,
    database_url: str,
    pool: AsyncConnectionPool,
    instruments: InstrumentCatalog,
) -> AsyncIterator[tuple[Stack, MinimalAcceptor]]:
    tag = uuid.uuid4().hex[:6].upper()
    acceptor = MinimalAcceptor(
        tmp_path / "acceptor",
        port=free_port(),
        sender_comp_id=f"TP{tag}",
        target_comp_id=f"EXO{tag}",
        rest_symbols=("MSFT",),
    )
    acceptor.start()
    settings = make_settings(
        database_url,
        temporal_address(temporal_env),
        data_dir=tmp_path,
        fix=fix_settings(port=acceptor.port, begin_string="FIX.4.4", sender=f"EXO{tag}", target=f"TP{tag}"),
        # This counterparty offers no market data: its limit orders are valued at their own price.
        market_data=MarketDataSettings(
            classes={InstrumentClass.EQUITY: MarketDataClassSettings(own_price_without_quote=True)}
        ),
    )
    broker = FixBroker.from_settings(settings, pool=pool)
    try:
        async with Stack.running(temporal_env.client, settings, pool, instruments, {"fix": broker}) as stack:
            await broker.wait_logged_on(15)
            yield stack, acceptor
    finally:
        await asyncio.to_thread(acceptor.stop)


async def test_an_order_through_the_whole_stack_ends_filled_with_its_fill_in_the_ledger(
    third_party_stack: tuple[Stack, MinimalAcceptor],
) -> None:
    stack, acceptor = third_party_stack
    order = make_order(broker="fix", symbol="AAPL", qty="100", type="LIMIT", price="190.00")
    decision, handle = await stack.submit(order)
    assert decision.approved
    result = await handle.result()
    assert result.status is OrderStatus.FILLED, result.reason
    assert D(result.filled_qty) == D(100) and D(result.avg_price) == D("190.00")
    assert result.breaks == []
    [fill] = await stack.fetch("SELECT qty, price FROM fills WHERE order_id = %s", order.order_id)
    assert (fill["qty"], fill["price"]) == (D(100), D("190.00"))
    [position] = await stack.fetch("SELECT qty FROM positions WHERE account = %s AND symbol = 'AAPL'", order.account)
    assert position["qty"] == D(100)
    assert acceptor.seen.received_types().count("D") == 1


async def test_a_cancel_through_the_whole_stack_leaves_the_order_working_and_flagged(
    third_party_stack: tuple[Stack, MinimalAcceptor],
) -> None:
    stack, _ = third_party_stack
    order = make_order(broker="fix", symbol="MSFT", qty="10", type="LIMIT", price="400.00")
    _, handle = await stack.submit(order)
    try:
        await stack.wait_for(handle, OrderStatus.ACCEPTED)
        await handle.signal(OrderWorkflow.cancel, CancelRequest(requested_by="ops", reason="desk request"))
        state = await stack.wait_for(handle, lambda s: any(e.kind == "CANCEL_REJECTED" for e in s.events))
        await asyncio.sleep(0.5)
        state = await stack.state(handle)
        assert state.status is OrderStatus.ACCEPTED
        [rejected] = [e for e in state.events if e.kind == "CANCEL_REJECTED"]
        assert "CANCEL_UNSUPPORTED" in rejected.detail
        flags = await eventually(lambda: _breaks(stack.pool, order.order_id))
        assert [f["kind"] for f in flags] == ["FIX_CANCEL_UNSUPPORTED"]
        [row] = await stack.fetch("SELECT status FROM orders WHERE order_id = %s", order.order_id)
        assert row["status"] == "ACCEPTED"
    finally:
        await handle.terminate("test over")
