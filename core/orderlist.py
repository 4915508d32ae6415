"""Order lists (bracket, OCO, OUO, OTO): the request, the legs' reports, and the list's book (pure, deterministic).

The coordinator workflow (``workflows.order_list``) holds a ``ListBook``. Each leg is an ordinary order workflow;
the leg reports its status and filled quantity to the coordinator (``LegReport``, a signal), the book turns the
change into leg events, looks up the rule (``core.contingency``) and returns the commands the coordinator carries
out (``ListCommand``: start a leg, cancel one, resize one, raise an alert). Legs waiting for their trigger are
held in the book (shown as ``EMULATED``) and are never sent until released.

Ids: the list id is derived from the client's idempotency key like an order id (prefix ``LS``); a leg's order id
from the key and the leg's name, so a retried coordinator starts the same legs under the same ids. Like
``core.domain`` this module does no I/O and imports nothing of the project but the domain: it passes through the
workflow sandbox. Methods take the event time as an argument.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Final, Literal

from pydantic import BaseModel, ConfigDict

from core.contingency import ROLES_OF, Action, Contingency, LegEvent, LegRole, Rule, TriggerMode, rule
from core.domain import (
    AmendRequest,
    OrderRequest,
    OrderSide,
    OrderStatus,
    OrderType,
    RiskReason,
    TimeInForce,
    TrailState,
    derive_order_id,
)
from core.legtrigger import EMULATABLE, PriceTrigger, TriggerQuote, price_of, released_terms, touched
from core.trailing import TrailOutcome, follow

__all__ = [
    "FLATTEN_LEG",
    "LegAmend",
    "LegReport",
    "LegState",
    "ListBook",
    "ListCommand",
    "ListDecision",
    "ListEvent",
    "ListStatus",
    "OrderListRequest",
    "OrderListSpec",
    "LegSpec",
    "derive_list_id",
    "leg_order_id",
    "list_problems",
    "list_workflow_id",
]

_Frozen = ConfigDict(frozen=True, extra="forbid")
D0: Final = Decimal(0)
#: The name of the leg that flattens an unprotected position (when the list asks for it).
FLATTEN_LEG: Final = "flatten"


def derive_list_id(idempotency_key: str) -> str:
    """The list id of an idempotency key: ``LS`` and 16 base32 characters."""
    return "LS" + derive_order_id("list:" + idempotency_key)[2:]


def leg_order_id(idempotency_key: str, leg: str) -> str:
    """The order id of a list's leg (deterministic: a retried coordinator starts the same order)."""
    return derive_order_id(f"list:{idempotency_key}#leg:{leg}")


def list_workflow_id(list_id: str) -> str:
    """The coordinator's workflow id."""
    return f"list-{list_id}"


class LegSpec(BaseModel):
    """One leg: its name, its role, and its order (for a child: at its full size; it is sent sized to the fills)."""

    model_config = _Frozen

    name: str
    role: LegRole
    order: OrderRequest
    #: Hold the leg in the coordinator once released and send it when this price meets its trigger
    #: (``core.legtrigger``; a child or exit leg only). None: the list's ``emulation_trigger``.
    emulation_trigger: PriceTrigger | None = None


class OrderListSpec(BaseModel):
    """What a list is: its contingency, how it triggers, and its legs."""

    model_config = _Frozen

    contingency: Contingency
    legs: list[LegSpec]
    #: OTO and bracket: children released on the parent's first fill (PARTIAL) or its complete fill (FULL).
    trigger: TriggerMode = TriggerMode.FULL
    #: Bracket: how the two exits are linked (OUO: a fill reduces the other; OCO: any fill cancels it).
    exits: Literal[Contingency.OUO, Contingency.OCO] = Contingency.OUO
    #: When a protective leg ends unfilled while the position is open: also flatten it (a market order).
    flatten_on_unprotected: bool = False
    #: The price trigger of every child or exit leg that does not name its own (None: sent when released, but a
    #: trailing stop, which is held on the side's price, ``BID_ASK``, where the broker has no native one).
    emulation_trigger: PriceTrigger | None = None


class OrderListRequest(OrderListSpec):
    """A validated list as the coordinator receives it."""

    list_id: str
    idempotency_key: str
    request_hash: str
    client_id: str
    client_list_id: str
    received_at: datetime
    submitted_by: str = "anonymous"
    submission_id: str = ""

    def leg(self, name: str) -> LegSpec:
        """The leg called ``name``."""
        for leg in self.legs:
            if leg.name == name:
                return leg
        raise KeyError(name)

    def summary(self) -> str:
        """One line for the Temporal UI, e.g. ``BRACKET BUY 100 AAPL LIMIT 187.5 DAY +2 legs · desk-1/br-1``."""
        first = self.legs[0].order
        return (
            f"{self.contingency.value} {first.summary()} +{len(self.legs) - 1} leg(s) · {first.broker} · "
            f"{self.client_id}/{self.client_list_id}"
        )


def list_problems(spec: OrderListSpec) -> list[RiskReason]:
    """What makes a list impossible (each with a code and the field at fault): the API's 422, the coordinator's too."""
    out: list[RiskReason] = []

    def bad(code: str, field: str, message: str) -> None:
        out.append(RiskReason(code=code, field=field, message=f"{field}: {message}"))

    legs = spec.legs
    names = [leg.name for leg in legs]
    if len(set(names)) != len(names):
        bad("DUPLICATE_LEG_NAME", "legs", "leg names must be unique")
    if FLATTEN_LEG in names:
        bad("RESERVED_LEG_NAME", "legs", f"{FLATTEN_LEG!r} is reserved")
    allowed = ROLES_OF[spec.contingency]
    for i, leg in enumerate(legs):
        if leg.role not in allowed:
            allowed_text = ", ".join(r.value for r in allowed)
            bad("LEG_ROLE_NOT_ALLOWED", f"legs[{i}].role", f"a {spec.contingency.value} list has {allowed_text} legs")
        if leg.emulation_trigger is not None:
            if leg.role not in (LegRole.CHILD, LegRole.EXIT):
                bad(
                    "EMULATION_NOT_ALLOWED",
                    f"legs[{i}].emulationTrigger",
                    "only a child or exit leg is held on quotes (a parent or OCO/OUO leg is sent at once)",
                )
            elif leg.order.type not in EMULATABLE:
                bad(
                    "EMULATION_NOT_ALLOWED",
                    f"legs[{i}].emulationTrigger",
                    f"a {leg.order.type.value} leg cannot be held on quotes (LIMIT, STOP, STOP_LIMIT, TRAILING_STOP)",
                )
    if out:
        return out
    first = legs[0].order if legs else None
    for i, leg in enumerate(legs):
        o = leg.order
        if first is not None and (o.symbol, o.account, o.broker) != (first.symbol, first.account, first.broker):
            bad("LEG_MISMATCH", f"legs[{i}].symbol", "every leg trades the same symbol, account and broker")
    parents = [leg for leg in legs if leg.role is LegRole.PARENT]
    children = [leg for leg in legs if leg.role in (LegRole.CHILD, LegRole.EXIT)]
    if spec.contingency in (Contingency.OTO, Contingency.BRACKET):
        if len(parents) != 1 or legs[0].role is not LegRole.PARENT:
            bad("PARENT_REQUIRED", "legs[0].role", "the first leg, and only it, is the PARENT")
        if not children:
            bad("CHILD_REQUIRED", "legs", "at least one child leg")
    else:
        if len(legs) < 2:
            bad("LEGS_REQUIRED", "legs", f"a {spec.contingency.value} list has at least two legs")
    if spec.contingency is Contingency.BRACKET and len(children) != 2:
        bad("EXITS_REQUIRED", "legs", "a bracket has exactly two EXIT legs: a take-profit and a stop-loss")
    if out or not parents:
        return out
    parent = parents[0].order
    for i, leg in enumerate(legs):
        if leg.role not in (LegRole.CHILD, LegRole.EXIT):
            continue
        if leg.order.qty != parent.qty:
            bad("CHILD_QTY", f"legs[{i}].qty", "a child is sized to the parent's fills: give the parent's qty")
        if leg.role is LegRole.EXIT and leg.order.side is parent.side:
            bad("EXIT_SIDE", f"legs[{i}].side", "a bracket's exits are on the other side of the entry")
    if spec.contingency is Contingency.BRACKET and len(children) == 2 and not out:
        out.extend(_bracket_prices(parent, [c.order for c in children], [legs.index(c) for c in children]))
    return out


def _bracket_prices(entry: OrderRequest, exits: list[OrderRequest], where: list[int]) -> list[RiskReason]:
    out: list[RiskReason] = []
    tp = [(o, i) for o, i in zip(exits, where, strict=True) if o.type is OrderType.LIMIT]
    stops = (OrderType.STOP, OrderType.STOP_LIMIT, OrderType.TRAILING_STOP)
    sl = [(o, i) for o, i in zip(exits, where, strict=True) if o.type in stops]
    if len(tp) != 1 or len(sl) != 1:
        out.append(
            RiskReason(
                code="BRACKET_EXITS",
                field="legs",
                message="legs: a bracket's exits are one LIMIT (take-profit) and one STOP, STOP_LIMIT or "
                "TRAILING_STOP (stop-loss)",
            )
        )
        return out
    (take, ti), (stop, si) = tp[0], sl[0]
    if stop.type is OrderType.TRAILING_STOP:
        return out  # its trigger follows the market: no fixed price to compare
    assert take.price is not None and stop.stop_price is not None
    sign = 1 if entry.side is OrderSide.BUY else -1
    if sign * (take.price - stop.stop_price) <= 0:
        out.append(
            RiskReason(
                code="BRACKET_PRICES",
                field=f"legs[{ti}].price",
                message=f"legs[{ti}].price: a {entry.side.value} bracket's take-profit is "
                f"{'above' if sign > 0 else 'below'} its stop-loss ({stop.stop_price.normalize():f}, legs[{si}])",
            )
        )
    return out


class LegAmend(AmendRequest):
    """Change a leg's terms while it is held by the coordinator (``leg``: its name)."""

    leg: str


class ListStatus(StrEnum):
    """Where a list is."""

    RECEIVED = "RECEIVED"
    DENIED = "DENIED"
    WORKING = "WORKING"
    DONE = "DONE"


class LegReport(BaseModel):
    """A leg's order as it stands, sent by its workflow to the coordinator (the ``leg_report`` signal).

    Snapshots, not deltas: the book takes the change from what it knew, so a repeat changes nothing.
    """

    model_config = _Frozen

    leg: str
    order_id: str
    status: OrderStatus
    qty: Decimal
    filled_qty: Decimal = D0
    avg_price: Decimal | None = None
    reason: str | None = None
    #: The risk check's reasons (a DENIED leg).
    reasons: list[RiskReason] = []


class ListCommand(BaseModel):
    """What the coordinator does next: start a leg (its order sized ``qty``), cancel one, resize one, or alert."""

    model_config = _Frozen

    kind: Literal["start", "cancel", "amend", "alert"]
    leg: str
    qty: Decimal | None = None
    detail: str = ""


class ListEvent(BaseModel):
    """One entry of the list's timeline: a leg's event and the rule that fired (or a request on the list)."""

    model_config = _Frozen

    seq: int
    at: datetime
    leg: str
    event: str
    rule: str = ""
    detail: str = ""


class ListDecision(BaseModel):
    """The list's risk decision (the REST call's answer): approved when every leg it starts with is."""

    model_config = _Frozen

    list_id: str
    approved: bool
    reasons: list[RiskReason] = []
    decided_at: datetime
    request_hash: str = ""
    submission_id: str = ""


class LegState(BaseModel):
    """One leg as the coordinator knows it."""

    model_config = ConfigDict(extra="forbid")

    name: str
    role: LegRole
    order_id: str
    #: The leg's terms (a held leg's can be amended before release).
    order: OrderRequest
    #: Sent as an order (False: held in the coordinator, ``EMULATED``).
    released: bool = False
    status: OrderStatus = OrderStatus.RECEIVED
    #: The quantity the list wants its order to work with (set when released, changed by resizes).
    qty: Decimal = D0
    #: The quantity its order last reported (a resize shows here once the broker took it).
    order_qty: Decimal = D0
    filled_qty: Decimal = D0
    avg_price: Decimal | None = None
    reason: str | None = None
    #: The coordinator asked for its cancel (its end is ours, not the broker's).
    closing: bool = False
    #: The rules its events fired, in order.
    rules: list[str] = []
    #: Held on quotes once released (``core.legtrigger``; set by ``ListBook.hold_on_quotes``): the price it watches.
    trigger: PriceTrigger | None = None
    #: Released by the list's rules and waiting for its trigger (still ``EMULATED``, nothing sent).
    armed: bool = False
    #: A held trailing stop's trail (moves in the coordinator; only the final order is sent).
    trail: TrailState | None = None
    #: The terms as given, once the trigger turned them into the order sent (``order``).
    emulated_terms: OrderRequest | None = None
    #: Why the last check could not read the leg's price (recorded once per new problem).
    quote_problem: str | None = None

    @property
    def done(self) -> bool:
        """Closed (or dropped before it was ever sent)."""
        return self.status.is_terminal

    @property
    def shown_status(self) -> str:
        """``EMULATED`` while held, else the order's status."""
        return "EMULATED" if not self.released and not self.done else self.status.value


class ListBook(BaseModel):
    """A list's legs, what happened to them, and the rules: ``start``, ``take``, ``cancel`` return commands."""

    model_config = ConfigDict(extra="forbid")

    request: OrderListRequest
    legs: list[LegState]
    status: ListStatus = ListStatus.RECEIVED
    decision: ListDecision | None = None
    cancel_requested: bool = False
    flags: list[str] = []
    events: list[ListEvent] = []
    #: Times an unprotected position was flagged (each is an alert).
    unprotected: int = 0
    #: Legs with a price trigger are held on quotes (``hold_on_quotes``; patch ``list-quote-triggers``).
    quote_triggers: bool = False

    @classmethod
    def new(cls, request: OrderListRequest) -> ListBook:
        """The book of a freshly received list."""
        legs = [
            LegState(name=s.name, role=s.role, order_id=s.order.order_id, order=s.order, qty=s.order.qty)
            for s in request.legs
        ]
        return cls(request=request, legs=legs)

    # -- reading -------------------------------------------------------------------------------------------

    def leg(self, name: str) -> LegState:
        """The leg called ``name``."""
        for leg in self.legs:
            if leg.name == name:
                return leg
        raise KeyError(name)

    @property
    def parent(self) -> LegState | None:
        """The OTO parent or the bracket's entry."""
        return next((leg for leg in self.legs if leg.role is LegRole.PARENT), None)

    @property
    def done(self) -> bool:
        """Every leg closed."""
        return all(leg.done for leg in self.legs)

    @property
    def armed(self) -> list[LegState]:
        """The legs waiting for their price trigger (checked against the quote store)."""
        return [leg for leg in self.legs if leg.armed and not leg.released and not leg.done]

    def open_position(self) -> Decimal:
        """A bracket's position still open: what the entry filled less what the exits (and a flatten) filled."""
        parent = self.parent
        if parent is None:
            return D0
        closed = sum((leg.filled_qty for leg in self.legs if leg.role is not LegRole.PARENT), D0)
        return max(parent.filled_qty - closed, D0)

    def summary_line(self) -> str:
        """One human line for the Temporal UI's current details."""
        legs = ", ".join(
            f"{leg.name} {leg.shown_status}"
            + (f" {leg.filled_qty.normalize():f}/{leg.qty.normalize():f}" if leg.filled_qty else "")
            for leg in self.legs
        )
        text = f"{self.request.summary()} · {self.status.value} · {legs}"
        if self.flags:
            text += " · FLAGS: " + ", ".join(self.flags)
        return text

    # -- changes -------------------------------------------------------------------------------------------

    def record(self, at: datetime, leg: str, event: str, *, rule_name: str = "", detail: str = "") -> None:
        """Append a timeline entry."""
        self.events.append(
            ListEvent(seq=len(self.events) + 1, at=at, leg=leg, event=event, rule=rule_name, detail=detail)
        )

    def _flag(self, text: str) -> bool:
        if text in self.flags:
            return False
        self.flags.append(text)
        return True

    def start(self, at: datetime) -> list[ListCommand]:
        """The commands a new list starts with: the parent of an OTO or bracket, every leg of an OCO or OUO."""
        self.record(at, "list", "RECEIVED", detail=self.request.summary())
        problems = list_problems(self.request)
        if problems:
            self._decide(at, approved=False, reasons=problems)
            for leg in self.legs:
                leg.status = OrderStatus.DENIED
            self.status = ListStatus.DENIED
            return []
        starts = [leg for leg in self.legs if leg.role in (LegRole.PARENT, LegRole.MEMBER)]
        commands = []
        for leg in starts:
            leg.released = True
            commands.append(ListCommand(kind="start", leg=leg.name, qty=leg.qty))
        return commands

    def request_cancel(self, at: datetime, *, reason: str, by: str) -> list[ListCommand]:
        """Cancel the list: held legs are dropped, working ones canceled."""
        self.record(at, "list", "CANCEL_REQUESTED", detail=f"{reason} (by {by})")
        self.cancel_requested = True
        return [c for leg in self.legs if (c := self._drop(leg, at, reason)) is not None]

    @staticmethod
    def quote_legs(request: OrderListRequest, *, native_trailing: bool = False) -> dict[str, PriceTrigger]:
        """The legs held on quotes once released, with the price each watches.

        A child or exit leg with an ``emulation_trigger`` (its own, else the list's, when its type can be held),
        and a trailing-stop child or exit where the broker has no native trailing stop (``BID_ASK`` by default).
        """
        out: dict[str, PriceTrigger] = {}
        for spec in request.legs:
            if spec.role not in (LegRole.CHILD, LegRole.EXIT) or spec.order.type not in EMULATABLE:
                continue
            trigger = spec.emulation_trigger or request.emulation_trigger
            if trigger is None and spec.order.type is OrderType.TRAILING_STOP and not native_trailing:
                trigger = PriceTrigger.DEFAULT
            if trigger is not None:
                out[spec.name] = trigger
        return out

    def hold_on_quotes(self, triggers: dict[str, PriceTrigger]) -> None:
        """Hold these legs on their price triggers once released (``quote_legs``)."""
        self.quote_triggers = True
        for leg in self.legs:
            leg.trigger = triggers.get(leg.name)

    def check_quote(self, quote: TriggerQuote, at: datetime) -> list[ListCommand]:
        """One check of every armed leg against ``quote``: the legs whose trigger is met are sent (``start``)."""
        commands: list[ListCommand] = []
        for leg in self.armed:
            assert leg.trigger is not None
            price = None if quote.problem else price_of(leg.trigger, leg.order.side, quote)
            if price is None:
                problem = quote.problem or f"{quote.source} quote has no {leg.trigger.value} price"
                if problem != leg.quote_problem:
                    leg.quote_problem = problem
                    self.record(at, leg.name, "TRIGGER_NO_QUOTE", detail=problem)
                continue
            leg.quote_problem = None
            shown = f"{leg.trigger.value} {price.normalize():f} ({quote.source})"
            if leg.order.type is OrderType.TRAILING_STOP:
                step = follow(leg.order, leg.trail or TrailState(), price)
                leg.trail = step.trail.model_copy(update={"last_quote_at": quote.at})
                trigger = leg.trail.trigger
                if step.outcome is TrailOutcome.ACTIVATED and leg.order.activation_price is not None:
                    assert trigger is not None
                    self.record(at, leg.name, "TRAIL_ACTIVATED", detail=f"{shown}; trigger {trigger.normalize():f}")
                if step.outcome is not TrailOutcome.TRIGGERED:
                    continue
                assert trigger is not None and leg.trail.extreme is not None
                leg.trail.triggered_at = at
                why = f"{shown} crossed the trail's trigger {trigger.normalize():f} (best {leg.trail.extreme:f})"
            else:
                if not touched(leg.order, price):
                    continue
                level = leg.order.stop_price if leg.order.type is not OrderType.LIMIT else leg.order.price
                assert level is not None
                why = f"{shown} met {level.normalize():f}"
            commands.append(self._trigger(leg, at, why))
        return commands

    def _trigger(self, leg: LegState, at: datetime, why: str) -> ListCommand:
        leg.emulated_terms = leg.order
        leg.order = leg.order.model_copy(update=released_terms(leg.order))
        leg.armed = False
        leg.released = True
        self.record(at, leg.name, "TRIGGERED", detail=f"{why}: sent as {leg.order.type.value} {leg.qty.normalize():f}")
        return ListCommand(kind="start", leg=leg.name, qty=leg.qty)

    def take(self, report: LegReport, at: datetime) -> list[ListCommand]:
        """Take a leg's report: derive its events, fire the rules, and return the commands they call for."""
        try:
            leg = self.leg(report.leg)
        except KeyError:
            self.record(at, report.leg, "REPORT_IGNORED", detail="no such leg")
            return []
        events: list[tuple[LegEvent, str]] = []
        was_terminal = leg.done
        leg.order_qty = report.qty
        if report.filled_qty > leg.filled_qty:
            delta = report.filled_qty - leg.filled_qty
            leg.filled_qty = report.filled_qty
            leg.avg_price = report.avg_price
            kind = LegEvent.FILL if report.status is OrderStatus.FILLED else LegEvent.PARTIAL_FILL
            events.append((kind, f"{delta.normalize():f} more ({leg.filled_qty.normalize():f}/{report.qty:f})"))
        if report.status is not leg.status and not was_terminal:
            leg.status = report.status
            if report.reason:
                leg.reason = report.reason
            end = _ENDS.get(report.status)
            if end is not None:
                events.append((end, report.reason or report.status.value))
        elif was_terminal and report.status is OrderStatus.FILLED and leg.status is not OrderStatus.FILLED:
            leg.status = OrderStatus.FILLED  # a late fill of the whole remainder after a cancel
        if report.status is OrderStatus.DENIED and self.decision is None:
            return self._denied(leg, report, at)
        commands: list[ListCommand] = []
        if self.decision is None and self._all_started_decided():
            self._decide(at, approved=True)
        for event, detail in events:
            commands += self._fire(leg, event, at, detail)
        self._check_overfill(at)
        if self.done and self.status is ListStatus.WORKING:
            self.status = ListStatus.DONE
            self.record(at, "list", "DONE", detail=", ".join(f"{g.name} {g.status.value}" for g in self.legs))
        return commands

    # -- rules ---------------------------------------------------------------------------------------------

    def _rule(self, leg: LegState, event: LegEvent) -> Rule:
        r = self.request
        return rule(
            r.contingency, leg.role, event, trigger=r.trigger, filled=leg.filled_qty > 0, exits=Contingency(r.exits)
        )

    def _fire(self, leg: LegState, event: LegEvent, at: datetime, detail: str) -> list[ListCommand]:
        # The flatten leg stands alone (it is not one of the list's legs the table knows).
        fired = Rule(f"flatten-{event.value.lower()}:no-effect") if leg.name == FLATTEN_LEG else self._rule(leg, event)
        leg.rules.append(fired.name)
        self.record(at, leg.name, event.value, rule_name=fired.name, detail=detail)
        commands: list[ListCommand] = []
        for action in fired.actions:
            if action is Action.FOLLOW_PARENT:
                commands += self._follow_parent(at)
            elif action is Action.CANCEL_CHILDREN:
                commands += [
                    c
                    for other in self.legs
                    if other.role in (LegRole.CHILD, LegRole.EXIT)
                    and (c := self._drop(other, at, f"parent {leg.name} ended unfilled")) is not None
                ]
            elif action is Action.CANCEL_SIBLINGS:
                commands += [
                    c for other in self._linked(leg) if (c := self._drop(other, at, f"{leg.name} filled")) is not None
                ]
            elif action is Action.REDUCE_SIBLINGS:
                commands += self._resize(self._linked(leg), at, f"{leg.name} filled")
            elif action is Action.UNPROTECTED:
                commands += self._unprotected(leg, at)
        return commands

    def _linked(self, leg: LegState) -> list[LegState]:
        return [other for other in self.legs if other.name != leg.name and other.role is leg.role]

    def _target(self, leg: LegState) -> Decimal:
        """The size a leg should work with now."""
        parent = self.parent
        if leg.role is LegRole.CHILD and parent is not None:
            return parent.filled_qty
        if leg.role is LegRole.EXIT and parent is not None:
            # Each exit covers what it filled plus the position still open.
            return leg.filled_qty + self.open_position()
        # OUO member: its own size less what the others filled.
        others = sum((o.filled_qty for o in self._linked(leg)), D0)
        return max(leg.order.qty - others, D0)

    def _follow_parent(self, at: datetime) -> list[ListCommand]:
        if self.cancel_requested:
            return []
        children = [leg for leg in self.legs if leg.role in (LegRole.CHILD, LegRole.EXIT) and leg.name != FLATTEN_LEG]
        return self._resize(children, at, "parent filled")

    def _resize(self, legs: list[LegState], at: datetime, why: str) -> list[ListCommand]:
        commands: list[ListCommand] = []
        for leg in legs:
            if leg.done or leg.closing:
                continue
            target = self._target(leg)
            if leg.armed and not leg.released:
                commands += self._resize_armed(leg, target, at, why)
                continue
            if not leg.released and leg.trigger is not None and self.quote_triggers:
                if target > 0 and not self.cancel_requested:
                    leg.armed = True
                    leg.qty = target
                    self.record(
                        at,
                        leg.name,
                        "ARMED",
                        detail=f"{target.normalize():f} ({why}); held until {leg.trigger.value} meets its trigger",
                    )
                continue
            if not leg.released:
                if target > 0 and not self.cancel_requested:
                    leg.released = True
                    leg.qty = target
                    self.record(at, leg.name, "RELEASED", detail=f"{target.normalize():f} ({why})")
                    commands.append(ListCommand(kind="start", leg=leg.name, qty=target))
                continue
            if target == leg.qty:
                continue
            if target <= leg.filled_qty:
                c = self._drop(leg, at, f"nothing left to work ({why})")
                if c is not None:
                    commands.append(c)
                continue
            self.record(at, leg.name, "RESIZE", detail=f"{leg.qty.normalize():f} -> {target.normalize():f} ({why})")
            leg.qty = target
            commands.append(ListCommand(kind="amend", leg=leg.name, qty=target, detail=why))
        return commands

    def _resize_armed(self, leg: LegState, target: Decimal, at: datetime, why: str) -> list[ListCommand]:
        """An armed leg is resized in place (nothing at the broker); one left with nothing is dropped."""
        if target == leg.qty:
            return []
        if target <= 0:
            c = self._drop(leg, at, f"nothing left to work ({why})")
            return [c] if c is not None else []
        self.record(at, leg.name, "RESIZE", detail=f"{leg.qty.normalize():f} -> {target.normalize():f} ({why})")
        leg.qty = target
        return []

    def _drop(self, leg: LegState, at: datetime, reason: str) -> ListCommand | None:
        """Cancel a working leg; a held one is dropped without ever being sent."""
        if leg.done or leg.closing:
            return None
        leg.closing = True
        if not leg.released:
            leg.armed = False
            leg.status = OrderStatus.CANCELED
            leg.reason = reason
            self.record(at, leg.name, "DROPPED", detail=f"never sent: {reason}")
            return None
        self.record(at, leg.name, "CANCEL_SENT", detail=reason)
        return ListCommand(kind="cancel", leg=leg.name, detail=reason)

    def _unprotected(self, leg: LegState, at: datetime) -> list[ListCommand]:
        open_qty = self.open_position()
        if leg.closing or self.cancel_requested or open_qty <= 0:
            return []
        parent = self.parent
        assert parent is not None
        self.unprotected += 1
        text = (
            f"UNPROTECTED: {leg.name} {leg.status.value} ({leg.reason or 'no reason given'}) while "
            f"{open_qty.normalize():f} {parent.order.symbol} of the entry is open"
        )
        self._flag(text)
        self.record(at, leg.name, "UNPROTECTED", detail=text)
        commands = [ListCommand(kind="alert", leg=leg.name, qty=open_qty, detail=text)]
        if self.request.flatten_on_unprotected and not any(g.name == FLATTEN_LEG for g in self.legs):
            for other in self.legs:
                if other.role is LegRole.EXIT and (c := self._drop(other, at, "flattening")) is not None:
                    commands.append(c)
            entry = parent.order
            flatten = entry.model_copy(
                update={
                    "order_id": leg_order_id(self.request.idempotency_key, FLATTEN_LEG),
                    "idempotency_key": f"{self.request.idempotency_key}#{FLATTEN_LEG}",
                    # The exits being canceled: risk does not count them against the flatten's reduction.
                    "linked_orders": tuple(g.order_id for g in self.legs if g.role is LegRole.EXIT),
                    "client_order_id": f"{self.request.client_list_id}.{FLATTEN_LEG}",
                    "side": OrderSide.SELL if entry.side is OrderSide.BUY else OrderSide.BUY,
                    "type": OrderType.MARKET,
                    "time_in_force": TimeInForce.DAY,
                    "qty": open_qty,
                    "price": None,
                    "stop_price": None,
                    "peg_type": None,
                    "peg_offset": None,
                    "expire_at": None,
                    "trail_amount": None,
                    "trail_percent": None,
                    "activation_price": None,
                    "reduce_only": True,
                    "native": None,  # never part of a broker's order class (``core.nativelist``)
                }
            )
            self.legs.append(
                LegState(
                    name=FLATTEN_LEG,
                    role=LegRole.CHILD,
                    order_id=flatten.order_id,
                    order=flatten,
                    released=True,
                    qty=open_qty,
                    rules=["unprotected:flatten"],
                )
            )
            self.record(at, FLATTEN_LEG, "RELEASED", detail=f"flatten {open_qty.normalize():f} at market")
            commands.append(ListCommand(kind="start", leg=FLATTEN_LEG, qty=open_qty))
        return commands

    def _check_overfill(self, at: datetime) -> None:
        c = self.request.contingency
        filled = [leg for leg in self.legs if leg.filled_qty > 0 and leg.role is not LegRole.PARENT]
        text = None
        if c is Contingency.BRACKET and self.parent is not None:
            closed = sum((leg.filled_qty for leg in filled), D0)
            if closed > self.parent.filled_qty:
                text = (
                    f"OVERFILL: exits filled {closed.normalize():f} of a {self.parent.filled_qty.normalize():f} "
                    f"position ({', '.join(leg.name for leg in filled)})"
                )
        elif c is Contingency.OCO and len(filled) > 1:
            text = (
                "OVERFILL: more than one OCO leg filled ("
                + ", ".join(f"{leg.name} {leg.filled_qty.normalize():f}" for leg in filled)
                + ")"
            )
        elif c is Contingency.OUO and filled:
            total = sum((leg.filled_qty for leg in filled), D0)
            largest = max(leg.order.qty for leg in self.legs)
            if total > largest:
                text = f"OVERFILL: OUO legs filled {total.normalize():f}, more than {largest.normalize():f}"
        if text is not None and self._flag(text):
            self.record(at, "list", "OVERFILL", detail=text)

    # -- the decision --------------------------------------------------------------------------------------

    def _all_started_decided(self) -> bool:
        started = [leg for leg in self.legs if leg.role in (LegRole.PARENT, LegRole.MEMBER)]
        return all(leg.status is not OrderStatus.RECEIVED for leg in started)

    def _decide(self, at: datetime, *, approved: bool, reasons: list[RiskReason] | None = None) -> None:
        r = self.request
        self.decision = ListDecision(
            list_id=r.list_id,
            approved=approved,
            reasons=reasons or [],
            decided_at=at,
            request_hash=r.request_hash,
            submission_id=r.submission_id,
        )
        self.status = ListStatus.WORKING if approved else ListStatus.DENIED
        self.record(
            at, "list", "APPROVED" if approved else "DENIED", detail="; ".join(x.message for x in reasons or [])
        )

    def _denied(self, leg: LegState, report: LegReport, at: datetime) -> list[ListCommand]:
        """A leg the list starts with was denied by risk: the whole list is denied, the other legs dropped."""
        leg.rules.append("risk-denied:list-denied")
        self.record(at, leg.name, "DENIED", rule_name="risk-denied:list-denied", detail=report.reason or "")
        reasons = [
            x.model_copy(update={"message": f"{leg.name}: {x.message}"})
            for x in (report.reasons or [RiskReason(code="DENIED", message=report.reason or "denied")])
        ]
        self._decide(at, approved=False, reasons=reasons)
        self.cancel_requested = True
        return [c for other in self.legs if (c := self._drop(other, at, f"list denied ({leg.name})")) is not None]


#: Terminal order statuses as leg events (FILLED comes as a fill).
_ENDS: Final[dict[OrderStatus, LegEvent]] = {
    OrderStatus.DENIED: LegEvent.REJECT,
    OrderStatus.REJECTED: LegEvent.REJECT,
    OrderStatus.CANCELED: LegEvent.CANCEL,
    OrderStatus.EXPIRED: LegEvent.EXPIRE,
}
