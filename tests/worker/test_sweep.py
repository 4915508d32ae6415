"""Broker sweeps (worker/sweep.py) on the paper venue: a fill that reaches the order only through a sweep is booked,
a quiet working order gains no history event across sweeps, and an order of a broker without mass status polls."""

from __future__ import annotations

import asyncio
from decimal import Decimal as D
from typing import Any

from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowHandle

from core.domain import CancelRequest, OrderStatus
from core.settings import OrderSettings
from tests.conftest import make_settings
from tests.harness import Stack, make_order
from tests.workflows.recording import record_history
from workflows.order import PATCH_BROKER_SWEEPS, OrderWorkflow
from workflows.order_client import order_config


async def history_events(handle: WorkflowHandle[Any, Any]) -> list[Any]:
    """The order's history events so far, as the Temporal server has them."""
    return [e async for e in handle.fetch_history_events()]


def _count(events: list[Any], kind: EventType.ValueType) -> int:
    return sum(1 for e in events if e.event_type == kind)


async def _eventually(check: Any, *, timeout: float = 30.0, interval: float = 0.1) -> None:
    async with asyncio.timeout(timeout):
        while not await check():
            await asyncio.sleep(interval)


def test_orders_of_a_broker_with_mass_status_are_swept_others_poll() -> None:
    settings = make_settings("postgresql://unused", "localhost:1", orders=OrderSettings(sweep_seconds=30))
    assert order_config(settings, "paper").swept
    assert order_config(settings, "alpaca").swept and order_config(settings, "oanda").swept
    assert order_config(settings, "kraken").swept
    assert order_config(settings, "fix").swept  # OrderMassStatusRequest (35=AF), or per order inside open_orders()
    off = make_settings("postgresql://unused", "localhost:1", orders=OrderSettings(sweep_seconds=0))
    assert not order_config(off, "paper").swept


async def test_a_fill_that_arrives_only_through_the_sweep_is_booked(stack: Stack) -> None:
    await stack.venue.set_mid("AAPL", D("190.00"))
    order = make_order(symbol="AAPL", qty="10", type="LIMIT", price="185.00")
    _, handle = await stack.submit(order, swept=True)
    await stack.wait_for(handle, OrderStatus.ACCEPTED)
    stack.venue.faults.suppress_reports = True
    try:
        await stack.venue.set_mid("AAPL", D("184.00"))  # filled at the venue; no report reaches the order
        await asyncio.sleep(1.0)
        assert (await stack.state(handle)).status is OrderStatus.ACCEPTED  # no poll timer finds it by itself
        async with stack.sweeping(interval=0.5) as sweeper:
            result = await asyncio.wait_for(handle.result(), 60)
    finally:
        stack.venue.faults.suppress_reports = False
    assert result.status is OrderStatus.FILLED
    assert sweeper.sweeps >= 1
    rows = await stack.fetch("SELECT qty FROM fills WHERE order_id = %s", order.order_id)
    assert [r["qty"] for r in rows] == [D(10)]
    events = await history_events(handle)
    signals = [e for e in events if e.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED]
    names = [s.workflow_execution_signaled_event_attributes.signal_name for s in signals]
    assert names.count("sweep_found") == 1, names  # (an execution_report: the venue's repeat of the acceptance)
    assert _count(events, EventType.EVENT_TYPE_TIMER_STARTED) == 0  # no poll timer was ever armed
    await record_history(handle, "paper-sweep-recovers-fill")


async def test_a_quiet_working_order_gains_no_history_event_across_sweeps(stack: Stack) -> None:
    await stack.venue.set_mid("MSFT", D("400.00"))
    order = make_order(symbol="MSFT", qty="5", type="LIMIT", price="300.00")
    _, handle = await stack.submit(order, swept=True)
    await stack.wait_for(handle, OrderStatus.ACCEPTED)
    # Booked as working in Postgres (what the sweep compares with).
    await _eventually(
        lambda: _status_is(stack, order.order_id, "ACCEPTED"),
    )
    before = await history_events(handle)
    assert PATCH_BROKER_SWEEPS.encode() in b"".join(e.SerializeToString() for e in before)
    async with stack.sweeping(interval=0.3) as sweeper:
        await _eventually(lambda: _sweeps_at_least(sweeper, 5))
        assert sweeper.last is not None and sweeper.last.working >= 1 and sweeper.last.requests == 1
        assert order.order_id not in sweeper.last.signaled
    after = await history_events(handle)
    assert len(after) == len(before), [EventType.Name(e.event_type) for e in after[len(before) :]]
    assert _count(after, EventType.EVENT_TYPE_TIMER_STARTED) == 0
    await handle.signal(OrderWorkflow.cancel, CancelRequest(reason="test done", requested_by="test"))
    result = await asyncio.wait_for(handle.result(), 60)
    assert result.status is OrderStatus.CANCELED
    await record_history(handle, "paper-swept-limit-canceled")


async def test_an_order_of_a_broker_without_mass_status_still_polls(stack: Stack) -> None:
    await stack.venue.set_mid("NVDA", D("120.00"))
    order = make_order(symbol="NVDA", qty="5", type="LIMIT", price="100.00")
    # Not swept (as for FIX, whose adapter asks per order): the order's own timer asks the broker.
    _, handle = await stack.submit(order, swept=False, status_poll_seconds=0.5)
    await stack.wait_for(handle, OrderStatus.ACCEPTED)

    async def polled_twice() -> bool:
        events = await history_events(handle)
        scheduled = [
            e.activity_task_scheduled_event_attributes.activity_type.name
            for e in events
            if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
        ]
        return scheduled.count("get_order_status") >= 2

    await _eventually(polled_twice, timeout=60)
    await handle.signal(OrderWorkflow.cancel, CancelRequest(reason="test done", requested_by="test"))
    assert (await asyncio.wait_for(handle.result(), 60)).status is OrderStatus.CANCELED


async def test_a_sweep_with_no_working_orders_asks_the_broker_nothing(stack: Stack) -> None:
    from worker.sweep import BrokerSweep

    broker = stack.brokers["paper"]
    sweeper = BrokerSweep(stack.client, stack.pool, broker, interval=1)
    sweeper.broker = _Renamed(broker, "paper-nobody")  # a broker name no order has
    outcome = await sweeper.sweep_once()
    assert (outcome.working, outcome.requests, outcome.signaled) == (0, 0, {})


class _Renamed:
    def __init__(self, broker: Any, name: str) -> None:
        self._broker, self.name = broker, name
        self.capabilities = broker.capabilities

    async def open_orders(self) -> list[Any]:
        raise AssertionError("a sweep with nothing working must not ask the broker")


async def _status_is(stack: Stack, order_id: str, status: str) -> bool:
    rows = await stack.fetch("SELECT status FROM orders WHERE order_id = %s", order_id)
    return bool(rows) and rows[0]["status"] == status


async def _sweeps_at_least(sweeper: Any, n: int) -> bool:
    return bool(sweeper.sweeps >= n)


async def test_a_swept_market_order_is_filled_and_booked_without_a_poll(stack: Stack) -> None:
    await stack.venue.set_mid("SPY", D("500.00"))
    order = make_order(symbol="SPY", qty="3")
    _, handle = await stack.submit(order, swept=True)
    result = await asyncio.wait_for(handle.result(), 60)
    assert result.status is OrderStatus.FILLED and D(result.filled_qty) == 3
    events = await history_events(handle)
    assert _count(events, EventType.EVENT_TYPE_TIMER_STARTED) == 0
    await record_history(handle, "paper-market-filled-swept")


async def test_a_difference_that_lasts_is_signaled_again_only_after_growing_gaps(stack: Stack) -> None:
    from worker.sweep import BrokerSweep

    await stack.venue.set_mid("AAPL", D("190.00"))
    order = make_order(symbol="AAPL", qty="2", type="LIMIT", price="150.00")
    _, handle = await stack.submit(order, swept=True)
    await stack.wait_for(handle, OrderStatus.ACCEPTED)
    await _eventually(lambda: _status_is(stack, order.order_id, "ACCEPTED"))
    signals: list[str] = []
    # A broker that has lost every order: the lookups it causes cannot settle the difference.
    sweeper = BrokerSweep(
        _Recorder(signals), stack.pool, _Forgetful(stack.brokers["paper"]), interval=1, grace_seconds=0
    )
    for _ in range(8):
        await sweeper.sweep_once()
    assert signals.count(order.order_id) == 3  # sweeps 1, 3 and 7 (gaps 2, 4, then 8)
    await handle.signal(OrderWorkflow.cancel, CancelRequest(reason="test done", requested_by="test"))
    assert (await asyncio.wait_for(handle.result(), 60)).status is OrderStatus.CANCELED


class _Forgetful:
    def __init__(self, broker: Any) -> None:
        self.name, self.capabilities = broker.name, broker.capabilities

    async def open_orders(self) -> list[Any]:
        return []


class _Recorder:
    def __init__(self, signals: list[str]) -> None:
        self._signals = signals

    def get_workflow_handle(self, workflow_id: str) -> Any:
        signals = self._signals

        class Handle:
            async def signal(self, *_: Any) -> None:
                signals.append(workflow_id.removeprefix("order-"))

        return Handle()
