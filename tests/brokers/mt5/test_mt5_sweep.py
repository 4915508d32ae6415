"""MT5 swept at broker level (issue 18): MT5 declares mass status, so its orders arm no poll timer and the worker
owning the broker sweeps it (``worker/sweep.py``). The sweep's list is the bridge's order rows, which the EA's acks
and trade reports move (there is nothing to ask the EA): one statement however many orders work. Order workflows on
a real Temporal server, the EA peer over the bridge's HTTP endpoints, a simulated XM terminal, Postgres."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from typing import Any

from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowHandle

from brokers.mt5.execution import Mt5Broker
from core.domain import CancelRequest, OrderStatus
from core.settings import OrderSettings
from store.orders import working_orders
from tests.brokers.mt5.conftest import Mt5Stack, Rig
from tests.conftest import make_settings
from tests.harness import make_order
from tests.waiting import count_events, history, settled_history
from workflows.order import OrderWorkflow
from workflows.order_client import order_config

D = Decimal


async def _until(predicate: Any, timeout: float = 15.0) -> None:
    async with asyncio.timeout(timeout):
        while not await predicate():
            await asyncio.sleep(0.05)


def _broker(rig: Rig) -> Mt5Broker:
    assert isinstance(rig.broker, Mt5Broker)
    return rig.broker


async def _resting(rig: Rig, mt5_stack: Mt5Stack, price: str = "1.08000") -> tuple[str, WorkflowHandle[Any, Any]]:
    """A swept buy limit resting at the terminal, booked as working in Postgres."""
    order = make_order(symbol="EURUSD", qty="10000", account=rig.account, broker="mt5", type="LIMIT", price=price)
    decision, handle = await mt5_stack.stack.submit(order, swept=True)
    assert decision.approved, decision
    await mt5_stack.stack.wait_for(handle, OrderStatus.ACCEPTED)
    await _until(lambda: _booked_working(mt5_stack, order.order_id))
    return order.order_id, handle


async def _booked_working(mt5_stack: Mt5Stack, order_id: str) -> bool:
    async with mt5_stack.stack.pool.connection() as conn:
        return bool(await working_orders(conn, "mt5", order_ids=[order_id]))


async def _cancel(handle: WorkflowHandle[Any, Any]) -> None:
    await handle.signal(OrderWorkflow.cancel, CancelRequest(reason="test done", requested_by="test"))
    assert (await asyncio.wait_for(handle.result(), 60)).status is OrderStatus.CANCELED


def test_mt5_declares_mass_status_so_its_orders_are_swept() -> None:
    settings = make_settings("postgresql://unused", "localhost:1", orders=OrderSettings(sweep_seconds=30))
    assert order_config(settings, "mt5").swept


async def test_open_orders_is_what_the_terminal_works_for_the_bridge(xm: Rig, mt5_stack: Mt5Stack) -> None:
    broker = _broker(xm)
    resting = [await _resting(xm, mt5_stack) for _ in range(3)]
    opens = {o.cl_ord_id: o for o in await broker.open_orders()}
    for order_id, _ in resting:
        status = opens[order_id]
        assert status.status is OrderStatus.ACCEPTED and status.cum_qty == 0 and status.qty == D(10000)
        assert status.broker_order_id is not None and int(status.broker_order_id) in xm.terminal.orders
    await xm.terminal.set_mid("EURUSD", D("1.07990"))  # all three fill
    for _, handle in resting:
        assert (await asyncio.wait_for(handle.result(), 60)).status is OrderStatus.FILLED
    still = {o.cl_ord_id for o in await broker.open_orders()}
    assert not still & {order_id for order_id, _ in resting}


async def test_a_trade_report_the_order_never_received_is_found_by_the_mt5_sweep(xm: Rig, mt5_stack: Mt5Stack) -> None:
    stack = mt5_stack.stack
    broker = _broker(xm)
    order_id, handle = await _resting(xm, mt5_stack)
    delivery, broker.delivery = broker.delivery, None  # the bridge records the EA's reports; none reach the order
    try:
        await xm.terminal.set_mid("EURUSD", D("1.07990"))
        await _until(lambda: _bridge_status(broker, order_id, "FILLED"))
        await asyncio.sleep(1.0)
        assert (await stack.state(handle)).status is OrderStatus.ACCEPTED  # no poll timer finds it by itself
        async with stack.sweeping("mt5", interval=0.5) as sweeper:
            result = await asyncio.wait_for(handle.result(), 60)
        assert sweeper.sweeps >= 1
    finally:
        broker.delivery = delivery
    assert result.status is OrderStatus.FILLED and D(result.filled_qty) == D(10000)
    [deal] = xm.terminal.deals.values()
    fills = await stack.fetch("SELECT exec_id, qty FROM fills WHERE order_id = %s", order_id)
    assert [(f["exec_id"], f["qty"]) for f in fills] == [(f"mt5:{xm.account}:deal:{deal.ticket}", D(10000))]
    events = await history(handle)
    names = [
        e.workflow_execution_signaled_event_attributes.signal_name
        for e in events
        if e.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED
    ]
    assert names.count("sweep_found") == 1, names
    assert count_events(events, EventType.EVENT_TYPE_TIMER_STARTED) == 0  # it never polled


async def _bridge_status(broker: Mt5Broker, order_id: str, status: str) -> bool:
    row = await broker.reports.order(order_id)
    return row is not None and row["status"] == status


async def test_a_resting_mt5_order_gains_no_history_event_across_sweeps(xm: Rig, mt5_stack: Mt5Stack) -> None:
    order_id, handle = await _resting(xm, mt5_stack)
    before = await settled_history(handle)
    async with mt5_stack.stack.sweeping("mt5", interval=0.3) as sweeper:
        await _until(lambda: _sweeps_at_least(sweeper, 5), timeout=30)
        assert sweeper.last is not None and sweeper.last.requests == 1
        assert order_id not in sweeper.last.signaled
    after = await history(handle)
    assert len(after) == len(before), [EventType.Name(e.event_type) for e in after[len(before) :]]
    assert count_events(after, EventType.EVENT_TYPE_TIMER_STARTED) == 0
    await _cancel(handle)


async def _sweeps_at_least(sweeper: Any, n: int) -> bool:
    return bool(sweeper.sweeps >= n)


async def test_an_mt5_sweep_while_the_ea_is_away_signals_nothing(xm: Rig, mt5_stack: Mt5Stack) -> None:
    order_id, handle = await _resting(xm, mt5_stack)
    before = len(await settled_history(handle))
    await xm.stop_loop()  # the EA is gone: no heartbeats, no reports; the order's fate is unknown
    try:
        async with mt5_stack.stack.sweeping("mt5", interval=0.3) as sweeper:
            await _until(lambda: _sweeps_at_least(sweeper, 3), timeout=30)
            assert sweeper.last is not None and order_id not in sweeper.last.signaled
        assert (await mt5_stack.stack.state(handle)).status is OrderStatus.ACCEPTED
        assert len(await history(handle)) == before
    finally:
        await xm.start_loop()
    await _cancel(handle)
