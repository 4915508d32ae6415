"""A long-lived order continues as new before its history grows large, carrying its whole state.

On the time-skipping server: hours of quiet status polls pass in moments, so a resting GTC order goes through
several runs, with fills, an amend and a cancel spread across them.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowHandle

from core.domain import AmendRequest, CancelRequest, OrderStatus
from core.temporal import SA_STATUS
from tests.harness import Stack, make_order
from tests.workflows.recording import record_history
from workflows.order import OrderWorkflow

pytestmark = pytest.mark.asyncio

D = Decimal
THRESHOLD = 60


async def _latest_run(handle: WorkflowHandle[Any, Any]) -> str:
    return (await handle.describe()).run_id  # type: ignore[no-any-return]


async def _next_generation(stack: Stack, handle: WorkflowHandle[Any, Any], runs: list[str]) -> None:
    """Let quiet hours pass (status polls) until the order has continued as new once more."""
    assert stack.env is not None
    for _ in range(60):
        await stack.env.sleep(300)
        run = await _latest_run(handle)
        if run != runs[-1]:
            runs.append(run)
            return
    raise AssertionError(f"no continue-as-new after run {runs[-1]}")


async def test_a_resting_order_lives_through_continue_as_new_generations(ts_stack: Stack) -> None:
    stack = ts_stack
    await stack.venue.set_mid("AAPL", D("190.00"))
    # AAPL shows 500 at the touch: each move through the limit fills 500.
    order = make_order(symbol="AAPL", qty="1200", type="LIMIT", price="185.00", time_in_force="GTC")
    decision, handle = await stack.submit(order, continue_as_new_events=THRESHOLD)
    assert decision.approved
    await stack.wait_for(handle, OrderStatus.ACCEPTED)
    runs = [await _latest_run(handle)]

    await _next_generation(stack, handle, runs)  # 1: quiet polls only
    # The new run took over the search attributes (the status was upserted by the first run only).
    assert (await handle.describe()).typed_search_attributes.get(SA_STATUS) == "ACCEPTED"
    await stack.venue.set_mid("AAPL", D("184.00"))
    await stack.wait_for(handle, lambda s: s.filled_qty == D(500))
    await _next_generation(stack, handle, runs)  # 2: after a fill

    # A client retrying its update-with-start gets the original decision from the current run.
    again, _ = await stack.submit(order, continue_as_new_events=THRESHOLD)
    assert again == decision

    amended = await handle.execute_update(
        OrderWorkflow.amend, AmendRequest(qty=D(1500), price=D("183.00"), requested_by="trader")
    )
    assert amended.accepted and amended.qty == D(1500) and amended.price == D("183.00")
    await _next_generation(stack, handle, runs)  # 3: after the amend
    await stack.venue.set_mid("AAPL", D("182.50"))
    await stack.wait_for(handle, lambda s: s.filled_qty == D(1000))
    await _next_generation(stack, handle, runs)  # 4: after the second fill

    await handle.signal(OrderWorkflow.cancel, CancelRequest(requested_by="ops", reason="end of test"))
    result = await stack.result(handle)
    assert result.status is OrderStatus.CANCELED and D(result.filled_qty) == D(1000)
    assert len(set(runs)) == 5
    state = await stack.state(handle)

    # The ledger: exactly the two fills, the position, the reservation released, the row final.
    fills = await stack.fetch(
        "SELECT exec_id, qty, price FROM fills WHERE order_id = %s ORDER BY filled_at", order.order_id
    )
    assert [(f["qty"], f["price"]) for f in fills] == [(D(500), D("184.01")), (D(500), D("182.51"))]
    assert [f.exec_id for f in state.fills] == [f["exec_id"] for f in fills]
    [pos] = await stack.fetch("SELECT qty FROM positions WHERE account = %s AND symbol = 'AAPL'", order.account)
    assert pos["qty"] == D(1000)
    [res] = await stack.fetch("SELECT released_at FROM risk_reservations WHERE order_id = %s", order.order_id)
    assert res["released_at"] is not None
    [row] = await stack.fetch(
        "SELECT status, qty, price, filled_qty, version FROM orders WHERE order_id = %s", order.order_id
    )
    assert row == {
        "status": "CANCELED",
        "qty": D(1500),
        "price": D("183.00"),
        "filled_qty": D(1000),
        "version": len(state.events),
    }

    # The timeline: one, gap-free, exactly as the workflow has it, nothing repeated across runs.
    stored = await stack.fetch(
        "SELECT seq, kind, status, detail FROM order_events WHERE order_id = %s ORDER BY seq", order.order_id
    )
    assert [(r["seq"], r["kind"], r["status"], r["detail"]) for r in stored] == [
        (e.seq, e.kind, e.status.value, e.detail) for e in state.events
    ]
    assert [e.seq for e in state.events] == list(range(1, len(state.events) + 1))
    kinds = [e.kind for e in state.events]
    assert kinds.count("ACCEPT") == 1 and kinds.count("PARTIAL_FILL") == 2 and kinds.count("UPDATE") == 1
    assert kinds[-4:] == ["CANCEL_REQUESTED", "REQUEST_CANCEL", "CANCEL", "RECONCILED"]
    assert len(state.seen_exec_ids) == len(set(state.seen_exec_ids))

    # Every run stayed small and handed over with continue-as-new.
    for run_id in runs:
        history = await stack.client.get_workflow_handle(handle.id, run_id=run_id).fetch_history()
        assert len(history.events) < THRESHOLD + 30, f"run {run_id}: {len(history.events)} events"
    for run_id in runs[:-1]:
        history = await stack.client.get_workflow_handle(handle.id, run_id=run_id).fetch_history()
        assert history.events[-1].event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW
    await record_history(stack.client.get_workflow_handle(handle.id, run_id=runs[0]), "paper-gtc-continued-as-new")
    await record_history(stack.client.get_workflow_handle(handle.id, run_id=runs[2]), "paper-gtc-continued-run")
    await record_history(
        stack.client.get_workflow_handle(handle.id, run_id=runs[-1]), "paper-gtc-continued-run-canceled"
    )
