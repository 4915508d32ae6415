"""The coordinator's native path: a list the broker carries itself (``core.nativelist``; Alpaca's order classes).

The legs are still the list's order workflows, each under its own deterministic client order id, so the broker's
fills and cancels are booked per leg (ledger, risk reservations) and ``GET /order-lists/{id}`` shows them. What
differs from the emulated path (``workflows.order_list``) is who sends and who links the legs:

* the head order (a bracket's or OTO's entry, an OCO's limit) is sent with its legs attached, in one request;
* an attached leg's workflow starts when the book releases it (a bracket's exits on the entry's complete fill,
  like Alpaca activates them; an OCO's stop once its head is acknowledged) and never sends anything: its
  submission finds the broker's leg (the adapter maps it to the leg's client order id) and follows it. An
  attached leg the broker never had is an unknown outcome (looked up again), never a resend;
* the broker sizes and links its legs: the book's resizes of an attached leg are not sent (recorded as
  ``BROKER_SIZED``); the cancels the rules call for still go out (a leg the broker canceled already answers so),
  so that a broker that did not cancel cannot leave two exits working;
* a bracket's exit the broker canceled (its other exit filled, the broker's one-cancels-other) may be reported
  before the other exit's fill reaches the coordinator: the cancel waits (at most ``SIBLING_GRACE``) for the
  other exit's report, which is taken first, so that the book sees the fill that caused it and raises no false
  unprotected-position alert; a cancel whose cause never shows is taken as it is (and alerts);
* an attached leg whose order workflow was denied by risk when released is already live at the broker (the broker
  activated it with its head): the coordinator cancels it there itself (the broker's ``cancel_order`` on the
  broker's task queue, retried while the outcome is unknown), so that nothing fills that no order books;
* an OCO leg held back until its head is acknowledged and canceled meanwhile (the head filled at once, or was
  refused) is closed here, from a report as its order would have sent (the broker cancels it with its head).

Versioning: the coordinator takes this path only for a list marked native (``OrderListInput.native``) and behind
``PATCH_NATIVE_LISTS``, evaluated only for such lists: no older history carries it or replays differently.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from activities.broker import BrokerActivities, CancelInput
    from core.domain import CancelOrder, OrderStatus, cl_ord_id_for
    from core.orderlist import LegReport, LegState, ListBook, ListCommand, ListStatus
    from workflows.order_models import OrderListInput

__all__ = ["PATCH_NATIVE_LISTS", "NativeLegs"]

#: A list the broker carries natively is sent as one order with its legs attached, and its legs followed.
PATCH_NATIVE_LISTS = "native-order-lists"

#: How long a broker's cancel of an exit waits for the other exit's report (see the module docstring).
SIBLING_GRACE = timedelta(seconds=10)

_UNSENT = (OrderStatus.RECEIVED, OrderStatus.SUBMITTED)
_NEVER_ACCEPTED = (OrderStatus.DENIED, OrderStatus.REJECTED)


def _attached(leg: LegState) -> bool:
    native = leg.order.native
    return native is not None and native.held_by is not None


class NativeLegs:
    """Routes the book's commands for a native list (see the module docstring)."""

    def __init__(self, book: ListBook, inp: OrderListInput) -> None:
        """Follow ``book``'s list (its legs are marked by ``core.nativelist``; ``inp``: the legs' configurations)."""
        self._book = book
        self._inp = inp
        heads = [leg for leg in book.legs if leg.order.native is not None and not _attached(leg)]
        self.head = heads[0].name if heads else book.legs[0].name
        #: Starts of attached legs waiting for the head's acknowledgement.
        self.pending: list[ListCommand] = []

    async def take(self, report: LegReport, queue: list[LegReport]) -> list[ListCommand]:
        """Take a leg's report (``queue``: the reports still waiting, from which the other exit's are taken first)."""
        book = self._book
        try:
            leg = book.leg(report.leg)
        except KeyError:
            return book.take(report, workflow.now())
        others = [g for g in book.legs if g.name != leg.name and g.role is leg.role and _attached(g) and not g.done]
        if (
            _attached(leg)
            and report.status is OrderStatus.CANCELED
            and not leg.closing
            and not book.cancel_requested
            and others
        ):
            names = {g.name for g in others}
            try:
                await workflow.wait_condition(lambda: any(r.leg in names for r in queue), timeout=SIBLING_GRACE)
            except TimeoutError:
                pass
            commands: list[ListCommand] = []
            for first in [r for r in queue if r.leg in names]:
                queue.remove(first)
                commands += book.take(first, workflow.now())
            return commands + book.take(report, workflow.now())
        commands = book.take(report, workflow.now())
        if _attached(leg) and report.status is OrderStatus.DENIED:
            await self._cancel_at_broker(leg)
        return commands

    async def _cancel_at_broker(self, leg: LegState) -> None:
        """Cancel at the broker an attached leg whose order workflow never started following it (denied)."""
        book, order = self._book, leg.order
        config = (self._inp.legs.get(leg.name) or next(iter(self._inp.legs.values()))).config
        request = CancelOrder(
            cl_ord_id=cl_ord_id_for(leg.order_id),
            symbol=order.symbol,
            side=order.side,
            qty=leg.qty or order.qty,
            reason=f"leg {leg.name} of list {book.request.list_id} was denied by risk",
        )
        try:
            ack = await workflow.execute_activity_method(
                BrokerActivities.cancel_order,
                CancelInput(broker=order.broker, request=request),
                task_queue=config.broker_task_queue,
                start_to_close_timeout=timedelta(seconds=config.broker_call_timeout_seconds),
                retry_policy=RetryPolicy(maximum_interval=timedelta(seconds=30), maximum_attempts=20),
            )
        except ActivityError as e:
            text = f"BROKER_LEG_LIVE: {leg.name} is denied here but its cancel at {order.broker} failed: {e.cause or e}"
            book.flags.append(text)
            book.record(workflow.now(), leg.name, "BROKER_CANCEL_FAILED", detail=text)
            return
        if ack.accepted or ack.not_found:
            book.record(workflow.now(), leg.name, "BROKER_LEG_CANCELED", detail="the broker's leg is canceled")
            return
        text = f"BROKER_LEG_LIVE: {leg.name} is denied here but {order.broker} did not cancel it: {ack.reason}"
        book.flags.append(text)
        book.record(workflow.now(), leg.name, "BROKER_CANCEL_FAILED", detail=text)

    def route(self, commands: list[ListCommand], now: datetime) -> list[ListCommand]:
        """The commands to carry out: ``commands`` less what the broker does itself, plus starts now due."""
        book = self._book
        head = book.leg(self.head)
        out: list[ListCommand] = []
        closed: list[tuple[LegState, str]] = []
        for command in commands:
            leg = book.leg(command.leg)
            if command.kind == "amend" and _attached(leg):
                book.record(
                    now, leg.name, "BROKER_SIZED", detail=f"not sent: the broker sizes its legs ({command.detail})"
                )
                continue
            if command.kind == "start" and _attached(leg) and head.status in _UNSENT:
                self.pending.append(command)
                continue
            waiting = next((p for p in self.pending if p.leg == command.leg), None)
            if command.kind == "cancel" and waiting is not None:
                self.pending.remove(waiting)
                closed.append((leg, f"canceled with the list's {head.name} by the broker ({command.detail})"))
                continue
            out.append(command)
        if self.pending and head.status not in _UNSENT:
            if head.status in _NEVER_ACCEPTED:
                closed += [
                    (book.leg(p.leg), f"never at the broker: {head.name} was {head.status.value}") for p in self.pending
                ]
            else:
                out += self.pending
            self.pending = []
        for leg, reason in closed:
            leg.released = False  # never started: no order of its own to link to
            report = LegReport(
                leg=leg.name, order_id=leg.order_id, status=OrderStatus.CANCELED, qty=leg.qty, reason=reason
            )
            out += self.route(book.take(report, now), now)
        if book.done and book.status is ListStatus.WORKING:
            book.status = ListStatus.DONE
            book.record(now, "list", "DONE", detail=", ".join(f"{g.name} {g.status.value}" for g in book.legs))
        return out
