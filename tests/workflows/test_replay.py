"""Replaying real order histories through the workflow code reproduces them (the workflow is deterministic)."""

from __future__ import annotations

from decimal import Decimal as D

import pytest
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer

from core.domain import AmendRequest, CancelRequest, OrderStatus
from tests.harness import Stack, make_order
from workflows.order import OrderWorkflow

pytestmark = pytest.mark.asyncio


async def test_histories_of_every_kind_of_order_replay_cleanly(stack: Stack) -> None:
    await stack.venue.set_mid("AAPL", D("190.00"))
    handles = []
    # Filled at once, filled in pieces, amended then canceled, denied.
    _, h = await stack.submit(make_order(symbol="AAPL", qty="10"))
    handles.append(h)
    _, h = await stack.submit(make_order(symbol="AAPL", qty="900", type="LIMIT", price="191.00"))
    await stack.wait_for(h, OrderStatus.PARTIALLY_FILLED)
    await stack.venue.step()
    handles.append(h)
    _, h = await stack.submit(make_order(symbol="AAPL", qty="10", type="LIMIT", price="150.00"))
    await stack.wait_for(h, OrderStatus.ACCEPTED)
    assert (await h.execute_update(OrderWorkflow.amend, AmendRequest(price=D("151.00")))).accepted
    await h.signal(OrderWorkflow.cancel, CancelRequest(reason="replay test"))
    handles.append(h)
    _, h = await stack.submit(make_order(symbol="AAPL", qty="99999", type="LIMIT", price="190.00"))
    handles.append(h)
    statuses = [(await handle.result()).status for handle in handles]
    assert statuses == [OrderStatus.FILLED, OrderStatus.FILLED, OrderStatus.CANCELED, OrderStatus.DENIED]

    replayer = Replayer(workflows=[OrderWorkflow], data_converter=pydantic_data_converter)
    for handle in handles:
        history = await handle.fetch_history()
        result = await replayer.replay_workflow(history, raise_on_replay_failure=False)
        assert result.replay_failure is None, f"{handle.id}: {result.replay_failure}"
