"""Replaying order histories through the workflow code reproduces them (the workflow is deterministic).

Two kinds of history are replayed:

* the committed ones under ``tests/workflows/histories/``: real orders recorded by earlier releases (see
  ``tests/workflows/recording.py``). They stand for orders in flight during an upgrade: a change to the
  workflow that would make one of them fail is a change that needs ``workflow.patched``;
* histories made now, by this release, of every kind of order.
"""

from __future__ import annotations

import json
from decimal import Decimal as D

import pytest
from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer

from core.domain import AmendRequest, CancelRequest, OrderStatus
from tests.harness import Stack, make_order
from tests.workflows.recording import HISTORIES
from workflows.order import OrderWorkflow

COMMITTED = sorted(HISTORIES.glob("*.json"))


def test_committed_histories_cover_every_kind_of_order() -> None:
    names = {p.stem for p in COMMITTED}
    for shape in ("market-filled", "partial", "canceled", "amended", "expired", "rejected", "denied"):
        assert any(shape in n for n in names), f"no committed history of a {shape} order"
    assert any(n.startswith("fix-") for n in names) and any(n.startswith("mt5-") for n in names)


@pytest.mark.parametrize("path", COMMITTED, ids=[p.stem for p in COMMITTED])
async def test_committed_history_replays(path) -> None:  # type: ignore[no-untyped-def]
    raw = path.read_text()
    events = json.loads(raw)["events"]
    started = events[0]["workflowExecutionStartedEventAttributes"]
    assert started["workflowType"]["name"] == "OrderWorkflow"
    history = WorkflowHistory.from_json(f"replay-{path.stem}", raw)
    replayer = Replayer(workflows=[OrderWorkflow], data_converter=pydantic_data_converter)
    result = await replayer.replay_workflow(history, raise_on_replay_failure=False)
    assert result.replay_failure is None, f"{path.name}: {result.replay_failure}"


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
