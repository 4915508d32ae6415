"""Pre-trade risk: the policy, the account state a decision sees, and the check (a pure function).

``RiskCheck`` is the seam: the risk activity gathers an ``AccountState`` inside the same Postgres transaction
that records the decision and the reservation, and calls the check with the effective ``Limits`` of the
order's account, instrument and broker. The check returns every reason it finds, each with a stable code
(used in the REST rejection and as the ``reason`` label of ``exodus_orders_rejected_total``). It is total:
it never raises for any order; the activity turns an arithmetic failure of a custom check into a denial.

All money figures are in the policy currency (``Currency``, USD by default): an instrument's prices are
converted with its quote currency's rate (``quote_rate``); with no rate the order is refused (``NO_FX_RATE``),
never converted at 1.

**Worst case per side.** Working orders are never netted against the other side. For each symbol the
account is valued at ``max(|position + working buys|, |position - working sells|)``, with this order added
on its side: the position limit, gross exposure and buying power all use that worst case. An order
*reduces* only against the filled position, and only by what other working orders on its side are not
already reducing (a SELL reduces a long of P while sells of S rest when qty <= P - S). Reducing orders
pass REDUCING trading states and ``reduceOnly``, and skip the exposure and loss checks; nothing else does.

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
VALUE_OUT_OF_RANGE          a quantity, price or offset beyond what any instrument trades (nothing else is
                            checked)
QTY_NOT_POSITIVE            quantity <= 0
QTY_BELOW_MIN / ABOVE_MAX   outside the instrument's min/max quantity
QTY_NOT_ON_LOT              not a multiple of the lot step
PRICE_REQUIRED ...          terms that do not go together (a LIMIT without a price, a GTD without expireAt,
                            ...): ``OrderTerms.problems``, under its codes (``TermsCode``), the same rule the
                            API applies before anything starts
PRICE_NOT_ON_TICK           price or stop price off the tick
PRICE_OUT_OF_BAND           price or stop price further from the reference than the band (fat finger)
PEG_OFFSET_OUT_OF_BAND      a pegged order's offset larger than the band (a pegged order is valued at the
                            top of the band around the reference price)
NO_REFERENCE_PRICE          no fresh quote from the order's price source (market data): refuses market and
                            pegged orders, and limit/stop orders unless their instrument class lets them be
                            valued at their own price (``own_price_without_quote``)
STALE_REFERENCE_PRICE       the price source's quote is older than its instrument class allows (same rule)
NO_FX_RATE                  no rate from a quote currency the order or the account needs to the policy
                            currency
EXPIRY_IN_PAST              GTD expiring before now
MAX_NOTIONAL                order notional above the per-order limit
BROKER_MAX_NOTIONAL         order notional above the per-order limit of its broker
MAX_OPEN_ORDERS             the client already has the maximum of working orders
MAX_POSITION                worst-case position of the symbol (above) over the limit (notional, or units)
MAX_GROSS_EXPOSURE          worst-case gross exposure of the account over the limit
INSUFFICIENT_BUYING_POWER   worst-case margin (positions + working orders + this order) above equity
REDUCE_ONLY_WOULD_INCREASE  a reduce-only order that would not reduce the position
VELOCITY_CLIENT             too many orders from the client in the window
VELOCITY_SYMBOL             too many orders in the symbol in the window
VELOCITY_GLOBAL             too many orders overall in the window
DUPLICATE_ORDER             same client, symbol, side, quantity, type and prices within the duplicate window (orders
                            risk refused do not count)
DAILY_LOSS_LIMIT            the account lost more than the daily limit today (realized + unrealized)
MAX_DRAWDOWN                the account fell more than the limit from today's equity peak
==========================  =============================================================================

Limits across accounts (firm-wide and per broker) and the velocity of symbols and of the whole firm are
taken atomically by the risk activity from counter rows (``activities/risk.py``); their codes are here too:
``FIRM_MAX_GROSS_EXPOSURE``, ``FIRM_MAX_OPEN_NOTIONAL``, ``BROKER_MAX_OPEN_NOTIONAL``. So are the activity's
own refusals: ``IDEMPOTENCY_CONFLICT`` (a stored decision belongs to other terms) and ``RISK_CHECK_FAILED``
(the check could not compute, e.g. an arithmetic error in a custom check).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator

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
from core.trailing import worst_trigger

__all__ = [
    "MAX_ABS_PRICE",
    "MAX_ABS_QTY",
    "AccountOverrides",
    "AccountState",
    "BrokerLimits",
    "ClassLimits",
    "Currency",
    "Exposure",
    "InstrumentOverrides",
    "Leg",
    "Limits",
    "PolicySet",
    "PositionView",
    "ReasonCode",
    "ReservationView",
    "RiskCheck",
    "RiskPolicy",
    "VelocityLimit",
    "account_equity",
    "account_exposure",
    "basic_check",
    "exposure_legs",
    "list_exit_notional",
    "linked_group",
    "order_reduces",
    "order_notional",
    "valuation_price",
    "velocity_message",
]

D0 = Decimal(0)
D1 = Decimal(1)
D100 = Decimal(100)
NonNeg = Annotated[Decimal, Field(ge=0)]
Pos = Annotated[Decimal, Field(gt=0)]

#: Beyond these no instrument trades: the check refuses the order (VALUE_OUT_OF_RANGE) before any arithmetic.
MAX_ABS_QTY = Decimal(10) ** 15
MAX_ABS_PRICE = Decimal(10) ** 12


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
    VALUE_OUT_OF_RANGE = "VALUE_OUT_OF_RANGE"
    QTY_NOT_POSITIVE = "QTY_NOT_POSITIVE"
    QTY_BELOW_MIN = "QTY_BELOW_MIN"
    QTY_ABOVE_MAX = "QTY_ABOVE_MAX"
    QTY_NOT_ON_LOT = "QTY_NOT_ON_LOT"
    PRICE_NOT_ON_TICK = "PRICE_NOT_ON_TICK"
    PRICE_OUT_OF_BAND = "PRICE_OUT_OF_BAND"
    PEG_OFFSET_OUT_OF_BAND = "PEG_OFFSET_OUT_OF_BAND"
    NO_REFERENCE_PRICE = "NO_REFERENCE_PRICE"
    STALE_REFERENCE_PRICE = "STALE_REFERENCE_PRICE"
    NO_FX_RATE = "NO_FX_RATE"
    EXPIRY_IN_PAST = "EXPIRY_IN_PAST"
    MAX_NOTIONAL = "MAX_NOTIONAL"
    BROKER_MAX_NOTIONAL = "BROKER_MAX_NOTIONAL"
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
    FIRM_MAX_GROSS_EXPOSURE = "FIRM_MAX_GROSS_EXPOSURE"
    FIRM_MAX_OPEN_NOTIONAL = "FIRM_MAX_OPEN_NOTIONAL"
    BROKER_MAX_OPEN_NOTIONAL = "BROKER_MAX_OPEN_NOTIONAL"
    IDEMPOTENCY_CONFLICT = "IDEMPOTENCY_CONFLICT"
    RISK_CHECK_FAILED = "RISK_CHECK_FAILED"


class Currency(StrEnum):
    """The currencies a risk policy may be kept in (ISO 4217)."""

    USD = "USD"
    EUR = "EUR"
    GBP = "GBP"
    JPY = "JPY"
    CHF = "CHF"
    CAD = "CAD"
    AUD = "AUD"
    NZD = "NZD"


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


class BrokerLimits(BaseModel):
    """Limits of one broker, across every account that trades there (None: no limit)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    #: Largest notional of one order sent to the broker.
    max_notional_per_order: Pos | None = None
    #: Largest notional of all working orders at the broker, all accounts together.
    max_open_notional: Pos | None = None


def _default_classes() -> dict[InstrumentClass, ClassLimits]:
    return {
        InstrumentClass.FX: ClassLimits(price_band_pct=Decimal(2), leverage=Decimal(30)),
        InstrumentClass.EQUITY: ClassLimits(price_band_pct=Decimal(10), leverage=Decimal(4)),
        InstrumentClass.CRYPTO: ClassLimits(price_band_pct=Decimal(15), leverage=Decimal(2)),
    }


class RiskPolicy(BaseModel):
    """The global risk policy (defaults for every account, instrument and broker, and the firm-wide limits)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    #: Currency of every money limit below (ISO code, one of ``Currency``).
    currency: Currency = Currency.USD
    max_notional_per_order: Pos = Decimal("5000000")
    max_open_orders_per_client: Annotated[int, Field(ge=1)] = 500
    #: Per account and symbol, worst case per side, valued at the reference price.
    max_position_notional: Pos = Decimal("20000000")
    #: Per account: the sum over symbols of the worst-case position values.
    max_gross_exposure: Pos = Decimal("100000000")
    #: An account's starting equity (capital); equity = capital + realized + unrealized P&L.
    account_capital: NonNeg = Decimal("10000000")
    daily_loss_limit: Pos = Decimal("500000")
    #: Largest fall from the day's equity peak.
    max_drawdown: Pos = Decimal("1000000")
    #: Firm-wide: the sum of every account's worst-case gross exposure.
    firm_max_gross_exposure: Pos = Decimal("1000000000")
    #: Firm-wide: the notional of every working order of every account.
    firm_max_open_notional: Pos = Decimal("500000000")
    #: Limits of every broker, unless ``brokers`` overrides them for one.
    broker_limits: BrokerLimits = BrokerLimits()
    #: Per-broker overrides (each field replaces the one in ``broker_limits``).
    brokers: dict[str, BrokerLimits] = {}
    classes: dict[InstrumentClass, ClassLimits] = Field(default_factory=_default_classes)
    velocity_per_client: VelocityLimit = VelocityLimit(max_orders=100, window_seconds=1)
    velocity_per_symbol: VelocityLimit = VelocityLimit(max_orders=200, window_seconds=1)
    velocity_global: VelocityLimit = VelocityLimit(max_orders=1000, window_seconds=1)
    #: Same client, symbol, side, quantity and price within this many seconds is refused as a duplicate (0: off).
    duplicate_window_seconds: Annotated[float, Field(ge=0, le=3600)] = 1.0
    #: This many broker rejections in a row halt the account (or the broker) until an operator resets it.
    circuit_breaker_rejections: Annotated[int, Field(ge=1)] = 5

    @field_validator("currency", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.strip().upper() if isinstance(value, str) else value


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
    """The effective limits for one order (global, then class, then account, instrument and broker)."""

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
    firm_max_gross_exposure: Decimal | None = None
    firm_max_open_notional: Decimal | None = None
    broker_max_notional_per_order: Decimal | None = None
    broker_max_open_notional: Decimal | None = None


class PolicySet(BaseModel):
    """The current global policy and every override, at one version of the store."""

    model_config = ConfigDict(frozen=True)

    version: int = 0
    policy: RiskPolicy = RiskPolicy()
    accounts: dict[str, AccountOverrides] = {}
    instruments: dict[str, InstrumentOverrides] = {}
    _cache: dict[tuple[str, str | None, str | None], Limits] = PrivateAttr(default_factory=dict)

    def broker_limits(self, broker: str) -> BrokerLimits:
        """The limits of ``broker`` (its overrides over the defaults for every broker)."""
        base = self.policy.broker_limits
        own = self.policy.brokers.get(broker)
        if own is None:
            return base
        return BrokerLimits(
            max_notional_per_order=own.max_notional_per_order or base.max_notional_per_order,
            max_open_notional=own.max_open_notional or base.max_open_notional,
        )

    def limits(self, account: str, instrument: Instrument | None, broker: str | None = None) -> Limits:
        """Merge global, class, account, instrument and broker values for one order (cached per version)."""
        key = (account, instrument.symbol if instrument else None, broker)
        cached = self._cache.get(key)
        if cached is not None:
            return cached
        if len(self._cache) > 10_000:
            self._cache.clear()
        self._cache[key] = limits = self._limits(account, instrument, broker)
        return limits

    def _limits(self, account: str, instrument: Instrument | None, broker: str | None) -> Limits:
        p = self.policy
        acct = self.accounts.get(account, AccountOverrides())
        inst = self.instruments.get(instrument.symbol, InstrumentOverrides()) if instrument else InstrumentOverrides()
        cls = p.classes.get(instrument.instrument_class) if instrument else None
        cls = cls or ClassLimits(price_band_pct=Decimal(10), leverage=Decimal(1))
        brk = self.broker_limits(broker) if broker else BrokerLimits()

        def pick(*values: object) -> object:
            return next(v for v in values if v is not None)

        # An account override replaces the global per-order limit; an instrument override caps it further.
        overrides = [v for v in (acct.max_notional_per_order, inst.max_notional_per_order) if v is not None]

        return Limits(
            currency=p.currency.value,
            max_notional_per_order=min(overrides) if overrides else p.max_notional_per_order,
            max_open_orders_per_client=pick(acct.max_open_orders_per_client, p.max_open_orders_per_client),
            max_position_notional=pick(acct.max_position_notional, p.max_position_notional),
            max_position_qty=inst.max_position_qty,
            max_gross_exposure=pick(acct.max_gross_exposure, p.max_gross_exposure),
            account_capital=pick(acct.account_capital, p.account_capital),
            daily_loss_limit=pick(acct.daily_loss_limit, p.daily_loss_limit),
            max_drawdown=pick(acct.max_drawdown, p.max_drawdown),
            price_band_pct=pick(inst.price_band_pct, cls.price_band_pct),
            leverage=cls.leverage,
            tradable=(instrument.tradable if instrument else False) and (inst.tradable is not False),
            velocity_per_client=p.velocity_per_client,
            velocity_per_symbol=p.velocity_per_symbol,
            velocity_global=p.velocity_global,
            duplicate_window_seconds=p.duplicate_window_seconds,
            firm_max_gross_exposure=p.firm_max_gross_exposure,
            firm_max_open_notional=p.firm_max_open_notional,
            broker_max_notional_per_order=brk.max_notional_per_order,
            broker_max_open_notional=brk.max_open_notional,
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
    #: Quote currency to policy currency; None when there is no rate (the position cannot be valued).
    quote_rate: Decimal | None = D1
    leverage: Decimal = D1
    #: The instrument's quote currency (for messages).
    currency: str = ""


class ReservationView(BaseModel):
    """What one working order of the account holds."""

    model_config = ConfigDict(frozen=True)

    order_id: str
    symbol: str
    side: OrderSide
    qty_open: Decimal
    #: Valuation price (quote currency), its rate to the policy currency, and the class leverage.
    price: Decimal
    quote_rate: Decimal = D1
    leverage: Decimal = D1
    broker: str = ""
    #: What the reservation holds in the policy currency (default: qty_open * price * quote_rate).
    notional: Decimal | None = None


class AccountState(BaseModel):
    """Everything the check needs to know besides the order and its limits."""

    model_config = ConfigDict(frozen=True)

    #: Working quantity on the order's side that does not use up the position it reduces: its linked orders'
    #: (``OrderRequest.linked_orders``: a list's OCO/OUO legs, a bracket's other exit), which never work together
    #: beyond one's size, and what other lists' one-cancels-other groups hold beyond their largest member each.
    linked_qty: Decimal = D0

    now: datetime
    instrument: Instrument | None
    #: The mid of a fresh quote from the order's price source (None: no fresh quote).
    reference_price: Decimal | None
    #: Where the reference price comes from (a market data source) and how old its quote is (None: unknown).
    reference_source: str | None = None
    reference_age_seconds: float | None = None
    #: Why there is no (usable) reference price: NO_REFERENCE_PRICE or STALE_REFERENCE_PRICE, with a message
    #: naming the source and the age (set by the gatherer from market data).
    reference_problem: RiskReason | None = None
    #: Without a reference price, a limit or stop order is valued at its own price and its band is not
    #: checked (per instrument class, ``market_data.classes``); False: it is refused like a market order.
    own_price_without_quote: bool = True
    #: Value of one unit of the instrument's quote currency in the policy currency (None: no rate).
    quote_rate: Decimal | None = D1
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
    #: An amend: the quantity still open under the new terms (default: the order's quantity).
    open_qty: Decimal | None = None
    #: An amend: what the order holds now. Until the broker answers, the order holds the larger of its old
    #: and new terms, so the exposure checks value that.
    hold: ReservationView | None = None


RiskCheck = Callable[[OrderRequest, Limits, AccountState], list[RiskReason]]


def valuation_price(
    order: OrderRequest, reference_price: Decimal | None, band_pct: Decimal | None = None
) -> Decimal | None:
    """The price an order is valued at (quote currency).

    Its limit price, else its stop price, else the reference price; a pegged order at the worst price its
    peg can reach within the band (the top of the band around the reference price); a trailing stop at its
    trigger as it would stand now, the trail's distance from the reference price (``core.trailing.worst_trigger``).
    """
    if order.type is OrderType.PEGGED:
        if reference_price is None:
            return None
        return reference_price * (D1 + (band_pct or D0) / D100)
    if order.type is OrderType.TRAILING_STOP:
        return worst_trigger(order, reference_price)
    return order.price or order.stop_price or reference_price


def order_notional(
    order: OrderRequest, reference_price: Decimal | None, band_pct: Decimal | None = None
) -> Decimal | None:
    """Quantity times the valuation price (quote currency)."""
    price = valuation_price(order, reference_price, band_pct)
    return None if price is None else order.qty * price


def account_equity(capital: Decimal, positions: dict[str, PositionView]) -> Decimal:
    """Capital plus realized P&L plus unrealized P&L at the marks, in the policy currency.

    A position without a rate to the policy currency cannot be counted (the check refuses orders that
    need it with NO_FX_RATE).
    """
    equity = capital
    for pos in positions.values():
        if pos.quote_rate is None:
            continue
        equity += pos.realized_pnl * pos.quote_rate
        if pos.qty and pos.avg_price is not None and pos.mark is not None:
            equity += pos.qty * (pos.mark - pos.avg_price) * pos.quote_rate
    return equity


# ------------------------------------------------------------------------------------------------ exposure


@dataclass(frozen=True, slots=True)
class Leg:
    """An order's part in the account's exposure: open quantity on its side, valued at ``unit`` per unit."""

    symbol: str
    side: OrderSide
    qty: Decimal
    #: Valuation price (quote currency) of the order itself: its notional is ``qty * price * rate``.
    price: Decimal
    #: Price (quote currency) the symbol's worst-case position is valued at (the mark, or the order's worst).
    unit: Decimal
    rate: Decimal
    leverage: Decimal
    broker: str
    #: Notional (policy currency) of a bracket's larger held exit, reserved with its entry (``list_exit_notional``).
    held: Decimal = D0

    @property
    def notional(self) -> Decimal:
        """The order's notional in the policy currency (with a bracket entry's larger exit)."""
        return self.qty * self.price * self.rate + self.held


@dataclass(frozen=True, slots=True)
class Exposure:
    """The account's worst-case figures (policy currency), with or without one order."""

    gross: Decimal = D0
    margin: Decimal = D0
    #: The worst-case quantity and value of the order's symbol.
    worst_qty: Decimal = D0
    worst_value: Decimal = D0
    #: Notional of the working orders (all, and per broker).
    open_notional: Decimal = D0
    open_notional_by_broker: dict[str, Decimal] = field(default_factory=dict)
    #: Currencies of positions or orders that could not be valued (no rate to the policy currency).
    unpriced: tuple[str, ...] = ()


def _reduces(side: OrderSide, qty: Decimal, position: Decimal, buys: Decimal, sells: Decimal) -> bool:
    """Whether the order shrinks the filled position by no more than other same-side orders leave."""
    if side is OrderSide.SELL:
        return position > 0 and qty <= position - sells
    return position < 0 and qty <= -position - buys


def order_reduces(order: OrderRequest, limits: Limits, state: AccountState) -> bool:
    """Whether the order (for an amend: what it will hold) truly reduces the filled position."""
    current = state.positions.get(order.symbol)
    buys, sells = _working_for(order, state)
    leg = _order_leg(order, limits, state)
    qty = leg.qty if leg is not None else (state.open_qty if state.open_qty is not None else order.qty)
    return _reduces(order.side, qty, current.qty if current else D0, buys, sells)


def linked_group(order: OrderRequest) -> str | None:
    """The one-cancels-other group of a list's leg: its id and its linked orders', sorted (the same for every member).

    None for an order linked to nothing. A list's flatten order, linked to the exits it replaces, has a group of
    its own (its set differs from theirs), so it is not counted as one of them.
    """
    if not order.linked_orders:
        return None
    return ",".join(sorted({order.order_id, *order.linked_orders}))


def _working_for(order: OrderRequest, state: AccountState) -> tuple[Decimal, Decimal]:
    """Working buys and sells of the order's symbol, less its linked orders' (``AccountState.linked_qty``)."""
    buys, sells = _working(state.reservations, order.symbol)
    if order.side is OrderSide.SELL:
        sells = max(sells - state.linked_qty, D0)
    else:
        buys = max(buys - state.linked_qty, D0)
    return buys, sells


def _working(reservations: list[ReservationView], symbol: str) -> tuple[Decimal, Decimal]:
    buys = sells = D0
    for r in reservations:
        if r.symbol == symbol:
            if r.side is OrderSide.BUY:
                buys += r.qty_open
            else:
                sells += r.qty_open
    return buys, sells


_memo: list[tuple[AccountState, Leg | None, Exposure]] = []


def account_exposure(state: AccountState, leg: Leg | None) -> Exposure:
    """The account's worst-case exposure with ``leg`` added on its side (or as it stands, without one).

    Per symbol: ``max(|position + buys|, |position - sells|)``, valued at the mark (a symbol with working
    orders but no mark at its orders' highest price; the order's own symbol at ``leg.unit``). The last few
    results are remembered (the check and the activity ask for the same state and leg).
    """
    for seen_state, seen_leg, seen in _memo:
        if seen_state is state and seen_leg == leg:
            return seen
    exposure = _account_exposure(state, leg)
    _memo.append((state, leg, exposure))
    if len(_memo) > 4:
        del _memo[0]
    return exposure


def _account_exposure(state: AccountState, leg: Leg | None) -> Exposure:
    books: dict[str, list[Any]] = {}  # symbol -> [buys, sells, highest price, rate, leverage]
    open_notional = D0
    by_broker: dict[str, Decimal] = {}
    for r in state.reservations:
        book = books.get(r.symbol)
        if book is None:
            book = books[r.symbol] = [D0, D0, r.price, r.quote_rate, r.leverage]
        if r.side is OrderSide.BUY:
            book[0] += r.qty_open
        else:
            book[1] += r.qty_open
        if r.price > book[2]:
            book[2] = r.price
        notional = r.notional if r.notional is not None else r.qty_open * r.price * r.quote_rate
        open_notional += notional
        by_broker[r.broker] = by_broker.get(r.broker, D0) + notional
    if leg is not None:
        notional = leg.notional
        open_notional += notional
        by_broker[leg.broker] = by_broker.get(leg.broker, D0) + notional

    gross = margin = worst_qty = worst_value = D0
    unpriced: list[str] = []
    symbols = set(state.positions) | set(books)
    if leg is not None:
        symbols.add(leg.symbol)
    for s in symbols:
        pos = state.positions.get(s)
        held = pos.qty if pos is not None else D0
        book = books.get(s)
        buys, sells = (book[0], book[1]) if book is not None else (D0, D0)
        if leg is not None and leg.symbol == s:
            if leg.side is OrderSide.BUY:
                buys += leg.qty
            else:
                sells += leg.qty
        worst = max(abs(held + buys), abs(held - sells))
        rate: Decimal | None
        if leg is not None and leg.symbol == s:
            unit, rate, leverage = leg.unit, leg.rate, leg.leverage
        elif pos is not None and (pos.mark is not None or book is None):
            unit = pos.mark if pos.mark is not None else (pos.avg_price or D0)
            rate, leverage = pos.quote_rate, pos.leverage
        elif book is not None:
            unit, rate, leverage = book[2], book[3], book[4]
        else:  # pragma: no cover - every symbol comes from one of the three
            continue
        if not worst:
            continue
        if rate is None:
            unpriced.append(pos.currency if pos is not None and pos.currency else s)
            continue
        value = worst * unit * rate
        gross += value
        margin += value / leverage
        if leg is not None and leg.symbol == s:
            worst_qty, worst_value = worst, value
    return Exposure(
        gross=gross,
        margin=margin,
        worst_qty=worst_qty,
        worst_value=worst_value,
        open_notional=open_notional,
        open_notional_by_broker=by_broker,
        unpriced=tuple(sorted(set(unpriced))),
    )


def list_exit_notional(order: OrderRequest, reference_price: Decimal | None, rate: Decimal) -> Decimal:
    """A bracket entry's held exits as they can be live together: the larger exit's notional, not their sum.

    Each exit is valued like an order (its limit price, else its stop price, else the reference price) at the
    entry's rate; an exit that cannot be valued counts at the entry's own valuation.
    """
    if not order.list_exits:
        return D0
    values = []
    for terms in order.list_exits:
        price = terms.price or terms.stop_price or reference_price or order.price or order.stop_price or D0
        values.append(terms.qty * price * rate)
    return max(values)


def _order_leg(order: OrderRequest, limits: Limits, state: AccountState) -> Leg | None:
    """The order's leg (with an amend's hold: the larger of old and new), or None when it cannot be valued."""
    ref = state.reference_price
    price = valuation_price(order, ref, limits.price_band_pct)
    rate = state.quote_rate
    if price is None or rate is None:
        return None
    qty = state.open_qty if state.open_qty is not None else order.qty
    unit = price if order.type is OrderType.PEGGED else (ref or price)
    hold = state.hold
    if hold is not None:
        qty = max(qty, hold.qty_open)
        price = max(price, hold.price)
        unit = max(unit, hold.price) if order.type is OrderType.PEGGED else unit
    return Leg(
        symbol=order.symbol,
        side=order.side,
        qty=qty,
        price=price,
        unit=unit,
        rate=rate,
        leverage=limits.leverage,
        broker=order.broker,
        held=list_exit_notional(order, ref, rate) if hold is None else D0,
    )


def _hold_leg(order: OrderRequest, limits: Limits, state: AccountState) -> Leg | None:
    """An amended order's leg as it stands (its current reservation), valued like the new leg."""
    hold = state.hold
    if hold is None:
        return None
    unit = state.reference_price or hold.price
    if order.type is OrderType.PEGGED:
        unit = hold.price
    return Leg(
        symbol=order.symbol,
        side=order.side,
        qty=hold.qty_open,
        price=hold.price,
        unit=unit,
        rate=hold.quote_rate,
        leverage=hold.leverage,
        broker=hold.broker or order.broker,
    )


def exposure_legs(order: OrderRequest, limits: Limits, state: AccountState) -> tuple[Exposure, Exposure] | None:
    """The account's worst-case exposure without and with the order (for limits across accounts).

    Without: as the account stands (for an amend, with the order's current reservation); with: the order
    added (for an amend, the larger of its old and new terms). None when the order cannot be valued.
    """
    leg = _order_leg(order, limits, state)
    if leg is None:
        return None
    return account_exposure(state, _hold_leg(order, limits, state)), account_exposure(state, leg)


# ------------------------------------------------------------------------------------------------ the check


def _money(value: Decimal) -> str:
    return f"{value:,.2f}"


def _qty(value: Decimal) -> str:
    return f"{value.normalize():f}"


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

    # -- magnitudes no arithmetic below has to carry --------------------------------------------------
    out_of_range = [
        (name, value)
        for name, value, bound in (
            ("qty", order.qty, MAX_ABS_QTY),
            ("price", order.price, MAX_ABS_PRICE),
            ("stopPrice", order.stop_price, MAX_ABS_PRICE),
            ("pegOffset", order.peg_offset, MAX_ABS_PRICE),
            ("trailAmount", order.trail_amount, MAX_ABS_PRICE),
            ("activationPrice", order.activation_price, MAX_ABS_PRICE),
            ("qty", state.open_qty, MAX_ABS_QTY),
        )
        if value is not None and (not value.is_finite() or abs(value) > bound)
    ]
    if out_of_range:
        for name, value in out_of_range[:1]:
            bound = MAX_ABS_QTY if name == "qty" else MAX_ABS_PRICE
            deny(ReasonCode.VALUE_OUT_OF_RANGE, f"{name} {value} is beyond {bound:,f}, which nothing trades", name)
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
    # Terms that do not go together: the API refuses them before anything starts; an order that came another
    # way is denied here, under the same codes.
    reasons.extend(order.problems())
    ref: Decimal | None = state.reference_price
    if ref is not None and ref <= 0:
        ref = None
    band = limits.price_band_pct
    if order.trail_amount is not None and not inst.on_tick(order.trail_amount):
        deny(
            ReasonCode.PRICE_NOT_ON_TICK,
            f"trailAmount {order.trail_amount} is not a multiple of the tick {inst.tick_size}",
            "trailAmount",
        )
    for name, given in (
        ("price", order.price),
        ("stopPrice", order.stop_price),
        ("activationPrice", order.activation_price),
    ):
        if given is None:
            continue
        value = given
        if not inst.on_tick(value):
            deny(ReasonCode.PRICE_NOT_ON_TICK, f"{name} {value} is not a multiple of the tick {inst.tick_size}", name)
        if ref:
            off = abs(value - ref) / ref * 100
            if off > band:
                deny(
                    ReasonCode.PRICE_OUT_OF_BAND,
                    f"{name} {value} is {off:.2f}% from the reference {ref}; the band for {inst.symbol} is {band}%",
                    name,
                )
    if order.type is OrderType.PEGGED and ref:
        offset = abs(order.peg_offset or D0)
        room = ref * band / D100
        if offset > room:
            deny(
                ReasonCode.PEG_OFFSET_OUT_OF_BAND,
                f"peg offset {_qty(offset)} is {offset / ref * 100:.2f}% of the reference {ref}; the band for "
                f"{inst.symbol} is {band}% ({_qty(room)})",
                "pegOffset",
            )
    if order.time_in_force is TimeInForce.GTD and order.expire_at is not None and order.expire_at <= state.now:
        deny(ReasonCode.EXPIRY_IN_PAST, f"expireAt {order.expire_at.isoformat()} is in the past", "expireAt")

    problem = state.reference_problem or RiskReason(
        code=ReasonCode.NO_REFERENCE_PRICE, message=f"no reference price for {order.symbol}"
    )
    price = valuation_price(order, ref, band)
    rate = state.quote_rate
    # Without a reference price only a limit or stop order can be valued (at its own price), and only
    # where its instrument class allows it; market and pegged orders never.
    if ref is None and (price is None or not state.own_price_without_quote):
        deny(problem.code, f"cannot value a {order.type} order: {problem.message}", "symbol")
    if rate is None:
        deny(ReasonCode.NO_FX_RATE, f"no FX rate from {inst.quote_currency} to {ccy} to value {order.symbol}")
    notional = None if price is None or rate is None else qty * price * rate
    if notional is not None:
        if notional > limits.max_notional_per_order:
            deny(
                ReasonCode.MAX_NOTIONAL,
                f"notional {_money(notional)} {ccy} exceeds the per-order limit "
                f"{_money(limits.max_notional_per_order)} {ccy}",
                "qty",
            )
        if limits.broker_max_notional_per_order is not None and notional > limits.broker_max_notional_per_order:
            deny(
                ReasonCode.BROKER_MAX_NOTIONAL,
                f"notional {_money(notional)} {ccy} exceeds broker {order.broker}'s per-order limit "
                f"{_money(limits.broker_max_notional_per_order)} {ccy}",
                "qty",
            )

    # -- the account after this order ---------------------------------------------------------------
    current = state.positions.get(order.symbol)
    held = current.qty if current else D0
    buys, sells = _working_for(order, state)
    leg = _order_leg(order, limits, state)
    exposed_qty = leg.qty if leg is not None else (state.open_qty if state.open_qty is not None else qty)
    reduces = _reduces(order.side, exposed_qty, held, buys, sells)
    pending = sells if order.side is OrderSide.SELL else buys

    if state.trading_state is TradingState.HALTED:
        deny(ReasonCode.TRADING_HALTED, _halted(state))
    elif state.trading_state is TradingState.REDUCING and not reduces:
        deny(
            ReasonCode.TRADING_REDUCING,
            f"trading is REDUCING at {state.trading_state_scope} scope"
            + (f" ({state.trading_state_reason})" if state.trading_state_reason else "")
            + f": only orders that reduce the filled {order.symbol} position ({_qty(held)}, of which "
            f"{_qty(pending)} is already being reduced by working orders) are taken",
        )
    # A reduce-only amend is judged by what it will hold (shrinking an exit whose position shrank stays allowed).
    will_hold = state.open_qty if state.is_amend and state.open_qty is not None else exposed_qty
    if order.reduce_only and not _reduces(order.side, will_hold, held, buys, sells):
        deny(
            ReasonCode.REDUCE_ONLY_WOULD_INCREASE,
            f"reduce-only {order.side} {_qty(qty)} would not reduce the filled {order.symbol} position "
            f"({_qty(held)}; working {order.side} orders already cover {_qty(pending)} of it)",
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
                deny(code, velocity_message(count, scope, velocity))
        if state.duplicate_of:
            deny(
                ReasonCode.DUPLICATE_ORDER,
                f"same client, symbol, side, quantity, type and prices as order {state.duplicate_of} within "
                f"{limits.duplicate_window_seconds:g}s",
            )

    if reduces or leg is None:
        return reasons  # getting smaller is always allowed by the exposure and loss checks

    exposure = account_exposure(state, leg)
    if exposure.unpriced:
        deny(
            ReasonCode.NO_FX_RATE,
            f"no FX rate from {', '.join(exposure.unpriced)} to {ccy} to value the account's positions",
        )
        return reasons
    worst = exposure.worst_qty
    if exposure.worst_value > limits.max_position_notional:
        deny(
            ReasonCode.MAX_POSITION,
            f"{order.symbol} position could reach {_qty(worst)} ({_money(exposure.worst_value)} {ccy}) with every "
            f"working order on its side; the limit is {_money(limits.max_position_notional)} {ccy}",
            "qty",
        )
    if limits.max_position_qty is not None and worst > limits.max_position_qty:
        deny(
            ReasonCode.MAX_POSITION,
            f"{order.symbol} position could reach {_qty(worst)} with every working order on its side; the limit is "
            f"{_qty(limits.max_position_qty)} units",
            "qty",
        )
    if exposure.gross > limits.max_gross_exposure:
        deny(
            ReasonCode.MAX_GROSS_EXPOSURE,
            f"gross exposure could reach {_money(exposure.gross)} {ccy} (worst case per side); the limit is "
            f"{_money(limits.max_gross_exposure)} {ccy}",
            "qty",
        )
    equity = account_equity(limits.account_capital, state.positions)
    if exposure.margin > equity:
        deny(
            ReasonCode.INSUFFICIENT_BUYING_POWER,
            f"margin needed {_money(exposure.margin)} {ccy} (worst case per side) exceeds equity "
            f"{_money(equity)} {ccy}",
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


def velocity_message(count: int, scope: str, velocity: VelocityLimit) -> str:
    """The message of a velocity refusal."""
    return f"{count} orders for {scope} in the last {velocity.window_seconds:g}s; the limit is {velocity.max_orders}"


def _halted(state: AccountState) -> str:
    why = f": {state.trading_state_reason}" if state.trading_state_reason else ""
    return f"trading is HALTED at {state.trading_state_scope} scope{why}"
