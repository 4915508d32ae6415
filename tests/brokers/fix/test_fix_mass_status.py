"""OrderMassStatusRequest (35=AF): the local FIX venue answers it, the adapter's ``open_orders`` is one of it.

Issue 18: the broker sweep (``worker/sweep.py``) asks ``open_orders()`` once per interval; over FIX that is one AF
answered by one ExecutionReport 150=I per working order (the last with 912=Y), not one 35=H per order. A venue
without AF is asked order by order as before; an AF left unanswered is an unknown, never an empty list.
"""

from __future__ import annotations

import asyncio
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from psycopg_pool import AsyncConnectionPool

from brokers.fix.execution import FixBroker, _MassStatus
from brokers.fix.parsing import Tag
from core.domain import OrderSide, OrderStatus, OrderType, ReportKind, SubmitOrder, TimeInForce
from core.errors import BrokerUnavailable
from core.instruments import InstrumentCatalog
from devstack.venues.fix.venue import FixVenue
from tests.brokers.contract import ReportCollector
from tests.brokers.fix.kit import running_pair

D = Decimal


def _order(symbol: str, qty: str, price: str | None = None, side: OrderSide = OrderSide.BUY) -> SubmitOrder:
    return SubmitOrder(
        cl_ord_id="EX" + uuid.uuid4().hex[:16].upper(),
        account="acc-1",
        symbol=symbol,
        side=side,
        type=OrderType.MARKET if price is None else OrderType.LIMIT,
        time_in_force=TimeInForce.GTC,
        qty=D(qty),
        price=None if price is None else D(price),
    )


def _received(venue: FixVenue, msg_type: str) -> int:
    return venue.stats.received.get(msg_type, 0)


async def _working_book(venue: FixVenue, broker: FixBroker) -> tuple[SubmitOrder, SubmitOrder, SubmitOrder]:
    """A resting limit order, a partially filled one (500 of 1200 shown at the touch), and a filled market order."""
    await venue.set_mid("AAPL", D("190.00"))
    await venue.set_mid("MSFT", D("420.00"))
    resting, partial, filled = _order("AAPL", "100", "185.00"), _order("MSFT", "1200", "421.00"), _order("AAPL", "5")
    for order in (resting, partial, filled):
        assert (await broker.submit_order(order)).accepted
    return resting, partial, filled


@pytest.mark.parametrize("begin_string", ["FIX.4.4", "FIXT.1.1"])
async def test_one_mass_status_request_lists_the_working_orders(
    tmp_path: Path,
    pool: AsyncConnectionPool,
    instruments: InstrumentCatalog,
    reports: ReportCollector,
    begin_string: str,
) -> None:
    async with running_pair(tmp_path, pool, instruments, sink=reports, begin_string=begin_string) as pair:
        venue, broker = pair.venue, pair.broker
        resting, partial, filled = await _working_book(venue, broker)
        await reports.wait_for(lambda _: any(r.kind is ReportKind.FILL for r in reports.of(filled.cl_ord_id)))
        await reports.wait_for(lambda _: any(r.cum_qty == D(500) for r in reports.of(partial.cl_ord_id)))
        asked_af, asked_h = _received(venue, "AF"), _received(venue, "H")
        listed = await broker.open_orders()
        assert _received(venue, "AF") == asked_af + 1  # one request for the whole book
        assert _received(venue, "H") == asked_h  # and no order asked about on its own
        by_id = {s.cl_ord_id: s for s in listed}
        assert set(by_id) == {resting.cl_ord_id, partial.cl_ord_id}  # the filled one works no more
        assert (by_id[resting.cl_ord_id].status, by_id[resting.cl_ord_id].cum_qty) == (OrderStatus.ACCEPTED, D(0))
        part = by_id[partial.cl_ord_id]
        assert (part.status, part.cum_qty, part.qty) == (OrderStatus.PARTIALLY_FILLED, D(500), D(1200))
        assert part.broker_order_id and [r.kind for r in part.reports if r.kind is ReportKind.FILL] == [ReportKind.FILL]
        assert broker.mass_status and "AF" not in broker.unsupported


async def test_mass_status_with_nothing_working_is_one_answer_saying_so(
    tmp_path: Path, pool: AsyncConnectionPool, instruments: InstrumentCatalog, reports: ReportCollector
) -> None:
    async with running_pair(tmp_path, pool, instruments, sink=reports) as pair:
        venue, broker = pair.venue, pair.broker
        sent = venue.stats.sent.get("8", 0)
        assert await broker.open_orders() == []
        assert _received(venue, "AF") == 1
        # A single ExecutionReport (TotNumReports 0, LastRptRequested Y) completes the answer.
        assert venue.stats.sent.get("8", 0) == sent + 1
        assert broker.mass_status_requests == 1


async def test_a_fill_whose_reports_were_lost_comes_with_the_mass_status_answer(
    tmp_path: Path, pool: AsyncConnectionPool, instruments: InstrumentCatalog, reports: ReportCollector
) -> None:
    async with running_pair(tmp_path, pool, instruments, sink=reports) as pair:
        venue, broker = pair.venue, pair.broker
        await venue.set_mid("NVDA", D("120.00"))
        order = _order("NVDA", "1200", "110.00")
        assert (await broker.submit_order(order)).accepted
        venue.venue.faults.suppress_reports = True  # journaled at the venue, never sent
        try:
            await venue.set_mid("NVDA", D("109.00"))  # 500 shown at the touch: a partial fill
            await asyncio.sleep(0.5)
            assert not [r for r in reports.of(order.cl_ord_id) if r.kind is ReportKind.FILL]
            asked_h = _received(venue, "H")
            [status] = await broker.open_orders()
            assert (_received(venue, "AF"), _received(venue, "H")) == (1, asked_h)  # told by the AF answer
        finally:
            venue.venue.faults.suppress_reports = False
        assert (status.cl_ord_id, status.cum_qty, status.status) == (
            order.cl_ord_id,
            D(500),
            OrderStatus.PARTIALLY_FILLED,
        )
        await reports.wait_for(lambda _: any(r.kind is ReportKind.FILL for r in reports.of(order.cl_ord_id)))
        [fill] = [r for r in reports.of(order.cl_ord_id) if r.kind is ReportKind.FILL]
        assert (fill.last_qty, fill.cum_qty) == (D(500), D(500)) and "synthesized" in (fill.reason or "")
        assert broker.synthesized == 1


async def test_a_venue_without_mass_status_is_asked_order_by_order(
    tmp_path: Path, pool: AsyncConnectionPool, instruments: InstrumentCatalog, reports: ReportCollector
) -> None:
    async with running_pair(tmp_path, pool, instruments, sink=reports, venue_options={"mass_status": False}) as pair:
        venue, broker = pair.venue, pair.broker
        resting, partial, _ = await _working_book(venue, broker)
        await reports.wait_for(lambda _: any(r.cum_qty == D(500) for r in reports.of(partial.cl_ord_id)))
        rejects, asked_h = venue.stats.sent.get("j", 0), _received(venue, "H")
        first = await broker.open_orders()
        # Refused (35=j 380=3 unsupported message type, from QuickFIX): remembered, and each order asked about.
        assert broker.mass_status_requests == 1 and venue.stats.sent.get("j", 0) == rejects
        assert "AF" in broker.unsupported and not broker.mass_status
        assert _received(venue, "H") == asked_h + 2
        assert {s.cl_ord_id for s in first} == {resting.cl_ord_id, partial.cl_ord_id}
        second = await broker.open_orders()  # not asked with AF again
        assert broker.mass_status_requests == 1 and _received(venue, "H") == asked_h + 4
        assert {(s.cl_ord_id, s.cum_qty) for s in second} == {(s.cl_ord_id, s.cum_qty) for s in first}
        assert broker.status_requests == "order"  # status requests are not given up for it


async def test_an_unanswered_mass_status_request_is_unknown_not_empty(
    tmp_path: Path, pool: AsyncConnectionPool, instruments: InstrumentCatalog, reports: ReportCollector
) -> None:
    async with running_pair(tmp_path, pool, instruments, sink=reports, request_timeout_seconds=1) as pair:
        venue, broker = pair.venue, pair.broker
        await venue.set_mid("AAPL", D("190.00"))
        order = _order("AAPL", "100", "185.00")
        assert (await broker.submit_order(order)).accepted
        venue.faults.swallow["AF"] = 1
        with pytest.raises(BrokerUnavailable, match="no complete answer to the mass status request"):
            await broker.open_orders()
        # Nothing was made of the silence: the order is not canceled or rejected, and AF is still asked.
        assert not [r for r in reports.of(order.cl_ord_id) if r.kind is not ReportKind.ACCEPTED]
        assert broker.mass_status and "AF" not in broker.unsupported
        [status] = await broker.open_orders()
        assert status.cl_ord_id == order.cl_ord_id and status.status is OrderStatus.ACCEPTED
        assert _received(venue, "AF") == 2


async def test_a_venue_that_never_completes_its_mass_status_answers_is_asked_order_by_order_after_three(
    tmp_path: Path, pool: AsyncConnectionPool, instruments: InstrumentCatalog, reports: ReportCollector
) -> None:
    async with running_pair(tmp_path, pool, instruments, sink=reports, request_timeout_seconds=1) as pair:
        venue, broker = pair.venue, pair.broker
        await venue.set_mid("AAPL", D("190.00"))
        order = _order("AAPL", "100", "185.00")
        assert (await broker.submit_order(order)).accepted
        venue.faults.swallow["AF"] = 100  # takes AF, answers nothing, while the session stays up
        for _ in range(3):
            with pytest.raises(BrokerUnavailable, match="no complete answer"):
                await broker.open_orders()
        assert not broker.mass_status and "3 mass status requests in a row" in broker.unsupported["AF"]
        # From now on each order is asked about (35=H), and the sweep is answered again.
        [status] = await broker.open_orders()
        assert status.cl_ord_id == order.cl_ord_id and status.status is OrderStatus.ACCEPTED
        assert (_received(venue, "AF"), _received(venue, "H")) == (3, 1)


async def _ask(broker: FixBroker, fields: list[tuple[int, Any]]) -> _MassStatus:
    """Send an AF with ``fields`` and collect its answers as ``open_orders`` does."""
    req_id = f"T{uuid.uuid4().hex[:10]}"
    collect = _MassStatus([], asyncio.get_running_loop().create_future())
    broker._mass_waiters[req_id] = collect
    assert await broker.connector.send("AF", [(Tag.MASS_STATUS_REQ_ID, req_id), *fields])
    return collect


async def test_the_venue_answers_mass_status_for_a_security_and_refuses_other_types(
    tmp_path: Path, pool: AsyncConnectionPool, instruments: InstrumentCatalog, reports: ReportCollector
) -> None:
    async with running_pair(tmp_path, pool, instruments, sink=reports) as pair:
        venue, broker = pair.venue, pair.broker
        resting, partial, _ = await _working_book(venue, broker)
        await reports.wait_for(lambda _: any(r.cum_qty == D(500) for r in reports.of(partial.cl_ord_id)))
        by_symbol = await _ask(broker, [(Tag.MASS_STATUS_REQ_TYPE, "1"), (Tag.SYMBOL, "MSFT")])
        assert await asyncio.wait_for(by_symbol.done, 10) is None
        [answer] = by_symbol.reports
        assert answer.get(Tag.CL_ORD_ID) == partial.cl_ord_id and answer.get(Tag.EXEC_TYPE) == "I"
        assert (answer.get(Tag.TOT_NUM_REPORTS), answer.get(Tag.LAST_RPT_REQUESTED)) == ("1", "Y")
        assert answer.get(Tag.CUM_QTY) == "500"
        everything = await _ask(broker, [(Tag.MASS_STATUS_REQ_TYPE, "7")])
        assert await asyncio.wait_for(everything.done, 10) is None
        assert [m.get(Tag.LAST_RPT_REQUESTED) for m in everything.reports] == ["N", "Y"]
        assert {m.get(Tag.TOT_NUM_REPORTS) for m in everything.reports} == {"2"}
        assert {m.get(Tag.CL_ORD_ID) for m in everything.reports} == {resting.cl_ord_id, partial.cl_ord_id}
        nothing = await _ask(broker, [(Tag.MASS_STATUS_REQ_TYPE, "1"), (Tag.SYMBOL, "NVDA")])
        assert await asyncio.wait_for(nothing.done, 10) is None
        [none] = nothing.reports
        assert (none.get(Tag.TOT_NUM_REPORTS), none.get(Tag.LAST_RPT_REQUESTED), none.get(Tag.ORDER_ID)) == (
            "0",
            "Y",
            "NONE",
        )
        assert none.get(Tag.CL_ORD_ID) is None
        rejects = venue.stats.sent.get("j", 0)
        product = await _ask(broker, [(Tag.MASS_STATUS_REQ_TYPE, "3")])  # by product: not supported
        refused = await asyncio.wait_for(product.done, 10)
        assert refused is not None and not refused.unsupported and "reason 0" in refused.reason
        no_symbol = await _ask(broker, [(Tag.MASS_STATUS_REQ_TYPE, "1")])
        refused = await asyncio.wait_for(no_symbol.done, 10)
        assert refused is not None and "reason 5" in refused.reason
        assert venue.stats.sent.get("j", 0) == rejects + 2
        # Refused for a reason other than "unsupported": AF stays in use.
        assert broker.mass_status and "AF" not in broker.unsupported


async def test_with_status_requests_off_the_venue_is_not_asked_and_reports_list_the_orders(
    tmp_path: Path, pool: AsyncConnectionPool, instruments: InstrumentCatalog, reports: ReportCollector
) -> None:
    # status_requests "none": the venue's reports are the record; a sweep lists the orders as their reports left
    # them (what a poll would have answered too), and neither AF nor H is sent.
    async with running_pair(tmp_path, pool, instruments, sink=reports, status_requests="none") as pair:
        venue, broker = pair.venue, pair.broker
        resting, partial, filled = await _working_book(venue, broker)
        await reports.wait_for(lambda _: any(r.kind is ReportKind.FILL for r in reports.of(filled.cl_ord_id)))
        await reports.wait_for(lambda _: any(r.cum_qty == D(500) for r in reports.of(partial.cl_ord_id)))
        assert not broker.mass_status
        listed = {s.cl_ord_id: s for s in await broker.open_orders()}
        assert set(listed) == {resting.cl_ord_id, partial.cl_ord_id}
        assert (listed[partial.cl_ord_id].status, listed[partial.cl_ord_id].cum_qty) == (
            OrderStatus.PARTIALLY_FILLED,
            D(500),
        )
        assert (_received(venue, "AF"), _received(venue, "H")) == (0, 0)


async def test_an_answer_without_last_report_requested_is_complete_by_its_count(
    tmp_path: Path, pool: AsyncConnectionPool, instruments: InstrumentCatalog, reports: ReportCollector
) -> None:
    # A venue that leaves LastRptRequested (912) out: the answer is complete once TotNumReports (911) have come.
    async with running_pair(tmp_path, pool, instruments, sink=reports) as pair:
        venue, broker = pair.venue, pair.broker
        await venue.set_mid("AAPL", D("190.00"))
        order = _order("AAPL", "100", "185.00")
        assert (await broker.submit_order(order)).accepted
        common = [(Tag.EXEC_TYPE, "I"), (Tag.SIDE, "1"), (Tag.LEAVES_QTY, "0"), (Tag.CUM_QTY, "0"), (Tag.AVG_PX, "0")]
        collects = {}
        for req_id, fields in {
            "T-NONE": [(Tag.ORDER_ID, "NONE"), (Tag.ORD_STATUS, "8"), (Tag.TOT_NUM_REPORTS, "0"), (Tag.SYMBOL, "NA")],
            "T-ONE": [
                (Tag.ORDER_ID, "V1"),
                (Tag.CL_ORD_ID, order.cl_ord_id),
                (Tag.ORD_STATUS, "0"),
                (Tag.TOT_NUM_REPORTS, "1"),
                (Tag.SYMBOL, "AAPL"),
                (Tag.ORDER_QTY, "100"),
            ],
        }.items():
            collects[req_id] = _MassStatus([], asyncio.get_running_loop().create_future())
            broker._mass_waiters[req_id] = collects[req_id]
            exec_id = f"{req_id}-{uuid.uuid4().hex[:6]}"
            venue.connector.send_nowait(
                "8", [*fields, (Tag.EXEC_ID, exec_id), (Tag.MASS_STATUS_REQ_ID, req_id), *common]
            )
        for collect in collects.values():
            assert await asyncio.wait_for(collect.done, 10) is None
        assert [m.get(Tag.CL_ORD_ID) for m in collects["T-ONE"].reports] == [order.cl_ord_id]
        assert [m.get(Tag.TOT_NUM_REPORTS) for m in collects["T-NONE"].reports] == ["0"]
