"""The Exodus domain model: enums, order records, execution reports and the order state machine.

Everything that crosses a process boundary (REST, Temporal payloads, broker adapters) is built from the
types in this module. It imports nothing from the project and nothing that does I/O, so workflow code can
pass it through the Temporal sandbox.

Quantities and prices are ``Decimal``; timestamps are timezone-aware UTC ``datetime`` values named ``*_at``.

Each identifier has one name and one meaning:

* ``client_order_id`` is the client's own id for the order (``"ord-1"``; ``clientOrderId`` in the API and a
  column of ``orders``), ``client_id`` the client's.
* ``order_id`` (ours, ``internalOrderId`` in the API) is derived from the client's idempotency key. The
  workflow id is ``order-{order_id}``.
* ``cl_ord_id`` is the id we send the order to a broker under (FIX ClOrdID, Alpaca's and MT5's client order
  id): ``order_id`` itself, or ``{order_id}.{n}`` for the n-th replacement in a cancel/replace chain
  (``cl_ord_id_for``). Until issue 19 it was called ``client_order_id`` in the broker-facing models; payloads
  and journals of earlier releases still load (``renamed``), and this release still writes the old key.
* ``broker_order_id`` is the venue's own id for the order.

An order's terms (account, symbol, side, type, time in force, quantity, prices, peg, expiry) are declared once,
in ``OrderTerms``, with the rules on which of them go together; the request, the broker commands, and the
venues' and adapters' records inherit them.
"""

from __future__ import annotations

import base64
import hashlib
from datetime import UTC, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Any, Final, Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, model_serializer, model_validator

__all__ = [
    "ACTIVE_STATUSES",
    "OPEN_STATUSES",
    "ORDER_TRANSITIONS",
    "TERMINAL_STATUSES",
    "TERMS",
    "AmendRequest",
    "AmendResult",
    "Break",
    "BreakKind",
    "BrokerAck",
    "CancelOrder",
    "CancelRequest",
    "EventKind",
    "ExecutionReport",
    "Fill",
    "Instrument",
    "NativeLeg",
    "NativeList",
    "InstrumentClass",
    "InvalidTransition",
    "OrderEvent",
    "OrderEventKind",
    "OrderRequest",
    "OrderSide",
    "OrderState",
    "OrderStatus",
    "OrderStatusReport",
    "OrderTerms",
    "OrderType",
    "PegType",
    "PositionReport",
    "ReplaceOrder",
    "ReportKind",
    "ReportOutcome",
    "RiskDecision",
    "RiskReason",
    "SubmitOrder",
    "TermsCode",
    "TimeInForce",
    "TimelineKind",
    "TrailState",
    "TradingState",
    "base_order_id",
    "cl_ord_id_for",
    "derive_order_id",
    "order_id_from_workflow_id",
    "renamed",
    "overfill_break",
    "revision_of",
    "transition",
    "utcnow",
    "workflow_id_for",
]


def utcnow() -> datetime:
    """Return the current time as a timezone-aware UTC datetime (never call this from workflow code)."""
    return datetime.now(UTC)


class OrderSide(StrEnum):
    """Side of an order."""

    BUY = "BUY"
    SELL = "SELL"

    @property
    def sign(self) -> int:
        """+1 for a buy, -1 for a sell."""
        return 1 if self is OrderSide.BUY else -1


class OrderType(StrEnum):
    """Order types. ``PEGGED`` is carried through to brokers that support it (FIX).

    A stop triggers when the price moves *against* the order through ``stop_price`` (a buy when the price rises
    to it); a touched order (``MARKET_IF_TOUCHED``, ``LIMIT_IF_TOUCHED``) when it moves *in its favour* to it (a
    buy when the price falls to it, a sell when it rises to it). Once triggered, each works as a market order
    (``STOP``, ``MARKET_IF_TOUCHED``) or a limit order at ``price`` (``STOP_LIMIT``, ``LIMIT_IF_TOUCHED``).
    """

    MARKET = "MARKET"
    LIMIT = "LIMIT"
    STOP = "STOP"
    STOP_LIMIT = "STOP_LIMIT"
    PEGGED = "PEGGED"
    #: A stop whose trigger follows the market at ``trail_amount`` or ``trail_percent`` (from ``activation_price``
    #: on, when given). Emulated by the order workflow where the broker has no native one (``core.trailing``): held
    #: in Exodus (``EMULATED``), then sent as a MARKET order when triggered.
    TRAILING_STOP = "TRAILING_STOP"
    MARKET_IF_TOUCHED = "MARKET_IF_TOUCHED"
    LIMIT_IF_TOUCHED = "LIMIT_IF_TOUCHED"

    @property
    def needs_price(self) -> bool:
        """Whether a limit price is required."""
        return self in (OrderType.LIMIT, OrderType.STOP_LIMIT, OrderType.LIMIT_IF_TOUCHED)

    @property
    def needs_stop_price(self) -> bool:
        """Whether a stop (trigger) price is required."""
        return self in (OrderType.STOP, OrderType.STOP_LIMIT) or self.is_touched

    @property
    def is_touched(self) -> bool:
        """A touched order: it triggers when the price reaches ``stop_price`` in the order's favour."""
        return self in (OrderType.MARKET_IF_TOUCHED, OrderType.LIMIT_IF_TOUCHED)

    @property
    def limit_once_triggered(self) -> bool:
        """Whether the order, once triggered, works as a limit order at its ``price``."""
        return self in (OrderType.STOP_LIMIT, OrderType.LIMIT_IF_TOUCHED)

    @property
    def trails(self) -> bool:
        """Whether the order takes a trail (``trailAmount`` or ``trailPercent``) and an optional activation price."""
        return self is OrderType.TRAILING_STOP


class PegType(StrEnum):
    """What a pegged order tracks (FIX ExecInst 18 = P/R/M)."""

    MARKET = "MARKET"
    PRIMARY = "PRIMARY"
    MIDPOINT = "MIDPOINT"


class TimeInForce(StrEnum):
    """How long an order works. GTD needs an ``expire_at``; DAY ends at the configured session close.

    ``OPG`` and ``CLS`` (market or limit orders only) execute at the session's open or close (the auction) and
    expire unfilled right after it: the venue ends them, the order workflow sets no timer of its own.
    """

    DAY = "DAY"
    GTC = "GTC"
    IOC = "IOC"
    FOK = "FOK"
    GTD = "GTD"
    OPG = "OPG"
    CLS = "CLS"

    @property
    def is_auction(self) -> bool:
        """At the open or at the close: the order works in that session's auction only."""
        return self in (TimeInForce.OPG, TimeInForce.CLS)


class InstrumentClass(StrEnum):
    """Instrument classes, used for per-class risk settings and sensible defaults."""

    FX = "FX"
    EQUITY = "EQUITY"
    CRYPTO = "CRYPTO"


class TradingState(StrEnum):
    """Trading state of a scope (global, account, symbol)."""

    ACTIVE = "ACTIVE"
    REDUCING = "REDUCING"
    HALTED = "HALTED"


class OrderStatus(StrEnum):
    """Order status. See ``ORDER_TRANSITIONS`` for how one status leads to another."""

    RECEIVED = "RECEIVED"
    DENIED = "DENIED"
    #: Approved and held by Exodus until its trigger (an emulated trailing stop): not sent to any broker yet.
    EMULATED = "EMULATED"
    SUBMITTED = "SUBMITTED"
    ACCEPTED = "ACCEPTED"
    REJECTED = "REJECTED"
    TRIGGERED = "TRIGGERED"
    PENDING_UPDATE = "PENDING_UPDATE"
    PENDING_CANCEL = "PENDING_CANCEL"
    PARTIALLY_FILLED = "PARTIALLY_FILLED"
    FILLED = "FILLED"
    CANCELED = "CANCELED"
    EXPIRED = "EXPIRED"

    @property
    def is_terminal(self) -> bool:
        """Whether the order can no longer work at the broker."""
        return self in TERMINAL_STATUSES


TERMINAL_STATUSES: Final = frozenset(
    {OrderStatus.DENIED, OrderStatus.REJECTED, OrderStatus.FILLED, OrderStatus.CANCELED, OrderStatus.EXPIRED}
)
#: Statuses in which the order is (or may be) live at the broker.
OPEN_STATUSES: Final = frozenset(
    {
        OrderStatus.SUBMITTED,
        OrderStatus.ACCEPTED,
        OrderStatus.TRIGGERED,
        OrderStatus.PENDING_UPDATE,
        OrderStatus.PENDING_CANCEL,
        OrderStatus.PARTIALLY_FILLED,
    }
)
#: Every non-terminal status, including RECEIVED (risk check not yet done) and EMULATED (held by Exodus).
ACTIVE_STATUSES: Final = OPEN_STATUSES | {OrderStatus.RECEIVED, OrderStatus.EMULATED}


class OrderEventKind(StrEnum):
    """What happened to an order. Each kind is a trigger in ``ORDER_TRANSITIONS``."""

    DENY = "DENY"
    #: Approved, and held by Exodus until its trigger (an emulated trailing stop).
    EMULATE = "EMULATE"
    SUBMIT = "SUBMIT"
    ACCEPT = "ACCEPT"
    REJECT = "REJECT"
    TRIGGER = "TRIGGER"
    REQUEST_UPDATE = "REQUEST_UPDATE"
    UPDATE = "UPDATE"
    UPDATE_REJECTED = "UPDATE_REJECTED"
    REQUEST_CANCEL = "REQUEST_CANCEL"
    CANCEL = "CANCEL"
    CANCEL_REJECTED = "CANCEL_REJECTED"
    EXPIRE = "EXPIRE"
    PARTIAL_FILL = "PARTIAL_FILL"
    FILL = "FILL"


class TimelineKind(StrEnum):
    """Timeline entries that leave the order's status as it is (``OrderState.record``).

    With ``OrderEventKind`` (the transitions, ``OrderState.apply``) these are every kind an order's timeline
    holds: ``OrderEvent.kind`` is one of the two (``EventKind``), and so is ``order_events.kind``.
    """

    RECEIVED = "RECEIVED"
    #: A broker report the order's status cannot take (a late duplicate acknowledgement, one before submission).
    REPORT_IGNORED = "REPORT_IGNORED"
    OVERFILL_REFUSED = "OVERFILL_REFUSED"
    #: A fill booked although the status had no transition for it (a fill is money: never dropped).
    FILL_BOOKED_OUT_OF_STATE = "FILL_BOOKED_OUT_OF_STATE"
    CANCEL_REQUESTED = "CANCEL_REQUESTED"
    #: A cancel request while one is queued or in flight (recorded, not sent again).
    CANCEL_REPEATED = "CANCEL_REPEATED"
    #: A cancel request for an order that is already final.
    CANCEL_REFUSED = "CANCEL_REFUSED"
    AMEND_DENIED = "AMEND_DENIED"
    #: No answer to a submission: the order stays in flight and the broker is asked before any resend.
    SUBMIT_UNCONFIRMED = "SUBMIT_UNCONFIRMED"
    STATUS_POLL_FAILED = "STATUS_POLL_FAILED"
    RECONCILED = "RECONCILED"
    #: An emulated trailing stop: the market reached its activation price (its trigger starts to follow).
    TRAIL_ACTIVATED = "TRAIL_ACTIVATED"
    #: An emulated trailing stop: the market crossed its trigger (the order is sent as a MARKET order).
    TRAIL_TRIGGERED = "TRAIL_TRIGGERED"
    #: An emulated trailing stop cannot follow the market (no quote, or a stale one); recorded when it starts.
    TRAIL_NO_QUOTE = "TRAIL_NO_QUOTE"


#: Every kind of timeline entry.
EventKind = OrderEventKind | TimelineKind


class BreakKind(StrEnum):
    """What a reconciliation break of an order is about (the ``kind`` column of ``reconciliation_breaks``)."""

    #: A fill report that would take the order beyond its quantity (refused, not booked).
    OVERFILL = "OVERFILL"
    #: The broker's filled quantity differs from the order's.
    QTY_MISMATCH = "QTY_MISMATCH"
    #: A booked fill that the broker does not report.
    UNKNOWN_FILL = "UNKNOWN_FILL"
    #: The broker's final status differs from the order's.
    STATUS_MISMATCH = "STATUS_MISMATCH"
    #: The broker does not know the order's ``cl_ord_id``.
    UNKNOWN_AT_BROKER = "UNKNOWN_AT_BROKER"
    #: The closing comparison with the broker could not be made.
    RECONCILE_FAILED = "RECONCILE_FAILED"
    #: Booking rounds failed before one went in.
    BOOKING_DELAYED = "BOOKING_DELAYED"
    #: A booking refused because the order's row holds another request's terms.
    BOOKING_FOR_OTHER_TERMS = "BOOKING_FOR_OTHER_TERMS"
    #: A fill that reached no order workflow and is not in the ledger.
    UNMATCHED_FILL = "UNMATCHED_FILL"
    # End-of-day reconciliation (core/reconciliation.py, ``ReconciliationKind``): the broker's statement against
    # the ledger and the read model.
    #: The broker's position in an account and symbol differs from the ledger's (beyond the day's fill differences).
    POSITION_DRIFT = "POSITION_DRIFT"
    #: The broker reports a fill of the day the ledger has not booked.
    FILL_MISSING_IN_LEDGER = "FILL_MISSING_IN_LEDGER"
    #: The ledger booked a fill of the day the broker does not report.
    FILL_UNKNOWN_TO_BROKER = "FILL_UNKNOWN_TO_BROKER"
    #: The broker works an order Exodus does not know, or knows as finished.
    ORPHAN_ORDER_AT_BROKER = "ORPHAN_ORDER_AT_BROKER"
    #: An order is open in Exodus but not at the broker.
    ORDER_NOT_AT_BROKER = "ORDER_NOT_AT_BROKER"


class InvalidTransition(Exception):
    """An event that the order's current status does not allow."""

    def __init__(self, status: OrderStatus, event: OrderEventKind) -> None:
        """Build the error for ``event`` arriving in ``status``."""
        super().__init__(f"order in status {status} cannot take event {event}")
        self.status = status
        self.event = event


class _Resume:
    """Marker in the table: go back to the order's working status (ACCEPTED, TRIGGERED or PARTIALLY_FILLED)."""

    def __repr__(self) -> str:
        return "RESUME"


RESUME: Final = _Resume()

_S = OrderStatus
_E = OrderEventKind

#: ``(status, event) -> next status``. Any pair not listed is illegal and ``transition`` raises.
#: ``RESUME`` means: return to the working status the order was in before a pending request.
ORDER_TRANSITIONS: Final[dict[tuple[OrderStatus, OrderEventKind], OrderStatus | _Resume]] = {
    (_S.RECEIVED, _E.DENY): _S.DENIED,
    (_S.RECEIVED, _E.SUBMIT): _S.SUBMITTED,
    (_S.RECEIVED, _E.CANCEL): _S.CANCELED,  # canceled before it was sent to any broker
    (_S.RECEIVED, _E.EMULATE): _S.EMULATED,  # approved, held by Exodus until its trigger
    (_S.EMULATED, _E.SUBMIT): _S.SUBMITTED,  # triggered: sent
    (_S.EMULATED, _E.CANCEL): _S.CANCELED,  # canceled while held (never sent)
    (_S.EMULATED, _E.EXPIRE): _S.EXPIRED,  # its GTD/DAY expiry came while held (never sent)
    # An order may be canceled before the broker acknowledged it (the cancel waits for the submission's
    # outcome, then cancels at the broker or finds nothing to cancel).
    (_S.SUBMITTED, _E.REQUEST_CANCEL): _S.PENDING_CANCEL,
    (_S.SUBMITTED, _E.ACCEPT): _S.ACCEPTED,
    (_S.SUBMITTED, _E.REJECT): _S.REJECTED,
    (_S.SUBMITTED, _E.TRIGGER): _S.TRIGGERED,
    (_S.SUBMITTED, _E.CANCEL): _S.CANCELED,  # IOC/FOK canceled by the venue before any ack reached us
    (_S.SUBMITTED, _E.EXPIRE): _S.EXPIRED,
    # Fills may overtake the acknowledgement (a marketable order fills before the submit call returns).
    (_S.SUBMITTED, _E.PARTIAL_FILL): _S.PARTIALLY_FILLED,
    (_S.SUBMITTED, _E.FILL): _S.FILLED,
    (_S.ACCEPTED, _E.TRIGGER): _S.TRIGGERED,
    (_S.ACCEPTED, _E.REQUEST_UPDATE): _S.PENDING_UPDATE,
    (_S.ACCEPTED, _E.REQUEST_CANCEL): _S.PENDING_CANCEL,
    (_S.ACCEPTED, _E.CANCEL): _S.CANCELED,  # unsolicited (venue-side) cancel
    (_S.ACCEPTED, _E.EXPIRE): _S.EXPIRED,
    (_S.ACCEPTED, _E.REJECT): _S.REJECTED,  # a stop-limit rejected when it triggers
    (_S.ACCEPTED, _E.PARTIAL_FILL): _S.PARTIALLY_FILLED,
    (_S.ACCEPTED, _E.FILL): _S.FILLED,
    (_S.TRIGGERED, _E.REQUEST_UPDATE): _S.PENDING_UPDATE,
    (_S.TRIGGERED, _E.REQUEST_CANCEL): _S.PENDING_CANCEL,
    (_S.TRIGGERED, _E.CANCEL): _S.CANCELED,
    (_S.TRIGGERED, _E.EXPIRE): _S.EXPIRED,
    (_S.TRIGGERED, _E.REJECT): _S.REJECTED,
    (_S.TRIGGERED, _E.PARTIAL_FILL): _S.PARTIALLY_FILLED,
    (_S.TRIGGERED, _E.FILL): _S.FILLED,
    (_S.PARTIALLY_FILLED, _E.PARTIAL_FILL): _S.PARTIALLY_FILLED,
    (_S.PARTIALLY_FILLED, _E.FILL): _S.FILLED,
    (_S.PARTIALLY_FILLED, _E.REQUEST_UPDATE): _S.PENDING_UPDATE,
    (_S.PARTIALLY_FILLED, _E.REQUEST_CANCEL): _S.PENDING_CANCEL,
    (_S.PARTIALLY_FILLED, _E.CANCEL): _S.CANCELED,
    (_S.PARTIALLY_FILLED, _E.EXPIRE): _S.EXPIRED,
    (_S.PENDING_UPDATE, _E.UPDATE): RESUME,
    (_S.PENDING_UPDATE, _E.UPDATE_REJECTED): RESUME,
    (_S.PENDING_UPDATE, _E.TRIGGER): _S.PENDING_UPDATE,  # the update is still outstanding
    (_S.PENDING_UPDATE, _E.PARTIAL_FILL): _S.PENDING_UPDATE,  # booked; the update is still outstanding
    (_S.PENDING_UPDATE, _E.FILL): _S.FILLED,  # the fill won the race against the update
    (_S.PENDING_UPDATE, _E.REQUEST_CANCEL): _S.PENDING_CANCEL,
    (_S.PENDING_UPDATE, _E.CANCEL): _S.CANCELED,
    (_S.PENDING_UPDATE, _E.EXPIRE): _S.EXPIRED,
    (_S.PENDING_CANCEL, _E.CANCEL): _S.CANCELED,
    (_S.PENDING_CANCEL, _E.CANCEL_REJECTED): RESUME,  # e.g. the venue answered "too late" or "unknown order"
    (_S.PENDING_CANCEL, _E.EXPIRE): _S.EXPIRED,
    (_S.PENDING_CANCEL, _E.TRIGGER): _S.PENDING_CANCEL,
    (_S.PENDING_CANCEL, _E.ACCEPT): _S.PENDING_CANCEL,  # a late ack of the submission; the cancel is outstanding
    (_S.PENDING_CANCEL, _E.REJECT): _S.REJECTED,  # the submission itself was rejected; nothing to cancel
    # A fill racing a cancel is booked, never dropped. A partial one leaves the cancel outstanding;
    # a complete one ends the order FILLED (the venue will answer the cancel "too late").
    (_S.PENDING_CANCEL, _E.PARTIAL_FILL): _S.PENDING_CANCEL,
    (_S.PENDING_CANCEL, _E.FILL): _S.FILLED,
    # Real-world races: a fill that happened before the venue processed the cancel (or the expiry) can
    # reach us after the confirmation. A late partial fill is booked and the order stays closed; a late
    # fill of the whole remainder means the cancel never took effect.
    (_S.CANCELED, _E.PARTIAL_FILL): _S.CANCELED,
    (_S.CANCELED, _E.FILL): _S.FILLED,
    (_S.EXPIRED, _E.PARTIAL_FILL): _S.EXPIRED,
    (_S.EXPIRED, _E.FILL): _S.FILLED,
}

#: Statuses an order can resume to after a pending request is answered.
_WORKING_STATUSES: Final = frozenset({_S.ACCEPTED, _S.TRIGGERED, _S.PARTIALLY_FILLED})


def transition(status: OrderStatus, event: OrderEventKind, *, working: OrderStatus | None = None) -> OrderStatus:
    """Return the status that ``event`` leads to from ``status``.

    Args:
        status: The order's current status.
        event: What happened.
        working: The status to resume to when a pending update or cancel is answered (ACCEPTED,
            TRIGGERED or PARTIALLY_FILLED). Required only for the ``RESUME`` transitions.

    Raises:
        InvalidTransition: The pair is not in ``ORDER_TRANSITIONS``.
    """
    nxt = ORDER_TRANSITIONS.get((status, event))
    if nxt is None:
        raise InvalidTransition(status, event)
    if isinstance(nxt, _Resume):
        if working is None or working not in _WORKING_STATUSES:
            raise ValueError(f"{status} + {event} resumes the working status, was given {working!r}")
        return working
    return nxt


# --------------------------------------------------------------------------------------------------------
# Identifiers


def derive_order_id(idempotency_key: str) -> str:
    """Derive the internal order id from an idempotency key.

    The id is ``EX`` plus 16 base32 characters of SHA-256(key): 18 characters, short enough for every
    broker's client order id field (Kraken's free-text limit is 18, MT5's comment is short), stable for the
    same key, and with 80 bits it will not collide in practice.
    """
    digest = hashlib.sha256(idempotency_key.encode()).digest()
    return "EX" + base64.b32encode(digest).decode()[:16]


def workflow_id_for(order_id: str) -> str:
    """Return the Temporal workflow id of an order."""
    return f"order-{order_id}"


def order_id_from_workflow_id(workflow_id: str) -> str:
    """Inverse of ``workflow_id_for``."""
    return workflow_id.removeprefix("order-")


def cl_ord_id_for(order_id: str, revision: int = 0) -> str:
    """The id an order is sent to a broker under: the order id, or ``{order_id}.{n}`` for the n-th replacement."""
    return order_id if revision == 0 else f"{order_id}.{revision}"


def revision_of(cl_ord_id: str) -> int:
    """The replacement count a ``cl_ord_id`` carries (0 for the original)."""
    _, _, suffix = cl_ord_id.partition(".")
    return int(suffix) if suffix.isdigit() else 0


def base_order_id(cl_ord_id: str) -> str:
    """The order id of a ``cl_ord_id`` (which may carry a replacement suffix)."""
    return cl_ord_id.split(".", 1)[0]


# --------------------------------------------------------------------------------------------------------
# Records

#: Records: immutable, unknown fields refused, renamed fields written under their old names (``renamed``).
_Frozen = ConfigDict(frozen=True, extra="forbid", serialize_by_alias=True)
PositiveDecimal = Annotated[Decimal, Field(gt=0)]


def renamed(old: str, new: str, **field: Any) -> Any:
    """A field renamed from ``old`` to ``new``: payloads of either name load; this release writes ``old``.

    Written under the old name for one release, so that a worker of the previous release still reads what this
    one writes (a rolling upgrade, a rollback); the next release writes ``new``, the one after stops reading
    ``old``. Models with renamed fields set ``serialize_by_alias`` (as ``_Frozen`` does).
    """
    return Field(validation_alias=AliasChoices(new, old), serialization_alias=old, **field)


class Instrument(BaseModel):
    """A tradable instrument with its trading rules."""

    model_config = _Frozen

    symbol: str
    instrument_class: InstrumentClass
    base_currency: str
    quote_currency: str
    tick_size: PositiveDecimal
    lot_step: PositiveDecimal
    min_qty: PositiveDecimal
    max_qty: PositiveDecimal
    #: Initial mid price of the simulated feed.
    initial_price: PositiveDecimal
    #: Simulated volatility per feed step, as a fraction of the price (0 keeps the price constant).
    volatility: Annotated[Decimal, Field(ge=0)] = Decimal("0.0002")
    #: Simulated half-spread in ticks.
    half_spread_ticks: Annotated[int, Field(ge=0)] = 1
    #: Size shown at the top of the simulated book; larger orders fill in pieces.
    display_qty: PositiveDecimal
    tradable: bool = True

    def on_tick(self, price: Decimal) -> bool:
        """Whether ``price`` is a multiple of the tick size."""
        return (price % self.tick_size) == 0

    def on_lot(self, qty: Decimal) -> bool:
        """Whether ``qty`` is a multiple of the lot step."""
        return (qty % self.lot_step) == 0

    def round_price(self, price: Decimal) -> Decimal:
        """Round a price to the nearest tick."""
        return (price / self.tick_size).quantize(Decimal(1)) * self.tick_size


class RiskReason(BaseModel):
    """Why an order was refused, by its terms' rules or by the risk check: a stable code and a human message.

    ``field`` names the field at fault by its API name (``stopPrice``), when there is one.
    """

    model_config = _Frozen

    code: str
    message: str
    field: str | None = None


class TermsCode(StrEnum):
    """Terms that do not go together (``OrderTerms.problems``): the API's 422 codes, and the risk check's."""

    PRICE_REQUIRED = "PRICE_REQUIRED"
    PRICE_NOT_ALLOWED = "PRICE_NOT_ALLOWED"
    STOP_PRICE_REQUIRED = "STOP_PRICE_REQUIRED"
    STOP_PRICE_NOT_ALLOWED = "STOP_PRICE_NOT_ALLOWED"
    PEG_TYPE_REQUIRED = "PEG_TYPE_REQUIRED"
    PEG_NOT_ALLOWED = "PEG_NOT_ALLOWED"
    EXPIRY_REQUIRED = "EXPIRY_REQUIRED"
    EXPIRY_NOT_ALLOWED = "EXPIRY_NOT_ALLOWED"
    TIME_IN_FORCE_NOT_ALLOWED = "TIME_IN_FORCE_NOT_ALLOWED"
    TRAIL_REQUIRED = "TRAIL_REQUIRED"
    TRAIL_CONFLICT = "TRAIL_CONFLICT"
    TRAIL_NOT_ALLOWED = "TRAIL_NOT_ALLOWED"


class OrderTerms(BaseModel):
    """An order's terms: what it trades, how, and for how long.

    Declared here only: the request (``OrderRequest``), the broker commands (``SubmitOrder``, ``ReplaceOrder``),
    the venues' and adapters' records of an order and the API's view of one inherit them. The rules on which
    terms go together are here too (``problems``), checked under one set of codes (``TermsCode``).
    """

    model_config = _Frozen

    account: str
    symbol: str
    side: OrderSide
    type: OrderType
    time_in_force: TimeInForce
    qty: PositiveDecimal
    price: PositiveDecimal | None = None
    stop_price: PositiveDecimal | None = None
    peg_type: PegType | None = None
    peg_offset: Decimal | None = None
    expire_at: datetime | None = None
    #: A trailing stop's distance from the best price since activation: in price, or in percent of that price.
    trail_amount: PositiveDecimal | None = None
    trail_percent: PositiveDecimal | None = None
    #: A trailing stop starts to trail once the market reaches this price (a sell at or above it, a buy at or below).
    activation_price: PositiveDecimal | None = None

    def summary(self) -> str:
        """One line such as ``BUY 100 AAPL LIMIT 187.50 GTC``."""
        parts = [self.side.value, f"{self.qty.normalize():f}", self.symbol, self.type.value]
        if self.stop_price is not None:
            parts.append(f"stop {self.stop_price.normalize():f}")
        if self.price is not None:
            parts.append(f"{self.price.normalize():f}")
        if self.trail_amount is not None:
            parts.append(f"trail {self.trail_amount.normalize():f}")
        if self.trail_percent is not None:
            parts.append(f"trail {self.trail_percent.normalize():f}%")
        if self.activation_price is not None:
            parts.append(f"from {self.activation_price.normalize():f}")
        parts.append(self.time_in_force.value)
        return " ".join(parts)

    def terms(self, **changes: Any) -> dict[str, Any]:
        """The terms as keyword arguments (with ``changes``), to build another model that has them."""
        values = {name: getattr(self, name) for name in TERMS}
        values.update(changes)
        return values

    def problems(self) -> list[RiskReason]:
        """Terms that do not go together, each with its code and the field at fault (by its API name).

        The one place of these rules: the API refuses such an order (422) before anything starts, and the risk
        check denies one that reached it another way, under the same codes.
        """
        out: list[RiskReason] = []

        def bad(code: TermsCode, field: str, message: str) -> None:
            out.append(RiskReason(code=code.value, field=field, message=f"{field}: {message}"))

        t, tif = self.type, self.time_in_force
        if t.needs_price and self.price is None:
            bad(TermsCode.PRICE_REQUIRED, "price", f"required for a {t.value} order")
        if not t.needs_price and self.price is not None:
            bad(TermsCode.PRICE_NOT_ALLOWED, "price", f"not allowed for a {t.value} order")
        if t.needs_stop_price and self.stop_price is None:
            bad(TermsCode.STOP_PRICE_REQUIRED, "stopPrice", f"required for a {t.value} order")
        if not t.needs_stop_price and self.stop_price is not None:
            bad(TermsCode.STOP_PRICE_NOT_ALLOWED, "stopPrice", f"not allowed for a {t.value} order")
        if t is OrderType.PEGGED and self.peg_type is None:
            bad(TermsCode.PEG_TYPE_REQUIRED, "pegType", "required for a PEGGED order (MARKET, PRIMARY or MIDPOINT)")
        if t is not OrderType.PEGGED and (self.peg_type is not None or self.peg_offset is not None):
            bad(TermsCode.PEG_NOT_ALLOWED, "pegType", "only a PEGGED order takes pegType/pegOffset")
        if tif is TimeInForce.GTD and self.expire_at is None:
            bad(TermsCode.EXPIRY_REQUIRED, "expireAt", "required when timeInForce is GTD")
        if tif is not TimeInForce.GTD and self.expire_at is not None:
            bad(TermsCode.EXPIRY_NOT_ALLOWED, "expireAt", "only allowed when timeInForce is GTD")
        if t is OrderType.MARKET and tif is TimeInForce.GTD:
            bad(TermsCode.TIME_IN_FORCE_NOT_ALLOWED, "timeInForce", "a MARKET order cannot be GTD")
        if t.trails:
            if self.trail_amount is None and self.trail_percent is None:
                bad(
                    TermsCode.TRAIL_REQUIRED,
                    "trailAmount",
                    f"trailAmount or trailPercent is required for a {t.value} order",
                )
            elif self.trail_amount is not None and self.trail_percent is not None:
                bad(TermsCode.TRAIL_CONFLICT, "trailPercent", "give trailAmount or trailPercent, not both")
            if tif in (TimeInForce.IOC, TimeInForce.FOK):
                bad(TermsCode.TIME_IN_FORCE_NOT_ALLOWED, "timeInForce", f"a {t.value} order cannot be {tif.value}")
        else:
            for field, value in (
                ("trailAmount", self.trail_amount),
                ("trailPercent", self.trail_percent),
                ("activationPrice", self.activation_price),
            ):
                if value is not None:
                    bad(TermsCode.TRAIL_NOT_ALLOWED, field, f"only a TRAILING_STOP order takes {field}")
        if tif.is_auction and t not in (OrderType.MARKET, OrderType.LIMIT):
            bad(
                TermsCode.TIME_IN_FORCE_NOT_ALLOWED,
                "timeInForce",
                f"{tif.value} (at the {'open' if tif is TimeInForce.OPG else 'close'}) is for MARKET and LIMIT "
                f"orders only, not {t.value}",
            )
        return out


#: The names of an order's terms.
TERMS: Final = tuple(OrderTerms.model_fields)


class OrderRequest(OrderTerms):
    """A validated order as the workflow receives it: its terms, whose it is, and where it goes."""

    model_config = _Frozen

    order_id: str
    idempotency_key: str
    #: SHA-256 of the canonical request body; tells a retried request from a different one under the same key.
    request_hash: str
    client_id: str
    client_order_id: str
    #: Only reduce the position (refused if it would increase it).
    reduce_only: bool = False
    broker: str
    received_at: datetime
    #: Who sent the order (API principal), for the audit trail.
    submitted_by: str = "anonymous"
    #: Unique per REST call; the decision echoes it, so the API tells a new order from a repeat.
    submission_id: str = ""
    #: A leg of an order list: the order ids of the legs linked to it (OCO/OUO, a bracket's other exit). They never
    #: work beyond one leg's size together, so risk does not count them against this order's reduction.
    linked_orders: tuple[str, ...] = ()
    #: A bracket's entry: the terms of its exits the list holds until the entry fills. Its risk check reserves
    #: the worst case of the legs that can be live together: the entry plus the larger of these (never the sum,
    #: since the exits are linked). Empty for every other order.
    list_exits: tuple[OrderTerms, ...] = ()
    #: A leg of an order list the broker carries natively (``core.nativelist``): the head order is sent with its
    #: attached legs in one request; an attached leg is never sent on its own, only found at the broker.
    native: NativeList | None = None


class NativeLeg(BaseModel):
    """A leg attached to a native list's head order: its role at the broker, our client order id, its prices."""

    model_config = _Frozen

    #: ``take_profit`` (a limit exit) or ``stop_loss`` (a stop or stop-limit exit).
    role: Literal["take_profit", "stop_loss"]
    cl_ord_id: str
    side: OrderSide
    type: OrderType
    price: Decimal | None = None
    stop_price: Decimal | None = None


class NativeList(BaseModel):
    """How an order takes part in a list the broker carries (Alpaca's order classes).

    On the head order (a bracket's or OTO's entry, an OCO's limit leg): ``legs`` are sent with it in one request.
    On an attached leg: ``held_by`` is the head's client order id and ``role`` which of its legs it is; the
    adapter never sends such an order, it finds the broker's leg and follows it under the leg's own id.
    """

    model_config = _Frozen

    #: ``bracket``, ``oco`` or ``oto`` (the broker's order class).
    order_class: Literal["bracket", "oco", "oto"]
    legs: tuple[NativeLeg, ...] = ()
    held_by: str | None = None
    role: Literal["take_profit", "stop_loss"] | None = None


OrderRequest.model_rebuild()


class RiskDecision(BaseModel):
    """The outcome of a pre-trade risk check. A denial is a value, not an exception."""

    model_config = _Frozen

    order_id: str
    approved: bool
    reasons: list[RiskReason] = []
    reference_price: Decimal | None = None
    notional: Decimal | None = None
    decided_at: datetime
    #: The request hash of the order the decision belongs to (lets the API spot a different body under a key).
    request_hash: str = ""
    #: The submission that created the order.
    submission_id: str = ""


class ReportKind(StrEnum):
    """What an execution report says happened at the broker."""

    ACCEPTED = "ACCEPTED"
    REJECTED = "REJECTED"
    TRIGGERED = "TRIGGERED"
    FILL = "FILL"
    CANCELED = "CANCELED"
    CANCEL_REJECTED = "CANCEL_REJECTED"
    REPLACED = "REPLACED"
    REPLACE_REJECTED = "REPLACE_REJECTED"
    EXPIRED = "EXPIRED"


class ExecutionReport(BaseModel):
    """One report from a broker about one order, delivered to the order workflow as a signal.

    ``exec_id`` is unique per report at the broker (for a fill it is the trade id) and is what the
    workflow deduplicates on. ``cum_qty``/``leaves_qty`` are the broker's cumulative view after this report.
    """

    model_config = _Frozen

    broker: str
    exec_id: str
    kind: ReportKind
    cl_ord_id: str = renamed("client_order_id", "cl_ord_id")
    broker_order_id: str | None = None
    symbol: str
    side: OrderSide
    last_qty: Decimal = Decimal(0)
    last_price: Decimal | None = None
    cum_qty: Decimal = Decimal(0)
    leaves_qty: Decimal = Decimal(0)
    avg_price: Decimal | None = None
    fee: Decimal = Decimal(0)
    reason: str | None = None
    #: New terms after REPLACED.
    new_qty: Decimal | None = None
    new_price: Decimal | None = None
    new_stop_price: Decimal | None = None
    transact_at: datetime

    @property
    def order_id(self) -> str:
        """The Exodus order id this report belongs to."""
        return base_order_id(self.cl_ord_id)


class BrokerAck(BaseModel):
    """A broker's synchronous answer to a submit, cancel or replace request.

    ``accepted`` false with a ``reason`` is a definite refusal. Reports the broker already produced for the
    order (for example the fills of a marketable order) may ride along in ``reports``; they are also
    delivered as signals, and the workflow deduplicates them.
    """

    model_config = _Frozen

    accepted: bool
    cl_ord_id: str = renamed("client_order_id", "cl_ord_id")
    broker_order_id: str | None = None
    reason: str | None = None
    #: For cancels: the broker does not know the order (it never arrived).
    not_found: bool = False
    reports: list[ExecutionReport] = []


class OrderStatusReport(BaseModel):
    """A broker's view of one order and its fills, used for retries and reconciliation."""

    model_config = _Frozen

    broker: str
    cl_ord_id: str = renamed("client_order_id", "cl_ord_id")
    broker_order_id: str | None
    status: OrderStatus
    qty: Decimal
    cum_qty: Decimal
    avg_price: Decimal | None = None
    price: Decimal | None = None
    stop_price: Decimal | None = None
    reports: list[ExecutionReport] = []

    @property
    def fills(self) -> list[ExecutionReport]:
        """The fill reports among ``reports``."""
        return [r for r in self.reports if r.kind is ReportKind.FILL]


class Fill(BaseModel):
    """A booked fill."""

    model_config = _Frozen

    exec_id: str
    order_id: str
    broker: str
    account: str
    symbol: str
    side: OrderSide
    qty: PositiveDecimal
    price: PositiveDecimal
    fee: Decimal = Decimal(0)
    filled_at: datetime


class OrderEvent(BaseModel):
    """One entry of an order's timeline (append-only; ``seq`` is 1-based and gap-free)."""

    model_config = _Frozen

    seq: int
    at: datetime
    kind: EventKind
    status: OrderStatus
    detail: str = ""
    actor: str | None = None
    data: dict[str, str] = {}


class Break(BaseModel):
    """A reconciliation break of an order: its kind and what it found.

    Its text, ``"KIND: detail"``, is what the order's flags show and what ``reconciliation_breaks.detail`` holds
    (beside the kind); payloads carry the text as well (as earlier releases wrote breaks), and a text loads back
    as a break.
    """

    model_config = _Frozen

    kind: BreakKind
    detail: str

    @property
    def text(self) -> str:
        """``"KIND: detail"``."""
        return f"{self.kind.value}: {self.detail}"

    def __str__(self) -> str:
        return self.text

    @model_validator(mode="before")
    @classmethod
    def _from_text(cls, value: Any) -> Any:
        # The wire form (and every payload of earlier releases): the text.
        if isinstance(value, str):
            kind, _, detail = value.partition(": ")
            return {"kind": kind, "detail": detail}
        return value

    @model_serializer
    def _to_text(self) -> str:
        return self.text


class CancelRequest(BaseModel):
    """An operator's or client's request to cancel an order (the ``cancel`` signal's payload)."""

    model_config = _Frozen

    requested_by: str = "anonymous"
    reason: str = "cancel requested"
    requested_at: datetime | None = None


class AmendRequest(BaseModel):
    """Change price and/or quantity of a working order (the ``amend`` update's payload)."""

    model_config = _Frozen

    qty: PositiveDecimal | None = None
    price: PositiveDecimal | None = None
    stop_price: PositiveDecimal | None = None
    requested_by: str = "anonymous"


class AmendResult(BaseModel):
    """What the broker answered to an amend."""

    model_config = _Frozen

    accepted: bool
    status: OrderStatus
    reason: str | None = None
    qty: Decimal
    price: Decimal | None = None
    stop_price: Decimal | None = None


class TrailState(BaseModel):
    """An emulated trailing stop as its workflow follows it (``core.trailing`` moves it; the workflow keeps it).

    ``extreme`` is the best price seen since activation (the highest bid for a sell, the lowest ask for a buy),
    ``trigger`` the stop price it gives (the trail away from it, on the tick). Only the final order is sent.
    """

    model_config = ConfigDict(extra="forbid")

    activated: bool = False
    extreme: Decimal | None = None
    trigger: Decimal | None = None
    #: The price the last check read, and its time (the quote's).
    last_price: Decimal | None = None
    last_quote_at: datetime | None = None
    checks: int = 0
    #: Why the last check could not follow the market (None: it could); a new problem is recorded once.
    problem: str | None = None
    triggered_at: datetime | None = None


class ReportOutcome(StrEnum):
    """What ``OrderState.apply_report`` did with a report."""

    APPLIED = "APPLIED"
    DUPLICATE = "DUPLICATE"
    OVERFILL = "OVERFILL"
    IGNORED = "IGNORED"


class OrderState(BaseModel):
    """The full state of one order, held by its workflow and returned by the ``state`` query.

    Methods take the event time as an argument (workflow code passes ``workflow.now()``), so the class stays
    deterministic. Every change appends an ``OrderEvent`` to ``events``.
    """

    model_config = ConfigDict(extra="forbid")

    request: OrderRequest
    status: OrderStatus = OrderStatus.RECEIVED
    #: Status to resume to once a pending update or cancel is answered.
    working_status: OrderStatus = OrderStatus.ACCEPTED
    qty: Decimal
    price: Decimal | None = None
    stop_price: Decimal | None = None
    #: Replacement count; ``cl_ord_id`` carries it as a suffix.
    revision: int = 0
    broker_order_id: str | None = None
    filled_qty: Decimal = Decimal(0)
    avg_price: Decimal | None = None
    fees: Decimal = Decimal(0)
    fills: list[Fill] = []
    events: list[OrderEvent] = []
    seen_exec_ids: list[str] = []
    decision: RiskDecision | None = None
    reason: str | None = None
    #: Set once expiry (GTD/DAY/IOC immediacy) has asked the broker to cancel: the cancel ends as EXPIRED.
    expiring: bool = False
    #: Problems that need an operator's eye (overfills, reconciliation breaks).
    flags: list[str] = []
    created_at: datetime
    updated_at: datetime
    #: An emulated trailing stop: its trigger as it follows the market (None for every other order).
    trail: TrailState | None = None

    @classmethod
    def new(cls, request: OrderRequest, *, at: datetime) -> OrderState:
        """Create the state of a freshly received order."""
        state = cls(
            request=request,
            qty=request.qty,
            price=request.price,
            stop_price=request.stop_price,
            created_at=at,
            updated_at=at,
        )
        state.record(TimelineKind.RECEIVED, at=at, detail=request.summary(), actor=request.submitted_by)
        return state

    # -- derived -----------------------------------------------------------------------------------------

    @property
    def order_id(self) -> str:
        """The internal order id."""
        return self.request.order_id

    @property
    def cl_ord_id(self) -> str:
        """The id the broker knows the order by now (a replacement gives it a new one)."""
        return cl_ord_id_for(self.order_id, self.revision)

    def terms(self) -> dict[str, Any]:
        """The order's terms now: the request's, with the quantity and prices of its last replacement."""
        return self.request.terms(qty=self.qty, price=self.price, stop_price=self.stop_price)

    @property
    def leaves_qty(self) -> Decimal:
        """Quantity still open (zero once the order is closed)."""
        return Decimal(0) if self.status.is_terminal else max(self.qty - self.filled_qty, Decimal(0))

    @property
    def is_terminal(self) -> bool:
        """Whether the order is closed."""
        return self.status.is_terminal

    def summary_line(self) -> str:
        """One human line for the Temporal UI's current details."""
        text = f"{self.request.summary()} · {self.status.value}"
        if self.filled_qty:
            text += f" {self.filled_qty.normalize():f}/{self.qty.normalize():f}"
            if self.avg_price is not None:
                text += f" @ {self.avg_price.normalize():f}"
        text += f" · {self.request.broker} · client {self.request.client_id}/{self.request.client_order_id}"
        if self.reason and self.status in (OrderStatus.DENIED, OrderStatus.REJECTED):
            text += f" · {self.reason}"
        if self.flags:
            text += " · FLAGS: " + ", ".join(self.flags)
        return text

    # -- changes -----------------------------------------------------------------------------------------

    def record(
        self,
        kind: EventKind,
        *,
        at: datetime,
        detail: str = "",
        actor: str | None = None,
        data: dict[str, str] | None = None,
    ) -> OrderEvent:
        """Append a timeline entry without changing status."""
        event = OrderEvent(
            seq=len(self.events) + 1,
            at=at,
            kind=kind,
            status=self.status,
            detail=detail,
            actor=actor,
            data=data or {},
        )
        self.events.append(event)
        self.updated_at = at
        return event

    def apply(
        self,
        event: OrderEventKind,
        *,
        at: datetime,
        detail: str = "",
        actor: str | None = None,
        data: dict[str, str] | None = None,
    ) -> OrderStatus:
        """Move the order through ``event`` (raises ``InvalidTransition``) and record it."""
        new = transition(self.status, event, working=self.working_status)
        self.status = new
        if new in _WORKING_STATUSES:
            self.working_status = new
        self.record(event, at=at, detail=detail, actor=actor, data=data)
        return new

    def can(self, event: OrderEventKind) -> bool:
        """Whether ``event`` is legal in the current status."""
        return (self.status, event) in ORDER_TRANSITIONS

    def apply_report(self, report: ExecutionReport, *, at: datetime) -> ReportOutcome:
        """Apply one broker report: deduplicate by ``exec_id``, refuse overfills, book fills.

        A report that the current status cannot take (a late duplicate acknowledgement, say) is recorded
        in the timeline as ignored rather than raising: brokers are outside our control.
        """
        if report.exec_id in self.seen_exec_ids:
            return ReportOutcome.DUPLICATE
        self.seen_exec_ids.append(report.exec_id)
        if report.broker_order_id and not self.broker_order_id:
            self.broker_order_id = report.broker_order_id
        data = {"exec_id": report.exec_id, "broker_kind": report.kind.value}
        if report.kind is ReportKind.FILL:
            return self._apply_fill(report, at=at, data=data)
        event = _REPORT_EVENTS[report.kind]
        if report.kind is ReportKind.CANCELED and self.expiring:
            event = OrderEventKind.EXPIRE
        if report.kind is ReportKind.REPLACED:
            self.revision = max(self.revision, revision_of(report.cl_ord_id))
            self.qty = report.new_qty if report.new_qty is not None else self.qty
            self.price = report.new_price if report.new_price is not None else self.price
            self.stop_price = report.new_stop_price if report.new_stop_price is not None else self.stop_price
        if not self.can(event):
            self.record(
                TimelineKind.REPORT_IGNORED,
                at=at,
                detail=f"{report.kind.value} report does not apply in status {self.status.value}",
                data=data,
            )
            return ReportOutcome.IGNORED
        if report.kind in (ReportKind.REJECTED, ReportKind.CANCELED, ReportKind.EXPIRED) and report.reason:
            self.reason = report.reason
        detail = report.reason or ""
        if report.kind is ReportKind.REPLACED:
            detail = f"now {self.qty.normalize():f}" + (
                f" @ {self.price.normalize():f}" if self.price is not None else ""
            )
        self.apply(event, at=at, detail=detail, data=data)
        return ReportOutcome.APPLIED

    def _apply_fill(self, report: ExecutionReport, *, at: datetime, data: dict[str, str]) -> ReportOutcome:
        qty = report.last_qty
        price = report.last_price
        if qty <= 0 or price is None or price <= 0:
            self.record(
                TimelineKind.REPORT_IGNORED, at=at, detail=f"fill without quantity or price: {qty} @ {price}", data=data
            )
            return ReportOutcome.IGNORED
        if self.filled_qty + qty > self.qty:
            flag = (
                f"OVERFILL {report.exec_id}: {qty.normalize():f} more on "
                f"{self.filled_qty.normalize():f}/{self.qty.normalize():f}"
            )
            self.flags.append(flag)
            self.record(TimelineKind.OVERFILL_REFUSED, at=at, detail=flag, data=data)
            return ReportOutcome.OVERFILL
        fill = Fill(
            exec_id=report.exec_id,
            order_id=self.order_id,
            broker=report.broker,
            account=self.request.account,
            symbol=self.request.symbol,
            side=self.request.side,
            qty=qty,
            price=price,
            fee=report.fee,
            filled_at=report.transact_at,
        )
        notional = (self.avg_price or Decimal(0)) * self.filled_qty + qty * price
        self.filled_qty += qty
        self.avg_price = notional / self.filled_qty
        self.fees += report.fee
        self.fills.append(fill)
        event = OrderEventKind.FILL if self.filled_qty == self.qty else OrderEventKind.PARTIAL_FILL
        data = {**data, "qty": f"{qty:f}", "price": f"{price:f}"}
        detail = (
            f"{qty.normalize():f} @ {price.normalize():f} ({self.filled_qty.normalize():f}/{self.qty.normalize():f})"
        )
        if event is OrderEventKind.PARTIAL_FILL:
            # Also while an update or cancel is pending: that request resumes to PARTIALLY_FILLED.
            self.working_status = OrderStatus.PARTIALLY_FILLED
        if not self.can(event):
            # Cannot happen with the table as written (every open or closed-by-cancel status takes fills),
            # but a fill is money: book it and flag the status problem instead of losing it.
            self.flags.append(f"fill {report.exec_id} in status {self.status.value}")
            self.record(TimelineKind.FILL_BOOKED_OUT_OF_STATE, at=at, detail=detail, data=data)
            return ReportOutcome.APPLIED
        self.apply(event, at=at, detail=detail, data=data)
        return ReportOutcome.APPLIED

    def merge_status(self, status: OrderStatusReport, *, at: datetime, final: bool = False) -> list[Break]:
        """Take what a broker's status report knows that we do not, and list the differences left.

        Reports in ``status.reports`` go through ``apply_report`` (so known ones are skipped). A terminal
        broker status the order has not reached is applied as a synthesized report. With ``final`` the
        order is closed and the result is a reconciliation: every difference is returned as a break.
        """
        breaks: list[Break] = []
        for report in sorted(status.reports, key=lambda r: r.transact_at):
            if self.apply_report(report, at=at) is ReportOutcome.OVERFILL:
                breaks.append(overfill_break(report))
        if status.broker_order_id and not self.broker_order_id:
            self.broker_order_id = status.broker_order_id
        synthetic = _STATUS_REPORTS.get(status.status)
        if synthetic is not None and not self.is_terminal and status.cum_qty == self.filled_qty:
            report = ExecutionReport(
                broker=status.broker,
                exec_id=f"{status.cl_ord_id}:status:{status.status.value}",
                kind=synthetic,
                cl_ord_id=status.cl_ord_id,
                broker_order_id=status.broker_order_id,
                symbol=self.request.symbol,
                side=self.request.side,
                cum_qty=status.cum_qty,
                reason=f"broker status {status.status.value}",
                transact_at=at,
            )
            self.apply_report(report, at=at)
        if status.cum_qty != self.filled_qty:
            breaks.append(
                Break(
                    kind=BreakKind.QTY_MISMATCH,
                    detail=f"broker reports {status.cum_qty.normalize():f} filled, "
                    f"the ledger {self.filled_qty.normalize():f}",
                )
            )
        if final:
            broker_fills = {r.exec_id for r in status.fills}
            if broker_fills:
                for fill in self.fills:
                    if fill.exec_id not in broker_fills:
                        detail = f"{fill.exec_id} is booked but the broker does not report it"
                        breaks.append(Break(kind=BreakKind.UNKNOWN_FILL, detail=detail))
            same = status.status == self.status or (
                self.status is OrderStatus.EXPIRED and status.status is OrderStatus.CANCELED
            )
            if not same and status.status.is_terminal:
                detail = f"broker says {status.status.value}, the order is {self.status.value}"
                breaks.append(Break(kind=BreakKind.STATUS_MISMATCH, detail=detail))
        for brk in breaks:
            if brk.text not in self.flags:
                self.flags.append(brk.text)
        return breaks

    # -- broker commands ---------------------------------------------------------------------------------

    def sent_terms(self, **changes: Any) -> dict[str, Any]:
        """The terms the broker gets: an emulated trailing stop goes out as the MARKET order it triggered."""
        terms = self.terms() | changes
        if self.trail is not None:
            terms |= {"type": OrderType.MARKET, "trail_amount": None, "trail_percent": None, "activation_price": None}
        return terms

    def submit_order(self) -> SubmitOrder:
        """The submission of the order's current terms."""
        if self.request.native is not None:
            return SubmitOrder(cl_ord_id=self.cl_ord_id, native=self.request.native, **self.sent_terms())
        return SubmitOrder(cl_ord_id=self.cl_ord_id, **self.sent_terms())

    def cancel_order(self, reason: str) -> CancelOrder:
        """A request to cancel the order the broker knows as ``cl_ord_id``."""
        r = self.request
        return CancelOrder(
            cl_ord_id=self.cl_ord_id,
            broker_order_id=self.broker_order_id,
            symbol=r.symbol,
            side=r.side,
            qty=self.qty,
            reason=reason,
        )

    def replace_order(self, *, qty: Decimal, price: Decimal | None, stop_price: Decimal | None) -> ReplaceOrder:
        """A cancel/replace to new quantity and prices, under the next revision's ``cl_ord_id``."""
        return ReplaceOrder(
            orig_cl_ord_id=self.cl_ord_id,
            cl_ord_id=cl_ord_id_for(self.order_id, self.revision + 1),
            broker_order_id=self.broker_order_id,
            **self.sent_terms(qty=qty, price=price, stop_price=stop_price),
        )


def overfill_break(report: ExecutionReport) -> Break:
    """The break of a fill report refused because it would exceed the order quantity."""
    return Break(kind=BreakKind.OVERFILL, detail=f"{report.exec_id} would exceed the order quantity")


_REPORT_EVENTS: Final[dict[ReportKind, OrderEventKind]] = {
    ReportKind.ACCEPTED: OrderEventKind.ACCEPT,
    ReportKind.REJECTED: OrderEventKind.REJECT,
    ReportKind.TRIGGERED: OrderEventKind.TRIGGER,
    ReportKind.CANCELED: OrderEventKind.CANCEL,
    ReportKind.CANCEL_REJECTED: OrderEventKind.CANCEL_REJECTED,
    ReportKind.REPLACED: OrderEventKind.UPDATE,
    ReportKind.REPLACE_REJECTED: OrderEventKind.UPDATE_REJECTED,
    ReportKind.EXPIRED: OrderEventKind.EXPIRE,
}


# --------------------------------------------------------------------------------------------------------
# Requests to brokers


class SubmitOrder(OrderTerms):
    """A new order as sent to a broker (``OrderState.submit_order``)."""

    model_config = _Frozen

    cl_ord_id: str = renamed("client_order_id", "cl_ord_id")
    #: A leg of a list the broker carries natively (``OrderRequest.native``).
    native: NativeList | None = None


class CancelOrder(BaseModel):
    """A request to cancel the order a broker knows as ``cl_ord_id`` (``OrderState.cancel_order``)."""

    model_config = _Frozen

    cl_ord_id: str = renamed("client_order_id", "cl_ord_id")
    broker_order_id: str | None = None
    symbol: str
    side: OrderSide
    qty: Decimal
    reason: str = ""


class ReplaceOrder(OrderTerms):
    """A cancel/replace: the order known as ``orig_cl_ord_id`` takes new terms and a new ``cl_ord_id``.

    Built by ``OrderState.replace_order`` with all the order's terms; replacements sent by earlier releases
    carried no account, peg or expiry (``account`` is empty then: the adapters use their own record of it).
    """

    model_config = _Frozen

    orig_cl_ord_id: str = renamed("orig_client_order_id", "orig_cl_ord_id")
    cl_ord_id: str = renamed("client_order_id", "cl_ord_id")
    broker_order_id: str | None = None
    account: str = ""


class PositionReport(BaseModel):
    """A broker's view of a position, for reconciliation."""

    model_config = _Frozen

    broker: str
    account: str
    symbol: str
    qty: Decimal
    avg_price: Decimal | None = None


#: Terminal broker statuses that a status poll may apply when no report told us.
_STATUS_REPORTS: Final[dict[OrderStatus, ReportKind]] = {
    OrderStatus.CANCELED: ReportKind.CANCELED,
    OrderStatus.EXPIRED: ReportKind.EXPIRED,
    OrderStatus.REJECTED: ReportKind.REJECTED,
}
