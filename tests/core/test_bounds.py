"""core.bounds: the values it lets through are values the domain math carries."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from pydantic import TypeAdapter, ValidationError

from core.bounds import (
    MAX_AMOUNT,
    MAX_PEG_OFFSET,
    MAX_POLICY_VALUE,
    MAX_PRICE,
    MAX_QTY,
    POLICY_SCALE,
    PRICE_SCALE,
    QTY_SCALE,
    Amount,
    PegOffset,
    Price,
    Qty,
    Text,
    UtcTime,
    control_character,
    json_problems,
    policy_problems,
)
from core.domain import InstrumentClass, OrderRequest, OrderSide, OrderType, TimeInForce
from core.instruments import DEFAULT_INSTRUMENTS
from core.risk import AccountState, ClassLimits, PolicySet, RiskPolicy, basic_check

D = Decimal
SMALLEST_QTY = D(1).scaleb(-QTY_SCALE)
SMALLEST_PRICE = D(1).scaleb(-PRICE_SCALE)
LARGEST_QTY = MAX_QTY - SMALLEST_QTY
LARGEST_PRICE = MAX_PRICE - SMALLEST_PRICE


@pytest.mark.parametrize(
    ("adapter", "good", "bad"),
    [
        (Qty, [SMALLEST_QTY, LARGEST_QTY, MAX_QTY, D("1.5000000000000")], [D(0), MAX_QTY + 1, D("1e-11"), D("NaN")]),
        (Price, [SMALLEST_PRICE, MAX_PRICE], [D(-1), D("1e30"), D("0.00000000001")]),
        (PegOffset, [-MAX_PEG_OFFSET, D(0), MAX_PEG_OFFSET], [D("-1e30"), D("1e30"), D("1e-11")]),
        (Amount, [-MAX_AMOUNT, MAX_AMOUNT], [D("1e16"), D("0.00000000001"), D("Infinity")]),
    ],
    ids=["qty", "price", "peg-offset", "amount"],
)
def test_decimal_bounds(adapter: object, good: list[Decimal], bad: list[Decimal]) -> None:
    ta = TypeAdapter(adapter)
    for value in good:
        assert ta.validate_python(value) == value
    for value in bad:
        with pytest.raises(ValidationError):
            ta.validate_python(value)


def test_times_are_aware_within_1970_2200_and_come_out_in_utc() -> None:
    ta = TypeAdapter(UtcTime)
    assert ta.validate_python("2199-12-31T23:00:00+05:00") == datetime(2199, 12, 31, 18, tzinfo=UTC)
    for bad in [
        "9999-12-31T23:00:00-05:00",
        "2200-01-01T00:00:00Z",
        "1969-12-31T23:59:59Z",
        "2030-01-01T00:00:00",
        1e10,
    ]:
        with pytest.raises(ValidationError):
            ta.validate_python(bad)


def test_text_refuses_every_control_character_and_lone_surrogate() -> None:
    refused = [chr(c) for c in [*range(0x20), *range(0x7F, 0xA0), 0xD800, 0xDBFF, 0xDC00, 0xDFFF]]
    for ch in refused:
        assert control_character(f"a{ch}b") == ch
        with pytest.raises(ValidationError):
            TypeAdapter(Text).validate_python(f"a{ch}b")
    for fine in ["desk request", "Zürich €", "注文", "😀", " "]:
        assert TypeAdapter(Text).validate_python(fine) == fine


def test_json_problems_name_the_path() -> None:
    doc = {"a": [1, D("1e-40"), {"b\x00": "x"}], "c": 2**64, "d": "y" * 5000, "e": [[[[]]]]}
    found = {path: problem for path, problem in json_problems(doc)}
    assert set(found) == {("a", 1), ("a", 2, "b\x00"), ("c",), ("d",)}
    deep: list[object] = []
    for _ in range(40):
        deep = [deep]
    assert json_problems(deep) == [((), "nested more than 32 levels deep")]


def test_policy_problems_walk_models() -> None:
    policy = RiskPolicy(max_notional_per_order=D("1e16"))
    assert [p for p, _ in policy_problems(policy, ("policy",))] == [("policy", "max_notional_per_order")]
    assert policy_problems(RiskPolicy()) == []


def _order(symbol: str, qty: Decimal, price: Decimal, type_: OrderType) -> OrderRequest:
    return OrderRequest(
        order_id="EX" + "A" * 16,
        idempotency_key="k",
        request_hash="h",
        client_id="c",
        client_order_id="o",
        account="a",
        symbol=symbol,
        side=OrderSide.BUY,
        type=type_,
        time_in_force=TimeInForce.GTC,
        qty=qty,
        price=None if type_ is OrderType.MARKET else price,
        stop_price=price if type_ is OrderType.STOP_LIMIT else None,
        broker="paper",
        received_at=datetime.now(UTC),
    )


@pytest.mark.parametrize("instrument", DEFAULT_INSTRUMENTS, ids=lambda i: i.symbol)
@pytest.mark.parametrize("qty", [SMALLEST_QTY, LARGEST_QTY, MAX_QTY], ids=["qty-min", "qty-max-scale", "qty-max"])
@pytest.mark.parametrize(
    "price", [SMALLEST_PRICE, LARGEST_PRICE, MAX_PRICE], ids=["price-min", "price-max-scale", "price-max"]
)
@pytest.mark.parametrize("limit", [D(1).scaleb(-POLICY_SCALE), MAX_POLICY_VALUE], ids=["limits-min", "limits-max"])
@pytest.mark.parametrize("rate", [D(1) / D(150), D(99)], ids=["rate-jpy", "rate-99"])
def test_the_risk_check_carries_every_value_inside_the_bounds(
    instrument: object, qty: Decimal, price: Decimal, limit: Decimal, rate: Decimal
) -> None:
    """At the extremes the bounds allow, the risk math (products, quantize to cents and ticks) never raises."""
    policy = RiskPolicy(
        max_notional_per_order=limit,
        max_position_notional=limit,
        max_gross_exposure=limit,
        account_capital=limit,
        daily_loss_limit=limit,
        max_drawdown=limit,
        classes={c: ClassLimits(price_band_pct=limit, leverage=limit) for c in InstrumentClass},
    )
    inst = instrument  # type: ignore[assignment]
    for type_ in (OrderType.MARKET, OrderType.LIMIT, OrderType.STOP_LIMIT):
        order = _order(inst.symbol, qty, price, type_)  # type: ignore[attr-defined]
        state = AccountState(
            now=datetime.now(UTC),
            instrument=inst,
            reference_price=price,
            quote_rate=rate,
            broker_order_types=frozenset(OrderType),
            broker_time_in_force=frozenset(TimeInForce),
        )
        basic_check(order, PolicySet(policy=policy).limits("a", inst), state)  # type: ignore[arg-type]
