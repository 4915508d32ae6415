"""The order list's book: leg reports in, commands out (the coordinator only carries them out)."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from itertools import product

import pytest

from core.contingency import ROLES_OF, Action, Contingency, LegEvent, LegRole, TriggerMode, rule
from core.domain import OrderRequest, OrderSide, OrderStatus, OrderType, RiskReason, TimeInForce
from core.legtrigger import PriceTrigger, TriggerQuote
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


# -- legs held on quotes (patch list-quote-triggers) ----------------------------------------------------------


def quote(**prices: str) -> TriggerQuote:
    return TriggerQuote(source="paper", at=AT, **{k: Decimal(v) for k, v in prices.items()})  # type: ignore[arg-type]


def trailing_bracket(**spec: object) -> OrderListRequest:
    request = bracket(**spec)
    sl = order("sl", "SELL", type="TRAILING_STOP", trail_amount=Decimal(2))
    return request.model_copy(update={"legs": [*request.legs[:2], LegSpec(name="sl", role=LegRole.EXIT, order=sl)]})


def held(request: OrderListRequest, *, native_trailing: bool = False) -> ListBook:
    book = ListBook.new(request)
    book.hold_on_quotes(ListBook.quote_legs(request, native_trailing=native_trailing))
    book.start(AT)
    report(book, "entry", S.ACCEPTED)
    return book


def test_a_trailing_stop_exit_is_held_on_the_side_price_unless_the_broker_trails_natively() -> None:
    assert ListBook.quote_legs(trailing_bracket()) == {"sl": PriceTrigger.DEFAULT}
    assert ListBook.quote_legs(trailing_bracket(), native_trailing=True) == {}
    assert ListBook.quote_legs(bracket()) == {}  # a plain bracket's stop works at the broker
    assert ListBook.quote_legs(bracket(emulation_trigger=PriceTrigger.MID)) == {
        "tp": PriceTrigger.MID,
        "sl": PriceTrigger.MID,
    }
    request = bracket(emulation_trigger=PriceTrigger.MID)
    own = request.legs[2].model_copy(update={"emulation_trigger": PriceTrigger.LAST})
    assert ListBook.quote_legs(request.model_copy(update={"legs": [*request.legs[:2], own]}))["sl"] is PriceTrigger.LAST


def test_a_trailing_stop_exit_ratchets_in_the_book_and_only_the_final_market_order_is_sent() -> None:
    book = held(trailing_bracket())
    assert kinds(report(book, "entry", S.FILLED, "100")) == [("start", "tp", "100")]  # the stop is armed, not sent
    sl = book.leg("sl")
    assert sl.armed and not sl.released and sl.shown_status == "EMULATED" and sl.qty == 100
    assert book.check_quote(quote(bid="104", ask="104.02"), AT) == []
    assert sl.trail is not None and sl.trail.trigger == Decimal("102")
    assert book.check_quote(quote(bid="108", ask="108.02"), AT) == []  # ratchets up with the bid
    assert book.check_quote(quote(bid="107", ask="107.02"), AT) == []  # never down
    assert sl.trail.trigger == Decimal("106")
    assert kinds(book.check_quote(quote(bid="105.99", ask="106.01"), AT)) == [("start", "sl", "100")]
    assert sl.released and not sl.armed
    assert (sl.order.type, sl.order.trail_amount) == (OrderType.MARKET, None)
    assert sl.emulated_terms is not None and sl.emulated_terms.type is OrderType.TRAILING_STOP
    assert book.events[-1].event == "TRIGGERED" and "106" in book.events[-1].detail
    assert book.check_quote(quote(bid="90", ask="90.02"), AT) == []  # nothing armed any more


def test_a_stop_held_on_last_waits_for_a_last_price_and_triggers_on_it() -> None:
    request = bracket()
    sl = request.legs[2].model_copy(update={"emulation_trigger": PriceTrigger.LAST})
    book = held(request.model_copy(update={"legs": [*request.legs[:2], sl]}))
    report(book, "entry", S.FILLED, "100")
    assert book.check_quote(quote(bid="94", ask="94.1"), AT) == []  # bid under the stop, but no last trade
    assert book.check_quote(quote(bid="94", ask="94.1"), AT) == []
    assert [e.event for e in book.events].count("TRIGGER_NO_QUOTE") == 1  # recorded once
    assert book.check_quote(quote(last="95.5"), AT) == []
    assert kinds(book.check_quote(quote(last="95"), AT)) == [("start", "sl", "100")]
    assert book.leg("sl").order.type is OrderType.MARKET


def test_an_armed_exit_is_resized_in_place_and_dropped_without_a_cancel() -> None:
    book = held(trailing_bracket())
    report(book, "entry", S.FILLED, "100")
    report(book, "tp", S.ACCEPTED)
    assert report(book, "tp", S.PARTIALLY_FILLED, "30") == []  # OUO: the armed stop shrinks in the book
    assert book.leg("sl").qty == 70 and book.events[-1].event == "RESIZE"
    assert report(book, "tp", S.FILLED, "100") == []  # no cancel to send: it was never sent
    assert book.leg("sl").status is S.CANCELED and book.events[-2].event == "DROPPED"
    assert book.status is ListStatus.DONE and book.flags == []


def test_a_list_cancel_drops_an_armed_leg_and_a_check_then_sends_nothing() -> None:
    book = held(trailing_bracket())
    report(book, "entry", S.FILLED, "100")
    assert kinds(book.request_cancel(AT, reason="flat", by="desk")) == [("cancel", "tp", None)]
    assert book.leg("sl").status is S.CANCELED and book.armed == []
    assert book.check_quote(quote(bid="1", ask="1.01"), AT) == []


def test_a_partial_trigger_arms_the_held_exit_sized_to_the_fills() -> None:
    book = held(trailing_bracket(trigger=TriggerMode.PARTIAL))
    assert kinds(report(book, "entry", S.PARTIALLY_FILLED, "40")) == [("start", "tp", "40")]
    assert book.leg("sl").armed and book.leg("sl").qty == 40
    report(book, "entry", S.FILLED, "100")
    assert book.leg("sl").qty == 100


def test_emulation_is_refused_where_it_cannot_apply() -> None:
    good = trailing_bracket()
    assert list_problems(good) == []
    legs = list(good.legs)
    legs[0] = legs[0].model_copy(update={"emulation_trigger": PriceTrigger.LAST})
    problems = list_problems(OrderListSpec(contingency=Contingency.BRACKET, legs=legs))
    assert [(p.code, p.field) for p in problems] == [("EMULATION_NOT_ALLOWED", "legs[0].emulationTrigger")]
    request = linked(Contingency.OCO)
    member = request.legs[0].model_copy(update={"emulation_trigger": PriceTrigger.MID})
    problems = list_problems(OrderListSpec(contingency=Contingency.OCO, legs=[member, request.legs[1]]))
    assert [(p.code, p.field) for p in problems] == [("EMULATION_NOT_ALLOWED", "legs[0].emulationTrigger")]


# -- every contingency x role x leg event x trigger mode, through the book, with the children held on quotes or not


def oto() -> OrderListRequest:
    request = bracket()
    return request.model_copy(
        update={
            "contingency": Contingency.OTO,
            "legs": [request.legs[0], *(g.model_copy(update={"role": LegRole.CHILD}) for g in request.legs[1:])],
        }
    )


def _cases() -> list[tuple[Contingency, LegRole, LegEvent, TriggerMode, bool, bool]]:
    out = []
    for c, e, t, filled, on_quotes in product(Contingency, LegEvent, TriggerMode, (False, True), (False, True)):
        if e.is_fill and not filled:
            continue
        for role in ROLES_OF[c]:
            if on_quotes and c in (Contingency.OCO, Contingency.OUO):
                continue  # their legs are all sent at once: nothing to hold
            out.append((c, role, e, t, filled, on_quotes))
    return out


_STATUS = {
    LegEvent.REJECT: S.REJECTED,
    LegEvent.CANCEL: S.CANCELED,
    LegEvent.EXPIRE: S.EXPIRED,
}


@pytest.mark.parametrize(("c", "role", "event", "mode", "filled", "on_quotes"), _cases(), ids=str)
def test_every_rule_through_the_book(
    c: Contingency, role: LegRole, event: LegEvent, mode: TriggerMode, filled: bool, on_quotes: bool
) -> None:
    request = {Contingency.BRACKET: bracket(), Contingency.OTO: oto()}.get(c) or linked(c)
    request = request.model_copy(update={"trigger": mode})
    book = ListBook.new(request)
    if on_quotes:
        book.hold_on_quotes({g.name: PriceTrigger.LAST for g in request.legs if g.role is not LegRole.PARENT})
    book.start(AT)
    children = [g for g in book.legs if g.role in (LegRole.CHILD, LegRole.EXIT)]
    if role is LegRole.MEMBER:
        target, sibling = "a", "b"
        report(book, "a", S.ACCEPTED)
        report(book, "b", S.ACCEPTED)
    elif role is LegRole.PARENT:
        target, sibling = "entry", ""
        report(book, "entry", S.ACCEPTED)
    else:
        target, sibling = "tp", "sl"
        report(book, "entry", S.FILLED, "100")
        if on_quotes:  # the take-profit is met at 110 and up, the stop at 95 and down
            assert kinds(book.check_quote(quote(last="111"), AT)) == [("start", "tp", "100")]
            assert kinds(book.check_quote(quote(last="94"), AT)) == [("start", "sl", "100")]
        report(book, "tp", S.ACCEPTED)
        report(book, "sl", S.ACCEPTED)
    if event.is_fill:
        status = S.FILLED if event is LegEvent.FILL else S.PARTIALLY_FILLED
        commands = report(book, target, status, "100" if event is LegEvent.FILL else "40")
    else:
        if filled:
            report(book, target, S.PARTIALLY_FILLED, "40")
        commands = report(book, target, _STATUS[event], "40" if filled else "0")
    fired = rule(c, role, event, trigger=mode, filled=filled)
    assert book.leg(target).rules[-1] == fired.name
    sent = {cmd.kind for cmd in commands}
    if Action.FOLLOW_PARENT in fired.actions:
        parent_filled = book.leg("entry").filled_qty
        assert all(g.qty == parent_filled for g in children)
        if on_quotes:
            assert all(g.armed and not g.released for g in children) and "start" not in sent
        else:
            assert all(g.released for g in children)
    elif Action.CANCEL_CHILDREN in fired.actions:
        assert all(g.status is S.CANCELED and not g.released for g in children) and sent == set()
    elif Action.CANCEL_SIBLINGS in fired.actions:
        assert kinds(commands) == [("cancel", sibling, None)]
    elif Action.REDUCE_SIBLINGS in fired.actions:
        assert kinds(commands) == [("amend", sibling, "60")]
    elif Action.UNPROTECTED in fired.actions:
        assert kinds(commands) == [("alert", target, "60" if filled else "100")]
    else:
        assert commands == [] or role is LegRole.PARENT
        if role is LegRole.PARENT:  # a partial fill under FULL: the children wait, unsent and unarmed
            assert sent == set() and not any(g.released or g.armed for g in children)


@pytest.mark.parametrize(
    ("trigger", "sent"),
    [
        (PriceTrigger.DEFAULT, True),  # a sell's own side: bid 94 <= 95
        (PriceTrigger.BID_ASK, True),
        (PriceTrigger.LAST, False),  # 95.5
        (PriceTrigger.BID, True),
        (PriceTrigger.ASK, False),  # 96
        (PriceTrigger.MID, True),  # 95
    ],
)
@pytest.mark.parametrize("contingency", [Contingency.BRACKET, Contingency.OTO])
def test_a_held_stop_is_sent_when_the_price_of_its_trigger_mode_meets_it(
    trigger: PriceTrigger, sent: bool, contingency: Contingency
) -> None:
    request = bracket() if contingency is Contingency.BRACKET else oto()
    book = ListBook.new(request)
    book.hold_on_quotes({"sl": trigger})
    book.start(AT)
    report(book, "entry", S.FILLED, "100")
    commands = book.check_quote(quote(bid="94", ask="96", last="95.5"), AT)
    assert kinds(commands) == ([("start", "sl", "100")] if sent else [])
    assert book.leg("sl").armed is not sent and book.leg("sl").released is sent
