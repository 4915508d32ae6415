"""The domain model: the transition table (every pair), order state bookkeeping, identifiers."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from pydantic import BaseModel, ValidationError

from core.domain import (
    ORDER_TRANSITIONS,
    RESUME,
    TERMINAL_STATUSES,
    Break,
    BreakKind,
    BrokerAck,
    CancelOrder,
    ExecutionReport,
    InvalidTransition,
    OrderEvent,
    OrderEventKind,
    OrderSide,
    OrderState,
    OrderStatus,
    OrderStatusReport,
    OrderTerms,
    OrderType,
    PegType,
    ReplaceOrder,
    ReportKind,
    ReportOutcome,
    SubmitOrder,
    TimeInForce,
    TimelineKind,
    TrailState,
    base_order_id,
    cl_ord_id_for,
    derive_order_id,
    revision_of,
    transition,
)
from sim.matching import SimOrder
from tests.harness import make_order

S, E = OrderStatus, OrderEventKind
T0 = datetime(2026, 11, 20, 14, 0, tzinfo=UTC)
D = Decimal

ALL_PAIRS = list(itertools.product(OrderStatus, OrderEventKind))
ALLOWED = [p for p in ALL_PAIRS if p in ORDER_TRANSITIONS]
ILLEGAL = [p for p in ALL_PAIRS if p not in ORDER_TRANSITIONS]


# The table spelled out once more, independently, so a change to it is a deliberate change to both.
EXPECTED = {
    (S.RECEIVED, E.DENY): S.DENIED,
    (S.RECEIVED, E.SUBMIT): S.SUBMITTED,
    (S.RECEIVED, E.CANCEL): S.CANCELED,
    (S.RECEIVED, E.EMULATE): S.EMULATED,
    (S.EMULATED, E.SUBMIT): S.SUBMITTED,
    (S.EMULATED, E.CANCEL): S.CANCELED,
    (S.EMULATED, E.EXPIRE): S.EXPIRED,
    (S.SUBMITTED, E.REQUEST_CANCEL): S.PENDING_CANCEL,
    (S.SUBMITTED, E.ACCEPT): S.ACCEPTED,
    (S.SUBMITTED, E.REJECT): S.REJECTED,
    (S.SUBMITTED, E.TRIGGER): S.TRIGGERED,
    (S.SUBMITTED, E.CANCEL): S.CANCELED,
    (S.SUBMITTED, E.EXPIRE): S.EXPIRED,
    (S.SUBMITTED, E.PARTIAL_FILL): S.PARTIALLY_FILLED,
    (S.SUBMITTED, E.FILL): S.FILLED,
    (S.ACCEPTED, E.TRIGGER): S.TRIGGERED,
    (S.ACCEPTED, E.REQUEST_UPDATE): S.PENDING_UPDATE,
    (S.ACCEPTED, E.REQUEST_CANCEL): S.PENDING_CANCEL,
    (S.ACCEPTED, E.CANCEL): S.CANCELED,
    (S.ACCEPTED, E.EXPIRE): S.EXPIRED,
    (S.ACCEPTED, E.REJECT): S.REJECTED,
    (S.ACCEPTED, E.PARTIAL_FILL): S.PARTIALLY_FILLED,
    (S.ACCEPTED, E.FILL): S.FILLED,
    (S.TRIGGERED, E.REQUEST_UPDATE): S.PENDING_UPDATE,
    (S.TRIGGERED, E.REQUEST_CANCEL): S.PENDING_CANCEL,
    (S.TRIGGERED, E.CANCEL): S.CANCELED,
    (S.TRIGGERED, E.EXPIRE): S.EXPIRED,
    (S.TRIGGERED, E.REJECT): S.REJECTED,
    (S.TRIGGERED, E.PARTIAL_FILL): S.PARTIALLY_FILLED,
    (S.TRIGGERED, E.FILL): S.FILLED,
    (S.PARTIALLY_FILLED, E.PARTIAL_FILL): S.PARTIALLY_FILLED,
    (S.PARTIALLY_FILLED, E.FILL): S.FILLED,
    (S.PARTIALLY_FILLED, E.REQUEST_UPDATE): S.PENDING_UPDATE,
    (S.PARTIALLY_FILLED, E.REQUEST_CANCEL): S.PENDING_CANCEL,
    (S.PARTIALLY_FILLED, E.CANCEL): S.CANCELED,
    (S.PARTIALLY_FILLED, E.EXPIRE): S.EXPIRED,
    (S.PENDING_UPDATE, E.UPDATE): RESUME,
    (S.PENDING_UPDATE, E.UPDATE_REJECTED): RESUME,
    (S.PENDING_UPDATE, E.TRIGGER): S.PENDING_UPDATE,
    (S.PENDING_UPDATE, E.PARTIAL_FILL): S.PENDING_UPDATE,
    (S.PENDING_UPDATE, E.FILL): S.FILLED,
    (S.PENDING_UPDATE, E.REQUEST_CANCEL): S.PENDING_CANCEL,
    (S.PENDING_UPDATE, E.CANCEL): S.CANCELED,
    (S.PENDING_UPDATE, E.EXPIRE): S.EXPIRED,
    (S.PENDING_CANCEL, E.CANCEL): S.CANCELED,
    (S.PENDING_CANCEL, E.CANCEL_REJECTED): RESUME,
    (S.PENDING_CANCEL, E.EXPIRE): S.EXPIRED,
    (S.PENDING_CANCEL, E.TRIGGER): S.PENDING_CANCEL,
    (S.PENDING_CANCEL, E.ACCEPT): S.PENDING_CANCEL,
    (S.PENDING_CANCEL, E.REJECT): S.REJECTED,
    (S.PENDING_CANCEL, E.PARTIAL_FILL): S.PENDING_CANCEL,
    (S.PENDING_CANCEL, E.FILL): S.FILLED,
    (S.CANCELED, E.PARTIAL_FILL): S.CANCELED,
    (S.CANCELED, E.FILL): S.FILLED,
    (S.EXPIRED, E.PARTIAL_FILL): S.EXPIRED,
    (S.EXPIRED, E.FILL): S.FILLED,
}


def test_table_is_exactly_the_documented_one() -> None:
    assert dict(ORDER_TRANSITIONS) == EXPECTED


@pytest.mark.parametrize(("status", "event"), ALLOWED, ids=[f"{s.value}+{e.value}" for s, e in ALLOWED])
def test_every_allowed_transition(status: OrderStatus, event: OrderEventKind) -> None:
    expected = EXPECTED[(status, event)]
    if expected is RESUME:
        for working in (S.ACCEPTED, S.TRIGGERED, S.PARTIALLY_FILLED):
            assert transition(status, event, working=working) is working
        with pytest.raises(ValueError):
            transition(status, event)
    else:
        assert transition(status, event) is expected


@pytest.mark.parametrize(("status", "event"), ILLEGAL, ids=[f"{s.value}+{e.value}" for s, e in ILLEGAL])
def test_every_illegal_transition_raises(status: OrderStatus, event: OrderEventKind) -> None:
    with pytest.raises(InvalidTransition) as info:
        transition(status, event, working=S.ACCEPTED)
    assert info.value.status is status and info.value.event is event


def test_filled_denied_and_rejected_take_no_event_at_all() -> None:
    for status in (S.FILLED, S.DENIED, S.REJECTED):
        assert not any(s is status for s, _ in ORDER_TRANSITIONS)


def test_terminal_statuses() -> None:
    assert TERMINAL_STATUSES == {S.DENIED, S.REJECTED, S.FILLED, S.CANCELED, S.EXPIRED}
    assert all(s.is_terminal for s in TERMINAL_STATUSES)


# ------------------------------------------------------------------------------------------------ state


def _state(qty: str = "100") -> OrderState:
    state = OrderState.new(make_order(qty=qty, type="LIMIT", price="10.00"), at=T0)
    state.apply(E.SUBMIT, at=T0)
    return state


def _report(
    state: OrderState, kind: ReportKind, exec_id: str, qty: str = "0", price: str | None = None, **kw: object
) -> ExecutionReport:
    return ExecutionReport(
        broker="paper",
        exec_id=exec_id,
        kind=kind,
        cl_ord_id=state.cl_ord_id,
        symbol=state.request.symbol,
        side=state.request.side,
        last_qty=D(qty),
        last_price=None if price is None else D(price),
        transact_at=T0,
        **kw,  # type: ignore[arg-type]
    )


def test_fills_accumulate_with_average_price_and_events() -> None:
    state = _state()
    assert state.apply_report(_report(state, ReportKind.ACCEPTED, "e1"), at=T0) is ReportOutcome.APPLIED
    state.apply_report(_report(state, ReportKind.FILL, "e2", "40", "10.00"), at=T0)
    assert state.status is S.PARTIALLY_FILLED and state.leaves_qty == D(60)
    state.apply_report(_report(state, ReportKind.FILL, "e3", "60", "10.50"), at=T0)
    assert state.status is S.FILLED and state.filled_qty == D(100)
    assert state.avg_price == D("10.30")
    assert [e.kind for e in state.events] == ["RECEIVED", "SUBMIT", "ACCEPT", "PARTIAL_FILL", "FILL"]
    assert [e.seq for e in state.events] == [1, 2, 3, 4, 5]
    assert len(state.fills) == 2


def test_duplicate_report_is_ignored() -> None:
    state = _state()
    fill = _report(state, ReportKind.FILL, "e1", "10", "10.00")
    assert state.apply_report(fill, at=T0) is ReportOutcome.APPLIED
    assert state.apply_report(fill, at=T0) is ReportOutcome.DUPLICATE
    assert state.filled_qty == D(10) and len(state.fills) == 1


def test_overfill_is_refused_and_flagged() -> None:
    state = _state("10")
    state.apply_report(_report(state, ReportKind.FILL, "e1", "8", "10.00"), at=T0)
    assert state.apply_report(_report(state, ReportKind.FILL, "e2", "5", "10.00"), at=T0) is ReportOutcome.OVERFILL
    assert state.filled_qty == D(8) and len(state.fills) == 1
    assert state.flags and "OVERFILL" in state.flags[0]


def test_partial_fill_during_pending_cancel_keeps_the_cancel_pending_and_resumes_partially_filled() -> None:
    state = _state()
    state.apply_report(_report(state, ReportKind.ACCEPTED, "e1"), at=T0)
    state.apply(E.REQUEST_CANCEL, at=T0)
    state.apply_report(_report(state, ReportKind.FILL, "e2", "30", "10.00"), at=T0)
    assert state.status is S.PENDING_CANCEL and state.filled_qty == D(30)
    state.apply_report(_report(state, ReportKind.CANCEL_REJECTED, "e3", reason="TOO_LATE"), at=T0)
    assert state.status is S.PARTIALLY_FILLED


def test_cancel_confirmation_during_expiry_ends_expired() -> None:
    state = _state()
    state.apply_report(_report(state, ReportKind.ACCEPTED, "e1"), at=T0)
    state.expiring = True
    state.apply(E.REQUEST_CANCEL, at=T0)
    state.apply_report(_report(state, ReportKind.CANCELED, "e2"), at=T0)
    assert state.status is S.EXPIRED


def test_late_fill_after_cancel_is_booked() -> None:
    state = _state()
    state.apply_report(_report(state, ReportKind.ACCEPTED, "e1"), at=T0)
    state.apply_report(_report(state, ReportKind.CANCELED, "e2"), at=T0)
    state.apply_report(_report(state, ReportKind.FILL, "e3", "20", "10.00"), at=T0)
    assert state.status is S.CANCELED and state.filled_qty == D(20) and len(state.fills) == 1
    state.apply_report(_report(state, ReportKind.FILL, "e4", "80", "10.00"), at=T0)
    assert state.status is S.FILLED


def test_a_report_that_does_not_fit_the_status_is_recorded_not_raised() -> None:
    state = _state("10")
    state.apply_report(_report(state, ReportKind.FILL, "e1", "10", "10.00"), at=T0)
    assert state.apply_report(_report(state, ReportKind.CANCELED, "e2"), at=T0) is ReportOutcome.IGNORED
    assert state.status is S.FILLED and state.events[-1].kind == "REPORT_IGNORED"


def test_replaced_report_takes_the_new_terms_and_revision() -> None:
    state = _state()
    state.apply_report(_report(state, ReportKind.ACCEPTED, "e1"), at=T0)
    state.apply(E.REQUEST_UPDATE, at=T0)
    replaced = _report(state, ReportKind.REPLACED, "e2", new_qty=D(150), new_price=D("10.10")).model_copy(
        update={"cl_ord_id": f"{state.order_id}.1"}
    )
    state.apply_report(replaced, at=T0)
    assert state.status is S.ACCEPTED and state.qty == D(150) and state.price == D("10.10") and state.revision == 1
    assert state.cl_ord_id == f"{state.order_id}.1"


def test_merge_status_books_missed_fills_and_reports_breaks() -> None:
    state = _state()
    state.apply_report(_report(state, ReportKind.ACCEPTED, "e1"), at=T0)
    missed = _report(state, ReportKind.FILL, "e2", "100", "10.00")
    report = OrderStatusReport(
        broker="paper",
        cl_ord_id=state.order_id,
        broker_order_id="V1",
        status=S.FILLED,
        qty=D(100),
        cum_qty=D(100),
        reports=[missed],
    )
    assert state.merge_status(report, at=T0, final=True) == []
    assert state.status is S.FILLED and len(state.fills) == 1
    # A fill we booked that the broker does not know about is a break.
    state2 = _state()
    state2.apply_report(_report(state2, ReportKind.FILL, "X", "100", "10.00"), at=T0)
    report2 = report.model_copy(update={"reports": [missed.model_copy(update={"cl_ord_id": state2.order_id})]})
    breaks = state2.merge_status(report2, at=T0, final=True)
    assert {b.kind for b in breaks} >= {BreakKind.OVERFILL, BreakKind.UNKNOWN_FILL}
    assert all(b.text in state2.flags for b in breaks)


def test_merge_status_applies_a_terminal_broker_status_we_missed() -> None:
    state = _state()
    state.apply_report(_report(state, ReportKind.ACCEPTED, "e1"), at=T0)
    report = OrderStatusReport(
        broker="paper",
        cl_ord_id=state.order_id,
        broker_order_id="V1",
        status=S.CANCELED,
        qty=D(100),
        cum_qty=D(0),
    )
    assert state.merge_status(report, at=T0) == []
    assert state.status is S.CANCELED


def test_summary_line_reads_like_a_blotter_row() -> None:
    state = _state()
    state.apply_report(_report(state, ReportKind.FILL, "e1", "40", "10.00"), at=T0 + timedelta(seconds=1))
    line = state.summary_line()
    assert line.startswith("BUY 100 AAPL LIMIT 10 GTC · PARTIALLY_FILLED 40/100 @ 10")
    assert "paper" in line and state.request.client_order_id in line


# ------------------------------------------------------------------------------------------------ ids


def test_order_ids_are_stable_short_and_distinct() -> None:
    a, b = derive_order_id("desk/order/1"), derive_order_id("desk/order/2")
    assert a == derive_order_id("desk/order/1") and a != b
    assert len(a) == 18 and a.startswith("EX")


def test_replacement_cl_ord_ids_map_back() -> None:
    oid = derive_order_id("k")
    assert cl_ord_id_for(oid) == oid
    assert cl_ord_id_for(oid, 2) == f"{oid}.2"
    assert base_order_id(f"{oid}.2") == oid and revision_of(f"{oid}.2") == 2 and revision_of(oid) == 0


# ---------------------------------------------------------------------------------------------- issue 19 shapes

_REPORT = {"broker": "paper", "exec_id": "e1", "kind": "ACCEPTED", "symbol": "AAPL", "side": "BUY", "transact_at": T0}
_TERMS = {"account": "a-1", "symbol": "AAPL", "side": "BUY", "type": "LIMIT", "time_in_force": "GTC", "qty": "5"}


@pytest.mark.parametrize(
    ("model", "fields", "renames"),
    [
        (ExecutionReport, _REPORT, {"client_order_id": "cl_ord_id"}),
        (BrokerAck, {"accepted": True}, {"client_order_id": "cl_ord_id"}),
        (
            OrderStatusReport,
            {"broker": "paper", "broker_order_id": None, "status": "ACCEPTED", "qty": "5", "cum_qty": "0"},
            {"client_order_id": "cl_ord_id"},
        ),
        (SubmitOrder, _TERMS | {"price": "10"}, {"client_order_id": "cl_ord_id"}),
        (CancelOrder, {"symbol": "AAPL", "side": "BUY", "qty": "5"}, {"client_order_id": "cl_ord_id"}),
        (
            ReplaceOrder,
            _TERMS | {"price": "10"},
            {"orig_client_order_id": "orig_cl_ord_id", "client_order_id": "cl_ord_id"},
        ),
        (
            SimOrder,
            _TERMS | {"price": "10", "venue_order_id": "v1", "created_at": T0, "updated_at": T0},
            {"client_order_id": "cl_ord_id", "client_order_ids": "cl_ord_ids"},
        ),
    ],
    ids=lambda v: v.__name__ if isinstance(v, type) else None,
)
def test_the_broker_facing_id_loads_under_either_name_and_is_written_under_its_old_one(
    model: type[BaseModel], fields: dict[str, object], renames: dict[str, str]
) -> None:
    # Payloads and journals of earlier releases carry the old names; a worker of the previous release (a rolling
    # upgrade, a rollback) reads only the old names, so this release still writes them.
    values = {old: (["X.1"] if old.endswith("ids") else "X.1") for old in renames}
    old = model.model_validate(fields | values)
    new = model.model_validate(fields | {renames[k]: v for k, v in values.items()})
    assert old == new
    for old_name, new_name in renames.items():
        assert getattr(new, new_name) == values[old_name]
    written = new.model_dump(mode="json")
    assert set(renames) <= set(written) and not set(renames.values()) & set(written)
    assert model.model_validate_json(new.model_dump_json()) == new


def test_a_break_is_typed_and_travels_as_its_text() -> None:
    brk = Break(kind=BreakKind.QTY_MISMATCH, detail="broker reports 5 filled, the ledger 3")
    assert brk.text == "QTY_MISMATCH: broker reports 5 filled, the ledger 3" == str(brk)
    assert brk.model_dump() == brk.text and Break.model_validate(brk.text) == brk  # as earlier releases wrote it
    with pytest.raises(ValidationError):
        Break.model_validate("NOT_A_KIND: whatever")


def test_timeline_kinds_load_typed_and_nothing_else_loads() -> None:
    def event(kind: str) -> OrderEvent:
        return OrderEvent.model_validate({"seq": 1, "at": T0, "kind": kind, "status": "ACCEPTED"})

    assert event("ACCEPT").kind is OrderEventKind.ACCEPT
    assert event("REPORT_IGNORED").kind is TimelineKind.REPORT_IGNORED
    assert not set(OrderEventKind) & set(TimelineKind)  # a kind is one or the other, never both
    with pytest.raises(ValidationError):
        event("SOMETHING_ELSE")


def test_the_order_state_builds_every_broker_command_from_its_current_terms() -> None:
    order = make_order(type="PEGGED", peg_type=PegType.MIDPOINT, peg_offset=D("0.01"), time_in_force="GTC")
    state = OrderState.new(order, at=T0)
    submit = state.submit_order()
    assert submit.cl_ord_id == order.order_id and submit.terms() == order.terms()
    state.revision, state.qty, state.broker_order_id = 1, D(20), "B-1"
    replace = state.replace_order(qty=D(30), price=None, stop_price=None)
    assert (replace.orig_cl_ord_id, replace.cl_ord_id) == (f"{order.order_id}.1", f"{order.order_id}.2")
    assert replace.terms() == order.terms(qty=D(30)) and replace.broker_order_id == "B-1"
    cancel = state.cancel_order("desk asked")
    assert (cancel.cl_ord_id, cancel.broker_order_id, cancel.qty) == (f"{order.order_id}.1", "B-1", D(20))
    assert state.submit_order().terms() == order.terms(qty=D(20))  # a resend asks for the current terms


# -- trailing stops' terms ------------------------------------------------------------------------------------


def _trailing(**changes: object) -> list[tuple[str, str | None]]:
    values: dict[str, object] = {
        "account": "a",
        "symbol": "AAPL",
        "side": "SELL",
        "type": "TRAILING_STOP",
        "time_in_force": "GTC",
        "qty": "5",
    }
    values.update(changes)
    return [(r.code, r.field) for r in OrderTerms.model_validate(values).problems()]


def test_a_trailing_stop_takes_exactly_one_trail() -> None:
    assert _trailing(trail_amount="1") == []
    assert _trailing(trail_percent="2.5", activation_price="200") == []
    assert _trailing() == [("TRAIL_REQUIRED", "trailAmount")]
    assert _trailing(trail_amount="1", trail_percent="1") == [("TRAIL_CONFLICT", "trailPercent")]
    assert _trailing(trail_amount="1", price="10") == [("PRICE_NOT_ALLOWED", "price")]
    assert _trailing(trail_amount="1", stop_price="10") == [("STOP_PRICE_NOT_ALLOWED", "stopPrice")]
    assert _trailing(trail_amount="1", time_in_force="IOC") == [("TIME_IN_FORCE_NOT_ALLOWED", "timeInForce")]


def test_only_a_trailing_stop_takes_a_trail() -> None:
    assert _trailing(type="MARKET", trail_amount="1") == [("TRAIL_NOT_ALLOWED", "trailAmount")]
    assert _trailing(type="STOP", stop_price="9", activation_price="10") == [("TRAIL_NOT_ALLOWED", "activationPrice")]


def test_an_emulated_trailing_stop_goes_to_the_broker_as_a_market_order() -> None:
    request = make_order(side="SELL", type="TRAILING_STOP", trail_amount=Decimal(1))
    state = OrderState.new(request, at=T0)
    state.trail = TrailState(activated=True, extreme=Decimal(10), trigger=Decimal(9))
    sent = state.submit_order()
    assert sent.type is OrderType.MARKET and sent.trail_amount is None and sent.cl_ord_id == request.order_id


def _terms(**changes: object) -> OrderTerms:
    values: dict[str, object] = {
        "account": "a",
        "symbol": "AAPL",
        "side": OrderSide.BUY,
        "type": OrderType.MARKET,
        "time_in_force": TimeInForce.GTC,
        "qty": Decimal(1),
    }
    values.update(changes)
    return OrderTerms.model_validate(values)


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"type": OrderType.MARKET_IF_TOUCHED}, [("STOP_PRICE_REQUIRED", "stopPrice")]),
        (
            {"type": OrderType.MARKET_IF_TOUCHED, "stop_price": Decimal(99), "price": Decimal(98)},
            [("PRICE_NOT_ALLOWED", "price")],
        ),
        ({"type": OrderType.LIMIT_IF_TOUCHED, "stop_price": Decimal(99)}, [("PRICE_REQUIRED", "price")]),
        ({"type": OrderType.LIMIT_IF_TOUCHED, "price": Decimal(99)}, [("STOP_PRICE_REQUIRED", "stopPrice")]),
        ({"type": OrderType.MARKET_IF_TOUCHED, "stop_price": Decimal(99)}, []),
        (
            {
                "type": OrderType.MARKET_IF_TOUCHED,
                "stop_price": Decimal(99),
                "time_in_force": TimeInForce.GTD,
                "expire_at": datetime(2030, 1, 1, tzinfo=UTC),
            },
            [],  # unlike a MARKET order, a touched order rests until it triggers: GTD is fine
        ),
        ({"type": OrderType.LIMIT_IF_TOUCHED, "price": Decimal(98), "stop_price": Decimal(99)}, []),
        ({"time_in_force": TimeInForce.OPG}, []),
        ({"time_in_force": TimeInForce.CLS, "type": OrderType.LIMIT, "price": Decimal(98)}, []),
        (
            {"time_in_force": TimeInForce.CLS, "type": OrderType.STOP, "stop_price": Decimal(98)},
            [("TIME_IN_FORCE_NOT_ALLOWED", "timeInForce")],
        ),
        (
            {"time_in_force": TimeInForce.OPG, "type": OrderType.MARKET_IF_TOUCHED, "stop_price": Decimal(98)},
            [("TIME_IN_FORCE_NOT_ALLOWED", "timeInForce")],
        ),
    ],
)
def test_touched_orders_take_a_trigger_price_and_a_limit_only_if_limit_if_touched(
    changes: dict[str, object], expected: list[tuple[str, str]]
) -> None:
    problems = _terms(**changes).problems()
    assert [(p.code, p.field) for p in problems] == expected


def test_touched_types_trigger_in_the_orders_favour_and_stops_against_it() -> None:
    assert OrderType.MARKET_IF_TOUCHED.is_touched and OrderType.LIMIT_IF_TOUCHED.is_touched
    assert not OrderType.STOP.is_touched and not OrderType.STOP_LIMIT.is_touched
    assert OrderType.LIMIT_IF_TOUCHED.limit_once_triggered and not OrderType.MARKET_IF_TOUCHED.limit_once_triggered
