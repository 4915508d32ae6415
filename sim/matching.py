"""The matching model of the simulated venues: pure state, no I/O, no clocks of its own.

Orders trade against the price feed's quote, never against each other:

* A **market** order (and a stop once triggered) trades at the far touch: the ask for a buy, the bid for
  a sell.
* A **limit** order (and a stop-limit once triggered) trades at the far touch when that is at or better
  than its limit; otherwise it rests and is matched again on every feed step.
* A **stop** triggers when the far touch reaches the stop price (buy: ask >= stop; sell: bid <= stop).
* A **touched** order (market/limit if touched) triggers when the far touch reaches its ``stop_price`` in its
  favour (buy: ask <= trigger; sell: bid >= trigger), then works as a market order or a limit at ``price``.
* A **pegged** order is priced each step at its reference plus ``peg_offset``: the far touch (MARKET peg,
  always marketable), the near touch (PRIMARY peg) or the mid (MIDPOINT peg, which the model fills at
  the mid because it assumes midpoint liquidity on every step).
* Each match fills at most the instrument's ``display_qty``; a larger order fills in pieces over
  successive steps (partial fills).
* **IOC** cancels whatever did not fill on arrival; **FOK** is canceled without any fill unless it can
  fill completely on arrival; **GTD** expires on the first step after ``expire_at``. DAY expiry is left
  to the order workflow's timer.
* **OPG** / **CLS** (at the open / at the close) need the venue's ``Auctions`` (the times of day, UTC, of its
  session's open and close; a venue without them refuses such orders). The order waits, untouched by the
  market, until the first step at or after the next open (OPG) or close (CLS) after it arrived; on that step
  it trades once, in full if it can (an auction is not limited by the displayed size), a limit only if the
  far touch is at or better than its limit; whatever did not fill then expires.

Every method returns the execution reports it produced and the orders it changed, so a caller can
journal them before letting anyone see the reports.
"""

from __future__ import annotations

import functools
import random
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from decimal import Decimal
from typing import Final

from pydantic import ConfigDict

from core.domain import (
    BrokerAck,
    CancelOrder,
    ExecutionReport,
    Instrument,
    OrderSide,
    OrderStatus,
    OrderStatusReport,
    OrderTerms,
    OrderType,
    PegType,
    ReplaceOrder,
    ReportKind,
    SubmitOrder,
    TimeInForce,
    renamed,
)
from sim.feed import PriceFeed

__all__ = [
    "US_EQUITY_AUCTIONS",
    "Auctions",
    "DuplicateSubmit",
    "MatchResult",
    "MatchingEngine",
    "RejectReason",
    "SimOrder",
]


class RejectReason:
    """Reason texts the venue answers with; the FIX venue maps them onto OrdRejReason/CxlRejReason."""

    UNKNOWN_SYMBOL = "UNKNOWN_SYMBOL"
    INCORRECT_QUANTITY = "INCORRECT_QUANTITY"
    INVALID_PRICE = "INVALID_PRICE"
    DUPLICATE_ORDER = "DUPLICATE_CLIENT_ORDER_ID"
    UNSUPPORTED = "UNSUPPORTED_ORDER_CHARACTERISTIC"
    INJECTED = "INJECTED_REJECT"
    TOO_LATE = "TOO_LATE"
    UNKNOWN_ORDER = "UNKNOWN_ORDER"


_OPEN = (OrderStatus.ACCEPTED, OrderStatus.PARTIALLY_FILLED)


class SimOrder(OrderTerms):
    """An order as the simulated venue holds it: its terms (the latest replacement's) and its state."""

    model_config = ConfigDict(frozen=False, extra="forbid", serialize_by_alias=True)

    venue_order_id: str
    cl_ord_id: str = renamed("client_order_id", "cl_ord_id")
    #: Every ``cl_ord_id`` the order has had (cancel/replace chains), oldest first.
    cl_ord_ids: list[str] = renamed("client_order_ids", "cl_ord_ids")
    status: OrderStatus = OrderStatus.ACCEPTED
    triggered: bool = False
    filled_qty: Decimal = Decimal(0)
    avg_price: Decimal | None = None
    report_seq: int = 0
    reports: list[ExecutionReport] = []
    created_at: datetime
    updated_at: datetime
    #: An OPG/CLS order's auction: it trades on the first step at or after this time, then expires.
    auction_at: datetime | None = None

    @property
    def leaves_qty(self) -> Decimal:
        """Open quantity."""
        return self.qty - self.filled_qty if self.status in _OPEN else Decimal(0)

    @property
    def is_open(self) -> bool:
        """Whether the order still works."""
        return self.status in _OPEN

    def status_report(self, venue: str) -> OrderStatusReport:
        """The venue's view of the order."""
        return OrderStatusReport(
            broker=venue,
            cl_ord_id=self.cl_ord_id,
            broker_order_id=self.venue_order_id,
            status=self.status,
            qty=self.qty,
            cum_qty=self.filled_qty,
            avg_price=self.avg_price,
            price=self.price,
            stop_price=self.stop_price,
            reports=list(self.reports),
        )


@dataclass(frozen=True)
class Auctions:
    """When a venue's session opens and closes (times of day, UTC): where OPG and CLS orders trade."""

    open: time
    close: time

    def next_after(self, now: datetime, *, at_open: bool) -> datetime:
        """The first open (``at_open``) or close strictly after ``now``."""
        when = self.open if at_open else self.close
        at = datetime.combine(now.astimezone(UTC).date(), when, tzinfo=UTC)
        return at if at > now else at + timedelta(days=1)


#: US equities' regular session (9:30 to 16:00 New York) in UTC while New York keeps standard time; the local
#: Alpaca and IB venues hold their OPG/CLS orders for these times (daylight saving time is not modelled).
US_EQUITY_AUCTIONS: Final = Auctions(open=time(14, 30), close=time(21, 0))


@dataclass(frozen=True)
class DuplicateSubmit:
    """A submission refused because its client order id was already in use (journaled once, by ``event_id``)."""

    cl_ord_id: str
    event_id: str = field(default_factory=lambda: uuid.uuid4().hex)


@dataclass
class MatchResult:
    """What one engine call did (or several, merged)."""

    ack: BrokerAck | None = None
    reports: list[ExecutionReport] = field(default_factory=list)
    changed: list[SimOrder] = field(default_factory=list)
    duplicates: list[DuplicateSubmit] = field(default_factory=list)

    def touch(self, order: SimOrder) -> None:
        """Note ``order`` as changed (once)."""
        if all(o is not order for o in self.changed):
            self.changed.append(order)

    def merge(self, other: MatchResult) -> None:
        """Add ``other``'s changes, reports and duplicates after this one's (the answer is not kept)."""
        for order in other.changed:
            self.touch(order)
        self.reports.extend(other.reports)
        self.duplicates.extend(other.duplicates)


class MatchingEngine:
    """Order book of one simulated venue."""

    def __init__(
        self,
        feed: PriceFeed,
        instruments: Iterable[Instrument],
        *,
        venue: str,
        clock: Callable[[], datetime],
        seed: int = 0,
        reject_rate: float = 0.0,
        reject_symbols: Iterable[str] = (),
        auctions: Auctions | None = None,
    ) -> None:
        """Create an empty book quoting from ``feed``; without ``auctions`` it refuses OPG and CLS orders."""
        self.feed = feed
        self.auctions = auctions
        self.venue = venue
        self._instruments = {i.symbol: i for i in instruments}
        self._clock = clock
        self._rng = random.Random(seed)
        self.reject_rate = reject_rate
        self.reject_symbols = set(reject_symbols)
        self._orders: dict[str, SimOrder] = {}
        #: The orders of ``_orders`` that may still work, in the same order: an order only ever closes, so
        #: ``open_orders`` drops the closed ones as it meets them, and a feed step looks at the working orders
        #: only, not at every order the venue ever took (a book that grows for as long as the process runs).
        self._open: dict[str, SimOrder] = {}
        self._by_cl_ord_id: dict[str, SimOrder] = {}
        #: Client order ids ever refused, so a resend of a refused id is answered consistently.
        self._rejected: dict[str, SimOrder] = {}

    # -- state ------------------------------------------------------------------------------------------

    def load(self, orders: Iterable[SimOrder]) -> None:
        """Restore orders (from a journal) into an empty engine."""
        for order in orders:
            self._index(order)

    def reset(self, orders: Iterable[SimOrder]) -> None:
        """Forget the book and restore ``orders`` (a rebuild from the journal)."""
        self._orders.clear()
        self._open.clear()
        self._by_cl_ord_id.clear()
        self._rejected.clear()
        self.load(orders)

    def _index(self, order: SimOrder) -> None:
        if order.status is OrderStatus.REJECTED:
            self._rejected[order.cl_ord_id] = order
            return
        self._orders[order.venue_order_id] = order
        if order.is_open:
            self._open[order.venue_order_id] = order
        for cid in order.cl_ord_ids:
            self._by_cl_ord_id[cid] = order

    def find(self, cl_ord_id: str) -> SimOrder | None:
        """The order known by ``cl_ord_id`` (any id of its replace chain), including refused ones."""
        return self._by_cl_ord_id.get(cl_ord_id) or self._rejected.get(cl_ord_id)

    def open_orders(self) -> list[SimOrder]:
        """Orders that still work (in the order the venue took them)."""
        working: list[SimOrder] = []
        closed: list[str] = []
        for venue_order_id, order in self._open.items():
            if order.is_open and self._orders.get(venue_order_id) is order:
                working.append(order)
            else:
                closed.append(venue_order_id)
        for venue_order_id in closed:
            del self._open[venue_order_id]
        return working

    def all_orders(self) -> list[SimOrder]:
        """Every accepted order, open or closed."""
        return list(self._orders.values())

    # -- requests ---------------------------------------------------------------------------------------

    def submit(self, request: SubmitOrder) -> MatchResult:
        """Take a new order: refuse it, or accept it and match it at once."""
        result = MatchResult()
        cid = request.cl_ord_id
        existing = self.find(cid)
        if existing is not None:
            # Never disturb the live order that owns the id; just refuse the twin (and keep a record of it).
            result.duplicates.append(DuplicateSubmit(cid))
            return self._answer(
                result, cid, order=existing, reason=f"{RejectReason.DUPLICATE_ORDER}: {cid} is already in use"
            )
        now = self._clock()
        order = SimOrder(
            venue_order_id=f"{self.venue.upper()}-{uuid.uuid4().hex[:12]}",
            cl_ord_id=cid,
            cl_ord_ids=[cid],
            **request.terms(),
            created_at=now,
            updated_at=now,
        )
        refusal = self._refusal(order)
        if refusal is None and order.time_in_force.is_auction:
            if self.auctions is None:
                refusal = f"{RejectReason.UNSUPPORTED}: {order.time_in_force.value} (this venue has no auctions)"
            else:
                order.auction_at = self.auctions.next_after(now, at_open=order.time_in_force is TimeInForce.OPG)
        if refusal is not None:
            order.status = OrderStatus.REJECTED
            self._rejected[cid] = order
            self._report(order, result, ReportKind.REJECTED, reason=refusal)
            return self._answer(result, cid, order=order, reason=refusal)
        self._index(order)
        self._report(order, result, ReportKind.ACCEPTED)
        self._guarded(order, result, lambda: self._arrive(order, result))
        return self._answer(result, cid, order=order)

    def cancel(self, request: CancelOrder) -> MatchResult:
        """Cancel an order; "too late" when it is already closed."""
        result = MatchResult()
        cid = request.cl_ord_id
        order = self._by_cl_ord_id.get(cid)
        if order is None:
            return self._answer(result, cid, reason=f"{RejectReason.UNKNOWN_ORDER}: no order {cid}", not_found=True)
        if not order.is_open:
            reason = f"{RejectReason.TOO_LATE}: order is {order.status.value}"
            self._report(order, result, ReportKind.CANCEL_REJECTED, reason=reason)
            return self._answer(result, order.cl_ord_id, order=order, reason=reason)
        order.status = OrderStatus.CANCELED
        self._report(order, result, ReportKind.CANCELED, reason=request.reason or "canceled on request")
        return self._answer(result, order.cl_ord_id, order=order)

    def replace(self, request: ReplaceOrder) -> MatchResult:
        """Cancel/replace: new quantity and prices under a new client order id."""
        result = MatchResult()
        order = self._by_cl_ord_id.get(request.orig_cl_ord_id)
        if order is None:
            unknown = f"{RejectReason.UNKNOWN_ORDER}: no order {request.orig_cl_ord_id}"
            return self._answer(result, request.cl_ord_id, reason=unknown, not_found=True)
        reason: str | None = None
        inst = self._instruments.get(order.symbol)
        if not order.is_open:
            reason = f"{RejectReason.TOO_LATE}: order is {order.status.value}"
        elif self.find(request.cl_ord_id) is not None:
            reason = f"{RejectReason.DUPLICATE_ORDER}: {request.cl_ord_id} is already in use"
        elif request.qty <= order.filled_qty:
            reason = (
                f"{RejectReason.INCORRECT_QUANTITY}: new quantity {request.qty} must exceed the filled "
                f"{order.filled_qty}"
            )
        elif inst is not None:
            reason = self._terms_refusal(inst, request.qty, request.price, request.stop_price, order.type)
        if reason is not None:
            self._report(order, result, ReportKind.REPLACE_REJECTED, reason=reason)
            return self._answer(result, request.cl_ord_id, order=order, reason=reason)
        order.cl_ord_id = request.cl_ord_id
        order.cl_ord_ids.append(request.cl_ord_id)
        self._by_cl_ord_id[request.cl_ord_id] = order
        order.qty = request.qty
        order.price = request.price
        order.stop_price = request.stop_price
        self._report(order, result, ReportKind.REPLACED)
        self._guarded(order, result, lambda: self._match(order, result))
        return self._answer(result, request.cl_ord_id, order=order)

    def status(self, cl_ord_id: str) -> OrderStatusReport | None:
        """The venue's view of an order, or None when it does not know the id."""
        order = self.find(cl_ord_id)
        return None if order is None else order.status_report(self.venue)

    def step(self) -> MatchResult:
        """Match every resting order against the current quotes (call after the feed moved)."""
        result = MatchResult()
        now = self._clock()
        for order in self.open_orders():
            if order.auction_at is not None:
                if now >= order.auction_at:
                    self._auction(order, result)
                continue
            if order.time_in_force is TimeInForce.GTD and order.expire_at is not None and now >= order.expire_at:
                order.status = OrderStatus.EXPIRED
                self._report(order, result, ReportKind.EXPIRED, reason="GTD expiry reached")
                continue
            self._guarded(order, result, functools.partial(self._match, order, result))
        return result

    @staticmethod
    def _answer(
        result: MatchResult,
        cl_ord_id: str,
        *,
        order: SimOrder | None = None,
        reason: str | None = None,
        not_found: bool = False,
    ) -> MatchResult:
        result.ack = BrokerAck(
            accepted=reason is None,
            cl_ord_id=cl_ord_id,
            broker_order_id=order.venue_order_id if order else None,
            reason=reason,
            not_found=not_found,
            reports=list(result.reports),
        )
        return result

    # -- matching ---------------------------------------------------------------------------------------

    def _guarded(self, order: SimOrder, result: MatchResult, match: Callable[[], None]) -> None:
        # An order whose terms the arithmetic cannot carry (a peg offset of 1e30) must not stop the matching of
        # every other order: the venue cancels it, as a real venue cancels what it cannot handle.
        try:
            match()
        except ArithmeticError as e:
            if order.is_open:
                order.status = OrderStatus.CANCELED
                reason = f"{RejectReason.INVALID_PRICE}: the venue cannot price this order ({type(e).__name__})"
                self._report(order, result, ReportKind.CANCELED, reason=reason)

    def _auction(self, order: SimOrder, result: MatchResult) -> None:
        self._guarded(order, result, functools.partial(self._match, order, result, whole=True))
        if order.is_open:
            order.status = OrderStatus.EXPIRED
            where = "opening" if order.time_in_force is TimeInForce.OPG else "closing"
            self._report(
                order,
                result,
                ReportKind.EXPIRED,
                reason=f"{order.time_in_force.value}: not filled in the {where} auction",
            )

    def _arrive(self, order: SimOrder, result: MatchResult) -> None:
        if order.auction_at is not None:
            return  # waits for its auction (step)
        if order.time_in_force is TimeInForce.FOK:
            price = self._executable_price(order, result, dry_run=True)
            display = self._instruments[order.symbol].display_qty
            if price is None or order.qty > display:
                order.status = OrderStatus.CANCELED
                self._report(order, result, ReportKind.CANCELED, reason="FOK order cannot be filled in full")
                return
        self._match(order, result)
        if order.time_in_force is TimeInForce.IOC and order.is_open:
            order.status = OrderStatus.CANCELED
            self._report(order, result, ReportKind.CANCELED, reason="IOC remainder canceled")

    def _match(self, order: SimOrder, result: MatchResult, *, whole: bool = False) -> None:
        if order.auction_at is not None and not whole:
            return  # an OPG/CLS order trades in its auction only
        price = self._executable_price(order, result)
        if price is None:
            return
        display = self._instruments[order.symbol].display_qty
        qty = order.leaves_qty if whole else min(order.leaves_qty, display)
        if qty <= 0:
            return
        cost = (order.avg_price or Decimal(0)) * order.filled_qty + qty * price
        filled = order.filled_qty + qty
        order.filled_qty, order.avg_price = filled, cost / filled  # computed first: nothing half-applied
        order.status = OrderStatus.FILLED if order.filled_qty >= order.qty else OrderStatus.PARTIALLY_FILLED
        self._report(order, result, ReportKind.FILL, last_qty=qty, last_price=price)

    def _executable_price(self, order: SimOrder, result: MatchResult, *, dry_run: bool = False) -> Decimal | None:
        quote = self.feed.quote(order.symbol)
        buy = order.side is OrderSide.BUY
        far = quote.ask if buy else quote.bid
        if order.type.needs_stop_price and not order.triggered:
            assert order.stop_price is not None
            # A stop triggers when the far touch moves against the order to the stop price; a touched order
            # when it moves in the order's favour to it (a buy when the ask falls to it).
            touched = order.type.is_touched
            against = far >= order.stop_price if buy else far <= order.stop_price
            favour = far <= order.stop_price if buy else far >= order.stop_price
            if not (favour if touched else against):
                return None
            if dry_run:
                return self._limit_price(order, far) if order.type.limit_once_triggered else far
            order.triggered = True
            what = "touch price" if touched else "stop"
            self._report(order, result, ReportKind.TRIGGERED, reason=f"{what} {order.stop_price} reached at {far}")
        if order.type in (OrderType.MARKET, OrderType.STOP, OrderType.MARKET_IF_TOUCHED):
            return far
        if order.type is OrderType.PEGGED:
            return self._peg_price(order, quote.bid, quote.ask, far)
        return self._limit_price(order, far)

    @staticmethod
    def _limit_price(order: SimOrder, far: Decimal) -> Decimal | None:
        assert order.price is not None
        buy = order.side is OrderSide.BUY
        return far if (far <= order.price if buy else far >= order.price) else None

    def _peg_price(self, order: SimOrder, bid: Decimal, ask: Decimal, far: Decimal) -> Decimal | None:
        buy = order.side is OrderSide.BUY
        offset = order.peg_offset or Decimal(0)
        peg = order.peg_type or PegType.MARKET
        if peg is PegType.MIDPOINT:
            inst = self._instruments[order.symbol]
            return inst.round_price((bid + ask) / 2 + offset)
        reference = far if peg is PegType.MARKET else (bid if buy else ask)
        priced = reference + offset if buy else reference - offset
        return far if (far <= priced if buy else far >= priced) else None

    # -- validation -------------------------------------------------------------------------------------

    def _refusal(self, order: SimOrder) -> str | None:
        inst = self._instruments.get(order.symbol)
        if inst is None or not inst.tradable:
            return f"{RejectReason.UNKNOWN_SYMBOL}: {order.symbol}"
        if order.symbol in self.reject_symbols or (self.reject_rate and self._rng.random() < self.reject_rate):
            return f"{RejectReason.INJECTED}: simulated venue reject"
        if order.type is OrderType.PEGGED and order.time_in_force is TimeInForce.FOK:
            return f"{RejectReason.UNSUPPORTED}: pegged FOK"
        if order.time_in_force is TimeInForce.GTD and order.expire_at is None:
            return f"{RejectReason.UNSUPPORTED}: GTD without expiry"
        return self._terms_refusal(inst, order.qty, order.price, order.stop_price, order.type)

    @staticmethod
    def _terms_refusal(
        inst: Instrument, qty: Decimal, price: Decimal | None, stop: Decimal | None, type_: OrderType
    ) -> str | None:
        if qty <= 0 or not inst.on_lot(qty) or qty < inst.min_qty or qty > inst.max_qty:
            return (
                f"{RejectReason.INCORRECT_QUANTITY}: {qty} (step {inst.lot_step}, min {inst.min_qty}, "
                f"max {inst.max_qty})"
            )
        if type_.needs_price and price is None:
            return f"{RejectReason.INVALID_PRICE}: {type_.value} order without a limit price"
        if type_.needs_stop_price and stop is None:
            return f"{RejectReason.INVALID_PRICE}: {type_.value} order without a stop price"
        for p in (price, stop):
            if p is not None and (p <= 0 or not inst.on_tick(p)):
                return f"{RejectReason.INVALID_PRICE}: {p} is not on the tick {inst.tick_size}"
        return None

    # -- reports ----------------------------------------------------------------------------------------

    def _report(
        self,
        order: SimOrder,
        result: MatchResult,
        kind: ReportKind,
        *,
        reason: str | None = None,
        last_qty: Decimal = Decimal(0),
        last_price: Decimal | None = None,
    ) -> ExecutionReport:
        now = self._clock()
        order.report_seq += 1
        order.updated_at = now
        report = ExecutionReport(
            broker=self.venue,
            exec_id=f"{order.venue_order_id}-{order.report_seq}",
            kind=kind,
            cl_ord_id=order.cl_ord_id,
            broker_order_id=order.venue_order_id,
            symbol=order.symbol,
            side=order.side,
            last_qty=last_qty,
            last_price=last_price,
            cum_qty=order.filled_qty,
            leaves_qty=order.leaves_qty,
            avg_price=order.avg_price,
            reason=reason,
            new_qty=order.qty if kind is ReportKind.REPLACED else None,
            new_price=order.price if kind is ReportKind.REPLACED else None,
            new_stop_price=order.stop_price if kind is ReportKind.REPLACED else None,
            transact_at=now,
        )
        order.reports.append(report)
        result.reports.append(report)
        result.touch(order)
        return report
