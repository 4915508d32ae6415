"""IB swept at broker level (issue 18): IB declares mass status, so its orders arm no poll timer and the worker owning
the session sweeps it (``worker/sweep.py``); one sweep is one sync (reqExecutions, reqAllOpenOrders,
reqCompletedOrders) against the local TWS venue, however many orders work. Order workflows on a real Temporal
server, the IB adapter (real ib_async), the local TWS venue over a loopback socket, Postgres for the ledger."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from typing import Any

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowHandle

from core.domain import CancelRequest, OrderStatus
from core.errors import BrokerUnavailable
from core.settings import OrderSettings
from devstack.venues.ib.wire import IN
from store.orders import working_orders
from tests.brokers.ib.kit import eventually
from tests.brokers.ib.test_ib_workflow import IBStack, _calm, ib_stack  # noqa: F401 (fixtures)
from tests.conftest import make_settings
from tests.harness import make_order
from tests.waiting import count_events, history, settled_history
from worker.sweep import BrokerSweep
from workflows.order import OrderWorkflow
from workflows.order_client import order_config

D = Decimal

#: What one sweep may ask TWS: one sync.
_SYNC = (IN.REQ_EXECUTIONS, IN.REQ_ALL_OPEN_ORDERS, IN.REQ_COMPLETED_ORDERS)
#: The quote poller's traffic (reqMktData snapshots), which runs beside the sweep.
_QUOTES = (IN.REQ_MKT_DATA, IN.CANCEL_MKT_DATA)


async def _resting(s: IBStack, price: str = "150.00") -> tuple[str, WorkflowHandle[Any, Any]]:
    """A swept limit order resting at the venue, booked as working in Postgres."""
    order = make_order(broker="ib", symbol="AAPL", qty="1", type="LIMIT", price=price)
    decision, handle = await s.stack.submit(order, swept=True)
    assert decision.approved, decision
    await s.stack.wait_for(handle, OrderStatus.ACCEPTED)
    await eventually(lambda: _booked_working(s, order.order_id))
    return order.order_id, handle


async def _booked_working(s: IBStack, order_id: str) -> bool:
    async with s.stack.pool.connection() as conn:
        return bool(await working_orders(conn, "ib", order_ids=[order_id]))


async def _cancel(s: IBStack, handle: WorkflowHandle[Any, Any]) -> None:
    await handle.signal(OrderWorkflow.cancel, CancelRequest(reason="test done", requested_by="test"))
    assert (await asyncio.wait_for(handle.result(), 60)).status is OrderStatus.CANCELED


def test_ib_declares_mass_status_so_its_orders_are_swept() -> None:
    settings = make_settings("postgresql://unused", "localhost:1", orders=OrderSettings(sweep_seconds=30))
    assert order_config(settings, "ib").swept
    assert not order_config(settings, "ib", swept=False).swept


async def test_a_fill_whose_reports_were_lost_is_found_by_the_ib_sweep(ib_stack: IBStack) -> None:  # noqa: F811
    s = ib_stack
    await s.venue.set_mid("AAPL", D("190.00"))
    order = make_order(broker="ib", symbol="AAPL", qty="10", type="LIMIT", price="185.00")
    decision, handle = await s.stack.submit(order, swept=True)
    assert decision.approved, decision
    await s.stack.wait_for(handle, OrderStatus.ACCEPTED)
    await eventually(lambda: _booked_working(s, order.order_id))
    sweeper = BrokerSweep(s.stack.client, s.stack.pool, s.broker, interval=60, grace_seconds=0.2)
    assert order.order_id not in (await sweeper.sweep_once()).signaled  # IB's view of it, working, is absorbed
    s.venue.faults.silent = True  # TWS's execDetails, orderStatus and openOrder never reach the adapter
    await s.venue.set_mid("AAPL", D("184.00"))
    await s.venue.step()
    [venue_order] = [o for o in s.venue.orders.values() if o.order_ref.startswith(order.order_id)]
    await eventually(lambda: venue_order.status == "Filled")
    await asyncio.sleep(1.0)
    assert (await s.stack.state(handle)).status is OrderStatus.ACCEPTED  # no poll timer finds it by itself
    assert await s.fills(order.order_id) == []
    async with s.stack.sweeping("ib", interval=0.5) as sweeper:
        result = await asyncio.wait_for(handle.result(), 60)
    assert result.status is OrderStatus.FILLED
    assert sweeper.sweeps >= 1
    executions = [e for e in s.venue.executions if e.order is venue_order]
    fills = await s.fills(order.order_id)
    assert [(f["exec_id"], f["qty"], f["price"], f["fee"]) for f in fills] == [
        (e.exec_id, e.shares, e.price, e.commission) for e in executions
    ]
    assert sum(f["qty"] for f in fills) == D(10)
    [row] = await s.stack.fetch("SELECT status, filled_qty FROM orders WHERE order_id = %s", order.order_id)
    assert (row["status"], row["filled_qty"]) == ("FILLED", D(10))
    assert count_events(await history(handle), EventType.EVENT_TYPE_TIMER_STARTED) == 0  # it never polled
    await s.venue.set_mid("AAPL", D("190.00"))


async def test_one_ib_sweep_is_three_requests_however_many_orders_work(ib_stack: IBStack) -> None:  # noqa: F811
    s = ib_stack
    await s.venue.set_mid("AAPL", D("190.00"))
    sweeper = BrokerSweep(s.stack.client, s.stack.pool, s.broker, interval=60, grace_seconds=0.2)
    orders: list[tuple[str, WorkflowHandle[Any, Any]]] = []
    asked: dict[int, dict[int, int]] = {}
    absorbed: list[str] = []
    absorb = s.broker._absorb_state

    async def counted(seen: Any, *, source: str) -> None:
        absorbed.append(seen.order_ref)
        await absorb(seen, source=source)

    s.broker._absorb_state = counted  # type: ignore[method-assign]
    try:
        for n in (1, 8):
            while len(orders) < n:
                orders.append(await _resting(s))
            before = dict(s.venue.served)
            outcome = await sweeper.sweep_once()
            asked[n] = {
                m: s.venue.served.get(m, 0) - before.get(m, 0)
                for m in set(s.venue.served) | set(before)
                if m not in _QUOTES and s.venue.served.get(m, 0) != before.get(m, 0)
            }
            assert outcome.working >= n and outcome.requests == 1
            assert not {order_id for order_id, _ in orders} & set(outcome.signaled), outcome.signaled
        absorbed.clear()
        outcome = await sweeper.sweep_once()  # nothing changed at IB: nothing to absorb, no statement per order
        assert outcome.working >= 8 and not {order_id for order_id, _ in orders} & set(outcome.signaled)
        assert not {order_id for order_id, _ in orders} & set(absorbed), absorbed
    finally:
        del s.broker._absorb_state
    assert asked[1] == asked[8] == dict.fromkeys(_SYNC, 1), asked
    for _, handle in orders:
        await _cancel(s, handle)


async def test_a_resting_ib_order_gains_no_history_event_across_sweeps(ib_stack: IBStack) -> None:  # noqa: F811
    s = ib_stack
    await s.venue.set_mid("AAPL", D("190.00"))
    order_id, handle = await _resting(s)
    before = await settled_history(handle)
    synced = s.venue.served.get(IN.REQ_ALL_OPEN_ORDERS, 0)
    async with s.stack.sweeping("ib", interval=0.3) as sweeper:
        await eventually(lambda: sweeper.sweeps >= 5, timeout=30)
        assert sweeper.last is not None and sweeper.last.requests == 1
        assert order_id not in sweeper.last.signaled
    assert s.venue.served.get(IN.REQ_ALL_OPEN_ORDERS, 0) >= synced + 5  # each sweep asked TWS
    after = await history(handle)
    assert len(after) == len(before), [EventType.Name(e.event_type) for e in after[len(before) :]]
    assert count_events(after, EventType.EVENT_TYPE_TIMER_STARTED) == 0
    await _cancel(s, handle)


async def test_a_disconnect_during_an_ib_sweep_rejects_nothing(ib_stack: IBStack) -> None:  # noqa: F811
    s = ib_stack
    await s.venue.set_mid("AAPL", D("190.00"))
    order_id, handle = await _resting(s)
    before_events = len(await settled_history(handle))
    sweeper = BrokerSweep(s.stack.client, s.stack.pool, s.broker, interval=60, grace_seconds=0.2)
    connections = s.broker.connections
    s.venue.faults.add("drop_before", "status")  # the sweep's first request drops the connection
    with pytest.raises(BrokerUnavailable):
        await sweeper.sweep_once()
    # Unknown, not failed: the order still works, in the workflow, in Postgres and at the venue; nobody was told.
    assert (await s.stack.state(handle)).status is OrderStatus.ACCEPTED
    assert await _booked_working(s, order_id)
    events = await history(handle)
    assert len(events) == before_events, [(EventType.Name(e.event_type), str(e)[-400:]) for e in events[before_events:]]
    await s.reconnected(connections)
    outcome = await sweeper.sweep_once()  # the next sweep asks again
    assert outcome.requests == 1 and order_id not in outcome.signaled
    assert (await s.stack.state(handle)).status is OrderStatus.ACCEPTED
    await _cancel(s, handle)
    rows = await s.stack.fetch("SELECT status FROM orders WHERE order_id = %s", order_id)
    assert [r["status"] for r in rows] == ["CANCELED"]
