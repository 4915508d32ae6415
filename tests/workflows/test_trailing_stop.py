"""Emulated trailing stops on paper: held in the workflow, the trigger ratcheting from the quote store, then sent."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest
from temporalio.client import WorkflowHandle, WorkflowUpdateFailedError

from core.domain import AmendRequest, CancelRequest, OrderStatus, TrailState
from tests.harness import Stack, make_order
from tests.workflows.recording import record_history
from workflows.order import OrderWorkflow

pytestmark = pytest.mark.asyncio

D = Decimal
#: Checks run this often in the tests (the default is a second).
CHECK = 0.2


async def _trail(
    handle: WorkflowHandle[Any, Any], predicate: Callable[[TrailState], bool], *, timeout: float = 20.0
) -> TrailState:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        trail: TrailState | None = await handle.query(OrderWorkflow.trail)
        if trail is not None and predicate(trail):
            return trail
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out; trail is {trail}")
        await asyncio.sleep(0.05)


async def test_buy_trailing_stop_ratchets_down_and_triggers_as_one_market_order(stack: Stack) -> None:
    await stack.venue.set_mid("NVDA", D("120.00"))
    order = make_order(symbol="NVDA", qty="10", type="TRAILING_STOP", trail_amount=D("1.00"))
    decision, handle = await stack.submit(order, trail_check_seconds=CHECK)
    assert decision.approved
    # Risk valued it at the trigger as it stands: the ask side's reference (mid 120) plus the trail.
    assert decision.notional == D(10) * D("121.00")
    await stack.wait_for(handle, OrderStatus.EMULATED)
    first = await _trail(handle, lambda t: t.activated)
    assert first.trigger == D("121.01")  # ask 120.01 + 1.00
    assert await stack.venue.status(order.order_id) is None  # nothing sent while it trails

    await stack.venue.set_mid("NVDA", D("118.00"))
    low = await _trail(handle, lambda t: t.trigger == D("119.01"))
    assert low.extreme == D("118.01")
    await stack.venue.set_mid("NVDA", D("118.60"))  # back up, not enough to trigger: the trigger stays
    await _trail(handle, lambda t: t.last_price == D("118.61"))
    assert (await handle.query(OrderWorkflow.trail)).trigger == D("119.01")
    assert await stack.venue.status(order.order_id) is None

    await stack.venue.set_mid("NVDA", D("119.20"))  # ask 119.21 crosses 119.01
    result = await handle.result()
    assert result.status is OrderStatus.FILLED
    assert D(result.avg_price) == D("119.21")
    venue = await stack.venue.status(order.order_id)
    assert venue is not None and venue.status is OrderStatus.FILLED
    state = await stack.state(handle)
    kinds = [e.kind for e in state.events]
    assert kinds[:4] == ["RECEIVED", "EMULATE", "TRAIL_TRIGGERED", "SUBMIT"]
    assert kinds.count("SUBMIT") == 1
    [row] = await stack.fetch(
        "SELECT type, trail_amount, status, filled_qty FROM orders WHERE order_id = %s", order.order_id
    )
    assert row == {"type": "TRAILING_STOP", "trail_amount": D("1.00"), "status": "FILLED", "filled_qty": D(10)}
    await record_history(handle, "paper-trailing-stop-triggered-by-counts")


async def test_sell_trailing_stop_by_percent_waits_for_its_activation_price(stack: Stack) -> None:
    await stack.venue.set_mid("MSFT", D("420.00"))
    order = make_order(
        symbol="MSFT", side="SELL", qty="5", type="TRAILING_STOP", trail_percent=D("1"), activation_price=D("425.00")
    )
    decision, handle = await stack.submit(order, trail_check_seconds=CHECK)
    assert decision.approved, decision.reasons
    waiting = await _trail(handle, lambda t: t.checks >= 2)
    assert not waiting.activated and waiting.trigger is None
    await stack.venue.set_mid("MSFT", D("430.00"))  # bid 429.99 >= 425: activated, trigger 1% below
    active = await _trail(handle, lambda t: t.activated)
    assert active.trigger == D("425.6901")
    state = await stack.state(handle)
    assert [e.kind for e in state.events][-1] == "TRAIL_ACTIVATED"
    await handle.signal(OrderWorkflow.cancel, CancelRequest(requested_by="desk", reason="no longer needed"))
    result = await handle.result()
    assert result.status is OrderStatus.CANCELED
    assert await stack.venue.status(order.order_id) is None  # never sent
    [row] = await stack.fetch("SELECT status FROM orders WHERE order_id = %s", order.order_id)
    assert row["status"] == "CANCELED"
    await record_history(handle, "paper-trailing-stop-activated-then-canceled-by-counts")


async def test_an_emulated_trailing_stop_cannot_be_amended(stack: Stack) -> None:
    await stack.venue.set_mid("NVDA", D("120.00"))
    order = make_order(symbol="NVDA", qty="1", type="TRAILING_STOP", trail_amount=D("5.00"))
    _, handle = await stack.submit(order, trail_check_seconds=CHECK)
    await stack.wait_for(handle, OrderStatus.EMULATED)
    with pytest.raises(WorkflowUpdateFailedError) as refused:
        await handle.execute_update(OrderWorkflow.amend, AmendRequest(qty=D(2), requested_by="desk"))
    assert "held by Exodus cannot be amended" in str(refused.value.cause)
    await handle.signal(OrderWorkflow.cancel, CancelRequest(requested_by="desk", reason="done"))
    assert (await handle.result()).status is OrderStatus.CANCELED
