"""The order list's coordinator: one workflow per list (bracket, OCO, OUO, OTO), its legs ordinary order workflows.

::

    POST /order-lists ─update-with-start─▶ OrderListWorkflow ─start child (deterministic id, ABANDON)─▶ OrderWorkflow
                                                 ▲      │ cancel (signal) · resize (activity: the order's amend)
                                                 └──────┴─────────── leg_report (signal) ◀── every leg's order

The list's rules are ``core.contingency``'s table, applied by ``core.orderlist.ListBook``: this workflow only
carries out the book's commands. Legs waiting for their trigger are held here (``EMULATED``) and sent only once
released. A leg's workflow outlives the coordinator (``ParentClosePolicy.ABANDON``): closing or resetting the list
never terminates a live order. The REST call gets the list's risk decision (the ``decision`` update): the decision
of the legs the list starts with (the entry of a bracket or OTO, every leg of an OCO or OUO).

The list's read model (``order_lists``, what ``GET /order-lists/{id}`` answers from once Temporal no longer holds the
list) is written by a local activity after every change of state (patch ``list-read-model``).

Versioning: changes go behind ``workflow.patched``; ``tests/workflows/histories/lists/`` replays the older shapes.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy, SearchAttributePair, TypedSearchAttributes, WorkflowIDReusePolicy
from temporalio.exceptions import ActivityError, FailureError
from temporalio.workflow import ParentClosePolicy

with workflow.unsafe.imports_passed_through():
    from activities.lists import LegAlert, LegResize, ListActivities, ListSave
    from activities.risk import RiskActivities, TrailQuoteRequest
    from core.domain import AmendResult, CancelRequest, OrderStatus, OrderType, workflow_id_for
    from core.legtrigger import TriggerQuote
    from core.orderlist import (
        FLATTEN_LEG,
        LegAmend,
        LegReport,
        ListBook,
        ListCommand,
        ListDecision,
        list_workflow_id,
    )
    from core.temporal import (
        SA_ACCOUNT,
        SA_BROKER,
        SA_CLIENT_ID,
        SA_CLIENT_ORDER_ID,
        SA_LIST_ID,
        SA_STATUS,
        SA_SYMBOL,
    )
    from workflows.order_list_native import PATCH_NATIVE_LISTS, NativeLegs
    from workflows.order_models import ListCarry, ListLink, ListResult, OrderListInput, OrderWorkflowInput

__all__ = ["PATCH_LIST_CONTINUE_AS_NEW", "PATCH_LIST_QUOTE_TRIGGERS", "OrderListWorkflow"]

_ACTIVITY = timedelta(seconds=30)
#: The read model's write: a list keeps going when Postgres is away (the next change writes the row again).
_SAVE_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1), maximum_interval=timedelta(seconds=10), maximum_attempts=6
)
#: Child legs with a price trigger (and trailing-stop legs where the broker has none) are held here once released
#: and sent when the quote store's price meets their trigger (``core.legtrigger``): one quote read per
#: ``OrderConfig.trail_check_seconds`` while any leg waits. Evaluated only for lists that have such a leg.
PATCH_LIST_QUOTE_TRIGGERS = "list-quote-triggers"
#: A long-lived list continues as a new run (carrying its book) once its history reaches the parent leg's
#: ``OrderConfig.continue_as_new_events`` (or the server suggests it). Evaluated only when that is due.
PATCH_LIST_CONTINUE_AS_NEW = "list-continue-as-new"


@workflow.defn(name="OrderListWorkflow")
class OrderListWorkflow:
    """One order list's life: start its legs, follow their reports, apply the rules, until every leg is closed."""

    @workflow.init
    def __init__(self, inp: OrderListInput) -> None:
        """Set up the book before any handler runs."""
        self._inp = inp
        self._book = inp.carried.book if inp.carried is not None else ListBook.new(inp.request)
        self._reports: list[LegReport] = []
        self._cancels: list[CancelRequest] = []
        self._lock = asyncio.Lock()
        #: Patch list-read-model: write the book to ``order_lists`` after each change (``_save``).
        self._saving = False
        self._saved = inp.carried.saved if inp.carried is not None else 0
        self._dirty = False
        #: A list the broker carries itself (patch native-order-lists): ``workflows.order_list_native``.
        self._native: NativeLegs | None = None
        #: Patch list-quote-triggers: the next read of the quote store for the legs held on quotes.
        self._next_check: datetime | None = inp.carried.next_check if inp.carried is not None else None

    # ---------------------------------------------------------------------------------------- handlers

    @workflow.update
    async def decision(self, request_hash: str) -> ListDecision:
        """Wait for and return the list's risk decision (the REST call's answer)."""
        await workflow.wait_condition(lambda: self._book.decision is not None)
        assert self._book.decision is not None
        return self._book.decision

    @workflow.signal
    def leg_report(self, report: LegReport) -> None:
        """A leg's order as it stands (from its workflow)."""
        self._reports.append(report)

    @workflow.signal
    def cancel(self, request: CancelRequest) -> None:
        """Cancel the list: held legs are dropped, working legs canceled."""
        self._cancels.append(request)

    @workflow.update
    async def amend_leg(self, request: LegAmend) -> AmendResult:
        """Change the price, stop price or quantity of a leg still held here (a released leg is amended as an order)."""
        leg = self._book.leg(request.leg)
        problem = self._amend_problem(request)
        if problem is not None:
            return AmendResult(accepted=False, status=leg.status, reason=problem, qty=leg.qty)
        changes = {
            name: value
            for name, value in (("qty", request.qty), ("price", request.price), ("stop_price", request.stop_price))
            if value is not None
        }
        leg.order = leg.order.model_copy(update=changes)
        if request.qty is not None:
            leg.qty = request.qty
        detail = ", ".join(f"{k} {v.normalize():f}" for k, v in changes.items())
        self._book.record(workflow.now(), leg.name, "AMENDED", detail=f"{detail} (by {request.requested_by})")
        self._touch()
        self._dirty = self._saving
        return AmendResult(
            accepted=True, status=leg.status, qty=leg.qty, price=leg.order.price, stop_price=leg.order.stop_price
        )

    @amend_leg.validator
    def _validate_amend(self, request: LegAmend) -> None:
        problem = self._amend_problem(request)
        if problem is not None:
            raise ValueError(problem)

    def _amend_problem(self, request: LegAmend) -> str | None:
        try:
            leg = self._book.leg(request.leg)
        except KeyError:
            return f"no leg {request.leg!r} in list {self._inp.request.list_id}"
        if leg.released:
            return f"leg {leg.name} was released as order {leg.order_id}: amend the order"
        if leg.order.native is not None:
            return f"leg {leg.name} is held by {leg.order.broker} with its list's order (native): it cannot change here"
        if leg.done:
            return f"leg {leg.name} is {leg.status.value}"
        if request.qty is None and request.price is None and request.stop_price is None:
            return "nothing to change: give qty, price or stopPrice"
        if request.qty is not None and leg.role.value in ("CHILD", "EXIT"):
            return "a child leg is sized to its parent's fills: amend the parent's qty"
        if request.price is not None and not leg.order.type.needs_price:
            return f"a {leg.order.type.value} leg has no limit price to change"
        if request.stop_price is not None and not leg.order.type.needs_stop_price:
            return f"a {leg.order.type.value} leg has no stop price to change"
        return None

    @workflow.query
    def state(self) -> ListBook:
        """The list: its legs with their states and the rules that fired, its flags and timeline."""
        return self._book

    # ---------------------------------------------------------------------------------------- main line

    @workflow.run
    async def run(self, inp: OrderListInput) -> ListResult:
        """Start the first legs, then take reports and cancels until every leg is closed."""
        book = self._book
        self._saving = workflow.patched("list-read-model")
        if inp.native and workflow.patched(PATCH_NATIVE_LISTS):
            self._native = NativeLegs(book, inp)
        if inp.carried is None:
            if self._native is None:  # the broker holds a native list's legs; none is held on quotes here
                self._hold_on_quotes()
            await self._carry_out(book.start(workflow.now()))
            self._touch()
            await self._save()
        while not book.done:
            await self._continue_as_new_if_due()
            check_due = await self._wait_for_work()
            async with self._lock:
                woken = bool(self._cancels or self._reports or self._dirty)
                while self._cancels or self._reports:
                    now = workflow.now()
                    if self._cancels:
                        request = self._cancels.pop(0)
                        commands = book.request_cancel(now, reason=request.reason, by=request.requested_by)
                    else:
                        report = self._reports.pop(0)
                        if self._native is not None:
                            commands = await self._native.take(report, self._reports)
                        else:
                            commands = book.take(report, now)
                    await self._carry_out(commands)
                if check_due and await self._check_quotes():
                    woken = True
                if woken:
                    self._touch()
                    await self._save()
        await workflow.wait_condition(workflow.all_handlers_finished)
        return ListResult(
            list_id=inp.request.list_id,
            status=book.status,
            legs={leg.name: leg.status for leg in book.legs},
            flags=list(book.flags),
        )

    # ---------------------------------------------------------------------------------------- legs held on quotes

    def _config(self) -> OrderWorkflowInput:
        inp = self._inp
        return inp.legs.get(inp.request.legs[0].name) or next(iter(inp.legs.values()))

    def _hold_on_quotes(self) -> None:
        """Patch list-quote-triggers, asked only of a list with a leg to hold on quotes."""
        inp = self._inp
        native = {
            name: not leg.config.emulates_trailing_stop
            for name, leg in inp.legs.items()
            if leg.order.type is OrderType.TRAILING_STOP
        }
        triggers = ListBook.quote_legs(inp.request, native_trailing=bool(native) and all(native.values()))
        if triggers and workflow.patched(PATCH_LIST_QUOTE_TRIGGERS):
            self._book.hold_on_quotes(triggers)

    async def _wait_for_work(self) -> bool:
        """Wait for a report, a cancel or an amend; while legs are held on quotes, at most until the next check.

        True when a quote check is due (one per ``trail_check_seconds``, however many reports come meanwhile).
        """

        def work() -> bool:
            return bool(self._reports or self._cancels or self._dirty)

        if not self._book.armed:
            await workflow.wait_condition(work)
            return False
        now = workflow.now()
        if self._next_check is None:
            self._next_check = now
        timeout = (self._next_check - now).total_seconds()
        if timeout > 0 and not work():
            try:
                await workflow.wait_condition(work, timeout=timeout)
            except TimeoutError:
                pass
        return workflow.now() >= self._next_check

    async def _check_quotes(self) -> bool:
        """Read the symbol's quote once and check every armed leg; True when something changed on the list."""
        book = self._book
        if not book.armed:
            return False
        first = book.armed[0].order
        seen = len(book.events)
        try:
            quote = await workflow.execute_local_activity_method(
                RiskActivities.leg_quote,
                TrailQuoteRequest(symbol=first.symbol, broker=first.broker, side=first.side),
                start_to_close_timeout=_ACTIVITY,
                retry_policy=RetryPolicy(maximum_attempts=3),
            )
        except ActivityError as e:
            quote = TriggerQuote(source=first.broker, problem=f"the quote could not be read: {e.cause or e}")
        now = workflow.now()
        self._next_check = now + timedelta(seconds=self._config().config.trail_check_seconds)
        await self._carry_out(book.check_quote(quote, now))
        return len(book.events) != seen

    # ---------------------------------------------------------------------------------------- continue-as-new

    async def _continue_as_new_if_due(self) -> None:
        """Hand the book to a new run once the history is long (patch list-continue-as-new, asked only then)."""
        if self._native is not None:
            return  # a native list's legs live at the broker: its history stays short, and NativeLegs is not carried
        info = workflow.info()
        limit = self._config().config.continue_as_new_events
        if not (info.is_continue_as_new_suggested() or info.get_current_history_length() >= limit):
            return
        if self._reports or self._cancels or self._dirty or not workflow.patched(PATCH_LIST_CONTINUE_AS_NEW):
            return
        await workflow.wait_condition(workflow.all_handlers_finished)
        if self._reports or self._cancels or self._dirty:
            return
        self._book.record(workflow.now(), "list", "CONTINUED", detail=f"{info.get_current_history_length()} events")
        carry = ListCarry(book=self._book, saved=self._saved, next_check=self._next_check)
        workflow.continue_as_new(self._inp.model_copy(update={"carried": carry}))

    def _touch(self) -> None:
        workflow.set_current_details(self._book.summary_line())

    async def _save(self) -> None:
        """Write the book to the read model (patch list-read-model); a write that keeps failing is left to the next."""
        if not self._saving:
            return
        self._dirty = False
        self._saved += 1
        try:
            await workflow.execute_local_activity_method(
                ListActivities.save,
                ListSave(version=self._saved, book=self._book),
                start_to_close_timeout=_ACTIVITY,
                retry_policy=_SAVE_RETRY,
            )
        except ActivityError as e:
            workflow.logger.warning("order list %s: read model not written: %s", self._inp.request.list_id, e)

    async def _carry_out(self, commands: list[ListCommand]) -> None:
        if self._native is not None:
            commands = self._native.route(commands, workflow.now())
        for command in commands:
            if command.kind == "start":
                await self._start_leg(command)
            elif command.kind == "cancel":
                await self._cancel_leg(command)
            elif command.kind == "amend":
                await self._resize_leg(command)
            else:
                await self._alert(command)

    async def _start_leg(self, command: ListCommand) -> None:
        book, inp = self._book, self._inp
        leg = book.leg(command.leg)
        base = inp.legs.get(leg.name) or inp.legs[inp.request.legs[0].name]
        order = leg.order.model_copy(update={"qty": command.qty}) if command.qty is not None else leg.order
        child_input = OrderWorkflowInput(
            order=order,
            config=base.config,
            parent=ListLink(workflow_id=list_workflow_id(inp.request.list_id), leg=leg.name),
        )
        try:
            await workflow.start_child_workflow(
                "OrderWorkflow",
                child_input,
                id=workflow_id_for(order.order_id),
                task_queue=inp.task_queue,
                parent_close_policy=ParentClosePolicy.ABANDON,
                id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
                search_attributes=TypedSearchAttributes(
                    [
                        SearchAttributePair(SA_STATUS, OrderStatus.RECEIVED.value),
                        SearchAttributePair(SA_SYMBOL, order.symbol),
                        SearchAttributePair(SA_CLIENT_ID, order.client_id),
                        SearchAttributePair(SA_CLIENT_ORDER_ID, order.client_order_id),
                        SearchAttributePair(SA_BROKER, order.broker),
                        SearchAttributePair(SA_ACCOUNT, order.account),
                        SearchAttributePair(SA_LIST_ID, inp.request.list_id),
                    ]
                ),
                static_summary=f"{order.summary()} · leg {leg.name} of list {inp.request.list_id}",
            )
        except FailureError as e:
            # Started by an earlier attempt of this step (the id is the leg's): its reports keep coming.
            book.record(workflow.now(), leg.name, "START_FAILED", detail=str(e))
            if leg.name == FLATTEN_LEG:
                book.flags.append(f"FLATTEN_FAILED: {e}")

    async def _cancel_leg(self, command: ListCommand) -> None:
        leg = self._book.leg(command.leg)
        handle = workflow.get_external_workflow_handle(workflow_id_for(leg.order_id))
        request = CancelRequest(requested_by=f"list:{self._inp.request.list_id}", reason=command.detail)
        try:
            await handle.signal("cancel", request)
        except FailureError as e:
            self._book.record(workflow.now(), leg.name, "CANCEL_FAILED", detail=str(e))

    async def _resize_leg(self, command: ListCommand) -> None:
        leg = self._book.leg(command.leg)
        assert command.qty is not None
        try:
            result: AmendResult = await workflow.execute_activity_method(
                ListActivities.resize_leg,
                LegResize(
                    list_id=self._inp.request.list_id,
                    leg=leg.name,
                    workflow_id=workflow_id_for(leg.order_id),
                    qty=command.qty,
                ),
                start_to_close_timeout=_ACTIVITY,
                retry_policy=RetryPolicy(
                    initial_interval=timedelta(seconds=self._inp.resize_retry_seconds),
                    maximum_interval=timedelta(seconds=10),
                    maximum_attempts=20,
                ),
            )
        except ActivityError as e:
            result = AmendResult(accepted=False, status=leg.status, reason=str(e.cause or e), qty=leg.qty)
        if not result.accepted:
            shrink = command.qty < leg.order_qty
            if result.status is not OrderStatus.RECEIVED:
                leg.qty = result.qty  # the size it works with (the next event sizes it again)
            text = f"RESIZE_REFUSED: {leg.name} to {command.qty.normalize():f}: {result.reason}"
            self._book.record(workflow.now(), leg.name, "RESIZE_REFUSED", detail=text)
            if leg.status.is_terminal or shrink:
                # Closed meanwhile, or a shrink the position outran (the next fill shrinks or cancels it again).
                return
            self._book.flags.append(text)

    async def _alert(self, command: ListCommand) -> None:
        parent = self._book.parent
        order = (parent or self._book.legs[0]).order
        await workflow.execute_activity_method(
            ListActivities.alert,
            LegAlert(
                list_id=self._inp.request.list_id,
                leg=command.leg,
                broker=order.broker,
                account=order.account,
                symbol=order.symbol,
                open_qty=command.qty or 0,
                detail=command.detail,
            ),
            start_to_close_timeout=_ACTIVITY,
            retry_policy=RetryPolicy(maximum_interval=timedelta(seconds=30)),
        )
