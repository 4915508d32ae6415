"""The order workflow: one workflow execution per order, from risk check to booked result.

::

    received ─▶ risk check (local activity) ─denied─▶ DENIED
                   │ approved                    (the REST caller gets the decision through the ``decision`` update)
                   ▼
               submit (activity on the broker's task queue; asks the broker first on every retry)
                   │
                   ▼
    ACCEPTED / PARTIALLY_FILLED ◀── ``execution_report`` signals, deduplicated by exec id
          │     ▲  ``cancel`` signal ─▶ PENDING_CANCEL ─▶ CANCELED
          │     └─ ``amend`` update (validated) ─▶ PENDING_UPDATE ─▶ working again
          │        timers: GTD / DAY expiry, IOC/FOK immediacy, a slow status poll as a safety net
          ▼
    FILLED / CANCELED / EXPIRED / REJECTED ─▶ reconcile with the broker ─▶ final state booked
    (FILLED by a report that carries the final cumulative quantity and average price: no reconcile, one booking)

Workflow code is deterministic: time comes from ``workflow.now()``, and every side effect is an activity.
The domain module, the activity modules and the workflow's own models (``workflows.order_models``) are
passed through the sandbox: the sandbox runs this module afresh for every workflow run, and building
pydantic model classes each time cost more worker CPU than the rest of the module.

Bookings (the order row, the timeline, fills and breaks in Postgres) are made by ``workflows.booking``, which
decides from counts what is not booked yet and when a round runs; the workflow only says when writes may start
(``release``) and that the order is closing.

Versioning: orders in flight survive upgrades because every change to what the workflow does (the commands
it issues and their order) is behind ``workflow.patched``. The patches are evaluated once, when a run
starts: an order started by an earlier release replays, and finishes, on the old path; every new order (and
every continued run) takes the new one. A patch of a rare branch (``PATCH_AMEND_RECHECK_BOOKED``) is evaluated
where the branch is taken, so that only the orders that take it carry its marker. A new run records only the
newest patch of the chain (``PATCH_LEAN_HISTORY`` implies ``PATCH_BOOKING_BY_COUNTS``, which implies
``PATCH_NO_WEDGE``), so the chain costs one marker per order however long it grows. See the README,
"Upgrading with orders in flight".
"""

# No ``from __future__ import annotations`` here: the sandbox executes this module afresh for every order, and the
# workflow definition then evaluated every handler's annotations from strings each time (measured alone, 0.53 ->
# 0.46 ms per execution of this module; the README's Performance section).

import asyncio
from datetime import datetime, timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, CancelledError, FailureError

with workflow.unsafe.imports_passed_through():
    from activities.broker import BrokerActivities, CancelInput, ReplaceInput, StatusInput, SubmitInput
    from activities.risk import AmendCheck, RiskActivities, TrailQuote, TrailQuoteRequest
    from core.domain import (
        AmendRequest,
        AmendResult,
        Break,
        BreakKind,
        BrokerAck,
        CancelRequest,
        ExecutionReport,
        OrderEventKind,
        OrderState,
        OrderStatus,
        OrderStatusReport,
        OrderType,
        ReportKind,
        ReportOutcome,
        RiskDecision,
        RiskReason,
        TimeInForce,
        TimelineKind,
        TrailState,
        overfill_break,
    )
    from core.errors import NON_RETRYABLE_ERROR_TYPES
    from core.orderlist import LegReport
    from core.trailing import TrailOutcome, follow
    from workflows.booking import LOCAL_TIMEOUT, OrderBooking, bounded_retry, cause_of
    from workflows.order_models import OrderCarry, OrderConfig, OrderResult, OrderWorkflowInput
    from workflows.order_rules import (
        RISK_RETRY,
        TICK,
        UNSENDABLE,
        WORKING,
        amend_problem,
        amend_result,
        cancel_not_before,
        is_business_error,
        order_expiry,
        settled_by_report,
        unknown_at_broker,
    )

__all__ = [
    "PATCH_AMEND_RECHECK_BOOKED",
    "PATCH_BOOKING_BY_COUNTS",
    "PATCH_BROKER_SWEEPS",
    "PATCH_LEAN_HISTORY",
    "PATCH_LIST_LEG_REPORTS",
    "PATCH_NO_WEDGE",
    "PATCH_TRAILING_STOP",
    "OrderCarry",
    "OrderConfig",
    "OrderResult",
    "OrderWorkflow",
    "OrderWorkflowInput",
]

#: One patch for the four changes that came together (each marker costs two history events per order, a
#: marker and the ``TemporalChangeVersion`` upsert, and they can only be retired together anyway):
#:
#: * bounded risk checks: a risk check (new order or amend) has bounded attempts; one that still fails denies
#:   the order (code ``RISK_CHECK_FAILED``) or refuses the amend, instead of retrying forever with the broker
#:   lock held;
#: * bookings never block: a booking round has bounded attempts; the flusher retries failed rounds after
#:   durable, doubling pauses and records a ``BOOKING_DELAYED`` break once booking works again; cancels and
#:   submissions never wait for a booking;
#: * cancels sent again: after the broker refused a cancel, a new cancel request goes to the broker again (with
#:   backoff between sends); requests while one is in flight are recorded, not sent; a cancel's reason reaches
#:   the broker without control characters;
#: * continue-as-new: the order continues as a new run, carrying its whole state, before its history grows
#:   large.
PATCH_NO_WEDGE = "no-wedge-cancel-resend-continue-as-new"
#: An amend that risk approved but that a fill made impossible meanwhile is recorded (``AMEND_DENIED``) and
#: booked, so the hold its risk check took is set back to the order's terms at once. Evaluated where it
#: applies, not when the run starts: an amend refused that way is rare, and a marker in every order's history
#: would cost two events per order.
PATCH_AMEND_RECHECK_BOOKED = "amend-recheck-refusal-booked"
#: Bookings decided by counts (``workflows.booking``): a round runs whenever the order has events, fills or
#: breaks not booked yet (the earlier release ran one when the workflow had marked a change by hand), and the
#: closing reconciliation's changes go in with the final round. Includes everything ``PATCH_NO_WEDGE`` brought:
#: a run that records this marker does not record that one.
PATCH_BOOKING_BY_COUNTS = "booking-by-counts"
#: An order that is a leg of an order list (``OrderWorkflowInput.parent``) reports its status and fills to the list's
#: coordinator by signal (``LegReport``), and finishes only once its last report went out. Evaluated only for legs:
#: no order of an earlier release is one, and a plain order's history carries no marker.
PATCH_LIST_LEG_REPORTS = "list-leg-reports"
#: A trailing stop for a broker without a native one is emulated (``core.trailing``): held in the workflow
#: (``EMULATED``), checked against the quote store once per ``OrderConfig.trail_check_seconds`` (a durable timer and a
#: local activity per check, never one per tick), and sent as a MARKET order once triggered. Evaluated only for
#: such orders: no order of an earlier release is one, and other orders' histories carry no marker.
PATCH_TRAILING_STOP = "trailing-stop-emulation"
#: A leaner history (issue 18): an order filled by one broker report that itself carries the final cumulative
#: quantity (all of the order's, none left) and an average price, with no break or flag, is not reconciled by a
#: status round trip (an activity and a workflow task fewer; its RECONCILED entry says the report settled it); an
#: order that closes without a broker round trip to follow books once, at the end, instead of once by the flusher
#: and again by the final round. Every other close (canceled, expired, rejected after an ack, a partial, a report
#: without those figures, a break) is reconciled as before. Includes everything ``PATCH_BOOKING_BY_COUNTS`` brought:
#: a run that records this marker does not record that one.
PATCH_LEAN_HISTORY = "lean-history"
#: Broker sweeps (issue 18): an order for a swept broker (``OrderConfig.swept``) arms no status-poll timer while it
#: works; the worker owning the broker's session sweeps the broker's open orders and signals ``sweep_found`` to an
#: order whose fills or state differ from what it booked, and the order then asks the broker itself (the same
#: status lookup as the poll). While a cancel or replace waits for its answer, or after the broker refused a cancel,
#: the prompt lookup stays (unknown is not failed). Evaluated only for swept orders, and includes everything
#: ``PATCH_LEAN_HISTORY`` brought: a run that records this marker does not record that one.
PATCH_BROKER_SWEEPS = "broker-sweeps"


_LOCAL = LOCAL_TIMEOUT


@workflow.defn(name="OrderWorkflow")
class OrderWorkflow:
    """One order's life."""

    @workflow.init
    def __init__(self, inp: OrderWorkflowInput) -> None:
        """Set up state before any handler runs (updates may arrive in the first task)."""
        self._inp = inp
        self._cfg = inp.config
        # Once per run, before anything else (see the module's docstring on versioning). The newest patch first:
        # a run that takes it does not record the older one.
        self._swept = inp.config.swept and workflow.patched(PATCH_BROKER_SWEEPS)
        self._lean = self._swept or workflow.patched(PATCH_LEAN_HISTORY)
        by_counts = self._lean or workflow.patched(PATCH_BOOKING_BY_COUNTS)
        patched = by_counts or workflow.patched(PATCH_NO_WEDGE)
        self._bounded_risk = patched
        self._cancel_resent = patched
        self._continues_as_new = patched
        self._state = OrderState.new(inp.order, at=workflow.now())
        self._decision: RiskDecision | None = None
        self._cancel: CancelRequest | None = None
        self._cancel_sent = False
        #: Cancels sent for ``_cancel`` requests, and when the last went out (the backoff between sends).
        self._cancel_sends = 0
        self._cancel_sent_at: datetime | None = None
        self._broker_lock = asyncio.Lock()
        self._acked = False
        self._immediacy_at: datetime | None = None
        self._next_poll_at: datetime | None = None
        self._poll_backoff = 1
        #: A sweep saw the broker's view of this order differ from the booked one: look it up now.
        self._sweep_poked = False
        self._generation = 0
        #: The report that closed the order FILLED (it may settle the order without a reconcile).
        self._closing_report: ExecutionReport | None = None
        #: The submission's broker call is in flight.
        self._submitting = False
        if inp.carried is not None:
            self._take_over(inp.carried)
        #: A list's leg: the last view reported to the coordinator.
        self._reports_to_list = inp.parent is not None and workflow.patched(PATCH_LIST_LEG_REPORTS)
        self._leg_sent: tuple[object, ...] | None = None
        self._booking = OrderBooking(
            self._state, self._cfg, by_counts=by_counts, never_blocks=patched, carried=inp.carried
        )
        if self._lean:
            self._booking.defer = self._closing_soon

    def _take_over(self, carry: OrderCarry) -> None:
        """Continue where the previous run stopped (it stopped at a safe point: everything booked)."""
        self._state = carry.state
        self._decision = carry.decision or carry.state.decision
        self._cancel = carry.cancel
        self._cancel_sent = carry.cancel_sent
        self._cancel_sends = carry.cancel_sends
        self._cancel_sent_at = carry.cancel_sent_at
        self._acked = carry.acked
        self._immediacy_at = carry.immediacy_at
        self._next_poll_at = carry.next_poll_at
        self._poll_backoff = carry.poll_backoff
        self._generation = carry.generation
        workflow.set_current_details(self._state.summary_line())

    # ---------------------------------------------------------------------------------------- handlers

    @workflow.update
    async def decision(self, request_hash: str) -> RiskDecision:
        """Wait for and return the risk decision (the REST call's synchronous answer).

        ``request_hash`` is the hash of the caller's body; the decision carries the original order's hash,
        so a caller can tell a retry of the same request from a different one under the same key.
        """
        await workflow.wait_condition(lambda: self._decision is not None)
        assert self._decision is not None
        return self._decision

    @workflow.signal
    def execution_report(self, report: ExecutionReport) -> None:
        """A report from the broker (duplicates are ignored by exec id)."""
        if self._state.status is OrderStatus.RECEIVED:
            self._state.record(
                TimelineKind.REPORT_IGNORED,
                at=workflow.now(),
                detail=f"{report.kind.value} before submission",
                data={"exec_id": report.exec_id},
            )
        else:
            self._apply_report(report)
        self._booking.legacy_mark()
        self._booking.release()

    @workflow.signal
    def sweep_found(self, detail: str) -> None:
        """A broker sweep found the broker's view of this order different from what it booked: ask the broker now.

        Ignored unless the order is swept (``PATCH_BROKER_SWEEPS``) and working: other orders poll on their own.
        """
        if self._swept and self._state.status in WORKING:
            self._sweep_poked = True

    @workflow.signal
    def cancel(self, request: CancelRequest) -> None:
        """An operator's or client's cancel. Refused (and recorded) when the order is already final."""
        now = workflow.now()
        if self._state.is_terminal:
            self._state.record(
                TimelineKind.CANCEL_REFUSED,
                at=now,
                detail=f"order is already {self._state.status.value}: {request.reason}",
                actor=request.requested_by,
            )
        elif self._cancel is not None and not self._cancel_refused():
            # Queued or in flight: recorded, not sent again.
            self._state.record(TimelineKind.CANCEL_REPEATED, at=now, detail=request.reason, actor=request.requested_by)
        elif self._cancel is not None:
            # The broker refused the last cancel and the order works on: this request goes to the broker again.
            self._cancel = request
            self._cancel_sent = False
            self._state.record(
                TimelineKind.CANCEL_REQUESTED,
                at=now,
                detail=request.reason,
                actor=request.requested_by,
                data={"send": str(self._cancel_sends + 1)},
            )
        else:
            self._cancel = request
            self._state.record(TimelineKind.CANCEL_REQUESTED, at=now, detail=request.reason, actor=request.requested_by)
        self._booking.legacy_mark()
        self._booking.release()

    @workflow.update
    async def amend(self, request: AmendRequest) -> AmendResult:
        """Change quantity and/or prices of a working order (risk-checked, then cancel/replace at the broker)."""
        async with self._broker_lock:
            problem = amend_problem(self._state, self._cfg, request)
            if problem is not None:
                return amend_result(self._state, False, problem)
            state = self._state
            new_qty = request.qty if request.qty is not None else state.qty
            new_price = request.price if request.price is not None else state.price
            new_stop = request.stop_price if request.stop_price is not None else state.stop_price
            proposed = state.request.model_copy(update={"qty": new_qty, "price": new_price, "stop_price": new_stop})
            try:
                decision = await workflow.execute_local_activity_method(
                    RiskActivities.check_amend,
                    AmendCheck(
                        order=proposed,
                        requested_by=request.requested_by,
                        filled_qty=state.filled_qty,
                        version=len(state.events),
                    ),
                    start_to_close_timeout=_LOCAL,
                    retry_policy=self._risk_retry(),
                )
            except FailureError as e:
                if not self._bounded_risk or isinstance(e, CancelledError):
                    raise
                # The check may have grown the reservation before failing: the next booking (this event's)
                # sets it back to the order's actual terms.
                reason = f"the risk check failed after {self._cfg.risk_attempts} attempt(s): {cause_of(e)}"
                state.record(TimelineKind.AMEND_DENIED, at=workflow.now(), detail=reason, actor=request.requested_by)
                self._booking.legacy_mark()
                return amend_result(self._state, False, reason)
            if not decision.approved:
                reason = "; ".join(r.message for r in decision.reasons)
                state.record(TimelineKind.AMEND_DENIED, at=workflow.now(), detail=reason, actor=request.requested_by)
                self._booking.legacy_mark()
                return amend_result(self._state, False, f"risk check refused the amend: {reason}")
            problem = amend_problem(self._state, self._cfg, request)  # a fill may have landed while risk was checking
            if problem is not None:
                if workflow.patched(PATCH_AMEND_RECHECK_BOOKED):
                    # The check's hold (the larger of old and new terms) may have been taken after the fill's
                    # booking: this event's booking, of a newer version than the check's, sets it back.
                    state.record(
                        TimelineKind.AMEND_DENIED, at=workflow.now(), detail=problem, actor=request.requested_by
                    )
                    self._booking.legacy_mark()
                return amend_result(self._state, False, problem)
            state.apply(
                OrderEventKind.REQUEST_UPDATE,
                at=workflow.now(),
                detail=f"to {new_qty.normalize():f}"
                + (f" @ {new_price.normalize():f}" if new_price is not None else ""),
                actor=request.requested_by,
            )
            self._booking.legacy_mark()
            replace = state.replace_order(qty=new_qty, price=new_price, stop_price=new_stop)
            try:
                ack = await self._broker_call(
                    BrokerActivities.replace_order, ReplaceInput(broker=self._broker, request=replace)
                )
            except ActivityError as e:
                ack = BrokerAck(accepted=False, cl_ord_id=replace.cl_ord_id, reason=cause_of(e))
            self._apply_reports(ack.reports)
            now = workflow.now()
            if state.status is OrderStatus.PENDING_UPDATE:
                if ack.accepted:
                    state.revision += 1
                    state.qty, state.price, state.stop_price = new_qty, new_price, new_stop
                    state.apply(OrderEventKind.UPDATE, at=now, detail="replaced at the broker")
                else:
                    state.apply(OrderEventKind.UPDATE_REJECTED, at=now, detail=ack.reason or "refused by the broker")
            self._booking.legacy_mark()
            return amend_result(self._state, ack.accepted, None if ack.accepted else ack.reason)

    @amend.validator
    def _validate_amend(self, request: AmendRequest) -> None:
        problem = amend_problem(self._state, self._cfg, request)
        if problem is not None:
            raise ValueError(problem)

    @workflow.query
    def trail(self) -> TrailState | None:
        """An emulated trailing stop's trigger as it stands now (moves are not booked; the timeline has the steps)."""
        return self._state.trail

    @workflow.query
    def state(self) -> OrderState:
        """The order as last booked: terms, status, fills and timeline.

        This is the state as of the last write to Postgres, so a status seen here (FILLED, say) is already
        reflected in the ledger's positions and cash; changes still being booked show up a moment later.
        """
        return self._booking.published

    # ---------------------------------------------------------------------------------------- main line

    @workflow.run
    async def run(self, inp: OrderWorkflowInput) -> OrderResult:
        """Check, submit, follow, reconcile, book."""
        state = self._state
        if self._reports_to_list:
            self._reporter = asyncio.create_task(self._report_to_list())
        if inp.carried is not None:
            # A continued run: the risk decision and everything up to the safe point are behind us.
            self._flusher_task = asyncio.create_task(self._booking.flusher())
            if inp.carried.phase == "trailing":
                workflow.patched(PATCH_TRAILING_STOP)  # (a continued run records the marker again)
                await self._trail(resumed=True)
                if state.is_terminal:
                    return await self._finish(reconcile=False)
                state.apply(OrderEventKind.SUBMIT, at=workflow.now(), detail=f"to {self._broker} as {state.cl_ord_id}")
                await self._submit()
                await self._follow()
            elif inp.carried.phase == "submitting":
                await self._submit(check_first=True)
                await self._follow()
            else:
                await self._follow(resumed=True)
            return await self._finish(reconcile=self._acked)
        # The risk activity writes the order row with its decision; the flusher starts after it.
        try:
            decision = await workflow.execute_local_activity_method(
                RiskActivities.check_order, inp.order, start_to_close_timeout=_LOCAL, retry_policy=self._risk_retry()
            )
        except FailureError as e:
            # (A local activity's last failure arrives as itself, not wrapped in an ActivityError.)
            if not self._bounded_risk or isinstance(e, CancelledError):
                raise
            decision = self._risk_check_failed(inp, e)
        self._flusher_task = asyncio.create_task(self._booking.flusher())
        self._decision = decision
        state.decision = decision
        now = workflow.now()
        if not decision.approved:
            state.reason = "; ".join(r.message for r in decision.reasons)
            state.apply(
                OrderEventKind.DENY, at=now, detail=state.reason, data={r.code: r.message for r in decision.reasons}
            )
            return await self._finish(reconcile=False)
        if self._cancel is not None:
            state.reason = self._cancel.reason
            state.apply(
                OrderEventKind.CANCEL, at=now, detail="canceled before it was sent", actor=self._cancel.requested_by
            )
            return await self._finish(reconcile=False)

        if self._emulates_trail():
            await self._trail()
            if state.is_terminal:
                return await self._finish(reconcile=False)
            now = workflow.now()
        state.apply(OrderEventKind.SUBMIT, at=now, detail=f"to {self._broker} as {state.cl_ord_id}")
        await self._submit()
        await self._follow()
        return await self._finish(reconcile=self._acked)

    @property
    def _broker(self) -> str:
        return self._inp.order.broker

    def _risk_retry(self) -> RetryPolicy:
        return bounded_retry(self._cfg.risk_attempts) if self._bounded_risk else RISK_RETRY

    def _risk_check_failed(self, inp: OrderWorkflowInput, e: FailureError) -> RiskDecision:
        # A denial, never a hang. A reservation the check may have committed before failing is released by the
        # final booking (the order is DENIED).
        order = inp.order
        message = f"the risk check failed after {self._cfg.risk_attempts} attempt(s): {cause_of(e)}"
        workflow.logger.error("order %s: %s", order.order_id, message)
        return RiskDecision(
            order_id=order.order_id,
            approved=False,
            reasons=[RiskReason(code="RISK_CHECK_FAILED", message=message)],
            decided_at=workflow.now(),
            request_hash=order.request_hash,
            submission_id=order.submission_id,
        )

    async def _submit(self, *, check_first: bool = False) -> None:
        """Send the order; after an unconfirmed round keep asking the broker before sending again.

        Once a cancel has arrived the order is never sent again: the broker is only asked whether it has it.
        ``check_first``: a continued run resuming an unconfirmed submission (ask before sending).
        """
        state = self._state
        rounds = 0
        while True:
            if rounds and self._continue_as_new_due() and self._at_safe_point():
                self._continue_as_new_run("submitting")
            rounds += 1
            if self._cancel is not None:
                if await self._cancel_unconfirmed():
                    return
                await workflow.sleep(self._cfg.resubmit_pause_seconds)  # still unreachable: ask again later
                continue
            async with self._broker_lock:
                self._submitting = True
                try:
                    ack = await self._broker_call(
                        BrokerActivities.submit_order,
                        SubmitInput(broker=self._broker, order=state.submit_order(), check_first=check_first),
                        attempts=4,
                    )
                    self._submitting = False
                    self._booking.release()
                    break
                except ActivityError as e:
                    self._submitting = False
                    self._booking.release()
                    if is_business_error(e):
                        ack = BrokerAck(accepted=False, cl_ord_id=state.cl_ord_id, reason=cause_of(e))
                        break
                    state.record(
                        TimelineKind.SUBMIT_UNCONFIRMED,
                        at=workflow.now(),
                        detail=f"no answer from {self._broker} ({cause_of(e)}); the order stays in flight and the "
                        "broker is asked before any resend",
                    )
                    self._booking.legacy_mark()
            if self._booking.never_blocks:
                self._booking.release()  # the flusher books it; the next round does not wait for that
            else:
                await self._booking.flush()
            check_first = True
            try:
                await workflow.wait_condition(
                    lambda: self._cancel is not None, timeout=self._cfg.resubmit_pause_seconds
                )
            except TimeoutError:
                pass
        self._take_ack(ack)

    async def _cancel_unconfirmed(self) -> bool:
        """A cancel arrived while the submission was unconfirmed: if the broker never got it, we are done."""
        state = self._state
        try:
            status = await self._broker_call(
                BrokerActivities.get_order_status,
                StatusInput(broker=self._broker, cl_ord_id=state.cl_ord_id),
                attempts=2,
            )
        except ActivityError:
            return False  # still unreachable: keep the order in flight
        if status is not None:
            self._take_ack(
                BrokerAck(
                    accepted=status.status is not OrderStatus.REJECTED,
                    cl_ord_id=status.cl_ord_id,
                    broker_order_id=status.broker_order_id,
                    reports=status.reports,
                )
            )
            return True
        assert self._cancel is not None
        if state.can(OrderEventKind.REQUEST_CANCEL):
            state.apply(
                OrderEventKind.REQUEST_CANCEL,
                at=workflow.now(),
                actor=self._cancel.requested_by,
                detail=self._cancel.reason,
            )
        state.reason = self._cancel.reason
        state.apply(OrderEventKind.CANCEL, at=workflow.now(), detail="the broker never received the order")
        self._cancel_sent = True
        self._booking.legacy_mark()
        return True

    def _take_ack(self, ack: BrokerAck) -> None:
        state = self._state
        now = workflow.now()
        if ack.broker_order_id and not state.broker_order_id:
            state.broker_order_id = ack.broker_order_id
        self._apply_reports(ack.reports)
        if ack.accepted:
            self._acked = True
            if state.status is OrderStatus.SUBMITTED:
                state.apply(OrderEventKind.ACCEPT, at=now, detail=f"acknowledged by {self._broker}")
            if state.request.time_in_force in (TimeInForce.IOC, TimeInForce.FOK):
                self._immediacy_at = now + timedelta(seconds=self._cfg.immediacy_timeout_seconds)
        elif state.status in (OrderStatus.SUBMITTED, OrderStatus.PENDING_CANCEL):
            state.reason = ack.reason or "rejected by the broker"
            state.apply(OrderEventKind.REJECT, at=now, detail=state.reason)
        self._booking.legacy_mark()

    async def _follow(self, *, resumed: bool = False) -> None:
        """Wait for reports, cancels and timers until the order is final.

        ``resumed``: a continued run, whose poll schedule came with it.
        """
        state = self._state
        expiry = order_expiry(self._state.request, self._cfg)
        if not resumed:
            self._schedule_poll()
        while not state.is_terminal:
            if self._continue_as_new_due() and self._at_safe_point():
                self._continue_as_new_run("following")
            cancel_at = self._cancel_not_before() if self._cancel_due() else None
            deadlines = [d for d in (expiry, self._immediacy_at, self._next_poll_at, cancel_at) if d is not None]
            # A swept order may have nothing to wait for but reports, requests and sweeps: no timer at all.
            timeout = (min(deadlines) - workflow.now()).total_seconds() if deadlines else None
            if (timeout is None or timeout > 0) and not self._sweep_poked:
                new_run = self._continue_as_new_due()

                def woken(new_run: bool = new_run) -> bool:
                    return (
                        self._cancel_ready()
                        or state.is_terminal
                        or (new_run and self._at_safe_point())
                        or self._sweep_poked
                    )

                try:
                    await workflow.wait_condition(woken, timeout=timeout)
                except TimeoutError:
                    pass
            if state.is_terminal:
                break
            now = workflow.now()
            if self._cancel_ready():
                assert self._cancel is not None
                await self._cancel_at_broker(self._cancel.reason, actor=self._cancel.requested_by)
            elif expiry is not None and now >= expiry and not state.expiring:
                state.expiring = True
                await self._cancel_at_broker(f"{state.request.time_in_force.value} expiry reached", actor="system")
            elif self._immediacy_at is not None and now >= self._immediacy_at:
                self._immediacy_at = None
                await self._cancel_at_broker(
                    f"{state.request.time_in_force.value} order still working after "
                    f"{self._cfg.immediacy_timeout_seconds:g}s",
                    actor="system",
                )
            elif self._sweep_poked or (self._next_poll_at is not None and now >= self._next_poll_at):
                self._sweep_poked = False
                await self._poll_status()

    def _schedule_poll(self, *, quiet: bool = False) -> None:
        # The safety-net poll backs off (doubling, up to 16x) while polls find nothing new; any news resets it.
        self._poll_backoff = min(self._poll_backoff * 2, 16) if quiet else 1
        pending = self._state.status in (OrderStatus.PENDING_CANCEL, OrderStatus.PENDING_UPDATE)
        if self._swept and not pending:
            self._next_poll_at = None  # the broker's sweep signals this order when it has news (sweep_found)
            return
        seconds = (
            self._cfg.broker_call_timeout_seconds if pending else self._cfg.status_poll_seconds * self._poll_backoff
        )
        self._next_poll_at = workflow.now() + timedelta(seconds=seconds)

    def _cancel_due(self) -> bool:
        return self._cancel is not None and not self._cancel_sent and not self._state.is_terminal

    def _cancel_refused(self) -> bool:
        """The operator's cancel went out and was answered without canceling (the order works on)."""
        return self._cancel_resent and self._cancel_sent and self._state.status is not OrderStatus.PENDING_CANCEL

    def _cancel_not_before(self) -> datetime | None:
        """When the next cancel may go out (backoff after the ones already sent); None: at once."""
        return cancel_not_before(
            self._cfg, resent=self._cancel_resent, sends=self._cancel_sends, sent_at=self._cancel_sent_at
        )

    def _cancel_ready(self) -> bool:
        if not self._cancel_due():
            return False
        not_before = self._cancel_not_before()
        return not_before is None or workflow.now() + TICK >= not_before

    async def _cancel_at_broker(self, reason: str, *, actor: str) -> None:
        state = self._state
        async with self._broker_lock:
            if state.is_terminal:
                return
            if self._cancel is not None:
                self._cancel_sent = True
                self._cancel_sends += 1
                self._cancel_sent_at = workflow.now()
            if state.status is not OrderStatus.PENDING_CANCEL:
                state.apply(OrderEventKind.REQUEST_CANCEL, at=workflow.now(), detail=reason, actor=actor)
            if self._booking.never_blocks:
                self._booking.legacy_mark()
                self._booking.release()  # booked by the flusher; the cancel goes out without waiting for it
            else:
                await self._booking.flush()
            request = state.cancel_order(UNSENDABLE.sub(" ", reason) if self._cancel_resent else reason)
            try:
                ack = await self._broker_call(
                    BrokerActivities.cancel_order, CancelInput(broker=self._broker, request=request)
                )
            except ActivityError as e:
                ack = BrokerAck(accepted=False, cl_ord_id=request.cl_ord_id, reason=cause_of(e))
            self._apply_reports(ack.reports)
            now = workflow.now()
            if state.status is OrderStatus.PENDING_CANCEL and not ack.accepted:
                # Too late, unknown, or unreachable: resume, and let a prompt status poll settle what happened.
                state.apply(OrderEventKind.CANCEL_REJECTED, at=now, detail=ack.reason or "cancel refused")
            if state.status is OrderStatus.PENDING_CANCEL or not ack.accepted:
                self._next_poll_at = now + timedelta(seconds=min(self._cfg.broker_call_timeout_seconds, 5.0))
            self._booking.legacy_mark()

    async def _poll_status(self) -> None:
        state = self._state
        events_before = len(state.events)
        try:
            status = await self._broker_call(
                BrokerActivities.get_order_status,
                StatusInput(broker=self._broker, cl_ord_id=state.cl_ord_id),
                attempts=3,
            )
        except ActivityError as e:
            state.record(TimelineKind.STATUS_POLL_FAILED, at=workflow.now(), detail=cause_of(e))
            status = None
        else:
            if status is None:
                self._booking.add_breaks([unknown_at_broker(self._broker, self._state.cl_ord_id)])
            else:
                self._booking.add_breaks(state.merge_status(status, at=workflow.now()))
        self._booking.legacy_mark()
        self._schedule_poll(quiet=len(state.events) == events_before)

    async def _finish(self, *, reconcile: bool) -> OrderResult:
        state = self._state
        if (
            reconcile
            and self._lean
            and settled_by_report(self._state, self._closing_report, breaks=bool(self._booking.breaks))
        ):
            reconcile = False
            report = self._closing_report
            assert report is not None and report.avg_price is not None
            state.record(
                TimelineKind.RECONCILED,
                at=workflow.now(),
                detail=f"settled by the broker's final report {report.exec_id}: "
                f"{report.cum_qty.normalize():f} filled @ {report.avg_price.normalize():f}, none left",
            )
        if reconcile:
            await self._reconcile()
        elif self._lean:
            self._booking.last_changes()  # one round, the final one, books everything
        await workflow.wait_condition(workflow.all_handlers_finished)
        # The final booking (retried after durable pauses until it is in): only then is the order done.
        await self._booking.finish()
        if self._reports_to_list:
            await workflow.wait_condition(lambda: self._leg_view() == self._leg_sent)
        return OrderResult(
            order_id=state.order_id,
            status=state.status,
            filled_qty=f"{state.filled_qty:f}",
            avg_price=None if state.avg_price is None else f"{state.avg_price:f}",
            reason=state.reason,
            breaks=list(self._booking.breaks),
        )

    def _closing_soon(self) -> bool:
        """A report settled the order while its submission is unanswered.

        The answer comes, usually, in the same workflow task, after the report (signals are applied first). The
        main line books it once, in the final round, when the submission is answered (at the latest when its
        activity's attempts are spent). Only the submission: a fill that lands while a cancel or an amend waits for
        its broker is booked at once.
        """
        return (
            self._state.is_terminal
            and self._submitting
            and settled_by_report(self._state, self._closing_report, breaks=bool(self._booking.breaks))
        )

    async def _reconcile(self) -> None:
        """Compare the closed order with the broker's record; book missed fills, record breaks."""
        state = self._state
        status: OrderStatusReport | None = None
        try:
            status = await self._broker_call(
                BrokerActivities.get_order_status,
                StatusInput(broker=self._broker, cl_ord_id=state.cl_ord_id),
                attempts=5,
            )
        except ActivityError as e:
            self._booking.last_changes()
            self._booking.add_breaks([Break(kind=BreakKind.RECONCILE_FAILED, detail=cause_of(e))])
            return
        self._booking.last_changes()
        now = workflow.now()
        if status is None:
            self._booking.add_breaks([unknown_at_broker(self._broker, self._state.cl_ord_id)])
            return
        breaks = state.merge_status(status, at=now, final=True)
        self._booking.add_breaks(breaks)
        state.record(
            TimelineKind.RECONCILED,
            at=now,
            detail="matches the broker"
            if not breaks
            else f"{len(breaks)} break(s): " + "; ".join(brk.text for brk in breaks),
        )

    # ---------------------------------------------------------------------------------------- trailing stops

    def _emulates_trail(self) -> bool:
        # The patch is evaluated only for trailing stops (see PATCH_TRAILING_STOP).
        return (
            self._inp.order.type is OrderType.TRAILING_STOP
            and self._cfg.emulates_trailing_stop
            and workflow.patched(PATCH_TRAILING_STOP)
        )

    async def _trail(self, *, resumed: bool = False) -> None:
        """Hold an approved trailing stop until the market crosses its trigger, it is canceled, or it expires.

        One check per ``trail_check_seconds``: a durable timer, then the quote store's price for the order's side
        (a local activity). Only ``TRAIL_ACTIVATED``, ``TRAIL_TRIGGERED`` and a new quote problem go on the
        timeline; the trigger's moves stay in ``state.trail`` (the ``trail`` query shows them live).
        """
        state, cfg = self._state, self._cfg
        r = state.request
        if not resumed:
            state.trail = TrailState()
            how = f"trail {r.trail_amount.normalize():f}" if r.trail_amount is not None else ""
            if r.trail_percent is not None:
                how = f"trail {r.trail_percent.normalize():f}%"
            if r.activation_price is not None:
                how += f" from {r.activation_price.normalize():f}"
            state.apply(
                OrderEventKind.EMULATE,
                at=workflow.now(),
                detail=f"held by Exodus ({how}, checked every {cfg.trail_check_seconds:g}s); "
                f"sent to {self._broker} as a MARKET order when triggered",
            )
            self._booking.legacy_mark()
            self._booking.release()  # booked by the flusher (the order row shows EMULATED)
        expiry = order_expiry(self._state.request, self._cfg)
        while True:
            if self._continue_as_new_due() and self._at_safe_point():
                self._continue_as_new_run("trailing")
            now = workflow.now()
            due = now + timedelta(seconds=cfg.trail_check_seconds)
            if expiry is not None:
                due = min(due, expiry)
            timeout = (due - now).total_seconds()
            if timeout > 0:
                try:
                    await workflow.wait_condition(lambda: self._cancel is not None, timeout=timeout)
                except TimeoutError:
                    pass
            now = workflow.now()
            if self._cancel is not None:
                state.reason = self._cancel.reason
                state.apply(
                    OrderEventKind.CANCEL,
                    at=now,
                    detail="canceled while held by Exodus (never sent)",
                    actor=self._cancel.requested_by,
                )
                self._cancel_sent = True
                return
            if expiry is not None and now + TICK >= expiry:
                state.reason = f"{r.time_in_force.value} expiry reached while held by Exodus (never sent)"
                state.apply(OrderEventKind.EXPIRE, at=now, detail=state.reason, actor="system")
                return
            try:
                quote = await workflow.execute_local_activity_method(
                    RiskActivities.trail_quote,
                    TrailQuoteRequest(symbol=r.symbol, broker=r.broker, side=r.side),
                    start_to_close_timeout=_LOCAL,
                    retry_policy=bounded_retry(3),
                )
            except FailureError as e:
                if isinstance(e, CancelledError):
                    raise
                quote = TrailQuote(source=r.broker, problem=f"the quote could not be read: {cause_of(e)}")
            if self._take_quote(quote):
                return

    def _take_quote(self, quote: TrailQuote) -> bool:
        """One check of the trail against ``quote``; True when it triggered."""
        state = self._state
        trail = state.trail
        assert trail is not None
        now = workflow.now()
        if quote.price is None:
            if quote.problem != trail.problem:
                state.record(TimelineKind.TRAIL_NO_QUOTE, at=now, detail=quote.problem or "no price")
            state.trail = trail.model_copy(update={"checks": trail.checks + 1, "problem": quote.problem})
            return False
        step = follow(state.request, trail, quote.price)
        new = step.trail
        new.last_quote_at = quote.at
        state.trail = new
        price = f"{quote.price.normalize():f}"
        if step.outcome is TrailOutcome.ACTIVATED and state.request.activation_price is not None:
            assert new.trigger is not None
            state.record(
                TimelineKind.TRAIL_ACTIVATED,
                at=now,
                detail=f"{quote.source} {price} reached the activation price; trigger {new.trigger.normalize():f}",
            )
        if step.outcome is TrailOutcome.TRIGGERED:
            assert new.trigger is not None and new.extreme is not None
            new.triggered_at = now
            state.record(
                TimelineKind.TRAIL_TRIGGERED,
                at=now,
                detail=f"{quote.source} {price} crossed the trigger {new.trigger.normalize():f} "
                f"(best {new.extreme.normalize():f}, {new.checks} checks)",
                data={"trigger": f"{new.trigger:f}", "price": f"{quote.price:f}"},
            )
            return True
        return False

    # ---------------------------------------------------------------------------------------- a list's leg

    def _leg_view(self) -> tuple[object, ...]:
        # The booked state: what the list acts on is in the ledger already (a resize's risk check sees the fills).
        s = self._booking.published
        return (s.status, s.filled_qty, s.qty)

    async def _report_to_list(self) -> None:
        """Send the coordinator every change of status or fills (snapshots, in order; a repeat changes nothing)."""
        link = self._inp.parent
        assert link is not None
        handle = workflow.get_external_workflow_handle(link.workflow_id)
        while True:
            await workflow.wait_condition(lambda: self._leg_view() != self._leg_sent)
            view = self._leg_view()
            s = self._booking.published
            denied = s.status is OrderStatus.DENIED and self._decision is not None
            report = LegReport(
                leg=link.leg,
                order_id=s.order_id,
                status=s.status,
                qty=s.qty,
                filled_qty=s.filled_qty,
                avg_price=s.avg_price,
                reason=s.reason,
                reasons=list(self._decision.reasons) if denied and self._decision is not None else [],
            )
            try:
                await handle.signal("leg_report", report)
            except FailureError as e:
                # The coordinator is gone (closed or never started): the order goes on by itself.
                workflow.logger.warning("order %s: no list to report to: %s", s.order_id, e)
            self._leg_sent = view

    # ---------------------------------------------------------------------------------------- helpers

    def _apply_report(self, report: ExecutionReport) -> None:
        was_filled = self._state.status is OrderStatus.FILLED
        outcome = self._state.apply_report(report, at=workflow.now())
        if report.kind is ReportKind.FILL and not was_filled and self._state.status is OrderStatus.FILLED:
            self._closing_report = report
        if outcome is ReportOutcome.OVERFILL:
            self._booking.add_breaks([overfill_break(report)])
        if report.kind is ReportKind.ACCEPTED:
            self._acked = True

    def _apply_reports(self, reports: list[ExecutionReport]) -> None:
        for report in reports:
            self._apply_report(report)

    async def _broker_call(self, method, arg, *, attempts: int = 0):  # type: ignore[no-untyped-def]
        return await workflow.execute_activity_method(
            method,
            arg,
            task_queue=self._cfg.broker_task_queue,
            start_to_close_timeout=timedelta(seconds=self._cfg.broker_call_timeout_seconds),
            heartbeat_timeout=timedelta(seconds=min(10.0, self._cfg.broker_call_timeout_seconds)),
            retry_policy=RetryPolicy(
                initial_interval=timedelta(milliseconds=500),
                backoff_coefficient=2.0,
                maximum_interval=timedelta(seconds=10),
                maximum_attempts=attempts,
                non_retryable_error_types=NON_RETRYABLE_ERROR_TYPES,
            ),
        )

    # ---------------------------------------------------------------------------------------- continue-as-new

    def _continue_as_new_due(self) -> bool:
        if not self._continues_as_new:
            return False
        info = workflow.info()
        return info.is_continue_as_new_suggested() or (
            info.get_current_history_length() >= self._cfg.continue_as_new_events
        )

    def _at_safe_point(self) -> bool:
        """No handler running, no broker call in flight, everything booked."""
        return workflow.all_handlers_finished() and not self._broker_lock.locked() and self._booking.settled()

    def _continue_as_new_run(self, phase: str) -> None:
        carry = OrderCarry(
            state=self._state,
            phase=phase,
            decision=self._decision,
            cancel=self._cancel,
            cancel_sent=self._cancel_sent,
            cancel_sends=self._cancel_sends,
            cancel_sent_at=self._cancel_sent_at,
            breaks=list(self._booking.breaks),
            persisted_events=self._booking.booked[0],
            persisted_fills=self._booking.booked[1],
            persisted_breaks=self._booking.booked[2],
            acked=self._acked,
            immediacy_at=self._immediacy_at,
            next_poll_at=self._next_poll_at,
            poll_backoff=self._poll_backoff,
            last_status=self._booking.last_status,
            generation=self._generation + 1,
        )
        workflow.logger.info(
            "order %s continues as new (run %d, %d history events)",
            self._state.order_id,
            self._generation + 1,
            workflow.info().get_current_history_length(),
        )
        workflow.continue_as_new(
            OrderWorkflowInput(order=self._inp.order, config=self._cfg, carried=carry, parent=self._inp.parent)
        )
