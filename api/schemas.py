"""Request and response bodies of the REST API (camelCase on the wire, unknown fields refused)."""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, JsonValue, StringConstraints, field_validator
from pydantic.alias_generators import to_camel

from core.bounds import MAX_TEXT, PegOffset, Text, TrailPercent, UtcTime
from core.bounds import Price as Price
from core.bounds import Qty as Qty
from core.contingency import Contingency, LegRole, TriggerMode
from core.domain import (
    TERMS,
    Fill,
    OrderEvent,
    OrderRequest,
    OrderSide,
    OrderState,
    OrderStatus,
    OrderTerms,
    OrderType,
    PegType,
    RiskReason,
    TimeInForce,
    TradingState,
)
from core.legtrigger import PriceTrigger

__all__ = [
    "LIST_EXAMPLES",
    "ORDER_EXAMPLES",
    "AmendBody",
    "CancelAllBody",
    "CancelBody",
    "CashPublic",
    "ErrorBody",
    "FillPublic",
    "LegCreate",
    "LegPublic",
    "ListAccepted",
    "ListPublic",
    "OrderListCreate",
    "OrderAccepted",
    "OrderCreate",
    "OrderEventPublic",
    "OrderPublic",
    "OrdersPublic",
    "PositionPublic",
    "PositionsPublic",
    "Reason",
    "TradingStateBody",
    "TradingStatePublic",
]

Identifier = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._:@/\-]+$")
]
#: A free-text reason (cancels, trading states, cancel-all, policy changes): 1-500 characters, no control characters.
ReasonText = Annotated[Text, StringConstraints(strip_whitespace=True, min_length=1, max_length=MAX_TEXT)]


class _Wire(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")


def _upper(value: Any) -> Any:
    return value.upper() if isinstance(value, str) else value


class Reason(BaseModel):
    """Why a request was refused: a stable code, a message, and the field at fault when there is one."""

    code: str
    message: str
    field: str | None = None

    @classmethod
    def of(cls, reason: RiskReason) -> Reason:
        """From a risk reason."""
        return cls(code=reason.code, message=reason.message, field=reason.field)


class ErrorBody(BaseModel):
    """Body of every 4xx/5xx answer."""

    status: Literal["rejected", "conflict", "not_found", "error", "unauthorized"]
    message: str | None = None
    reasons: list[Reason] = []
    internal_order_id: str | None = Field(None, serialization_alias="internalOrderId")


#: The order examples of the OpenAPI document (and of /docs). Each one is accepted by the default risk policy
#: at the paper feed's starting prices (``tests/api/test_examples.py`` submits them): limit and stop prices
#: sit inside the price band (2% for FX, 10% for equities, 15% for crypto) around EURUSD 1.085, AAPL 190,
#: MSFT 420, NVDA 120.
ORDER_EXAMPLES: list[JsonValue] = [
    {"clientId": "desk-1", "clientOrderId": "ord-1", "symbol": "AAPL", "side": "BUY", "qty": 100},
    {
        "clientId": "desk-1",
        "clientOrderId": "ord-2",
        "symbol": "MSFT",
        "side": "BUY",
        "qty": 10,
        "price": 400,
        "timeInForce": "GTC",
    },
    {
        "clientId": "desk-1",
        "clientOrderId": "fx-1",
        "symbol": "EURUSD",
        "side": "BUY",
        "qty": 100000,
        "type": "LIMIT",
        "price": "1.08400",
        "timeInForce": "GTC",
    },
    {
        "clientId": "desk-1",
        "clientOrderId": "stop-1",
        "symbol": "NVDA",
        "side": "SELL",
        "qty": 50,
        "type": "STOP_LIMIT",
        "stopPrice": "115.00",
        "price": "114.50",
        "timeInForce": "GTD",
        "expireAt": "2099-12-31T21:00:00Z",
    },
]


#: The trailing-stop keys of an order's body (added with issue 15).
_TRAIL_KEYS = ("trailAmount", "trailPercent", "activationPrice")
#: The keys a list's leg and a list took later (absent, they leave the hash of every earlier list as it was).
_LIST_KEYS = ("emulationTrigger", "trailTicks")


class OrderCreate(_Wire):
    """A new order.

    ``type`` defaults to LIMIT when a price is given and MARKET otherwise; ``timeInForce`` defaults to DAY;
    ``account`` defaults to ``clientId``; ``broker`` defaults to the configured default broker.

    What a client may send of an order's terms (``core.domain.OrderTerms``): each under the edge's bounds
    (``core.bounds``), some optional with a default or inferred. ``terms`` completes them; their combination
    rules are ``OrderTerms.problems``, and ``to_request`` builds the order the workflow receives.
    """

    model_config = ConfigDict(json_schema_extra={"examples": ORDER_EXAMPLES})

    client_order_id: Identifier
    client_id: Identifier
    symbol: Annotated[Text, StringConstraints(strip_whitespace=True, min_length=1, max_length=32)]
    qty: Qty
    side: OrderSide
    price: Price | None = None
    type: OrderType | None = None
    time_in_force: TimeInForce = TimeInForce.DAY
    stop_price: Price | None = None
    #: ISO 8601 with a timezone, 1970-2200; normalized to UTC.
    expire_at: UtcTime | None = None
    broker: Identifier | None = None
    account: Identifier | None = None
    peg_type: PegType | None = None
    peg_offset: PegOffset | None = None
    #: Refuse the order if it would increase the position instead of reducing it.
    reduce_only: bool = False
    #: A TRAILING_STOP's trail: a price distance, or a percentage (above 0, below 100) of the best price; one of them.
    trail_amount: Price | None = None
    trail_percent: TrailPercent | None = None
    #: A TRAILING_STOP starts to trail once the market reaches this price.
    activation_price: Price | None = None
    #: A TRAILING_STOP's trail in ticks of the instrument (instead of trailAmount or trailPercent).
    trail_ticks: Annotated[int, Field(gt=0, le=1_000_000)] | None = None

    _side = field_validator("side", "type", "time_in_force", "peg_type", mode="before")(_upper)

    @field_validator("symbol")
    @classmethod
    def _symbol_upper(cls, value: str) -> str:
        return value.upper()

    @property
    def order_type(self) -> OrderType:
        """The explicit type, or LIMIT/MARKET inferred from the price."""
        if self.type is not None:
            return self.type
        return OrderType.LIMIT if self.price is not None else OrderType.MARKET

    def terms(self) -> dict[str, Any]:
        """The order's terms: as sent, with the account and the type completed."""
        sent = {name: getattr(self, name) for name in TERMS}
        return sent | {"account": self.account or self.client_id, "type": self.order_type}

    def problems(self) -> list[Reason]:
        """Terms that do not go together (``OrderTerms.problems``: each names the field at fault)."""
        return [Reason.of(r) for r in OrderTerms(**self.terms()).problems()]

    def with_trail_in_ticks(self, tick: Decimal | None, *, prefix: str = "") -> tuple[Self, Reason | None]:
        """A trail given in ticks as the price distance it is (``trailTicks`` x the instrument's ``tick``).

        ``tick`` None: the symbol is unknown (refused as such). ``prefix`` names the field's place (a list's leg).
        """
        if self.trail_ticks is None:
            return self, None
        field = f"{prefix}trailTicks"
        if self.order_type is not OrderType.TRAILING_STOP:
            return self, Reason(
                code="TRAIL_NOT_ALLOWED", field=field, message=f"{field}: only a TRAILING_STOP takes it"
            )
        if self.trail_amount is not None or self.trail_percent is not None:
            return self, Reason(
                code="TRAIL_CONFLICT",
                field=field,
                message=f"{field}: give trailTicks, trailAmount or trailPercent, one",
            )
        if tick is None:
            return self, None
        return self.model_copy(update={"trail_amount": self.trail_ticks * tick}), None

    def to_request(
        self,
        *,
        order_id: str,
        idempotency_key: str,
        broker: str,
        received_at: datetime,
        submitted_by: str,
        submission_id: str,
    ) -> OrderRequest:
        """The order as the workflow receives it."""
        return OrderRequest(
            **self.terms(),
            order_id=order_id,
            idempotency_key=idempotency_key,
            request_hash=self.request_hash(),
            client_id=self.client_id,
            client_order_id=self.client_order_id,
            reduce_only=self.reduce_only,
            broker=broker,
            received_at=received_at,
            submitted_by=submitted_by,
            submission_id=submission_id,
        )

    def request_hash(self) -> str:
        """SHA-256 of the canonical body (what makes two requests "the same order")."""
        body = self.model_dump(mode="json", by_alias=True)
        body["type"] = self.order_type.value
        for name in _TRAIL_KEYS + _LIST_KEYS:  # absent, they leave the hash of every earlier order as it was
            if body.get(name) is None:
                body.pop(name, None)
        canonical = json.dumps(body, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()


class OrderAccepted(BaseModel):
    """Answer to ``POST /orders`` (201 new, 200 repeat of the same request, 422 refused)."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)

    status: Literal["accepted", "rejected", "pending"]
    internal_order_id: str
    client_order_id: str
    client_id: str
    order_status: OrderStatus | None = None
    reasons: list[Reason] = []
    duplicate: bool = False
    workflow_id: str
    links: dict[str, str] = {}


class FillPublic(BaseModel):
    """A booked fill."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)

    exec_id: str
    qty: Decimal
    price: Decimal
    fee: Decimal
    filled_at: datetime

    @classmethod
    def of(cls, fill: Fill) -> FillPublic:
        """From a domain fill."""
        return cls(exec_id=fill.exec_id, qty=fill.qty, price=fill.price, fee=fill.fee, filled_at=fill.filled_at)


class RiskReasonPublic(BaseModel):
    """One reason of a risk decision: its stable code, message and the field at fault (if one)."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)

    code: str
    message: str
    field: str | None = None


class RiskDecisionPublic(BaseModel):
    """An order's pre-trade risk decision as recorded with it: the price it was valued at and what it held."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)

    approved: bool
    reasons: list[RiskReasonPublic] = []
    #: The reference price the order was valued at (a fresh quote's mid, or its own price where allowed).
    reference_price: Decimal | None = None
    #: The order's notional in the policy currency at that price.
    notional: Decimal | None = None
    decided_at: datetime | None = None


class OrderEventPublic(BaseModel):
    """One entry of an order's timeline."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)

    seq: int
    at: datetime
    kind: str
    status: OrderStatus
    detail: str = ""
    actor: str | None = None

    @classmethod
    def of(cls, event: OrderEvent) -> OrderEventPublic:
        """From a domain event."""
        return cls(
            seq=event.seq, at=event.at, kind=event.kind, status=event.status, detail=event.detail, actor=event.actor
        )


class OrderPublic(OrderTerms):
    """An order: its terms, status, fills and timeline."""

    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, frozen=False, extra="ignore", serialize_by_alias=False
    )

    internal_order_id: str
    client_order_id: str
    client_id: str
    broker: str
    broker_order_id: str | None = None
    status: OrderStatus
    filled_qty: Decimal
    leaves_qty: Decimal
    avg_price: Decimal | None = None
    reason: str | None = None
    flags: list[str] = []
    created_at: datetime
    updated_at: datetime
    workflow_id: str
    fills: list[FillPublic] | None = None
    events: list[OrderEventPublic] | None = None
    #: The pre-trade risk decision (one order's read only; None before it is recorded).
    risk: RiskDecisionPublic | None = None
    #: Where the answer came from: the live workflow, or the Postgres read model.
    source: Literal["workflow", "store"] = "store"

    @classmethod
    def of_state(cls, state: OrderState, *, workflow_id: str) -> OrderPublic:
        """From a workflow's state query."""
        r = state.request
        return cls(
            **state.terms(),
            internal_order_id=r.order_id,
            client_order_id=r.client_order_id,
            client_id=r.client_id,
            broker=r.broker,
            broker_order_id=state.broker_order_id,
            status=state.status,
            filled_qty=state.filled_qty,
            leaves_qty=state.leaves_qty,
            avg_price=state.avg_price,
            reason=state.reason,
            flags=state.flags,
            created_at=state.created_at,
            updated_at=state.updated_at,
            workflow_id=workflow_id,
            fills=[FillPublic.of(f) for f in state.fills],
            events=[OrderEventPublic.of(e) for e in state.events],
            source="workflow",
        )


class OrdersPublic(BaseModel):
    """A page of orders."""

    data: list[OrderPublic]
    count: int
    limit: int
    offset: int


class CancelBody(_Wire):
    """Optional body of a cancel request."""

    reason: Annotated[Text, StringConstraints(max_length=MAX_TEXT)] = "cancel requested"


class AmendBody(_Wire):
    """New terms for a working order; give at least one field."""

    qty: Qty | None = None
    price: Price | None = None
    stop_price: Price | None = None


class PositionPublic(BaseModel):
    """A position in the ledger."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)

    account: str
    symbol: str
    qty: Decimal
    avg_price: Decimal | None = None
    realized_pnl: Decimal
    updated_at: datetime


class CashPublic(BaseModel):
    """A cash balance in the ledger."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)

    account: str
    currency: str
    balance: Decimal
    updated_at: datetime


class PositionsPublic(BaseModel):
    """Positions and cash."""

    data: list[PositionPublic]
    cash: list[CashPublic]
    count: int


Reason500 = ReasonText


class TradingStateBody(_Wire):
    """Change a trading state: HALTED refuses new orders and amends, REDUCING takes only reducing orders."""

    scope: Literal["GLOBAL", "ACCOUNT", "SYMBOL", "BROKER"] = "GLOBAL"
    #: The account, symbol or broker (empty for GLOBAL).
    key: Identifier | None = None
    state: TradingState
    reason: Reason500

    _state = field_validator("state", "scope", mode="before")(_upper)

    def problems(self) -> list[Reason]:
        """Scope and key that do not fit together."""
        if self.scope == "GLOBAL" and self.key:
            return [Reason(code="INVALID_FIELD", field="key", message="key: not allowed for the GLOBAL scope")]
        if self.scope != "GLOBAL" and not self.key:
            return [Reason(code="INVALID_FIELD", field="key", message=f"key: required for the {self.scope} scope")]
        return []


class CancelAllBody(_Wire):
    """Cancel every working order in a scope."""

    scope: Literal["all", "account", "client", "symbol", "broker"]
    #: The account, client id, symbol or broker (omit for ``all``).
    value: Identifier | None = None
    reason: Reason500

    _scope = field_validator("scope", mode="before")(lambda v: v.lower() if isinstance(v, str) else v)


class TradingStatePublic(BaseModel):
    """A scope's trading state."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)

    scope: str
    scope_key: str
    state: TradingState
    reason: str
    updated_by: str
    updated_at: datetime


# ------------------------------------------------------------------------------------------------ order lists


class LegCreate(OrderCreate):
    """One leg of a list: a name, a role, and an order's terms (``clientId``/``clientOrderId`` come from the list)."""

    client_order_id: Identifier | None = None  # type: ignore[assignment]
    client_id: Identifier | None = None  # type: ignore[assignment]
    name: Identifier
    role: LegRole
    #: Hold this child or exit leg once released and send it when this price meets its trigger (LAST, BID, ASK,
    #: MID, or BID_ASK/DEFAULT: the side's own price). Absent: the list's ``emulationTrigger``.
    emulation_trigger: PriceTrigger | None = None

    _role = field_validator("role", "emulation_trigger", mode="before")(_upper)


LIST_EXAMPLES: list[JsonValue] = [
    {
        "clientId": "desk-1",
        "clientListId": "br-1",
        "contingency": "BRACKET",
        "legs": [
            {"name": "entry", "role": "PARENT", "symbol": "AAPL", "side": "BUY", "qty": 100, "price": 190},
            {
                "name": "tp",
                "role": "EXIT",
                "symbol": "AAPL",
                "side": "SELL",
                "qty": 100,
                "price": 200,
                "timeInForce": "GTC",
                "reduceOnly": True,
            },
            {
                "name": "sl",
                "role": "EXIT",
                "symbol": "AAPL",
                "side": "SELL",
                "qty": 100,
                "type": "STOP",
                "stopPrice": 180,
                "timeInForce": "GTC",
                "reduceOnly": True,
            },
        ],
    }
]


class OrderListCreate(_Wire):
    """A new order list: a bracket, OCO, OUO or OTO, with its legs (see the README's semantics table)."""

    model_config = ConfigDict(json_schema_extra={"examples": LIST_EXAMPLES})

    client_id: Identifier
    client_list_id: Identifier
    contingency: Contingency
    legs: Annotated[list[LegCreate], Field(min_length=1, max_length=10)]
    #: OTO and bracket: release the children on the parent's first fill (PARTIAL) or its complete fill (FULL).
    trigger: TriggerMode = TriggerMode.FULL
    #: Bracket: how its two exits are linked.
    exits: Literal[Contingency.OUO, Contingency.OCO] = Contingency.OUO
    flatten_on_unprotected: bool = False
    #: The price trigger of the child and exit legs that do not give their own (see ``LegCreate``).
    emulation_trigger: PriceTrigger | None = None

    _upper_enums = field_validator("contingency", "trigger", "exits", "emulation_trigger", mode="before")(_upper)

    def request_hash(self) -> str:
        """SHA-256 of the canonical body."""
        body = self.model_dump(mode="json", by_alias=True)
        for part in (body, *body["legs"]):
            for name in _LIST_KEYS:  # absent, they leave the hash of every earlier list as it was
                if part.get(name) is None:
                    part.pop(name, None)
        canonical = json.dumps(body, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()


class LegPublic(BaseModel):
    """A leg as the list shows it: ``status`` is ``EMULATED`` while the coordinator holds it (``HELD``: the broker)."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)

    name: str
    role: LegRole
    internal_order_id: str
    status: str
    side: OrderSide
    type: OrderType
    qty: Decimal
    filled_qty: Decimal
    avg_price: Decimal | None = None
    price: Decimal | None = None
    stop_price: Decimal | None = None
    reason: str | None = None
    #: The rules this leg's events fired, in order (the last is the one that fired last).
    rules: list[str] = []
    links: dict[str, str] = {}
    #: Held on quotes: the price it watches; once triggered, the type it was held as (``type`` is what was sent).
    emulation_trigger: PriceTrigger | None = None
    emulated_type: OrderType | None = None
    #: A held trailing stop's trigger as it stands.
    trail_trigger: Decimal | None = None


class ListAccepted(BaseModel):
    """Answer to ``POST /order-lists``."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)

    status: Literal["accepted", "rejected", "pending"]
    list_id: str
    client_list_id: str
    client_id: str
    list_status: str
    reasons: list[Reason] = []
    duplicate: bool = False
    workflow_id: str
    legs: dict[str, str] = {}
    links: dict[str, str] = {}


class ListPublic(BaseModel):
    """An order list: its legs, flags and timeline."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)

    list_id: str
    client_list_id: str
    client_id: str
    contingency: Contingency
    trigger: TriggerMode
    status: str
    flags: list[str]
    legs: list[LegPublic]
    events: list[dict[str, Any]]
    workflow_id: str
    #: The broker carries the list itself (its order class: bracket, OCO, OTO); else the coordinator emulates it.
    native: bool = False
