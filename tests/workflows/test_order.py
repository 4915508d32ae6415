"""The order workflow against a real Temporal server, the real activities, the paper venue and Postgres."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from typing import Any

import pytest
from temporalio.client import WorkflowHandle, WorkflowUpdateFailedError

from core.domain import AmendRequest, CancelRequest, OrderRequest, OrderStatus, ReportKind
from tests.harness import Stack, later, make_order
from tests.workflows.recording import record_history
from workflows.order import OrderWorkflow

pytestmark = pytest.mark.asyncio

D = Decimal


async def _fills_in_ledger(stack: Stack, order_id: str) -> list[dict]:
    return await stack.fetch("SELECT exec_id, qty, price FROM fills WHERE order_id = %s ORDER BY filled_at", order_id)


async def _submit_at(
    stack: Stack, mid: str, *, symbol: str, **terms: Any
) -> tuple[OrderRequest, WorkflowHandle[Any, Any]]:
    """Put ``symbol``'s mid at ``mid`` and submit an order of ``terms`` on it (approved or not)."""
    await stack.venue.set_mid(symbol, D(mid))
    order = make_order(symbol=symbol, **terms)
    _, handle = await stack.submit(order)
    return order, handle


async def test_market_order_fills_and_is_booked(stack: Stack) -> None:
    await stack.venue.set_mid("AAPL", D("190.00"))
    order = make_order(symbol="AAPL", qty="100")
    decision, handle = await stack.submit(order)
    assert decision.approved
    result = await handle.result()
    assert result.status is OrderStatus.FILLED
    assert D(result.filled_qty) == D(100)
    assert D(result.avg_price) == D("190.01")  # the ask: mid 190.00 + one tick
    assert result.breaks == []
    fills = await _fills_in_ledger(stack, order.order_id)
    assert [(f["qty"], f["price"]) for f in fills] == [(D(100), D("190.01"))]
    [pos] = await stack.fetch(
        "SELECT qty, avg_price FROM positions WHERE account = %s AND symbol = 'AAPL'", order.account
    )
    assert pos["qty"] == D(100) and pos["avg_price"] == D("190.01")
    [cash] = await stack.fetch("SELECT currency, balance FROM cash WHERE account = %s", order.account)
    assert cash["currency"] == "USD" and cash["balance"] == D("-19001.00")
    [row] = await stack.fetch("SELECT status, filled_qty, version FROM orders WHERE order_id = %s", order.order_id)
    assert row["status"] == "FILLED" and row["filled_qty"] == D(100)
    kinds = [
        e["kind"]
        for e in await stack.fetch("SELECT kind FROM order_events WHERE order_id = %s ORDER BY seq", order.order_id)
    ]
    assert kinds == ["RECEIVED", "SUBMIT", "ACCEPT", "FILL", "RECONCILED"]
    await record_history(handle, "paper-market-filled")


async def test_partial_fill_then_fill_as_the_market_offers_more(stack: Stack) -> None:
    # AAPL shows 500 at the touch, so 1200 fills 500 + 500 + 200 over three matches.
    order, handle = await _submit_at(stack, "190.00", symbol="AAPL", qty="1200", type="LIMIT", price="191.00")
    state = await stack.wait_for(handle, OrderStatus.PARTIALLY_FILLED)
    assert state.filled_qty == D(500)
    await stack.venue.step()
    state = await stack.wait_for(handle, lambda s: s.filled_qty == D(1000))
    assert state.status is OrderStatus.PARTIALLY_FILLED
    await stack.venue.step()
    result = await handle.result()
    assert result.status is OrderStatus.FILLED
    fills = await _fills_in_ledger(stack, order.order_id)
    assert [f["qty"] for f in fills] == [D(500), D(500), D(200)]
    # Filled in parts: still reconciled with the broker (only an order filled by one report is settled by it).
    history = await handle.fetch_history()
    scheduled = [
        e.activity_task_scheduled_event_attributes.activity_type.name
        for e in history.events
        if e.HasField("activity_task_scheduled_event_attributes")
    ]
    assert scheduled[-1] == "get_order_status", scheduled
    await record_history(handle, "paper-limit-partial-fills")


async def test_resting_limit_order_fills_when_the_market_comes_to_it(stack: Stack) -> None:
    order, handle = await _submit_at(stack, "420.00", symbol="MSFT", qty="10", type="LIMIT", price="415.00")
    await stack.wait_for(handle, OrderStatus.ACCEPTED)
    await stack.venue.set_mid("MSFT", D("414.50"))
    result = await handle.result()
    assert result.status is OrderStatus.FILLED
    assert D(result.avg_price) == D("414.51")


async def test_operator_cancel_of_a_resting_order(stack: Stack) -> None:
    order, handle = await _submit_at(stack, "120.00", symbol="NVDA", qty="10", type="LIMIT", price="100.00")
    await stack.wait_for(handle, OrderStatus.ACCEPTED)
    await handle.signal(OrderWorkflow.cancel, CancelRequest(requested_by="ops-jane", reason="desk request"))
    result = await handle.result()
    assert result.status is OrderStatus.CANCELED
    state = await stack.state(handle)
    requested = [e for e in state.events if e.kind == "CANCEL_REQUESTED"]
    assert requested and requested[0].actor == "ops-jane"
    venue_view = await stack.venue.status(order.order_id)
    assert venue_view is not None and venue_view.status is OrderStatus.CANCELED
    await record_history(handle, "paper-limit-canceled")


async def test_cancel_of_a_filled_order_is_refused_and_recorded(stack: Stack) -> None:
    # A slow venue keeps the workflow open (reconciling) after the fill, so the cancel reaches a FILLED order.
    # Filled in two reports: an order filled by one report is settled by it and closes at once.
    await stack.venue.set_mid("AAPL", D("190.00"))
    stack.venue.latency = 0.5
    try:
        order = make_order(symbol="AAPL", qty="900", type="LIMIT", price="191.00")
        _, handle = await stack.submit(order)
        await stack.wait_for(handle, OrderStatus.PARTIALLY_FILLED)
        await stack.venue.step()
        await stack.wait_for(handle, OrderStatus.FILLED)
        await handle.signal(OrderWorkflow.cancel, CancelRequest(requested_by="ops", reason="too late"))
        await handle.result()
    finally:
        stack.venue.latency = 0.0
    state = await stack.state(handle)
    assert state.status is OrderStatus.FILLED
    [refused] = [e for e in state.events if e.kind == "CANCEL_REFUSED"]
    assert "already FILLED" in refused.detail and refused.actor == "ops"
    await record_history(handle, "paper-cancel-after-fill-refused")


async def test_fill_racing_a_cancel_is_booked_and_the_order_ends_filled(stack: Stack) -> None:
    order, handle = await _submit_at(stack, "560.00", symbol="SPY", qty="10", type="LIMIT", price="555.00")
    await stack.wait_for(handle, OrderStatus.ACCEPTED)
    stack.venue.cancels_open.clear()  # the venue holds the cancel while the market moves through the limit
    try:
        await handle.signal(OrderWorkflow.cancel, CancelRequest(requested_by="ops", reason="race"))
        await stack.wait_for(handle, OrderStatus.PENDING_CANCEL)
        await stack.venue.set_mid("SPY", D("554.00"))
        state = await stack.wait_for(handle, OrderStatus.FILLED)
        assert state.filled_qty == D(10)
    finally:
        stack.venue.cancels_open.set()
    result = await handle.result()
    assert result.status is OrderStatus.FILLED
    assert len(await _fills_in_ledger(stack, order.order_id)) == 1
    kinds = [e.kind for e in (await stack.state(handle)).events]
    assert "REQUEST_CANCEL" in kinds and "FILL" in kinds
    await record_history(handle, "paper-fill-races-cancel")


async def test_partial_fill_racing_a_cancel_is_booked_and_the_rest_canceled(stack: Stack) -> None:
    order, handle = await _submit_at(stack, "190.00", symbol="AAPL", qty="800", type="LIMIT", price="185.00")
    await stack.wait_for(handle, OrderStatus.ACCEPTED)
    stack.venue.cancels_open.clear()
    try:
        await handle.signal(OrderWorkflow.cancel, CancelRequest(requested_by="ops", reason="race"))
        await stack.wait_for(handle, OrderStatus.PENDING_CANCEL)
        await stack.venue.set_mid("AAPL", D("184.00"))  # 500 (the displayed size) fills
        state = await stack.wait_for(handle, lambda s: s.filled_qty == D(500))
        assert state.status is OrderStatus.PENDING_CANCEL
    finally:
        stack.venue.cancels_open.set()
    result = await handle.result()
    assert result.status is OrderStatus.CANCELED
    assert D(result.filled_qty) == D(500)
    assert [f["qty"] for f in await _fills_in_ledger(stack, order.order_id)] == [D(500)]
    [pos] = await stack.fetch("SELECT qty FROM positions WHERE account = %s AND symbol = 'AAPL'", order.account)
    assert pos["qty"] == D(500)
    await record_history(handle, "paper-partial-fill-then-canceled")


async def test_ioc_fills_what_is_there_and_cancels_the_rest(stack: Stack) -> None:
    order, handle = await _submit_at(
        stack, "190.00", symbol="AAPL", qty="700", type="LIMIT", price="191.00", time_in_force="IOC"
    )
    result = await handle.result()
    assert result.status is OrderStatus.CANCELED
    assert D(result.filled_qty) == D(500)
    await record_history(handle, "paper-ioc-partial-canceled")


async def test_fok_that_cannot_fill_in_full_is_canceled_without_fills(stack: Stack) -> None:
    order, handle = await _submit_at(
        stack, "190.00", symbol="AAPL", qty="700", type="LIMIT", price="191.00", time_in_force="FOK"
    )
    result = await handle.result()
    assert result.status is OrderStatus.CANCELED
    assert D(result.filled_qty) == D(0)
    assert await _fills_in_ledger(stack, order.order_id) == []


async def test_fok_that_can_fill_in_full_fills(stack: Stack) -> None:
    order, handle = await _submit_at(
        stack, "190.00", symbol="AAPL", qty="400", type="LIMIT", price="191.00", time_in_force="FOK"
    )
    assert (await handle.result()).status is OrderStatus.FILLED


async def test_duplicate_execution_reports_are_booked_once(stack: Stack) -> None:
    order, handle = await _submit_at(stack, "190.00", symbol="AAPL", qty="900", type="LIMIT", price="191.00")
    await stack.wait_for(handle, OrderStatus.PARTIALLY_FILLED)
    venue_view = await stack.venue.status(order.order_id)
    assert venue_view is not None
    fill = next(r for r in venue_view.reports if r.kind is ReportKind.FILL)
    for _ in range(3):  # the broker (or our outbox after a crash) sends the same report again
        await handle.signal(OrderWorkflow.execution_report, fill)
    await stack.venue.step()
    result = await handle.result()
    assert result.status is OrderStatus.FILLED and D(result.filled_qty) == D(900)
    assert [f["qty"] for f in await _fills_in_ledger(stack, order.order_id)] == [D(500), D(400)]
    await record_history(handle, "paper-duplicate-reports")


async def test_overfill_is_refused_and_flagged(stack: Stack) -> None:
    order, handle = await _submit_at(stack, "190.00", symbol="AAPL", qty="10", type="LIMIT", price="150.00")
    await stack.wait_for(handle, OrderStatus.ACCEPTED)
    venue_view = await stack.venue.status(order.order_id)
    bogus = venue_view.reports[0].model_copy(
        update={
            "exec_id": "BOGUS-1",
            "kind": ReportKind.FILL,
            "last_qty": D(25),
            "last_price": D("150.00"),
            "cum_qty": D(25),
        }
    )
    await handle.signal(OrderWorkflow.execution_report, bogus)
    state = await stack.wait_for(handle, lambda s: any(e.kind == "OVERFILL_REFUSED" for e in s.events))
    assert state.filled_qty == D(0) and state.status is OrderStatus.ACCEPTED
    assert any("OVERFILL" in f for f in state.flags)
    await handle.signal(OrderWorkflow.cancel, CancelRequest(reason="cleanup"))
    await handle.result()
    assert await _fills_in_ledger(stack, order.order_id) == []
    await record_history(handle, "paper-overfill-refused")


async def test_amend_accepted_changes_the_order_at_the_broker(stack: Stack) -> None:
    order, handle = await _submit_at(stack, "420.00", symbol="MSFT", qty="10", type="LIMIT", price="400.00")
    await stack.wait_for(handle, OrderStatus.ACCEPTED)
    result = await handle.execute_update(
        OrderWorkflow.amend, AmendRequest(qty=D(20), price=D("401.00"), requested_by="trader")
    )
    assert result.accepted and result.status is OrderStatus.ACCEPTED
    assert result.qty == D(20) and result.price == D("401.00")
    venue_view = await stack.venue.status(f"{order.order_id}.1")
    assert venue_view is not None and venue_view.qty == D(20) and venue_view.price == D("401.00")
    # The replaced order is the one that now fills, under its new client order id.
    await stack.venue.set_mid("MSFT", D("400.50"))
    final = await handle.result()
    assert final.status is OrderStatus.FILLED and D(final.filled_qty) == D(20)
    await record_history(handle, "paper-amended-then-filled")


async def test_amend_refused_by_the_validator_for_a_filled_order(stack: Stack) -> None:
    await stack.venue.set_mid("AAPL", D("190.00"))
    stack.venue.latency = 0.5  # keeps the workflow open (reconciling) after the fill
    try:
        # Filled in two reports: an order filled by one report is settled by it and closes at once.
        order = make_order(symbol="AAPL", qty="900", type="LIMIT", price="191.00")
        _, handle = await stack.submit(order)
        await stack.wait_for(handle, OrderStatus.PARTIALLY_FILLED)
        await stack.venue.step()
        await stack.wait_for(handle, OrderStatus.FILLED)
        with pytest.raises(WorkflowUpdateFailedError) as info:
            await handle.execute_update(OrderWorkflow.amend, AmendRequest(qty=D(6)))
    finally:
        stack.venue.latency = 0.0
    assert "FILLED" in str(info.value.cause)
    await handle.result()


async def test_amend_refused_when_new_qty_is_not_above_the_filled_qty(stack: Stack) -> None:
    order, handle = await _submit_at(stack, "190.00", symbol="AAPL", qty="800", type="LIMIT", price="191.00")
    await stack.wait_for(handle, OrderStatus.PARTIALLY_FILLED)
    with pytest.raises(WorkflowUpdateFailedError) as info:
        await handle.execute_update(OrderWorkflow.amend, AmendRequest(qty=D(500)))
    assert "must exceed the filled quantity" in str(info.value.cause)
    await stack.venue.step()
    assert (await handle.result()).status is OrderStatus.FILLED


async def test_amend_refused_by_risk_leaves_the_order_working(stack: Stack) -> None:
    order, handle = await _submit_at(stack, "190.00", symbol="AAPL", qty="10", type="LIMIT", price="150.00")
    await stack.wait_for(handle, OrderStatus.ACCEPTED)
    result = await handle.execute_update(OrderWorkflow.amend, AmendRequest(qty=D(99000)))  # 14.85M > 5M limit
    assert not result.accepted and "MAX" in (result.reason or "").upper() or "limit" in (result.reason or "")
    state = await stack.state(handle)
    assert state.status is OrderStatus.ACCEPTED and state.qty == D(10)
    await handle.signal(OrderWorkflow.cancel, CancelRequest(reason="cleanup"))
    assert (await handle.result()).status is OrderStatus.CANCELED
    await record_history(handle, "paper-amend-denied-then-canceled")


async def test_venue_reject_ends_the_order_rejected(stack: Stack) -> None:
    stack.venue.engine.reject_symbols.add("ETH-USD")
    try:
        order = make_order(symbol="ETH-USD", qty="1.000")
        decision, handle = await stack.submit(order)
        assert decision.approved
        result = await handle.result()
    finally:
        stack.venue.engine.reject_symbols.discard("ETH-USD")
    assert result.status is OrderStatus.REJECTED
    assert "INJECTED_REJECT" in (result.reason or "")
    await record_history(handle, "paper-rejected")


async def test_lost_submit_answer_is_retried_without_a_second_order(stack: Stack) -> None:
    stack.venue.faults.lose_submit_answers = 1
    before = stack.venue.duplicate_submits
    order = make_order(symbol="AAPL", qty="7")
    _, handle = await stack.submit(order)
    result = await handle.result()
    assert result.status is OrderStatus.FILLED and D(result.filled_qty) == D(7)
    assert stack.venue.duplicate_submits == before
    assert len([o for o in stack.venue.engine.all_orders() if o.cl_ord_ids[0] == order.order_id]) == 1
    assert len(await _fills_in_ledger(stack, order.order_id)) == 1
    await record_history(handle, "paper-lost-submit-answer")


async def test_broker_unavailable_then_back_submits_once(stack: Stack) -> None:
    stack.venue.faults.unavailable = 2
    order = make_order(symbol="AAPL", qty="3")
    _, handle = await stack.submit(order)
    result = await handle.result()
    assert result.status is OrderStatus.FILLED
    assert len([o for o in stack.venue.engine.all_orders() if o.cl_ord_ids[0] == order.order_id]) == 1


async def test_lost_reports_are_recovered_by_the_status_poll(stack: Stack) -> None:
    await stack.venue.set_mid("AAPL", D("190.00"))
    order = make_order(symbol="AAPL", qty="10", type="LIMIT", price="185.00")
    _, handle = await stack.submit(order, status_poll_seconds=1.0)
    await stack.wait_for(handle, OrderStatus.ACCEPTED)
    stack.venue.faults.suppress_reports = True
    try:
        await stack.venue.set_mid("AAPL", D("184.00"))
        result = await asyncio.wait_for(handle.result(), 15)
    finally:
        stack.venue.faults.suppress_reports = False
    assert result.status is OrderStatus.FILLED
    assert len(await _fills_in_ledger(stack, order.order_id)) == 1
    await record_history(handle, "paper-status-poll-recovers-fill")


async def test_denied_order_is_recorded_with_its_reasons(stack: Stack) -> None:
    order = make_order(symbol="AAPL", qty="100000", type="LIMIT", price="190.00")
    decision, handle = await stack.submit(order)
    assert not decision.approved
    assert [r.code for r in decision.reasons] == ["MAX_NOTIONAL"]
    result = await handle.result()
    assert result.status is OrderStatus.DENIED
    [row] = await stack.fetch("SELECT status, reason FROM orders WHERE order_id = %s", order.order_id)
    assert row["status"] == "DENIED" and "per-order limit" in row["reason"]
    audit = await stack.fetch("SELECT action FROM audit_log WHERE subject = %s", order.order_id)
    assert [a["action"] for a in audit] == ["RISK_DENIED"]
    await record_history(handle, "paper-denied")


async def test_gtd_order_expires_on_its_durable_timer(ts_stack: Stack) -> None:
    await ts_stack.venue.set_mid("AAPL", D("190.00"))
    order = make_order(
        symbol="AAPL", qty="10", type="LIMIT", price="150.00", time_in_force="GTD", expire_at=later(3 * 3600)
    )
    _, handle = await ts_stack.submit(order)
    result = await ts_stack.result(handle)  # three hours pass in a moment on the time-skipping server
    assert result.status is OrderStatus.EXPIRED
    state = await ts_stack.state(handle)
    assert any(e.kind == "REQUEST_CANCEL" and "GTD expiry" in e.detail for e in state.events)
    venue_view = await ts_stack.venue.status(order.order_id)
    assert venue_view is not None and venue_view.status is OrderStatus.CANCELED
    await record_history(handle, "paper-gtd-expired")


async def test_day_order_expires_at_the_session_close(ts_stack: Stack) -> None:
    order = make_order(symbol="AAPL", qty="10", type="LIMIT", price="150.00", time_in_force="DAY")
    _, handle = await ts_stack.submit(order)
    result = await ts_stack.result(handle)
    assert result.status is OrderStatus.EXPIRED
    await record_history(handle, "paper-day-expired")


async def test_cancel_while_the_submission_is_unconfirmed_never_sends_the_order(stack: Stack) -> None:
    # The first round of submission attempts gets no answer; the operator cancels during the pause before the
    # next round; the broker stays unreachable a little longer. The order must never reach the venue.
    stack.venue.faults.unavailable = 6
    try:
        order = make_order(symbol="AAPL", qty="9")
        _, handle = await stack.submit(order, resubmit_pause_seconds=2.0)
        await stack.wait_for(handle, lambda s: any(e.kind == "SUBMIT_UNCONFIRMED" for e in s.events), timeout=30)
        await handle.signal(OrderWorkflow.cancel, CancelRequest(requested_by="ops", reason="pull it"))
        result = await asyncio.wait_for(handle.result(), 60)
    finally:
        stack.venue.faults.unavailable = 0
    assert result.status is OrderStatus.CANCELED
    assert await stack.venue.status(order.order_id) is None
    assert await _fills_in_ledger(stack, order.order_id) == []
    state = await stack.state(handle)
    assert any(e.kind == "CANCEL" and "never received" in e.detail for e in state.events)
    await record_history(handle, "paper-canceled-while-unconfirmed")


#: Issue 18's bound on a market order filled by one report (``PATCH_LEAN_HISTORY``; 30 events before it).
LEAN_MARKET_ORDER_EVENTS = 18


def _event_types(history) -> list[str]:  # type: ignore[no-untyped-def]
    from temporalio.api.enums.v1 import EventType

    return [EventType.Name(e.event_type).removeprefix("EVENT_TYPE_") for e in history.events]


async def test_market_order_filled_by_one_report_has_a_lean_history(stack: Stack) -> None:
    # The fill report carries the final cumulative quantity and average price: no status round trip, one booking.
    order, handle = await _submit_at(stack, "190.00", symbol="AAPL", qty="10")
    result = await handle.result()
    assert result.status is OrderStatus.FILLED and result.breaks == []
    history = await handle.fetch_history()
    types = _event_types(history)
    shown = " ".join(types)
    scheduled = [
        e.activity_task_scheduled_event_attributes.activity_type.name
        for e in history.events
        if e.HasField("activity_task_scheduled_event_attributes")
    ]
    assert scheduled == ["submit_order"], shown
    # The paper venue also signals the reports that rode in the submission's answer. Such a repeat costs its
    # signal and, landing at the wrong moment, a workflow task of its own (failed, when the task it interrupts
    # completes the workflow) and a booking round (its marker, and a status upsert when the status moved): work
    # that depends on timing, counted apart so the bound is deterministic. The rest is the order's own shape.
    signals = types.count("WORKFLOW_EXECUTION_SIGNALED")
    extra_tasks = types.count("WORKFLOW_TASK_COMPLETED") + types.count("WORKFLOW_TASK_FAILED") - 2
    extra_rounds = types.count("MARKER_RECORDED") - 3  # the patch, the risk check, the one final booking
    extra_upserts = types.count("UPSERT_WORKFLOW_SEARCH_ATTRIBUTES") - 2  # the patch's, and FILLED
    assert 0 <= extra_tasks <= signals and 0 <= extra_rounds <= extra_tasks, shown
    assert 0 <= extra_upserts <= extra_rounds, shown
    own = len(types) - signals - 3 * extra_tasks - extra_rounds - extra_upserts
    assert own <= LEAN_MARKET_ORDER_EVENTS, shown
    [row] = await stack.fetch("SELECT status, filled_qty FROM orders WHERE order_id = %s", order.order_id)
    assert row["status"] == "FILLED" and row["filled_qty"] == D(10)
    events = await stack.fetch("SELECT kind, detail FROM order_events WHERE order_id = %s ORDER BY seq", order.order_id)
    assert [e["kind"] for e in events] == ["RECEIVED", "SUBMIT", "ACCEPT", "FILL", "RECONCILED"]
    assert "settled by the broker's final report" in events[-1]["detail"]
    await record_history(handle, "paper-market-filled-lean")


async def test_a_canceled_order_is_still_reconciled_with_the_broker(stack: Stack) -> None:
    # Only a FILLED close whose report carries the final figures skips the status round trip.
    order, handle = await _submit_at(stack, "190.00", symbol="AAPL", qty="10", type="LIMIT", price="150.00")
    await stack.wait_for(handle, OrderStatus.ACCEPTED)
    await handle.signal(OrderWorkflow.cancel, CancelRequest(reason="lean test"))
    assert (await handle.result()).status is OrderStatus.CANCELED
    history = await handle.fetch_history()
    scheduled = [
        e.activity_task_scheduled_event_attributes.activity_type.name
        for e in history.events
        if e.HasField("activity_task_scheduled_event_attributes")
    ]
    assert scheduled[-1] == "get_order_status", scheduled
    [last] = await stack.fetch(
        "SELECT kind, detail FROM order_events WHERE order_id = %s ORDER BY seq DESC LIMIT 1", order.order_id
    )
    assert last["kind"] == "RECONCILED" and last["detail"] == "matches the broker"
    await record_history(handle, "paper-limit-canceled-lean")
