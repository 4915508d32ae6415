"""``core.nativelist.plan``: which lists a broker carries natively, and how the legs are marked."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal as D
from typing import Any

from core.contingency import Contingency, LegRole, TriggerMode
from core.domain import OrderRequest, OrderSide, OrderType, TimeInForce
from core.nativelist import plan

ALL = frozenset({"BRACKET", "OCO", "OTO"})


def _order(name: str, side: OrderSide, type_: OrderType, **terms: Any) -> OrderRequest:
    values: dict[str, Any] = {
        "account": "acc",
        "symbol": "AAPL",
        "side": side,
        "type": type_,
        "time_in_force": TimeInForce.GTC,
        "qty": D(10),
        "order_id": f"EX{name.upper():0<16}"[:18],
        "idempotency_key": name,
        "request_hash": "h",
        "client_id": "desk",
        "client_order_id": name,
        "broker": "alpaca",
        "received_at": datetime(2026, 1, 1, tzinfo=UTC),
    }
    values.update(terms)
    return OrderRequest(**values)


def _bracket(**entry: Any) -> list[tuple[str, LegRole, OrderRequest]]:
    return [
        ("entry", LegRole.PARENT, _order("entry", OrderSide.BUY, OrderType.LIMIT, price=D(185), **entry)),
        ("tp", LegRole.EXIT, _order("tp", OrderSide.SELL, OrderType.LIMIT, price=D(200))),
        ("sl", LegRole.EXIT, _order("sl", OrderSide.SELL, OrderType.STOP_LIMIT, stop_price=D(180), price=D(179))),
    ]


def test_a_bracket_is_native_with_its_exits_attached_to_the_entry() -> None:
    marks = plan(Contingency.BRACKET, TriggerMode.FULL, _bracket(), ALL)
    assert marks is not None
    entry = marks["entry"]
    assert entry.order_class == "bracket" and entry.held_by is None
    assert [(leg.role, leg.price, leg.stop_price) for leg in entry.legs] == [
        ("take_profit", D(200), None),
        ("stop_loss", D(179), D(180)),
    ]
    assert [leg.cl_ord_id for leg in entry.legs] == ["EXTP00000000000000", "EXSL00000000000000"]
    assert marks["tp"].held_by == marks["sl"].held_by == "EXENTRY00000000000"
    assert (marks["tp"].role, marks["sl"].role) == ("take_profit", "stop_loss")


def test_lists_a_broker_cannot_carry_are_emulated() -> None:
    assert plan(Contingency.BRACKET, TriggerMode.FULL, _bracket(), frozenset()) is None  # not declared
    assert plan(Contingency.BRACKET, TriggerMode.PARTIAL, _bracket(), ALL) is None  # Alpaca: complete fill only
    assert plan(Contingency.BRACKET, TriggerMode.FULL, _bracket(time_in_force=TimeInForce.DAY), ALL) is None
    assert plan(Contingency.BRACKET, TriggerMode.FULL, _bracket(time_in_force=TimeInForce.IOC), ALL) is None
    trailing = _bracket()
    trailing[2] = ("sl", LegRole.EXIT, _order("sl", OrderSide.SELL, OrderType.TRAILING_STOP, trail_amount=D(1)))
    assert plan(Contingency.BRACKET, TriggerMode.FULL, trailing, ALL) is None
    assert plan(Contingency.OUO, TriggerMode.FULL, _bracket(), ALL | {"OUO"}) is None


def test_an_oto_and_an_oco() -> None:
    oto = _bracket()[:2]
    marks = plan(Contingency.OTO, TriggerMode.FULL, oto, ALL)
    assert marks is not None and marks["entry"].order_class == "oto" and len(marks["entry"].legs) == 1
    same_side = [oto[0], ("tp", LegRole.CHILD, _order("tp", OrderSide.BUY, OrderType.LIMIT, price=D(200)))]
    assert plan(Contingency.OTO, TriggerMode.FULL, same_side, ALL) is None
    oco = [
        ("stop", LegRole.MEMBER, _order("stop", OrderSide.SELL, OrderType.STOP, stop_price=D(180))),
        ("limit", LegRole.MEMBER, _order("limit", OrderSide.SELL, OrderType.LIMIT, price=D(200))),
    ]
    marks = plan(Contingency.OCO, TriggerMode.FULL, oco, ALL)
    assert marks is not None
    assert marks["limit"].held_by is None and [leg.role for leg in marks["limit"].legs] == ["stop_loss"]
    assert marks["stop"].held_by == "EXLIMIT00000000000"
    two_limits = [oco[1], ("other", LegRole.MEMBER, _order("other", OrderSide.SELL, OrderType.LIMIT, price=D(210)))]
    assert plan(Contingency.OCO, TriggerMode.FULL, two_limits, ALL) is None


def test_a_bracket_with_a_leg_held_on_quotes_is_not_sent_natively() -> None:
    # The coordinator holds such a leg until the market meets its trigger; the broker would work it at once.
    from core.legtrigger import PriceTrigger
    from core.orderlist import LegSpec, OrderListRequest
    from workflows.order_client import native_request

    def request(**changes: Any) -> OrderListRequest:
        legs = [LegSpec(name=n, role=r, order=o) for n, r, o in _bracket()]
        if "leg_trigger" in changes:
            legs[2] = legs[2].model_copy(update={"emulation_trigger": changes.pop("leg_trigger")})
        return OrderListRequest(
            list_id="LSNATIVE",
            idempotency_key="b1",
            request_hash="h",
            client_id="desk",
            client_list_id="b1",
            received_at=datetime(2026, 1, 1, tzinfo=UTC),
            contingency=Contingency.BRACKET,
            legs=legs,
            **changes,
        )

    assert native_request(request())[1] is True
    assert native_request(request(leg_trigger=PriceTrigger.MID))[1] is False
    assert native_request(request(emulation_trigger=PriceTrigger.LAST))[1] is False
