"""No input, fault or age wedges, duplicates or silently corrupts an order: the workflow's side (issue 10).

Bounded risk and booking attempts, bookings that never block a cancel, cancels sent again after a refusal,
text Postgres cannot hold, and a timeline that a retried workflow task cannot renumber.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest
from prometheus_client import REGISTRY
from temporalio import activity, workflow
from temporalio.api.enums.v1 import EventType
from temporalio.worker import (
    ActivityInboundInterceptor,
    ExecuteActivityInput,
    Interceptor,
    StartLocalActivityInput,
    WorkflowInboundInterceptor,
    WorkflowInterceptorClassInput,
    WorkflowOutboundInterceptor,
)

from activities.persistence import PersistInput
from activities.risk import AmendCheck
from core.domain import AmendRequest, CancelRequest, OrderRequest, OrderState, OrderStatus, RiskDecision
from tests.harness import Stack, make_order, unique
from tests.waiting import until
from tests.workflows.faults import CancelRefusingBroker, FlakyPool, OrderWorker, order_worker
from tests.workflows.recording import record_history
from workflows.order import OrderWorkflow

pytestmark = pytest.mark.asyncio

D = Decimal


async def _eventually(check: Callable[[], Any], *, timeout: float = 20.0) -> Any:
    return await until(f"{check}", check, timeout=timeout)


async def _stored_timeline(stack: Stack, order_id: str) -> list[tuple[int, str, str, str]]:
    rows = await stack.fetch(
        "SELECT seq, kind, status, detail FROM order_events WHERE order_id = %s ORDER BY seq", order_id
    )
    return [(r["seq"], r["kind"], r["status"], r["detail"]) for r in rows]


def _timeline(state: OrderState) -> list[tuple[int, str, str, str]]:
    return [(e.seq, e.kind, e.status.value, e.detail) for e in state.events]


async def _reservation(stack: Stack, order_id: str) -> dict[str, Any] | None:
    rows = await stack.fetch("SELECT qty_open, released_at FROM risk_reservations WHERE order_id = %s", order_id)
    return rows[0] if rows else None


def _booking_failures() -> float:
    return REGISTRY.get_sample_value("exodus_booking_failures_total", {"broker": "paper"}) or 0.0


# ------------------------------------------------------------------------------------------------ text


async def test_a_nul_in_a_cancel_reason_cannot_wedge_the_order(stack: Stack) -> None:
    # Signalled straight to the workflow, past whatever the API refuses: Postgres text cannot hold U+0000.
    await stack.venue.set_mid("NVDA", D("120.00"))
    order = make_order(symbol="NVDA", qty="10", type="LIMIT", price="100.00")
    _, handle = await stack.submit(order)
    await stack.wait_for(handle, OrderStatus.ACCEPTED)
    await handle.signal(OrderWorkflow.cancel, CancelRequest(requested_by="ops\x00jane", reason="flat\x00ten"))
    result = await asyncio.wait_for(handle.result(), 30)
    assert result.status is OrderStatus.CANCELED
    venue_view = await stack.venue.status(order.order_id)
    assert venue_view is not None and venue_view.status is OrderStatus.CANCELED
    [requested] = await stack.fetch(
        "SELECT detail, actor FROM order_events WHERE order_id = %s AND kind = 'CANCEL_REQUESTED'", order.order_id
    )
    assert requested == {"detail": "flat\u2400ten", "actor": "ops\u2400jane"}
    # The reason went to the broker without its control character, and the venue's cancel echoes it.
    [row] = await stack.fetch("SELECT status, reason FROM orders WHERE order_id = %s", order.order_id)
    assert row == {"status": "CANCELED", "reason": "flat ten"}
    reservation = await _reservation(stack, order.order_id)
    assert reservation is not None and reservation["released_at"] is not None
    # The workflow keeps what it was sent; only the stored copy is made storable.
    state = await stack.state(handle)
    assert [e.detail for e in state.events if e.kind == "CANCEL_REQUESTED"] == ["flat\x00ten"]
    assert len(await _stored_timeline(stack, order.order_id)) == len(state.events)


# ------------------------------------------------------------------------------------------------ risk


async def test_a_risk_check_that_keeps_failing_denies_the_order_and_releases_its_reservation(stack: Stack) -> None:
    decisions: list[RiskDecision] = []

    def failing(parts: OrderWorker) -> list[Callable[..., Any]]:
        @activity.defn(name="check_order")
        async def check_order(order: OrderRequest) -> RiskDecision:
            decisions.append(await parts.risk.check_order(order))  # decision and reservation commit ...
            raise RuntimeError("connection lost after COMMIT")  # ... and the answer never comes back

        return [check_order]

    async with order_worker(stack, activities=failing) as w:
        order = make_order(symbol="AAPL", qty="10")
        decision, handle = await asyncio.wait_for(w.submit(order, risk_attempts=3), 30)
        result = await asyncio.wait_for(handle.result(), 30)
        await record_history(handle, "paper-risk-check-failed-denied")
    assert not decision.approved
    assert [r.code for r in decision.reasons] == ["RISK_CHECK_FAILED"]
    assert "3 attempt(s)" in decision.reasons[0].message and "connection lost" in decision.reasons[0].message
    assert len(decisions) == 3 and decisions[0].approved  # the activity approved and reserved, three times
    assert result.status is OrderStatus.DENIED
    [row] = await stack.fetch("SELECT status, reason FROM orders WHERE order_id = %s", order.order_id)
    assert row["status"] == "DENIED" and "risk check failed" in row["reason"]
    reservation = await _reservation(stack, order.order_id)
    assert reservation is not None and reservation["released_at"] is not None and reservation["qty_open"] == 0
    assert await stack.venue.status(order.order_id) is None  # never sent


@pytest.mark.parametrize("committed", [False, True], ids=["nothing-committed", "approval-committed"])
async def test_a_repeat_of_an_order_whose_risk_check_failed_gets_its_denial(stack: Stack, committed: bool) -> None:
    # The order's row is the authority on its key: the workflow's decision (RISK_CHECK_FAILED) must be on it,
    # whether no attempt committed anything or one committed an approval the workflow never heard of.
    def failing(parts: OrderWorker) -> list[Callable[..., Any]]:
        @activity.defn(name="check_order")
        async def check_order(order: OrderRequest) -> RiskDecision:
            if committed:
                await parts.risk.check_order(order)
            raise RuntimeError("connection lost")

        return [check_order]

    async with order_worker(stack, activities=failing) as w:
        settings = stack.settings.model_copy(
            update={"temporal": stack.settings.temporal.model_copy(update={"task_queue": w.task_queue})}
        )
        body = {"clientId": unique("rcf"), "clientOrderId": unique("co"), "symbol": "AAPL", "side": "BUY", "qty": 10}
        async with stack.api(settings) as http:
            first = await http.post("/api/v1/orders", json=body)
            assert first.status_code == 422, first.text
            assert [r["code"] for r in first.json()["reasons"]] == ["RISK_CHECK_FAILED"]
            order_id = first.json()["internalOrderId"]
            await asyncio.wait_for(stack.client.get_workflow_handle(f"order-{order_id}").result(), 30)
            again = await http.post("/api/v1/orders", json=body)
    assert again.status_code == 200, again.text  # the original answer, from the row (not 409 "retry shortly")
    answer = again.json()
    assert answer["duplicate"] is True and answer["status"] == "rejected" and answer["orderStatus"] == "DENIED"
    assert [r["code"] for r in answer["reasons"]] == ["RISK_CHECK_FAILED"]
    [row] = await stack.fetch("SELECT status, risk_decision FROM orders WHERE order_id = %s", order_id)
    assert row["status"] == "DENIED" and row["risk_decision"]["approved"] is False
    reservation = await _reservation(stack, order_id)
    assert reservation is None or reservation["released_at"] is not None


async def test_an_amend_whose_risk_check_fails_is_refused_and_the_order_stays_cancelable(stack: Stack) -> None:
    def failing(parts: OrderWorker) -> list[Callable[..., Any]]:
        @activity.defn(name="check_amend")
        async def check_amend(request: AmendCheck) -> RiskDecision:
            await parts.risk.check_amend(request)  # grows the reservation to the new terms, then fails
            raise RuntimeError("InvalidOperation in the risk math")

        return [check_amend]

    await stack.venue.set_mid("AAPL", D("190.00"))
    async with order_worker(stack, activities=failing) as w:
        order = make_order(symbol="AAPL", qty="10", type="LIMIT", price="150.00")
        _, handle = await w.submit(order, risk_attempts=2)
        await stack.wait_for(handle, OrderStatus.ACCEPTED)
        amended = await asyncio.wait_for(handle.execute_update(OrderWorkflow.amend, AmendRequest(qty=D(20))), 30)
        assert not amended.accepted and "risk check failed after 2 attempt(s)" in (amended.reason or "")
        assert amended.status is OrderStatus.ACCEPTED and amended.qty == D(10)
        # The reservation grown by the failed check goes back to the order's terms with the next booking.
        await _eventually(lambda: _reservation_open_is(stack, order.order_id, D(10)))
        # The broker lock is free: a cancel goes straight out.
        await handle.signal(OrderWorkflow.cancel, CancelRequest(reason="after the failed amend"))
        result = await asyncio.wait_for(handle.result(), 30)
        state = await stack.state(handle)
        await record_history(handle, "paper-amend-risk-failed-then-canceled")
    assert result.status is OrderStatus.CANCELED
    [denied] = [e for e in state.events if e.kind == "AMEND_DENIED"]
    assert "InvalidOperation" in denied.detail
    venue_view = await stack.venue.status(order.order_id)
    assert venue_view is not None and venue_view.status is OrderStatus.CANCELED and venue_view.qty == D(10)


async def _reservation_open_is(stack: Stack, order_id: str, qty: Decimal) -> bool:
    reservation = await _reservation(stack, order_id)
    return reservation is not None and reservation["qty_open"] == qty


# ------------------------------------------------------------------------------------------------ booking


async def test_a_booking_outage_never_blocks_the_cancel_and_raises_an_alert(
    stack: Stack, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="activities.persistence")
    flaky = FlakyPool(stack.pool)
    await stack.venue.set_mid("MSFT", D("420.00"))
    async with order_worker(stack, pool=flaky) as w:
        order = make_order(symbol="MSFT", qty="10", type="LIMIT", price="400.00")
        _, handle = await w.submit(order, booking_retry_seconds=0.5, booking_retry_max_seconds=2.0)
        await stack.wait_for(handle, OrderStatus.ACCEPTED)
        failures = _booking_failures()
        flaky.failing = True
        await handle.signal(OrderWorkflow.cancel, CancelRequest(requested_by="ops", reason="flatten"))

        # The cancel reaches the venue while nothing can be booked.
        async def canceled_at_venue() -> bool:
            view = await stack.venue.status(order.order_id)
            return view is not None and view.status is OrderStatus.CANCELED

        await _eventually(canceled_at_venue)
        [row] = await stack.fetch("SELECT status FROM orders WHERE order_id = %s", order.order_id)
        assert row["status"] == "ACCEPTED"  # not booked yet
        await _eventually(_async(lambda: flaky.refused >= 9))  # three failed rounds of three attempts
        flaky.failing = False
        result = await asyncio.wait_for(handle.result(), 30)
        history = await handle.fetch_history()
        state = await stack.state(handle)
        await record_history(handle, "paper-booking-delayed-then-canceled")
    assert result.status is OrderStatus.CANCELED
    [row] = await stack.fetch("SELECT status, flags FROM orders WHERE order_id = %s", order.order_id)
    assert row["status"] == "CANCELED"
    reservation = await _reservation(stack, order.order_id)
    assert reservation is not None and reservation["released_at"] is not None
    # Alert: a counter the activity increments, an error line naming the order, and one break once booked.
    assert _booking_failures() - failures >= 9
    assert any(order.order_id in r.getMessage() and "failed" in r.getMessage() for r in caplog.records)
    breaks = await stack.fetch(
        "SELECT kind, detail FROM reconciliation_breaks WHERE order_id = %s AND kind = 'BOOKING_DELAYED'",
        order.order_id,
    )
    assert len(breaks) == 1 and "unreachable" in breaks[0]["detail"]
    assert [f for f in row["flags"] if f.startswith("BOOKING_DELAYED")] == [breaks[0]["detail"]]
    # Retried after durable timers that double (0.5 s, 1 s, 2 s, ...), not in a tight loop.
    pauses = [
        e.timer_started_event_attributes.start_to_fire_timeout.ToTimedelta().total_seconds()
        for e in history.events
        if e.event_type == EventType.EVENT_TYPE_TIMER_STARTED
        and e.timer_started_event_attributes.start_to_fire_timeout.ToTimedelta().total_seconds() <= 2.0
    ]
    assert pauses[:3] == [0.5, 1.0, 2.0]
    assert await _stored_timeline(stack, order.order_id) == _timeline(state)


def _async(fn: Callable[[], Any]) -> Callable[[], Any]:
    async def check() -> Any:
        return fn()

    return check


# ------------------------------------------------------------------------------------------------ cancels


async def test_a_cancel_after_a_refused_cancel_is_sent_again_with_backoff(stack: Stack) -> None:
    broker = CancelRefusingBroker(stack.brokers["paper"])
    await stack.venue.set_mid("NVDA", D("120.00"))
    async with order_worker(stack, broker=broker) as w:
        order = make_order(symbol="NVDA", qty="10", type="LIMIT", price="100.00")
        _, handle = await w.submit(order, cancel_retry_seconds=1.5)
        await stack.wait_for(handle, OrderStatus.ACCEPTED)
        broker.refuse = 1
        await handle.signal(OrderWorkflow.cancel, CancelRequest(requested_by="trader", reason="first"))
        state = await stack.wait_for(handle, lambda s: any(e.kind == "CANCEL_REJECTED" for e in s.events))
        assert state.status is OrderStatus.ACCEPTED
        await handle.signal(OrderWorkflow.cancel, CancelRequest(requested_by="ops", reason="second"))
        result = await asyncio.wait_for(handle.result(), 30)
        state = await stack.state(handle)
        await record_history(handle, "paper-cancel-refused-then-sent-again")
    assert result.status is OrderStatus.CANCELED
    assert [c.reason for c in broker.cancels] == ["first", "second"]
    kinds = [e.kind for e in state.events]
    assert kinds[kinds.index("CANCEL_REQUESTED") :][:6] == [
        "CANCEL_REQUESTED",
        "REQUEST_CANCEL",
        "CANCEL_REJECTED",
        "CANCEL_REQUESTED",
        "REQUEST_CANCEL",
        "CANCEL",
    ]
    first, second = [e for e in state.events if e.kind == "REQUEST_CANCEL"]
    assert second.actor == "ops" and (second.at - first.at).total_seconds() >= 1.5  # the backoff, in workflow time
    assert await _stored_timeline(stack, order.order_id) == _timeline(state)


async def test_cancels_repeated_while_one_is_in_flight_are_recorded_not_sent(stack: Stack) -> None:
    broker = CancelRefusingBroker(stack.brokers["paper"])
    await stack.venue.set_mid("NVDA", D("120.00"))
    async with order_worker(stack, broker=broker) as w:
        order = make_order(symbol="NVDA", qty="10", type="LIMIT", price="100.00")
        _, handle = await w.submit(order)
        await stack.wait_for(handle, OrderStatus.ACCEPTED)
        stack.venue.cancels_open.clear()  # the venue sits on the cancel
        try:
            await handle.signal(OrderWorkflow.cancel, CancelRequest(reason="one"))
            await stack.wait_for(handle, OrderStatus.PENDING_CANCEL)
            for n in range(3):  # e.g. cancel-all pressed again and again
                await handle.signal(OrderWorkflow.cancel, CancelRequest(reason=f"again {n}"))
            await stack.wait_for(handle, lambda s: sum(e.kind == "CANCEL_REPEATED" for e in s.events) == 3)
        finally:
            stack.venue.cancels_open.set()
        result = await asyncio.wait_for(handle.result(), 30)
    assert result.status is OrderStatus.CANCELED
    assert [c.reason for c in broker.cancels] == ["one"]


# ------------------------------------------------------------------------------------------------ timeline


_FAIL_AFTER_BOOKING: set[str] = set()
_FAILED: set[str] = set()


class _FailFinalBookingOnce(Interceptor):
    """Fails the workflow task in which an order's final booking committed, once (a crash, a bug, a deploy):
    the workflow task is retried, and by then a signal has arrived that the retry handles first."""

    def workflow_interceptor_class(self, input: WorkflowInterceptorClassInput) -> type[WorkflowInboundInterceptor]:
        return _Inbound

    def intercept_activity(self, next: ActivityInboundInterceptor) -> ActivityInboundInterceptor:
        return _SignalAfterFinalBooking(next)


class _Inbound(WorkflowInboundInterceptor):
    def init(self, outbound: WorkflowOutboundInterceptor) -> None:
        super().init(_Outbound(outbound))


class _Outbound(WorkflowOutboundInterceptor):
    def start_local_activity(self, input: StartLocalActivityInput) -> Any:
        handle = super().start_local_activity(input)
        wf_id = workflow.info().workflow_id
        arg = input.args[0] if input.args else None
        if input.activity == "persist_order" and getattr(arg, "final", False) and wf_id in _FAIL_AFTER_BOOKING:
            _FAIL_AFTER_BOOKING.discard(wf_id)
            _FAILED.add(wf_id)

            async def fail_after_commit() -> Any:
                await handle
                raise RuntimeError("injected: the workflow task fails after its booking committed")

            return asyncio.ensure_future(fail_after_commit())
        return handle


class _SignalAfterFinalBooking(ActivityInboundInterceptor):
    client: Any = None

    async def execute_activity(self, input: ExecuteActivityInput) -> Any:
        result = await super().execute_activity(input)
        arg = input.args[0] if input.args else None
        wf_id = activity.info().workflow_id
        if isinstance(arg, PersistInput) and arg.final and wf_id in _FAILED:
            _FAILED.discard(wf_id)
            # Arrives while the failing workflow task runs: its retry handles the signal before the rest.
            await self.client.get_workflow_handle(wf_id).signal(
                OrderWorkflow.cancel, CancelRequest(requested_by="late", reason="too late")
            )
        return result


async def test_the_stored_timeline_equals_the_workflows_after_a_task_fails_after_its_booking(stack: Stack) -> None:
    _SignalAfterFinalBooking.client = stack.client
    await stack.venue.set_mid("NVDA", D("120.00"))
    async with order_worker(stack, interceptors=[_FailFinalBookingOnce()]) as w:
        order = make_order(symbol="NVDA", qty="10", type="LIMIT", price="100.00")
        _, handle = await w.submit(order)
        await stack.wait_for(handle, OrderStatus.ACCEPTED)
        _FAIL_AFTER_BOOKING.add(handle.id)
        await handle.signal(OrderWorkflow.cancel, CancelRequest(requested_by="ops", reason="done"))
        result = await asyncio.wait_for(handle.result(), 30)
        history = await handle.fetch_history()
        state = await stack.state(handle)
        await record_history(handle, "paper-task-failed-after-booking")
    assert result.status is OrderStatus.CANCELED
    assert handle.id not in _FAIL_AFTER_BOOKING and handle.id not in _FAILED  # it did fail, and was signalled
    assert any(e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED for e in history.events)
    kinds = [e.kind for e in state.events]
    # The retry numbered differently from the failed attempt: the late cancel came before RECONCILED.
    assert kinds[-2:] == ["CANCEL_REFUSED", "RECONCILED"]
    assert await _stored_timeline(stack, order.order_id) == _timeline(state)
    [row] = await stack.fetch("SELECT status, version FROM orders WHERE order_id = %s", order.order_id)
    assert row == {"status": "CANCELED", "version": len(state.events)}
