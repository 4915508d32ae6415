"""Pre-trade risk: a pure function of the order, the policy and the account state.

``RiskCheck`` is the seam: the risk activity gathers the ``AccountState`` (instrument, reference price,
trading state, broker capabilities, ...) and calls whichever check it was built with. Each refusal has a
stable ``code`` (used in the REST rejection and as the metrics label) and a message naming the problem.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from decimal import Decimal

from pydantic import BaseModel, ConfigDict

from core.domain import Instrument, OrderRequest, OrderType, RiskReason, TimeInForce, TradingState

__all__ = ["AccountState", "ReasonCode", "RiskCheck", "RiskPolicy", "basic_check", "order_notional"]


class ReasonCode:
    """Stable reason codes of risk refusals."""

    UNKNOWN_INSTRUMENT = "UNKNOWN_INSTRUMENT"
    INSTRUMENT_NOT_TRADABLE = "INSTRUMENT_NOT_TRADABLE"
    QTY_NOT_POSITIVE = "QTY_NOT_POSITIVE"
    QTY_BELOW_MIN = "QTY_BELOW_MIN"
    QTY_ABOVE_MAX = "QTY_ABOVE_MAX"
    QTY_NOT_ON_LOT = "QTY_NOT_ON_LOT"
    PRICE_REQUIRED = "PRICE_REQUIRED"
    STOP_PRICE_REQUIRED = "STOP_PRICE_REQUIRED"
    PRICE_NOT_ON_TICK = "PRICE_NOT_ON_TICK"
    NO_REFERENCE_PRICE = "NO_REFERENCE_PRICE"
    MAX_NOTIONAL = "MAX_NOTIONAL"
    TRADING_HALTED = "TRADING_HALTED"
    EXPIRY_REQUIRED = "EXPIRY_REQUIRED"
    EXPIRY_IN_PAST = "EXPIRY_IN_PAST"
    UNSUPPORTED_ORDER_TYPE = "UNSUPPORTED_ORDER_TYPE"
    UNSUPPORTED_TIME_IN_FORCE = "UNSUPPORTED_TIME_IN_FORCE"
    UNKNOWN_BROKER = "UNKNOWN_BROKER"
    BROKER_UNAVAILABLE = "BROKER_UNAVAILABLE"


class RiskPolicy(BaseModel):
    """Limits the check enforces."""

    model_config = ConfigDict(frozen=True)

    #: In ``currency``; an order's notional is converted with ``AccountState.quote_rate``.
    max_notional_per_order: Decimal
    currency: str = "USD"


class AccountState(BaseModel):
    """Everything the check needs to know besides the order and the policy."""

    model_config = ConfigDict(frozen=True)

    instrument: Instrument | None
    reference_price: Decimal | None
    #: Value of one unit of the instrument's quote currency in the policy's currency.
    quote_rate: Decimal = Decimal(1)
    trading_state: TradingState = TradingState.ACTIVE
    trading_state_reason: str = ""
    #: Order types and time-in-force values the chosen broker supports (None: broker unknown).
    broker_order_types: frozenset[OrderType] | None = None
    broker_time_in_force: frozenset[TimeInForce] | None = None
    #: Why the broker cannot take new orders for this account right now (None: it can).
    broker_unavailable: str | None = None
    now: datetime


RiskCheck = Callable[[OrderRequest, RiskPolicy, AccountState], list[RiskReason]]


def order_notional(order: OrderRequest, reference_price: Decimal | None) -> Decimal | None:
    """Quantity times the order's own price where it has one (limit, else stop), else the reference price."""
    price = order.price or order.stop_price or reference_price
    return None if price is None else order.qty * price


def basic_check(order: OrderRequest, policy: RiskPolicy, state: AccountState) -> list[RiskReason]:
    """The basic pre-trade checks: instrument, quantity, prices, notional, expiry, broker, kill switch."""
    reasons: list[RiskReason] = []

    def deny(code: str, message: str, field: str | None = None) -> None:
        reasons.append(RiskReason(code=code, message=message, field=field))

    if state.trading_state is TradingState.HALTED:
        why = f": {state.trading_state_reason}" if state.trading_state_reason else ""
        deny(ReasonCode.TRADING_HALTED, f"trading is halted{why}")

    if state.broker_order_types is None:
        deny(ReasonCode.UNKNOWN_BROKER, f"broker {order.broker!r} is not configured", "broker")
    else:
        if order.type not in state.broker_order_types:
            deny(ReasonCode.UNSUPPORTED_ORDER_TYPE, f"broker {order.broker} does not take {order.type} orders", "type")
        if state.broker_time_in_force is not None and order.time_in_force not in state.broker_time_in_force:
            deny(
                ReasonCode.UNSUPPORTED_TIME_IN_FORCE,
                f"broker {order.broker} does not take time in force {order.time_in_force}",
                "timeInForce",
            )

    if state.broker_unavailable:
        deny(ReasonCode.BROKER_UNAVAILABLE, state.broker_unavailable, "broker")

    inst = state.instrument
    if inst is None:
        deny(ReasonCode.UNKNOWN_INSTRUMENT, f"unknown symbol {order.symbol!r}", "symbol")
        return reasons
    if not inst.tradable:
        deny(ReasonCode.INSTRUMENT_NOT_TRADABLE, f"{inst.symbol} is not tradable", "symbol")

    qty = order.qty
    if qty <= 0:
        deny(ReasonCode.QTY_NOT_POSITIVE, f"quantity must be positive, was {qty}", "qty")
    elif qty < inst.min_qty:
        deny(ReasonCode.QTY_BELOW_MIN, f"quantity {qty} is below the minimum {inst.min_qty} for {inst.symbol}", "qty")
    elif qty > inst.max_qty:
        deny(ReasonCode.QTY_ABOVE_MAX, f"quantity {qty} is above the maximum {inst.max_qty} for {inst.symbol}", "qty")
    if qty > 0 and not inst.on_lot(qty):
        deny(ReasonCode.QTY_NOT_ON_LOT, f"quantity {qty} is not a multiple of the lot step {inst.lot_step}", "qty")

    if order.type.needs_price and order.price is None:
        deny(ReasonCode.PRICE_REQUIRED, f"a {order.type} order needs a limit price", "price")
    if order.type.needs_stop_price and order.stop_price is None:
        deny(ReasonCode.STOP_PRICE_REQUIRED, f"a {order.type} order needs a stop price", "stopPrice")
    for name, value in (("price", order.price), ("stopPrice", order.stop_price)):
        if value is not None and not inst.on_tick(value):
            deny(ReasonCode.PRICE_NOT_ON_TICK, f"{name} {value} is not a multiple of the tick {inst.tick_size}", name)

    if order.time_in_force is TimeInForce.GTD:
        if order.expire_at is None:
            deny(ReasonCode.EXPIRY_REQUIRED, "a GTD order needs expireAt", "expireAt")
        elif order.expire_at <= state.now:
            deny(ReasonCode.EXPIRY_IN_PAST, f"expireAt {order.expire_at.isoformat()} is in the past", "expireAt")

    notional = order_notional(order, state.reference_price)
    if notional is not None:
        notional *= state.quote_rate
    if notional is None:
        if order.type in (OrderType.MARKET, OrderType.PEGGED):
            deny(ReasonCode.NO_REFERENCE_PRICE, f"no reference price for {order.symbol} to value a {order.type} order")
    elif notional > policy.max_notional_per_order:
        deny(
            ReasonCode.MAX_NOTIONAL,
            f"notional {notional:.2f} {policy.currency} exceeds the per-order limit "
            f"{policy.max_notional_per_order} {policy.currency}",
            "qty",
        )
    return reasons
