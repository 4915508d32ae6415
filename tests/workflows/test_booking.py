"""``workflows/booking.py``: what of an order is not booked yet is derived from counts, not from marks.

The rounds themselves (a local activity in the workflow) are exercised by the workflow tests
(``test_order.py``, ``test_faults.py``, ``test_continue_as_new.py``); these check the counting on its own.
"""

from __future__ import annotations

from datetime import UTC, datetime

from core.domain import Break, BreakKind, OrderState, TimelineKind
from tests.harness import make_order
from workflows.booking import OrderBooking
from workflows.order_models import OrderCarry, OrderConfig

CONFIG = OrderConfig(broker_task_queue="nowhere")


def _state() -> OrderState:
    return OrderState.new(make_order(), at=datetime.now(UTC))


def _carried(state: OrderState, *, by_counts: bool = True) -> OrderBooking:
    # A continued run: it starts with everything its predecessor booked (the one RECEIVED event).
    carry = OrderCarry(state=state, persisted_events=len(state.events))
    return OrderBooking(state, CONFIG, by_counts=by_counts, never_blocks=True, carried=carry)


def test_a_new_run_has_its_received_event_unbooked_and_holds_rounds_until_released() -> None:
    booking = OrderBooking(_state(), CONFIG, by_counts=True, never_blocks=True)
    assert booking.booked == (0, 0, 0) and booking.unbooked() and not booking.settled()
    assert booking.held and not booking._due()
    booking.release()
    assert booking._due()


def test_what_is_unbooked_follows_the_orders_events_and_breaks() -> None:
    state = _state()
    booking = _carried(state)
    assert booking.booked == (1, 0, 0) and not booking.unbooked() and booking.settled() and not booking._due()
    state.record(TimelineKind.CANCEL_REQUESTED, at=datetime.now(UTC), detail="by the desk")
    assert booking.unbooked() and booking._due() and not booking.settled()


def test_a_break_is_kept_once_and_shown_among_the_flags_once() -> None:
    state = _state()
    booking = _carried(state)
    brk = Break(kind=BreakKind.QTY_MISMATCH, detail="broker reports 5 filled, the ledger 3")
    booking.add_breaks([brk])
    booking.add_breaks([brk, Break.model_validate(brk.text)])
    assert booking.breaks == [brk] and state.flags == [brk.text]
    assert booking.unbooked()


def test_a_mark_by_hand_decides_only_for_runs_of_the_earlier_release() -> None:
    by_counts, legacy = _carried(_state()), _carried(_state(), by_counts=False)
    for booking in (by_counts, legacy):
        booking.legacy_mark()
    # Nothing is unbooked: a run by counts has nothing to do; an earlier release's run books on its mark.
    assert not by_counts._due() and by_counts.settled()
    assert legacy._due() and not legacy.settled()


def test_once_closing_a_run_by_counts_leaves_the_last_changes_to_the_final_round() -> None:
    state = _state()
    by_counts, legacy = _carried(state), _carried(state, by_counts=False)
    by_counts.last_changes()
    legacy.last_changes()
    state.record(TimelineKind.RECONCILED, at=datetime.now(UTC))
    assert by_counts.closing and not by_counts._due()
    assert not legacy.closing
