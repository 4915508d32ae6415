"""Pre-trade risk: the policy, the account state a decision sees, and the check (a pure function).

``RiskCheck`` is the seam: the risk activity gathers an ``AccountState`` inside the same Postgres transaction
that records the decision and the reservation, and calls the check with the effective ``Limits`` of the
order's account and instrument. The check returns every reason it finds, each with a stable code (used in
the REST rejection and as the ``reason`` label of ``exodus_orders_rejected_total``).

All money figures are in the policy currency (USD by default): an instrument's prices are converted with
its quote currency's rate (``quote_rate``).

Checks (code: what refuses):

==========================  =============================================================================
TRADING_HALTED              a HALTED trading state at global, account, symbol or broker scope
TRADING_REDUCING            a REDUCING scope, and the order does not reduce the position
UNKNOWN_BROKER              broker not configured
UNSUPPORTED_ORDER_TYPE      the broker does not take the order type
UNSUPPORTED_TIME_IN_FORCE   ... or the time in force
BROKER_UNAVAILABLE          the broker cannot take orders for the account now (e.g. MT5 terminal offline)
UNKNOWN_INSTRUMENT          symbol not in the catalogue
INSTRUMENT_NOT_TRADABLE     instrument disabled (catalogue or policy override)
QTY_NOT_POSITIVE            quantity <= 0
QTY_BELOW_MIN / ABOVE_MAX   outside the instrument's min/max quantity
QTY_NOT_ON_LOT              not a multiple of the lot step
PRICE_REQUIRED              limit price missing for LIMIT/STOP_LIMIT
STOP_PRICE_REQUIRED         stop price missing for STOP/STOP_LIMIT
PRICE_NOT_ON_TICK           price or stop price off the tick
PRICE_OUT_OF_BAND           price or stop price further from the reference than the band (fat finger)
NO_REFERENCE_PRICE          no quote from the order's price source (a limit/stop order may be valued at its
                            own price instead where its instrument class allows it; never a market order)
STALE_REFERENCE_PRICE       the price source's quote is older than its instrument class allows (same rule)
EXPIRY_REQUIRED             GTD without expireAt
EXPIRY_IN_PAST              GTD expiring before now
MAX_NOTIONAL                order notional above the per-order limit
MAX_OPEN_ORDERS             the client already has the maximum of working orders
MAX_POSITION                projected position (position + working orders + this order) above the limit
MAX_GROSS_EXPOSURE          projected gross exposure of the account above the limit
INSUFFICIENT_BUYING_POWER   projected margin (positions + working orders + this order) above equity
REDUCE_ONLY_WOULD_INCREASE  a reduce-only order that would not reduce the position
VELOCITY_CLIENT             too many orders from the client in the window
VELOCITY_SYMBOL             too many orders in the symbol in the window
VELOCITY_GLOBAL             too many orders overall in the window
DUPLICATE_ORDER             same client, symbol, side, quantity and price within the duplicate window
DAILY_LOSS_LIMIT            the account lost more than the daily limit today (realized + unrealized)
MAX_DRAWDOWN                the account fell more than the limit from today's equity peak
==========================  =============================================================================

Orders that reduce the position are exempt from the exposure, buying power, loss and REDUCING checks:
risk should never stop a desk from getting smaller.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from decimal import Decimal
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from core.domain import (
    Instrument,
    InstrumentClass,
    OrderRequest,
    OrderSide,
    OrderType,
    RiskReason,
    TimeInForce,
    TradingState,
)

__all__ = [
    "AccountOverrides",
    "AccountState",
    "ClassLimits",
    "InstrumentOverrides",
    "Limits",
    "PolicySet",
    "PositionView",
    "ReasonCode",
    "ReservationView",
    "RiskCheck",
    "RiskPolicy",
    "VelocityLimit",
    "account_equity",
    "basic_check",
    "order_notional",
    "valuation_price",
]

D0 = Decimal(0)
NonNeg = Annotated[Decimal, Field(ge=0)]
Pos = Annotated[Decimal, Field(gt=0)]


class ReasonCode:
    """Stable reason codes of risk refusals (see the module docstring)."""

    TRADING_HALTED = "TRADING_HALTED"
    TRADING_REDUCING = "TRADING_REDUCING"
    UNKNOWN_BROKER = "UNKNOWN_BROKER"
    UNSUPPORTED_ORDER_TYPE = "UNSUPPORTED_ORDER_TYPE"
    UNSUPPORTED_TIME_IN_FORCE = "UNSUPPORTED_TIME_IN_FORCE"
    BROKER_UNAVAILABLE = "BROKER_UNAVAILABLE"
    UNKNOWN_INSTRUMENT = "UNKNOWN_INSTRUMENT"
    INSTRUMENT_NOT_TRADABLE = "INSTRUMENT_NOT_TRADABLE"
    QTY_NOT_POSITIVE = "QTY_NOT_POSITIVE"
    QTY_BELOW_MIN = "QTY_BELOW_MIN"
    QTY_ABOVE_MAX = "QTY_ABOVE_MAX"
    QTY_NOT_ON_LOT = "QTY_NOT_ON_LOT"
    PRICE_REQUIRED = "PRICE_REQUIRED"
    STOP_PRICE_REQUIRED = "STOP_PRICE_REQUIRED"
    PRICE_NOT_ON_TICK = "PRICE_NOT_ON_TICK"
    PRICE_OUT_OF_BAND = "PRICE_OUT_OF_BAND"
    NO_REFERENCE_PRICE = "NO_REFERENCE_PRICE"
    STALE_REFERENCE_PRICE = "STALE_REFERENCE_PRICE"
    EXPIRY_REQUIRED = "EXPIRY_REQUIRED"
    EXPIRY_IN_PAST = "EXPIRY_IN_PAST"
    MAX_NOTIONAL = "MAX_NOTIONAL"
    MAX_OPEN_ORDERS = "MAX_OPEN_ORDERS"
    MAX_POSITION = "MAX_POSITION"
    MAX_GROSS_EXPOSURE = "MAX_GROSS_EXPOSURE"
    INSUFFICIENT_BUYING_POWER = "INSUFFICIENT_BUYING_POWER"
    REDUCE_ONLY_WOULD_INCREASE = "REDUCE_ONLY_WOULD_INCREASE"
    VELOCITY_CLIENT = "VELOCITY_CLIENT"
    VELOCITY_SYMBOL = "VELOCITY_SYMBOL"
    VELOCITY_GLOBAL = "VELOCITY_GLOBAL"
    DUPLICATE_ORDER = "DUPLICATE_ORDER"
    DAILY_LOSS_LIMIT = "DAILY_LOSS_LIMIT"
    MAX_DRAWDOWN = "MAX_DRAWDOWN"


# ------------------------------------------------------------------------------------------------ policy


class ClassLimits(BaseModel):
    """Limits that depend on the instrument class."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    #: A limit or stop price further than this from the reference price is refused (percent).
    price_band_pct: Pos
    #: Notional per unit of margin: an order needs notional / leverage of buying power.
    leverage: Pos


class VelocityLimit(BaseModel):
    """At most ``max_orders`` orders in any ``window_seconds``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    max_orders: Annotated[int, Field(ge=1)] = 100
    window_seconds: Annotated[float, Field(gt=0, le=3600)] = 1.0


def _default_classes() -> dict[InstrumentClass, ClassLimits]:
    return {
        InstrumentClass.FX: ClassLimits(price_band_pct=Decimal(2), leverage=Decimal(30)),
        InstrumentClass.EQUITY: ClassLimits(price_band_pct=Decimal(10), leverage=Decimal(4)),
        InstrumentClass.CRYPTO: ClassLimits(price_band_pct=Decimal(15), leverage=Decimal(2)),
    }


class RiskPolicy(BaseModel):
    """The global risk policy (defaults for every account and instrument)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    #: Currency of every money limit below.
    currency: str = "USD"
    max_notional_per_order: Pos = Decimal("5000000")
    max_open_orders_per_client: Annotated[int, Field(ge=1)] = 500
    #: Per account and symbol, valued at the reference price, after every working order fills.
    max_position_notional: Pos = Decimal("20000000")
    #: Per account: the sum of absolute position values, after every working order fills.
    max_gross_exposure: Pos = Decimal("100000000")
    #: An account's starting equity (capital); equity = capital + realized + unrealized P&L.
    account_capital: NonNeg = Decimal("10000000")
    daily_loss_limit: Pos = Decimal("500000")
    #: Largest fall from the day's equity peak.
    max_drawdown: Pos = Decimal("1000000")
    classes: dict[InstrumentClass, ClassLimits] = Field(default_factory=_default_classes)
    velocity_per_client: VelocityLimit = VelocityLimit(max_orders=100, window_seconds=1)
    velocity_per_symbol: VelocityLimit = VelocityLimit(max_orders=200, window_seconds=1)
    velocity_global: VelocityLimit = VelocityLimit(max_orders=1000, window_seconds=1)
    #: Same client, symbol, side, quantity and price within this many seconds is refused as a duplicate (0: off).
    duplicate_window_seconds: Annotated[float, Field(ge=0, le=3600)] = 1.0
    #: This many broker rejections in a row halt the account (or the broker) until an operator resets it.
    circuit_breaker_rejections: Annotated[int, Field(ge=1)] = 5


class AccountOverrides(BaseModel):
    """Per-account values that replace the global ones."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    max_notional_per_order: Pos | None = None
    max_open_orders_per_client: Annotated[int, Field(ge=1)] | None = None
    max_position_notional: Pos | None = None
    max_gross_exposure: Pos | None = None
    account_capital: NonNeg | None = None
    daily_loss_limit: Pos | None = None
    max_drawdown: Pos | None = None


class InstrumentOverrides(BaseModel):
    """Per-instrument values that replace the global or class ones."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    tradable: bool | None = None
    price_band_pct: Pos | None = None
    max_notional_per_order: Pos | None = None
    #: A position limit in units (checked in addition to the notional one).
    max_position_qty: Pos | None = None


class Limits(BaseModel):
    """The effective limits for one order (global, then class, then account and instrument overrides)."""

    model_config = ConfigDict(frozen=True)

    currency: str
    max_notional_per_order: Decimal
    max_open_orders_per_client: int
    max_position_notional: Decimal
    max_position_qty: Decimal | None
    max_gross_exposure: Decimal
    account_capital: Decimal
    daily_loss_limit: Decimal
    max_drawdown: Decimal
    price_band_pct: Decimal
    leverage: Decimal
    tradable: bool
    velocity_per_client: VelocityLimit
    velocity_per_symbol: VelocityLimit
    velocity_global: VelocityLimit
    duplicate_window_seconds: float


class PolicySet(BaseModel):
    """The current global policy and every override, at one version of the store."""

    model_config = ConfigDict(frozen=True)

    version: int = 0
    policy: RiskPolicy = RiskPolicy()
    accounts: dict[str, AccountOverrides] = {}
    instruments: dict[str, InstrumentOverrides] = {}

    def limits(self, account: str, instrument: Instrument | None) -> Limits:
        """Merge global, class, account and instrument values for one order."""
        p = self.policy
        acct = self.accounts.get(account, AccountOverrides())
        inst = self.instruments.get(instrument.symbol, InstrumentOverrides()) if instrument else InstrumentOverrides()
        cls = p.classes.get(instrument.instrument_class) if instrument else None
        cls = cls or ClassLimits(price_band_pct=Decimal(10), leverage=Decimal(1))

        def pick(*values: object) -> object:
            return next(v for v in values if v is not None)

        # An account override replaces the global per-order limit; an instrument override caps it further.
        overrides = [v for v in (acct.max_notional_per_order, inst.max_notional_per_order) if v is not None]

        return Limits(
            currency=p.currency,
            max_notional_per_order=min(overrides) if overrides else p.max_notional_per_order,
            max_open_orders_per_client=pick(acct.max_open_orders_per_client, p.max_open_orders_per_client),  # type: ignore[arg-type]
            max_position_notional=pick(acct.max_position_notional, p.max_position_notional),  # type: ignore[arg-type]
            max_position_qty=inst.max_position_qty,
            max_gross_exposure=pick(acct.max_gross_exposure, p.max_gross_exposure),  # type: ignore[arg-type]
            account_capital=pick(acct.account_capital, p.account_capital),  # type: ignore[arg-type]
            daily_loss_limit=pick(acct.daily_loss_limit, p.daily_loss_limit),  # type: ignore[arg-type]
            max_drawdown=pick(acct.max_drawdown, p.max_drawdown),  # type: ignore[arg-type]
            price_band_pct=pick(inst.price_band_pct, cls.price_band_pct),  # type: ignore[arg-type]
            leverage=cls.leverage,
            tradable=(instrument.tradable if instrument else False) and (inst.tradable is not False),
            velocity_per_client=p.velocity_per_client,
            velocity_per_symbol=p.velocity_per_symbol,
            velocity_global=p.velocity_global,
            duplicate_window_seconds=p.duplicate_window_seconds,
        )


# ------------------------------------------------------------------------------------------------ state


class PositionView(BaseModel):
    """One position of the account, with what values it."""

    model_config = ConfigDict(frozen=True)

    symbol: str
    qty: Decimal
    avg_price: Decimal | None = None
    #: Realized P&L in the instrument's quote currency.
    realized_pnl: Decimal = D0
    #: Mark price (quote currency); None when there is no reference price.
    mark: Decimal | None = None
    quote_rate: Decimal = Decimal(1)
    leverage: Decimal = Decimal(1)


class ReservationView(BaseModel):
    """What one working order of the account holds."""

    model_config = ConfigDict(frozen=True)

    order_id: str
    symbol: str
    side: OrderSide
    qty_open: Decimal
    #: Valuation price (quote currency), its rate to the policy currency, and the class leverage.
    price: Decimal
    quote_rate: Decimal = Decimal(1)
    leverage: Decimal = Decimal(1)


class AccountState(BaseModel):
    """Everything the check needs to know besides the order and its limits."""

    model_config = ConfigDict(frozen=True)

    now: datetime
    instrument: Instrument | None
    #: The mid of a fresh quote from the order's price source (None: no fresh quote).
    reference_price: Decimal | None
    #: Where the reference price comes from (a market data source) and how old its quote is (None: unknown).
    reference_source: str | None = None
    reference_age_seconds: float | None = None
    #: Why there is no reference price, naming the source and the age (set by the gatherer).
    reference_problem: str | None = None
    #: There is a quote, but it is too old to price with.
    reference_stale: bool = False
    #: Without a reference price, a limit or stop order is valued at its own price (per instrument class).
    own_price_without_quote: bool = True
    #: Value of one unit of the instrument's quote currency in the policy currency.
    quote_rate: Decimal = Decimal(1)
    #: The most restrictive trading state among the global, account, symbol and broker scopes.
    trading_state: TradingState = TradingState.ACTIVE
    trading_state_reason: str = ""
    trading_state_scope: str = "GLOBAL"
    #: Order types and time-in-force values the chosen broker supports (None: broker unknown).
    broker_order_types: frozenset[OrderType] | None = None
    broker_time_in_force: frozenset[TimeInForce] | None = None
    #: Why the broker cannot take new orders for this account right now (None: it can).
    broker_unavailable: str | None = None
    positions: dict[str, PositionView] = {}
    #: The account's working orders (not this one).
    reservations: list[ReservationView] = []
    open_orders_of_client: int = 0
    recent_orders_of_client: int = 0
    recent_orders_of_symbol: int = 0
    recent_orders_global: int = 0
    duplicate_of: str | None = None
    day_start_equity: Decimal | None = None
    day_peak_equity: Decimal | None = None
    #: An amend of a working order: the velocity, duplicate and open-order checks do not apply.
    is_amend: bool = False


RiskCheck = Callable[[OrderRequest, Limits, AccountState], list[RiskReason]]


def valuation_price(order: OrderRequest, reference_price: Decimal | None) -> Decimal | None:
    """The price an order is valued at: its limit price, else its stop price, else the reference price."""
    return order.price or order.stop_price or reference_price


def order_notional(order: OrderRequest, reference_price: Decimal | None) -> Decimal | None:
    """Quantity times the valuation price (quote currency)."""
    price = valuation_price(order, reference_price)
    return None if price is None else order.qty * price


def account_equity(capital: Decimal, positions: dict[str, PositionView]) -> Decimal:
    """Capital plus realized P&L plus unrealized P&L at the marks, in the policy currency."""
    equity = capital
    for pos in positions.values():
        equity += pos.realized_pnl * pos.quote_rate
        if pos.qty and pos.avg_price is not None and pos.mark is not None:
            equity += pos.qty * (pos.mark - pos.avg_price) * pos.quote_rate
    return equity


def _money(value: Decimal) -> str:
    return f"{value.quantize(Decimal('0.01')):,}"


def basic_check(order: OrderRequest, limits: Limits, state: AccountState) -> list[RiskReason]:
    """Every pre-trade check; returns all the reasons that refuse the order (empty: approved)."""
    reasons: list[RiskReason] = []
    ccy = limits.currency

    def deny(code: str, message: str, field: str | None = None) -> None:
        reasons.append(RiskReason(code=code, message=message, field=field))

    # -- where the order may go ---------------------------------------------------------------------
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
        if state.trading_state is TradingState.HALTED:
            deny(ReasonCode.TRADING_HALTED, _halted(state))
        return reasons

    # -- the order itself ---------------------------------------------------------------------------
    if not limits.tradable:
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
    ref = state.reference_price
    for name, value in (("price", order.price), ("stopPrice", order.stop_price)):
        if value is None:
            continue
        if not inst.on_tick(value):
            deny(ReasonCode.PRICE_NOT_ON_TICK, f"{name} {value} is not a multiple of the tick {inst.tick_size}", name)
        if ref:
            off = abs(value - ref) / ref * 100
            if off > limits.price_band_pct:
                deny(
                    ReasonCode.PRICE_OUT_OF_BAND,
                    f"{name} {value} is {off:.2f}% from the reference {ref}; the band for {inst.symbol} is "
                    f"{limits.price_band_pct}%",
                    name,
                )
    if order.time_in_force is TimeInForce.GTD:
        if order.expire_at is None:
            deny(ReasonCode.EXPIRY_REQUIRED, "a GTD order needs expireAt", "expireAt")
        elif order.expire_at <= state.now:
            deny(ReasonCode.EXPIRY_IN_PAST, f"expireAt {order.expire_at.isoformat()} is in the past", "expireAt")

    own_price = order.price or order.stop_price
    if ref is None and (own_price is None or not state.own_price_without_quote):
        code = ReasonCode.STALE_REFERENCE_PRICE if state.reference_stale else ReasonCode.NO_REFERENCE_PRICE
        why = state.reference_problem or f"no reference price for {order.symbol}"
        deny(code, f"cannot value a {order.type} order: {why}", "symbol")
    price = valuation_price(order, ref)
    notional = None if price is None else qty * price * state.quote_rate
    if notional is not None and notional > limits.max_notional_per_order:
        deny(
            ReasonCode.MAX_NOTIONAL,
            f"notional {_money(notional)} {ccy} exceeds the per-order limit "
            f"{_money(limits.max_notional_per_order)} {ccy}",
            "qty",
        )

    # -- the account after this order ---------------------------------------------------------------
    working = _working_qty(state.reservations)
    current = state.positions.get(order.symbol)
    held = (current.qty if current else D0) + working.get(order.symbol, D0)
    signed = qty * order.side.sign
    projected = held + signed
    reduces = held != 0 and (signed > 0) != (held > 0) and abs(signed) <= abs(held)

    if state.trading_state is TradingState.HALTED:
        deny(ReasonCode.TRADING_HALTED, _halted(state))
    elif state.trading_state is TradingState.REDUCING and not reduces:
        deny(
            ReasonCode.TRADING_REDUCING,
            f"trading is REDUCING at {state.trading_state_scope} scope"
            + (f" ({state.trading_state_reason})" if state.trading_state_reason else "")
            + f": only orders that reduce the {order.symbol} position ({held.normalize():f}) are taken",
        )
    if order.reduce_only and not reduces:
        deny(
            ReasonCode.REDUCE_ONLY_WOULD_INCREASE,
            f"reduce-only {order.side} {qty.normalize():f} would not reduce the {order.symbol} position "
            f"({held.normalize():f} with working orders)",
            "reduceOnly",
        )

    if not state.is_amend:
        if state.open_orders_of_client >= limits.max_open_orders_per_client:
            deny(
                ReasonCode.MAX_OPEN_ORDERS,
                f"client {order.client_id} has {state.open_orders_of_client} working orders; the limit is "
                f"{limits.max_open_orders_per_client}",
            )
        for code, count, velocity, scope in (
            (
                ReasonCode.VELOCITY_CLIENT,
                state.recent_orders_of_client,
                limits.velocity_per_client,
                f"client {order.client_id}",
            ),
            (
                ReasonCode.VELOCITY_SYMBOL,
                state.recent_orders_of_symbol,
                limits.velocity_per_symbol,
                f"symbol {order.symbol}",
            ),
            (ReasonCode.VELOCITY_GLOBAL, state.recent_orders_global, limits.velocity_global, "all clients"),
        ):
            if count >= velocity.max_orders:
                deny(
                    code,
                    f"{count} orders for {scope} in the last {velocity.window_seconds:g}s; the limit is "
                    f"{velocity.max_orders}",
                )
        if state.duplicate_of:
            deny(
                ReasonCode.DUPLICATE_ORDER,
                f"same client, symbol, side, quantity and price as order {state.duplicate_of} within "
                f"{limits.duplicate_window_seconds:g}s",
            )

    if reduces:
        return reasons  # getting smaller is always allowed by the exposure and loss checks

    mark = ref or price
    if mark is not None:
        value = abs(projected) * mark * state.quote_rate
        if value > limits.max_position_notional:
            deny(
                ReasonCode.MAX_POSITION,
                f"{order.symbol} position would be {projected.normalize():f} ({_money(value)} {ccy}); the limit is "
                f"{_money(limits.max_position_notional)} {ccy}",
                "qty",
            )
    if limits.max_position_qty is not None and abs(projected) > limits.max_position_qty:
        deny(
            ReasonCode.MAX_POSITION,
            f"{order.symbol} position would be {projected.normalize():f}; the limit is "
            f"{limits.max_position_qty.normalize():f} units",
            "qty",
        )

    if mark is not None:
        gross, margin = _exposure(state, working, order.symbol, projected, mark, limits)
        if gross > limits.max_gross_exposure:
            deny(
                ReasonCode.MAX_GROSS_EXPOSURE,
                f"gross exposure would be {_money(gross)} {ccy}; the limit is "
                f"{_money(limits.max_gross_exposure)} {ccy}",
                "qty",
            )
        equity = account_equity(limits.account_capital, state.positions)
        if margin > equity:
            deny(
                ReasonCode.INSUFFICIENT_BUYING_POWER,
                f"margin needed {_money(margin)} {ccy} exceeds equity {_money(equity)} {ccy}",
                "qty",
            )
        if state.day_start_equity is not None and equity - state.day_start_equity < -limits.daily_loss_limit:
            deny(
                ReasonCode.DAILY_LOSS_LIMIT,
                f"account {order.account} is down {_money(state.day_start_equity - equity)} {ccy} today; the limit "
                f"is {_money(limits.daily_loss_limit)} {ccy} (only reducing orders are taken)",
            )
        if state.day_peak_equity is not None and state.day_peak_equity - equity > limits.max_drawdown:
            deny(
                ReasonCode.MAX_DRAWDOWN,
                f"account {order.account} is {_money(state.day_peak_equity - equity)} {ccy} below today's peak; the "
                f"limit is {_money(limits.max_drawdown)} {ccy} (only reducing orders are taken)",
            )
    return reasons


def _halted(state: AccountState) -> str:
    why = f": {state.trading_state_reason}" if state.trading_state_reason else ""
    return f"trading is HALTED at {state.trading_state_scope} scope{why}"


def _working_qty(reservations: list[ReservationView]) -> dict[str, Decimal]:
    out: dict[str, Decimal] = {}
    for r in reservations:
        out[r.symbol] = out.get(r.symbol, D0) + r.qty_open * r.side.sign
    return out


def _exposure(
    state: AccountState, working: dict[str, Decimal], symbol: str, projected: Decimal, mark: Decimal, limits: Limits
) -> tuple[Decimal, Decimal]:
    """Projected gross exposure and margin of the account, in the policy currency."""
    gross = abs(projected) * mark * state.quote_rate
    margin = gross / limits.leverage
    prices = {r.symbol: r for r in state.reservations}
    for s in (set(state.positions) | set(working)) - {symbol}:
        pos = state.positions.get(s)
        qty = (pos.qty if pos else D0) + working.get(s, D0)
        if not qty:
            continue
        # Value at the mark; a symbol with working orders but no mark is valued at its orders' price.
        if pos is not None and pos.mark is not None:
            unit, rate, leverage = pos.mark, pos.quote_rate, pos.leverage
        elif s in prices:
            unit, rate, leverage = prices[s].price, prices[s].quote_rate, prices[s].leverage
        else:
            continue
        value = abs(qty) * unit * rate
        gross += value
        margin += value / leverage
    return gross, margin
