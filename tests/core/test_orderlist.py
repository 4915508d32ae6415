"""The order list's book: leg reports in, commands out (the coordinator only carries them out)."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from core.contingency import Contingency, LegRole, TriggerMode
from core.domain import OrderRequest, OrderSide, OrderStatus, OrderType, RiskReason, TimeInForce
from core.orderlist import (
    FLATTEN_LEG,
    LegReport,
    LegSpec,
    ListBook,
    ListCommand,
    ListStatus,
    OrderListRequest,
    OrderListSpec,
    leg_order_id,
    list_problems,
)

AT = datetime(2026, 1, 5, 15, 0, tzinfo=UTC)
S = OrderStatus


def order(name: str, side: str = "BUY", qty: str = "100", type: str = "LIMIT", **terms: object) -> OrderRequest:
    return OrderRequest(
        account="desk-1",
        symbol="AAPL",
        side=OrderSide(side),
        type=OrderType(type),
        time_in_force=TimeInForce.GTC,
        qty=Decimal(qty),
        order_id=leg_order_id("k", name),
        idempotency_key=f"k#{name}",
        request_hash="h",
        client_id="desk-1",
        client_order_id=f"l1.{name}",
        broker="paper",
        received_at=AT,
        **terms,  # type: ignore[arg-type]
    )


def bracket(trigger: TriggerMode = TriggerMode.FULL, **spec: object) -> OrderListRequest:
    return OrderListRequest(
        list_id="LS1",
        idempotency_key="k",
        request_hash="h",
        client_id="desk-1",
        client_list_id="l1",
        received_at=AT,
        contingency=Contingency.BRACKET,
        trigger=trigger,
        legs=[
            LegSpec(name="entry", role=LegRole.PARENT, order=order("entry", price=Decimal(100))),
            LegSpec(name="tp", role=LegRole.EXIT, order=order("tp", "SELL", price=Decimal(110))),
            LegSpec(name="sl", role=LegRole.EXIT, order=order("sl", "SELL", type="STOP", stop_price=Decimal(95))),
        ],
        **spec,  # type: ignore[arg-type]
    )


def linked(contingency: Contingency) -> OrderListRequest:
    return OrderListRequest(
        list_id="LS2",
        idempotency_key="k",
        request_hash="h",
        client_id="desk-1",
        client_list_id="l2",
        received_at=AT,
        contingency=contingency,
        legs=[
            LegSpec(name="a", role=LegRole.MEMBER, order=order("a", "SELL", price=Decimal(110))),
            LegSpec(name="b", role=LegRole.MEMBER, order=order("b", "SELL", type="STOP", stop_price=Decimal(95))),
        ],
    )


def report(book: ListBook, leg: str, status: OrderStatus, filled: str = "0", **kw: object) -> list[ListCommand]:
    g = book.leg(leg)
    return book.take(
        LegReport(leg=leg, order_id=g.order_id, status=status, qty=g.qty, filled_qty=Decimal(filled), **kw),  # type: ignore[arg-type]
        AT,
    )


def kinds(commands: list[ListCommand]) -> list[tuple[str, str, str | None]]:
    return [(c.kind, c.leg, None if c.qty is None else f"{c.qty.normalize():f}") for c in commands]


def test_a_bracket_starts_with_its_entry_and_holds_its_exits() -> None:
    book = ListBook.new(bracket())
    assert kinds(book.start(AT)) == [("start", "entry", "100")]
    assert [g.shown_status for g in book.legs] == ["RECEIVED", "EMULATED", "EMULATED"]
    assert book.decision is None
    assert report(book, "entry", S.SUBMITTED) == []
    assert book.decision is not None and book.decision.approved and book.status is ListStatus.WORKING


def test_full_trigger_children_wait_then_follow_the_fills_and_the_take_profit_cancels_the_stop() -> None:
    book = ListBook.new(bracket())
    book.start(AT)
    report(book, "entry", S.ACCEPTED)
    assert report(book, "entry", S.PARTIALLY_FILLED, "40") == []  # full trigger: children wait
    assert kinds(report(book, "entry", S.FILLED, "100")) == [("start", "tp", "100"), ("start", "sl", "100")]
    report(book, "tp", S.ACCEPTED)
    report(book, "sl", S.ACCEPTED)
    # OUO: a partial take-profit reduces the stop by as much
    assert kinds(report(book, "tp", S.PARTIALLY_FILLED, "30")) == [("amend", "sl", "70")]
    assert kinds(report(book, "tp", S.FILLED, "100")) == [("cancel", "sl", None)]
    assert book.leg("tp").rules == ["exit-partly-filled:others-reduced", "exit-filled:others-canceled"]
    assert report(book, "sl", S.CANCELED) == []  # our cancel: no alert
    assert book.status is ListStatus.DONE and not book.flags


def test_partial_trigger_releases_children_sized_to_the_fills_and_resizes_them() -> None:
    book = ListBook.new(bracket(TriggerMode.PARTIAL))
    book.start(AT)
    report(book, "entry", S.ACCEPTED)
    assert kinds(report(book, "entry", S.PARTIALLY_FILLED, "40")) == [("start", "tp", "40"), ("start", "sl", "40")]
    report(book, "tp", S.ACCEPTED)
    assert kinds(report(book, "tp", S.PARTIALLY_FILLED, "10")) == [("amend", "sl", "30")]
    # the entry fills on: each exit covers what it filled plus the open position (100 - 10)
    assert kinds(report(book, "entry", S.FILLED, "100")) == [("amend", "tp", "100"), ("amend", "sl", "90")]


def test_a_parent_that_ends_unfilled_drops_its_children_and_one_partly_filled_keeps_them_sized() -> None:
    book = ListBook.new(bracket())
    book.start(AT)
    report(book, "entry", S.ACCEPTED)
    assert report(book, "entry", S.CANCELED) == []
    assert [g.status for g in book.legs] == [S.CANCELED, S.CANCELED, S.CANCELED]
    assert book.status is ListStatus.DONE

    book = ListBook.new(bracket())
    book.start(AT)
    report(book, "entry", S.PARTIALLY_FILLED, "25")
    assert kinds(report(book, "entry", S.EXPIRED, "25")) == [("start", "tp", "25"), ("start", "sl", "25")]
    assert book.leg("entry").rules[-1] == "parent-expire-partly-filled:children-sized-to-fills"


def test_a_rejected_stop_loss_with_the_position_open_raises_the_alert_and_can_flatten() -> None:
    book = ListBook.new(bracket(flatten_on_unprotected=True))
    book.start(AT)
    report(book, "entry", S.FILLED, "100")
    commands = report(book, "sl", S.REJECTED, reason="stop price on the wrong side")
    assert kinds(commands) == [("alert", "sl", "100"), ("cancel", "tp", None), ("start", FLATTEN_LEG, "100")]
    assert book.unprotected == 1 and book.flags[0].startswith("UNPROTECTED: sl REJECTED")
    flatten = book.leg(FLATTEN_LEG).order
    assert (flatten.side, flatten.type, flatten.qty, flatten.reduce_only) == (
        OrderSide.SELL,
        OrderType.MARKET,
        Decimal(100),
        True,
    )
    assert flatten.order_id == leg_order_id("k", FLATTEN_LEG)


def test_no_alert_without_an_open_position_or_after_our_own_cancel() -> None:
    book = ListBook.new(bracket())
    book.start(AT)
    report(book, "entry", S.FILLED, "100")
    report(book, "tp", S.FILLED, "100")
    assert report(book, "sl", S.CANCELED) == []
    book = ListBook.new(bracket())
    book.start(AT)
    report(book, "entry", S.FILLED, "100")
    assert kinds(book.request_cancel(AT, reason="desk", by="me")) == [("cancel", "tp", None), ("cancel", "sl", None)]
    assert report(book, "sl", S.CANCELED) == [] and book.unprotected == 0


def test_both_oco_legs_filled_in_one_step_are_booked_and_flagged() -> None:
    book = ListBook.new(linked(Contingency.OCO))
    assert kinds(book.start(AT)) == [("start", "a", "100"), ("start", "b", "100")]
    report(book, "a", S.ACCEPTED)
    report(book, "b", S.ACCEPTED)
    assert kinds(report(book, "a", S.FILLED, "100")) == [("cancel", "b", None)]
    assert report(book, "b", S.FILLED, "100") == []  # the cancel lost the race
    assert book.leg("b").filled_qty == 100
    assert book.flags == ["OVERFILL: more than one OCO leg filled (a 100, b 100)"]


def test_ouo_reduces_the_other_leg() -> None:
    book = ListBook.new(linked(Contingency.OUO))
    book.start(AT)
    report(book, "a", S.ACCEPTED)
    report(book, "b", S.ACCEPTED)
    assert kinds(report(book, "a", S.PARTIALLY_FILLED, "60")) == [("amend", "b", "40")]
    assert kinds(report(book, "a", S.FILLED, "100")) == [("cancel", "b", None)]


def test_a_denied_leg_denies_the_list_and_drops_the_others() -> None:
    book = ListBook.new(linked(Contingency.OCO))
    book.start(AT)
    report(book, "a", S.SUBMITTED)
    denied = [RiskReason(code="MAX_NOTIONAL", message="too big", field="qty")]
    assert kinds(report(book, "b", S.DENIED, reason="too big", reasons=denied)) == [("cancel", "a", None)]
    assert book.decision is not None and not book.decision.approved
    assert book.decision.reasons[0].message == "b: too big" and book.status is ListStatus.DENIED

    book = ListBook.new(bracket())
    book.start(AT)
    assert report(book, "entry", S.DENIED, reasons=denied) == []
    assert book.status is ListStatus.DENIED and book.done


def test_repeated_reports_change_nothing() -> None:
    book = ListBook.new(bracket())
    book.start(AT)
    report(book, "entry", S.FILLED, "100")
    events = len(book.events)
    assert report(book, "entry", S.FILLED, "100") == []
    assert len(book.events) == events


def test_list_problems_name_the_field() -> None:
    good = bracket()
    assert list_problems(good) == []
    legs = list(good.legs)
    legs[1] = legs[1].model_copy(update={"order": legs[1].order.model_copy(update={"price": Decimal(90)})})
    (problem,) = list_problems(OrderListSpec(contingency=Contingency.BRACKET, legs=legs))
    assert (problem.code, problem.field) == ("BRACKET_PRICES", "legs[1].price")
    legs = [good.legs[0], good.legs[1]]
    assert [p.code for p in list_problems(OrderListSpec(contingency=Contingency.BRACKET, legs=legs))] == [
        "EXITS_REQUIRED"
    ]
    problems = list_problems(OrderListSpec(contingency=Contingency.OCO, legs=list(good.legs)))
    assert [(p.code, p.field) for p in problems] == [("LEG_ROLE_NOT_ALLOWED", f"legs[{i}].role") for i in range(3)]


def test_the_flatten_leg_has_its_own_key_and_its_end_fires_no_rule_of_the_table() -> None:
    book = ListBook.new(bracket(flatten_on_unprotected=True))
    book.start(AT)
    report(book, "entry", S.FILLED, "100")
    report(book, "sl", S.REJECTED)
    flatten = book.leg(FLATTEN_LEG)
    assert flatten.order.idempotency_key == "k#flatten"
    assert flatten.order.linked_orders == (leg_order_id("k", "tp"), leg_order_id("k", "sl"))
    assert report(book, FLATTEN_LEG, S.REJECTED) == []
    assert flatten.rules[-1] == "flatten-reject:no-effect"
