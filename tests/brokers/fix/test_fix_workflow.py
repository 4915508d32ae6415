"""Orders over FIX end to end: order workflows on a real Temporal server, the FIX adapter as broker "fix" on its
own task queue, the local FIX venue over loopback, Postgres for the ledger and the adapter's records."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from decimal import Decimal

import pytest
from psycopg_pool import AsyncConnectionPool
from temporalio.api.enums.v1 import EventType
from temporalio.testing import WorkflowEnvironment

from brokers.fix.execution import FixBroker
from core.domain import AmendRequest, CancelRequest, OrderStatus, PegType
from core.instruments import InstrumentCatalog
from devstack.services import free_port
from devstack.venues.fix.venue import FixVenue
from sim.venue import SimVenue
from store.quotes import QuoteWriter
from tests.brokers.fix.kit import TcpProxy, eventually, fix_settings
from tests.conftest import make_settings, temporal_address
from tests.harness import Stack, make_order, until
from tests.workflows.recording import record_history
from worker.dispatcher import ReportDispatcher
from worker.sweep import BrokerSweep
from workflows.order import OrderWorkflow

D = Decimal


@dataclass
class FixStack:
    stack: Stack
    venue: FixVenue
    network: TcpProxy

    @property
    def broker(self) -> FixBroker:
        broker = self.stack.brokers["fix"]
        assert isinstance(broker, FixBroker)
        return broker

    async def fills(self, order_id: str) -> list[dict]:
        return await self.stack.fetch(
            "SELECT exec_id, qty, price FROM fills WHERE order_id = %s ORDER BY filled_at, exec_id", order_id
        )


@pytest.fixture(scope="module")
async def fix_stack(
    tmp_path_factory: pytest.TempPathFactory,
    temporal_env: WorkflowEnvironment,
    database_url: str,
    pool: AsyncConnectionPool,
    instruments: InstrumentCatalog,
) -> AsyncIterator[FixStack]:
    directory = tmp_path_factory.mktemp("fix-e2e")
    tag = uuid.uuid4().hex[:6].upper()
    venue = FixVenue(
        SimVenue(instruments, name="fixvenue", tick_interval=0, reject_symbols=["SPY"]),
        port=free_port(),
        directory=directory / "venue",
        sender_comp_id=f"VEN{tag}",
        target_comp_id=f"EXO{tag}",
    )
    network = TcpProxy(venue.port)
    settings = make_settings(
        database_url,
        temporal_address(temporal_env),
        data_dir=directory,
        fix=fix_settings(
            port=network.port, begin_string="FIX.4.4", sender=f"EXO{tag}", target=f"VEN{tag}", market_data=True
        ),
    )
    # Risk prices FIX orders from source "fix": the session's own market data (35=V/W/X), through the quote
    # writer into the quote store, as in the worker.
    quotes = QuoteWriter.from_settings(pool, settings.market_data)
    await venue.start()
    await network.start()
    broker = FixBroker.from_settings(settings, pool=pool, quotes=quotes, instruments=instruments)
    try:
        async with Stack.running(
            temporal_env.client, settings, pool, instruments, {"fix": broker}, quotes=quotes
        ) as stack:
            await broker.wait_logged_on(15)
            assert broker.market_data is not None
            symbols = len(instruments.symbols())
            await eventually(lambda: broker.market_data is not None and broker.market_data.published >= symbols)
            await quotes.flush()
            yield FixStack(stack, venue, network)
            # A test may have swapped in a restarted adapter; the stack closes only the one it started.
            await stack.brokers["fix"].close()
    finally:
        await network.stop()
        await venue.stop()
        await quotes.aclose()


def _order(**kwargs: object):  # type: ignore[no-untyped-def]
    return make_order(broker="fix", **kwargs)  # type: ignore[arg-type]


async def test_market_order_over_fix_is_filled_booked_and_reconciled(fix_stack: FixStack) -> None:
    await fix_stack.venue.set_mid("AAPL", D("190.00"))
    order = _order(symbol="AAPL", qty="100")
    decision, handle = await fix_stack.stack.submit(order)
    assert decision.approved
    result = await handle.result()
    assert result.status is OrderStatus.FILLED and D(result.filled_qty) == D(100)
    assert D(result.avg_price) == D("190.01") and result.breaks == []
    [fill] = await fix_stack.fills(order.order_id)
    assert (fill["qty"], fill["price"]) == (D(100), D("190.01"))
    assert fill["exec_id"].startswith("FIXVENUE-")  # the venue's ExecID (17)
    state = await fix_stack.stack.state(handle)
    assert state.broker_order_id and state.flags == []
    assert [e.kind for e in state.events][-1] == "RECONCILED"
    await record_history(handle, "fix-market-filled")


async def test_partial_fills_then_an_operator_cancel(fix_stack: FixStack) -> None:
    await fix_stack.venue.set_mid("MSFT", D("420.00"))
    order = _order(symbol="MSFT", qty="1200", type="LIMIT", price="421.00")  # 500 shown at the touch
    _, handle = await fix_stack.stack.submit(order)
    await fix_stack.stack.wait_for(handle, lambda s: s.filled_qty == D(500))
    await fix_stack.venue.set_mid("MSFT", D("425.00"))  # out of reach now
    await handle.signal(OrderWorkflow.cancel, CancelRequest(requested_by="ops", reason="desk request"))
    result = await handle.result()
    assert result.status is OrderStatus.CANCELED and D(result.filled_qty) == D(500)
    assert [f["qty"] for f in await fix_stack.fills(order.order_id)] == [D(500)]
    assert result.breaks == []
    await record_history(handle, "fix-partial-fills-then-canceled")


async def test_amend_is_a_cancel_replace_and_the_order_fills_on_its_new_terms(fix_stack: FixStack) -> None:
    await fix_stack.venue.set_mid("NVDA", D("120.00"))
    order = _order(symbol="NVDA", qty="10", type="LIMIT", price="110.00")
    _, handle = await fix_stack.stack.submit(order)
    await fix_stack.stack.wait_for(handle, OrderStatus.ACCEPTED)
    amended = await handle.execute_update(OrderWorkflow.amend, AmendRequest(qty=D(20), price=D("121.00")))
    assert amended.accepted, amended.reason
    result = await handle.result()
    assert result.status is OrderStatus.FILLED and D(result.filled_qty) == D(20)
    assert D(result.avg_price) == D("120.01") and result.breaks == []
    state = await fix_stack.stack.state(handle)
    assert state.revision == 1
    at_venue = fix_stack.venue.venue.engine.find(order.order_id)
    assert at_venue is not None and at_venue.cl_ord_ids == [order.order_id, f"{order.order_id}.1"]
    await record_history(handle, "fix-amended-then-filled")


async def test_venue_reject_ends_the_order_rejected_with_the_venues_reason(fix_stack: FixStack) -> None:
    order = _order(symbol="SPY", qty="5")  # the venue refuses SPY
    decision, handle = await fix_stack.stack.submit(order)
    assert decision.approved
    result = await handle.result()
    assert result.status is OrderStatus.REJECTED and "INJECTED_REJECT" in (result.reason or "")
    await record_history(handle, "fix-rejected")


async def test_pegged_and_ioc_orders_over_fix(fix_stack: FixStack) -> None:
    await fix_stack.venue.set_mid("AAPL", D("190.00"))
    pegged = _order(
        symbol="AAPL", qty="10", type="PEGGED", time_in_force="DAY", peg_type=PegType.MIDPOINT, peg_offset=D("-0.01")
    )
    ioc = _order(symbol="AAPL", qty="700", time_in_force="IOC")  # 500 at the touch
    (_, h1), (_, h2) = await asyncio.gather(fix_stack.stack.submit(pegged), fix_stack.stack.submit(ioc))
    r1, r2 = await asyncio.gather(h1.result(), h2.result())
    assert r1.status is OrderStatus.FILLED and D(r1.avg_price) == D("189.99")  # mid - 0.01
    assert r2.status is OrderStatus.CANCELED and D(r2.filled_qty) == D(500)
    assert r1.breaks == [] and r2.breaks == []


async def test_fills_while_the_connection_is_down_reach_their_workflows_once(fix_stack: FixStack) -> None:
    venue, broker, network = fix_stack.venue, fix_stack.broker, fix_stack.network
    await venue.set_mid("ETH-USD", D("3200.00"))
    orders = [_order(symbol="ETH-USD", qty=q, type="LIMIT", price="3150.00") for q in ("45", "3")]  # 20 shown
    handles = [h for _, h in await asyncio.gather(*(fix_stack.stack.submit(o) for o in orders))]
    for h in handles:
        await fix_stack.stack.wait_for(h, OrderStatus.ACCEPTED)
    sent_before, expected_before = await broker.sequence_numbers()

    network.cut()
    await eventually(lambda: not broker.logged_on)
    await venue.set_mid("ETH-USD", D("3100.00"))  # 20 + 3
    await venue.step()  # 20
    await venue.step()  # 5
    await eventually(lambda: network.refused >= 1)
    network.restore()

    results = await asyncio.gather(*(h.result() for h in handles))
    assert [r.status for r in results] == [OrderStatus.FILLED, OrderStatus.FILLED]
    assert all(r.breaks == [] for r in results)
    big = await fix_stack.fills(orders[0].order_id)
    assert [f["qty"] for f in big] == [D(20), D(20), D(5)]
    assert len({f["exec_id"] for f in big}) == 3
    assert [f["qty"] for f in await fix_stack.fills(orders[1].order_id)] == [D(3)]
    assert broker.synthesized == 0
    sent_after, expected_after = await broker.sequence_numbers()
    assert sent_after > sent_before and expected_after > expected_before + 4  # continued, not reset


async def test_submission_whose_answer_is_lost_stays_in_flight_until_the_venue_answers(fix_stack: FixStack) -> None:
    venue = fix_stack.venue
    await venue.set_mid("AAPL", D("190.00"))
    received_before = venue.stats.received.get("D", 0)
    venue.faults.drop_before_answer = 1
    order = _order(symbol="AAPL", qty="25")
    _, handle = await fix_stack.stack.submit(order)
    result = await handle.result()
    assert result.status is OrderStatus.FILLED and result.breaks == []
    assert venue.stats.received["D"] == received_before + 1  # sent once, never again
    # The submission activity did not get its answer the first time: it was retried, asked first, found it.
    attempts = [
        e.activity_task_started_event_attributes.attempt
        async for e in handle.fetch_history_events()
        if e.HasField("activity_task_started_event_attributes")
    ]
    assert attempts[0] >= 2
    assert [f["qty"] for f in await fix_stack.fills(order.order_id)] == [D(25)]


async def test_restarted_adapter_resumes_the_session_and_the_order_completes(fix_stack: FixStack) -> None:
    stack, venue = fix_stack.stack, fix_stack.venue
    await venue.set_mid("GBPUSD", D("1.27000"))
    order = _order(symbol="GBPUSD", qty="2000000", type="LIMIT", price="1.26000")  # 1,000,000 shown
    _, handle = await stack.submit(order)
    await stack.wait_for(handle, OrderStatus.ACCEPTED)
    old = fix_stack.broker
    sent_before, expected_before = await old.sequence_numbers()
    await old.close()
    await venue.set_mid("GBPUSD", D("1.25000"))  # fills while nobody owns the session
    await venue.step()
    new = FixBroker.from_settings(stack.settings, pool=stack.pool, quotes=stack.quotes, instruments=stack.instruments)
    await new.start(ReportDispatcher(stack.client, stack.pool))
    stack.brokers["fix"] = new  # the broker activities look the adapter up here
    await new.wait_logged_on(15)
    result = await handle.result()
    assert result.status is OrderStatus.FILLED and result.breaks == []
    assert [f["qty"] for f in await fix_stack.fills(order.order_id)] == [D(1000000), D(1000000)]
    # The new adapter went on with the stored sequence numbers (a reset would have started again at 1).
    sent_after, expected_after = await new.sequence_numbers()
    assert sent_after > sent_before and expected_after > expected_before + 2


async def test_a_fill_whose_reports_were_lost_is_found_by_the_broker_sweep(fix_stack: FixStack) -> None:
    # Issue 18: FIX orders are swept, one OrderMassStatusRequest (35=AF) per sweep whatever the number of working
    # orders, and arm no poll timer. A fill whose reports never left the venue is found by a sweep (the order is no
    # longer in the venue's answer), looked up (35=H) by its workflow and booked.
    stack, venue = fix_stack.stack, fix_stack.venue
    await venue.set_mid("EURUSD", D("1.09000"))
    await venue.set_mid("AUDUSD", D("0.66000"))
    lost = _order(symbol="EURUSD", qty="1000000", type="LIMIT", price="1.08000")
    quiet = _order(symbol="AUDUSD", qty="1000000", type="LIMIT", price="0.65000")
    handles = [(await stack.submit(o, swept=True))[1] for o in (lost, quiet)]  # as with sweep_seconds > 0
    for order, h in zip((lost, quiet), handles, strict=True):
        await stack.wait_for(h, OrderStatus.ACCEPTED)
        await until("booked as working", lambda o=order: _booked_as(stack, o.order_id, "ACCEPTED"))  # swept with
    handle, quiet_handle = handles
    sweeper = BrokerSweep(stack.client, stack.pool, fix_stack.broker, interval=60, grace_seconds=0.2)
    asked = venue.stats.received.get("AF", 0), venue.stats.received.get("H", 0)
    outcome = await sweeper.sweep_once()
    assert outcome.working >= 2 and outcome.requests == 1
    assert (venue.stats.received.get("AF", 0), venue.stats.received.get("H", 0)) == (asked[0] + 1, asked[1])
    assert lost.order_id not in outcome.signaled and quiet.order_id not in outcome.signaled
    venue.venue.faults.suppress_reports = True  # journaled at the venue, never sent
    try:
        await venue.set_mid("EURUSD", D("1.07000"))
        await asyncio.sleep(1.0)
        assert (await stack.state(handle)).status is OrderStatus.ACCEPTED  # nothing arrived, and nothing asks
        outcome = await sweeper.sweep_once()
    finally:
        venue.venue.faults.suppress_reports = False
    assert venue.stats.received.get("AF", 0) == asked[0] + 2
    assert lost.order_id in outcome.signaled and quiet.order_id not in outcome.signaled
    result = await asyncio.wait_for(handle.result(), 60)
    assert result.status is OrderStatus.FILLED and D(result.filled_qty) == D(1000000) and result.breaks == []
    [fill] = await fix_stack.fills(lost.order_id)  # at the venue's price (the ask, 1.07001), once
    assert (fill["qty"], fill["price"]) == (D(1000000), D(result.avg_price)) and fill["price"] <= D("1.08")
    events = [e async for e in handle.fetch_history_events()]
    assert not [e for e in events if e.event_type == EventType.EVENT_TYPE_TIMER_STARTED]  # never polled
    signals = [
        e.workflow_execution_signaled_event_attributes.signal_name
        for e in events
        if e.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED
    ]
    assert signals.count("sweep_found") == 1
    await quiet_handle.signal(OrderWorkflow.cancel, CancelRequest(requested_by="test", reason="test done"))
    assert (await asyncio.wait_for(quiet_handle.result(), 60)).status is OrderStatus.CANCELED
    await record_history(handle, "fix-sweep-recovers-fill")


async def _booked_as(stack: Stack, order_id: str, status: str) -> bool:
    rows = await stack.fetch("SELECT status FROM orders WHERE order_id = %s", order_id)
    return bool(rows) and rows[0]["status"] == status


async def test_report_for_an_unknown_order_is_kept_as_an_orphan(fix_stack: FixStack) -> None:
    stray = "EX" + uuid.uuid4().hex[:16].upper()
    fix_stack.venue.connector.send_nowait(
        "8",
        [
            (37, "VENUE-X"),
            (11, stray),
            (17, f"stray-{stray}"),
            (150, "F"),
            (39, "2"),
            (55, "AAPL"),
            (54, "1"),
            (38, "5"),
            (32, "5"),
            (31, "190.01"),
            (151, "0"),
            (14, "5"),
            (6, "190.01"),
            (60, "20260101-00:00:00.000"),
        ],
    )

    async def orphaned() -> list[dict]:
        return await fix_stack.stack.fetch(
            "SELECT broker, client_order_id FROM unmatched_reports WHERE exec_id = %s", f"stray-{stray}"
        )

    [row] = await eventually(orphaned)
    assert (row["broker"], row["client_order_id"]) == ("fix", stray)


async def test_new_orders_are_refused_while_the_session_is_down(fix_stack: FixStack) -> None:
    broker, network, stack = fix_stack.broker, fix_stack.network, fix_stack.stack

    async def session_row() -> dict:
        [row] = await stack.fetch("SELECT logged_on, detail FROM broker_sessions WHERE broker = 'fix'")
        return row

    async def recorded(logged_on: bool) -> bool:
        return bool((await session_row())["logged_on"]) is logged_on

    assert (await session_row())["logged_on"]
    network.cut()
    try:
        await eventually(lambda: not broker.logged_on)
        await until("the session recorded down", lambda: recorded(False))
        decision, handle = await stack.submit(_order(symbol="AAPL", qty="5"))
        assert not decision.approved
        [reason] = decision.reasons
        assert reason.code == "BROKER_UNAVAILABLE" and "not logged on" in reason.message and reason.field == "broker"
        assert (await handle.result()).status is OrderStatus.DENIED
    finally:
        network.restore()
    await broker.wait_logged_on(15)
    await until("the session recorded up", lambda: recorded(True))
    decision, handle = await stack.submit(_order(symbol="AAPL", qty="6"))
    assert decision.approved
    assert (await handle.result()).status is OrderStatus.FILLED
