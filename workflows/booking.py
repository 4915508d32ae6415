"""An order's bookings: what of it is written to Postgres, what is not yet, and the rounds that write it.

The order workflow books its progress (the order row, new timeline events, fills, reconciliation breaks) with
the ``persist_order`` local activity. ``OrderBooking`` does that for it:

* **What is not yet written** is derived from counts: the order's events, fills and breaks present against the
  counts booked so far (``unbooked``). A round books what lies between; once it is in, the state query and the
  Temporal UI show the booked state (``published``, the ``ExodusStatus`` search attribute, the current details),
  so a status seen there is already in the ledger.
* **When a round runs.** A flusher task books whenever something is unbooked, except while writes are held (no
  booking in the workflow task that answers the risk decision: the first goes with the submission's outcome, the
  first report or cancel) and once the order is closing (its final round books the rest).
* **Failures.** A round has bounded attempts; a failed round is retried after a durable pause that doubles up
  to a cap, and the round that goes in after failures carries a ``BOOKING_DELAYED`` break. Cancels and
  submissions never wait for a booking.

Orders started before ``PATCH_BOOKING_BY_COUNTS`` (``workflows.order``) decided when a round runs from marks the
workflow set by hand (``legacy_mark``), and those before ``PATCH_NO_WEDGE`` retried a round without bound and
waited for bookings (``flush``). They keep doing so until they finish, so that their histories replay; with them
gone, both go.

Passed through the workflow sandbox (with the domain and activity modules): it is workflow code all the same,
deterministic, and its methods run in the order workflow's event loop.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import CancelledError, FailureError

from activities.persistence import OrderSnapshot, OrderStoreActivities, PersistInput
from core.domain import Break, BreakKind, OrderState, OrderStatus
from core.temporal import SA_STATUS
from workflows.order_models import OrderCarry, OrderConfig

__all__ = ["OrderBooking", "bounded_retry", "cause_of", "doubling", "snapshot"]

LOCAL_TIMEOUT = timedelta(seconds=10)
#: Unbounded: only orders that replay without ``PATCH_NO_WEDGE`` still use it.
_PERSIST_RETRY = RetryPolicy(initial_interval=timedelta(milliseconds=200), maximum_interval=timedelta(seconds=10))


def bounded_retry(attempts: int) -> RetryPolicy:
    """A local activity's retry policy with ``attempts`` attempts (at least one)."""
    return RetryPolicy(
        initial_interval=timedelta(milliseconds=200),
        backoff_coefficient=2.0,
        maximum_interval=timedelta(seconds=2),
        maximum_attempts=max(attempts, 1),
    )


def doubling(base: float, cap: float, n: int) -> float:
    """``base`` doubled for every step after the first, at most ``cap`` (``n`` >= 1)."""
    return min(base * float(2 ** min(max(n - 1, 0), 30)), cap)


def cause_of(e: BaseException) -> str:
    """The innermost cause of a Temporal failure, as text."""
    cause = getattr(e, "cause", None)
    while cause is not None and getattr(cause, "cause", None) is not None:
        cause = cause.cause
    return str(cause or e)


def snapshot(state: OrderState) -> OrderState:
    """What the state query shows of ``state``.

    The request, events, fills and decision are frozen models and the lists are only ever appended to, so
    fresh lists make a complete snapshot; a deep copy cost ~0.5 ms of worker CPU per order inside the sandbox.
    """
    return state.model_copy(
        update={
            "fills": list(state.fills),
            "events": list(state.events),
            "seen_exec_ids": list(state.seen_exec_ids),
            "flags": list(state.flags),
        }
    )


class OrderBooking:
    """The bookings of one order's workflow run.

    Args:
        state: The order (its events and fills are counted as they grow).
        config: The order's configuration (booking attempts and pauses).
        by_counts: A round runs whenever something is unbooked (``PATCH_BOOKING_BY_COUNTS``); else when the
            workflow marked a change (``legacy_mark``).
        never_blocks: Rounds have bounded attempts and nothing waits for them (``PATCH_NO_WEDGE``).
        carried: What the previous run handed over (continue-as-new): its breaks, and everything booked.
    """

    def __init__(
        self,
        state: OrderState,
        config: OrderConfig,
        *,
        by_counts: bool,
        never_blocks: bool,
        carried: OrderCarry | None = None,
    ) -> None:
        """Start with nothing booked, or with what a continued run carried (everything, at a safe point)."""
        self._state = state
        self._cfg = config
        self.by_counts = by_counts
        self.never_blocks = never_blocks
        #: The order's reconciliation breaks, in the order they were found.
        self.breaks: list[Break] = list(carried.breaks) if carried is not None else []
        #: Events, fills and breaks booked.
        self._booked = (
            (carried.persisted_events, carried.persisted_fills, carried.persisted_breaks) if carried else (0, 0, 0)
        )
        #: The mark of orders that do not book by counts: a change to book since the last round started.
        self._marked = carried is None
        #: No round until released (see the module's docstring).
        self.held = carried is None
        self.writing = False
        self.closing = False
        #: Rounds that failed in a row, since when, the last error, and the break the next round carries.
        self.failures = 0
        self._failed_since: datetime | None = None
        self._error = ""
        self._delayed: Break | None = None
        self.last_status: OrderStatus | None = carried.last_status if carried else None
        #: The state as last booked (what the ``state`` query answers).
        self.published = snapshot(state)
        #: When it answers true, the flusher books nothing for now: the final round will, soon (the order
        #: workflow's leaner history, ``PATCH_LEAN_HISTORY``).
        self.defer: Callable[[], bool] | None = None

    # ------------------------------------------------------------------------------------------ counts

    def _present(self) -> tuple[int, int, int]:
        return len(self._state.events), len(self._state.fills), len(self.breaks)

    @property
    def booked(self) -> tuple[int, int, int]:
        """How many of the order's events, fills and breaks are booked."""
        return self._booked

    def unbooked(self) -> bool:
        """Whether the order has events, fills or breaks that are not booked yet."""
        return self._present() != self._booked

    def settled(self) -> bool:
        """Everything booked, no round in flight or failing (a safe point to continue as new)."""
        marked = self._marked and not self.by_counts
        return not self.writing and not marked and self.failures == 0 and not self.unbooked()

    def add_breaks(self, breaks: list[Break]) -> None:
        """Record breaks (each once), also among the order's flags."""
        for brk in breaks:
            if brk not in self.breaks:
                self.breaks.append(brk)
            if brk.text not in self._state.flags:
                self._state.flags.append(brk.text)

    # ------------------------------------------------------------------------------------------ when

    def release(self) -> None:
        """Let rounds run (the risk decision is answered)."""
        self.held = False

    def legacy_mark(self) -> None:
        """Orders that do not book by counts: the workflow's mark that a change wants a round.

        Orders started by this release decide from counts and ignore it; it stays where the earlier release set
        its mark so that the orders that release started replay the rounds they recorded.
        """
        self._marked = True

    def last_changes(self) -> None:
        """The order is closed and its last changes (the reconciliation's) follow: they go in with the final round.

        Orders that do not book by counts never marked those changes, to the same effect.
        """
        if self.by_counts:
            self.closing = True

    def _due(self) -> bool:
        if self.closing or self.held or (self.defer is not None and self.defer()):
            return False
        return self.unbooked() if self.by_counts else self._marked

    async def flusher(self) -> None:
        """Book changes as they come, apart from the main line (which may be waiting on a broker)."""
        while True:
            await workflow.wait_condition(self._due)
            if not await self.write():
                await self.pause()

    async def pause(self) -> None:
        """A durable timer between failed rounds, doubling up to a cap: never a tight loop."""
        cfg = self._cfg
        await workflow.sleep(doubling(cfg.booking_retry_seconds, cfg.booking_retry_max_seconds, self.failures))

    async def flush(self) -> None:
        """Orders before ``PATCH_NO_WEDGE``: wait until the marked changes are booked."""
        self.held = False
        await workflow.wait_condition(lambda: not self._marked and not self.writing)

    async def finish(self) -> None:
        """Book the closing snapshot; retried after durable pauses until it is in (then the order is done)."""
        self.closing = True
        await workflow.wait_condition(lambda: not self.writing)
        if not self.never_blocks:
            await self.write(final=True)
            return
        while not await self.write(final=True) or self.unbooked():
            if self.failures:
                await self.pause()

    # ------------------------------------------------------------------------------------------ rounds

    async def write(self, *, final: bool = False) -> bool:
        """Book what is not booked yet, and refresh what the state query and the Temporal UI show.

        Returns whether the round went in. A failed round (only with ``never_blocks``; otherwise it is retried
        without bound) leaves everything to the next one; the round that goes in after failures carries a
        ``BOOKING_DELAYED`` break.
        """
        state = self._state
        recovering = self.failures > 0
        if recovering:
            self._delayed = self._delayed_break()
            self.add_breaks([self._delayed])
        present = self._present()
        if present == self._booked and not final:
            self._marked = False
            return True
        (n_events, n_fills, n_breaks), (b_events, b_fills, b_breaks) = present, self._booked
        self.writing = True
        inp = PersistInput(
            snapshot=OrderSnapshot.of(state),
            events=state.events[b_events:n_events],
            fills=state.fills[b_fills:n_fills],
            breaks=self.breaks[b_breaks:n_breaks],
            final=final,
            received_at=state.request.received_at,
            # The closing round records the decision the workflow acted on (an input, not a command).
            decision=state.decision if final else None,
        )
        booked_state = snapshot(state)
        self._marked = False
        retry = bounded_retry(self._cfg.booking_attempts) if self.never_blocks else _PERSIST_RETRY
        try:
            await workflow.execute_local_activity_method(
                OrderStoreActivities.persist_order, inp, start_to_close_timeout=LOCAL_TIMEOUT, retry_policy=retry
            )
        except FailureError as e:
            if not self.never_blocks or isinstance(e, CancelledError):
                raise
            self._failed(e, recovering=recovering)
            return False
        finally:
            self.writing = False
        self._booked = present
        self.published = booked_state
        if recovering:
            self.failures, self._failed_since, self._error = 0, None, ""
        if self.unbooked():
            self._marked = True  # changes that came while the round was in flight
        self._show()
        return True

    def _failed(self, e: FailureError, *, recovering: bool) -> None:
        # The activity counted and logged each attempt; the break goes in with the first round that works.
        if recovering and self._delayed is not None:
            # Not in yet: the round that works carries a fresh one (counts and times up to then).
            if self._delayed in self.breaks:
                self.breaks.remove(self._delayed)
            if self._delayed.text in self._state.flags:
                self._state.flags.remove(self._delayed.text)
        self.failures += 1
        self._failed_since = self._failed_since or workflow.now()
        self._error = cause_of(e)
        self._marked = True
        workflow.logger.error(
            "order %s: booking failed (%d round(s) in a row): %s", self._state.order_id, self.failures, self._error
        )

    def _delayed_break(self) -> Break:
        since = self._failed_since or workflow.now()
        return Break(
            kind=BreakKind.BOOKING_DELAYED,
            detail=f"{self.failures} booking round(s) failed from {since.isoformat(timespec='seconds')} to "
            f"{workflow.now().isoformat(timespec='seconds')}; last error: {self._error}",
        )

    def _show(self) -> None:
        state = self._state
        if state.status != self.last_status:
            workflow.upsert_search_attributes([SA_STATUS.value_set(state.status.value)])
            self.last_status = state.status
        workflow.set_current_details(state.summary_line())
