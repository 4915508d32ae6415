"""OANDA's view of the simulated venue's book: transactions and orders derived from the journaled ``SimOrder`` records.

Nothing here is stored. The account's transactions (an order's creation or its reject, ``ORDER_FILL``,
``ORDER_CANCEL``) and its orders are derived from the paper matching engine's orders and reports (which the
venue's journal holds), so after a restart the venue tells the same history with the same transaction ids.

* **Transaction ids** increase with time: a report at time *t* gets the id ``max(previous + 1, µs(t) * 4 + slot)``
  (a replacement is two transactions: the old order's ``ORDER_CANCEL``, then the replacement's creation). They
  are larger numbers than OANDA's, and like OANDA's they only grow; refusals the venue makes itself (a reused
  pending client id, insufficient margin) are not in the engine's journal and are kept in memory only.
* **Orders**: OANDA replaces an order by cancelling it and creating a new one with a new id, so one ``SimOrder``
  is a chain of OANDA orders ("legs"); leg k starts at the k-th REPLACED report. An order's id is the id of the
  transaction that created it.
* **Client ids**: OANDA refuses a ``clientExtensions.id`` only while a *pending* order holds it; once that order is
  filled or cancelled the id can be used again and makes a new order. The engine refuses a client order id
  forever, so a reused id goes to the engine as ``<id>~<n>``; ``oanda_client_id`` strips the suffix.

Simplification: the engine keeps only an order's current prices, so a replaced leg shows the price of the leg
that replaced it (the adapter never reads a replaced order's price).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from core.domain import ExecutionReport, OrderSide, OrderType, ReportKind, TimeInForce
from sim.matching import RejectReason, SimOrder

__all__ = [
    "ANONYMOUS",
    "Derived",
    "Leg",
    "OANDA_TIF",
    "OANDA_TYPE",
    "derive",
    "num",
    "oanda_client_id",
    "oanda_time",
    "order_json",
    "reject_reason",
]

OANDA_TYPE = {
    OrderType.MARKET: "MARKET",
    OrderType.LIMIT: "LIMIT",
    OrderType.STOP: "STOP",
    OrderType.MARKET_IF_TOUCHED: "MARKET_IF_TOUCHED",
}
OANDA_TIF = {
    TimeInForce.GTC: "GTC",
    TimeInForce.GTD: "GTD",
    TimeInForce.DAY: "GFD",
    TimeInForce.FOK: "FOK",
    TimeInForce.IOC: "IOC",
}
#: The engine's client order id of an order placed without ``clientExtensions.id`` starts with this.
ANONYMOUS = "OANDA-"
USER_ID = 1234567


def num(value: Decimal | None) -> str | None:
    """A decimal as OANDA writes it (a string without exponent)."""
    return None if value is None else f"{value.normalize():f}"


def oanda_time(at: datetime) -> str:
    """RFC 3339 in UTC with nine fractional digits, as OANDA writes times."""
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f") + "000Z"


def oanda_client_id(engine_cid: str) -> str | None:
    """The ``clientExtensions.id`` of an engine order (None: placed without one)."""
    if engine_cid.startswith(ANONYMOUS):
        return None
    return engine_cid.split("~", 1)[0]


def instrument_of(symbol: str) -> str:
    """``EURUSD -> EUR_USD``."""
    return f"{symbol[:3]}_{symbol[3:]}" if len(symbol) == 6 else symbol


def reject_reason(reason: str | None) -> str:
    """OANDA's ``rejectReason`` for a refusal of the engine."""
    text = reason or ""
    if text.startswith(RejectReason.UNKNOWN_SYMBOL):
        return "INSTRUMENT_UNKNOWN"
    if text.startswith(RejectReason.INCORRECT_QUANTITY):
        return "UNITS_INVALID"
    if text.startswith(RejectReason.INVALID_PRICE):
        return "PRICE_PRECISION_EXCEEDED"
    if text.startswith(RejectReason.UNSUPPORTED):
        return "TIME_IN_FORCE_INVALID"
    return "INTERNAL_SERVER_ERROR" if not text.startswith(RejectReason.INJECTED) else "INSTRUMENT_NOT_TRADEABLE"


def _cancel_reason(report: ExecutionReport) -> str:
    if report.kind is ReportKind.EXPIRED:
        return "TIME_IN_FORCE_EXPIRED"
    text = report.reason or ""
    if "FOK" in text or "IOC" in text:
        return "INSUFFICIENT_LIQUIDITY"
    if text.startswith(RejectReason.INVALID_PRICE):
        return "INTERNAL_SERVER_ERROR"
    if "halted" in text.lower():
        return "MARKET_HALTED"
    return "CLIENT_REQUEST"


@dataclass
class Leg:
    """One OANDA order of a replace chain."""

    order: SimOrder
    id: str
    engine_cid: str
    units: Decimal
    price: Decimal | None
    created_at: datetime
    replaces: str | None = None
    state: str = "PENDING"
    filled: Decimal = Decimal(0)
    filling_transaction_id: str | None = None
    filled_at: datetime | None = None
    cancelling_transaction_id: str | None = None
    cancelled_at: datetime | None = None
    replaced_by: str | None = None
    trade_ids: list[str] = field(default_factory=list)

    @property
    def client_id(self) -> str | None:
        """Its ``clientExtensions.id``."""
        return oanda_client_id(self.engine_cid)

    @property
    def pending(self) -> bool:
        """Whether OANDA still works it."""
        return self.state == "PENDING"


@dataclass
class Derived:
    """The account's transactions (by id, ascending) and orders, as of the engine's current book."""

    transactions: list[dict[str, Any]]
    legs: list[Leg]
    #: Engine exec id -> the transactions of that report.
    by_exec: dict[str, list[dict[str, Any]]]
    last_id: int

    def leg(self, order_id: str) -> Leg | None:
        """The order with OANDA id ``order_id``."""
        return next((leg for leg in self.legs if leg.id == order_id), None)

    def by_client_id(self, client_id: str, *, done_too: bool = True) -> Leg | None:
        """The pending order holding ``client_id``, else (``done_too``) the latest one that had it."""
        legs = [leg for leg in self.legs if leg.client_id == client_id]
        pending = [leg for leg in legs if leg.pending]
        if pending:
            return pending[-1]
        return legs[-1] if legs and done_too else None


def _tif(order: SimOrder) -> str:
    return OANDA_TIF.get(order.time_in_force, "GTC")


def _terms(order: SimOrder, leg_units: Decimal, price: Decimal | None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "instrument": instrument_of(order.symbol),
        "units": num(leg_units),
        "timeInForce": _tif(order),
        "positionFill": "DEFAULT",
    }
    if order.type is not OrderType.MARKET:
        body["price"] = num(price)
        body["triggerCondition"] = "DEFAULT"
        if order.time_in_force is TimeInForce.GTD and order.expire_at is not None:
            body["gtdTime"] = oanda_time(order.expire_at)
    return body


def derive(
    orders: list[SimOrder],
    *,
    account_id: str,
    reserved: set[int] | None = None,
    floors: list[tuple[datetime, int]] | None = None,
    balance: Decimal = Decimal(0),
) -> Derived:
    """Transactions and orders of ``orders`` (every engine order, refused ones too).

    ``reserved``: transaction ids the venue gave refusals of its own (never reused); ``floors``: their times and
    ids, so that a transaction after one of them gets a larger id.
    """
    reserved = reserved or set()
    pending_floors = sorted(floors or [])
    events: list[tuple[datetime, str, int, SimOrder, ExecutionReport]] = []
    for order in orders:
        for index, report in enumerate(order.reports):
            events.append((report.transact_at, order.venue_order_id, index, order, report))
    events.sort(key=lambda e: (e[0], e[1], e[2]))
    txns: list[dict[str, Any]] = []
    by_exec: dict[str, list[dict[str, Any]]] = {}
    chains: dict[str, list[Leg]] = {}
    filled_chain: dict[str, Decimal] = {}
    prev = 0

    def next_id(at: datetime, slot: int) -> int:
        nonlocal prev
        while pending_floors and pending_floors[0][0] <= at:
            prev = max(prev, pending_floors.pop(0)[1])
        micros = int(at.timestamp() * 1_000_000)
        candidate = max(prev + 1, micros * 4 + slot)
        while candidate in reserved:
            candidate += 1
        prev = candidate
        return candidate

    def base(at: datetime, slot: int, kind: str) -> dict[str, Any]:
        tid = str(next_id(at, slot))
        return {
            "id": tid,
            "time": oanda_time(at),
            "userID": USER_ID,
            "accountID": account_id,
            "batchID": tid,
            "requestID": f"6{tid}",
            "type": kind,
        }

    replaced_price: dict[str, tuple[Decimal | None, Decimal | None]] = {}
    for order in orders:
        first = next((r for r in order.reports if r.kind is ReportKind.REPLACED), None)
        if first is not None:
            replaced_price[order.venue_order_id] = (first.new_price, first.new_stop_price)

    for at, _, _, order, report in events:
        kind = report.kind
        legs = chains.setdefault(order.venue_order_id, [])
        sign = Decimal(1) if order.side is OrderSide.BUY else Decimal(-1)
        type_name = OANDA_TYPE.get(order.type, "MARKET")
        made: list[dict[str, Any]] = []
        ext_id = oanda_client_id(order.cl_ord_ids[0])
        if kind is ReportKind.ACCEPTED and not legs:
            qty = report.leaves_qty or order.qty
            if order.venue_order_id in replaced_price:
                p, s = replaced_price[order.venue_order_id]
            else:
                p, s = order.price, order.stop_price
            price = s if order.type.needs_stop_price else p
            txn = base(at, 0, f"{type_name}_ORDER") | _terms(order, qty * sign, price) | {"reason": "CLIENT_ORDER"}
            if ext_id is not None:
                txn["clientExtensions"] = {"id": ext_id}
            legs.append(
                Leg(
                    order=order,
                    id=txn["id"],
                    engine_cid=order.cl_ord_ids[0],
                    units=qty * sign,
                    price=price,
                    created_at=at,
                )
            )
            made.append(txn)
        elif kind is ReportKind.REJECTED and not legs:
            price = order.stop_price if order.type.needs_stop_price else order.price
            txn = base(at, 0, f"{type_name}_ORDER_REJECT") | _terms(order, order.qty * sign, price)
            txn |= {"reason": "CLIENT_ORDER", "rejectReason": reject_reason(report.reason)}
            if ext_id is not None:
                txn["clientExtensions"] = {"id": ext_id}
            made.append(txn)
        elif legs and kind is ReportKind.FILL:
            leg = legs[-1]
            qty = report.last_qty
            leg.filled += qty
            filled_chain[order.venue_order_id] = filled_chain.get(order.venue_order_id, Decimal(0)) + qty
            fill_price = num(report.last_price)
            txn = base(at, 0, "ORDER_FILL") | {
                "orderID": leg.id,
                "instrument": instrument_of(order.symbol),
                "units": num(qty * sign),
                "price": fill_price,
                "fullVWAP": fill_price,
                "fullPrice": {
                    "type": "PRICE",
                    "instrument": instrument_of(order.symbol),
                    "time": oanda_time(at),
                    "bids": [{"price": fill_price, "liquidity": 10000000}],
                    "asks": [{"price": fill_price, "liquidity": 10000000}],
                    "closeoutBid": fill_price,
                    "closeoutAsk": fill_price,
                },
                "reason": f"{type_name}_ORDER",
                "pl": "0",
                "financing": "0",
                "commission": "0",
                "guaranteedExecutionFee": "0",
                "halfSpreadCost": "0",
                "accountBalance": num(balance),
                "gainQuoteHomeConversionFactor": "1",
                "lossQuoteHomeConversionFactor": "1",
            }
            txn["tradeOpened"] = {
                "tradeID": txn["id"],
                "units": num(qty * sign),
                "price": fill_price,
                "guaranteedExecutionFee": "0",
                "halfSpreadCost": "0",
                "initialMarginRequired": "0",
            }
            if leg.client_id is not None:
                txn["clientOrderID"] = leg.client_id
            leg.trade_ids.append(txn["id"])
            if leg.filled >= abs(leg.units):
                leg.state, leg.filling_transaction_id, leg.filled_at = "FILLED", txn["id"], at
            made.append(txn)
        elif legs and kind in (ReportKind.CANCELED, ReportKind.EXPIRED):
            leg = legs[-1]
            txn = base(at, 0, "ORDER_CANCEL") | {"orderID": leg.id, "reason": _cancel_reason(report)}
            if leg.client_id is not None:
                txn["clientOrderID"] = leg.client_id
            leg.state, leg.cancelling_transaction_id, leg.cancelled_at = "CANCELLED", txn["id"], at
            made.append(txn)
        elif legs and kind is ReportKind.REPLACED:
            old = legs[-1]
            cancel = base(at, 0, "ORDER_CANCEL") | {"orderID": old.id, "reason": "CLIENT_REQUEST_REPLACED"}
            if old.client_id is not None:
                cancel["clientOrderID"] = old.client_id
            chain_filled = filled_chain.get(order.venue_order_id, Decimal(0))
            units = ((report.new_qty or order.qty) - chain_filled) * sign
            price = report.new_stop_price if order.type.needs_stop_price else report.new_price
            create = base(at, 1, f"{type_name}_ORDER") | _terms(order, units, price)
            create["batchID"] = cancel["id"]
            create |= {"reason": "REPLACEMENT", "replacesOrderID": old.id}
            cancel["replacedByOrderID"] = create["id"]
            new_ext = oanda_client_id(report.cl_ord_id)
            if new_ext is not None:
                create["clientExtensions"] = {"id": new_ext}
            old.state, old.cancelling_transaction_id, old.cancelled_at = "CANCELLED", cancel["id"], at
            old.replaced_by = create["id"]
            legs.append(
                Leg(
                    order=order,
                    id=create["id"],
                    engine_cid=report.cl_ord_id,
                    units=units,
                    price=price,
                    created_at=at,
                    replaces=old.id,
                )
            )
            made.extend([cancel, create])
        if made:
            txns.extend(made)
            by_exec[report.exec_id] = made
    all_legs = [leg for legs in chains.values() for leg in legs]
    all_legs.sort(key=lambda leg: int(leg.id))
    return Derived(transactions=txns, legs=all_legs, by_exec=by_exec, last_id=prev)


def order_json(leg: Leg) -> dict[str, Any]:
    """The leg as OANDA's Order object (a MarketOrder, LimitOrder or StopOrder)."""
    order = leg.order
    body: dict[str, Any] = {
        "id": leg.id,
        "createTime": oanda_time(leg.created_at),
        "state": leg.state,
        "type": OANDA_TYPE.get(order.type, "MARKET"),
    } | _terms(order, leg.units, leg.price)
    if leg.client_id is not None:
        body["clientExtensions"] = {"id": leg.client_id}
    if leg.state == "FILLED":
        body["fillingTransactionID"] = leg.filling_transaction_id
        body["filledTime"] = oanda_time(leg.filled_at or leg.created_at)
        if leg.trade_ids:
            body["tradeOpenedID"] = leg.trade_ids[0]
    if leg.state == "CANCELLED":
        body["cancellingTransactionID"] = leg.cancelling_transaction_id
        body["cancelledTime"] = oanda_time(leg.cancelled_at or leg.created_at)
    if order.type is not OrderType.MARKET:
        if leg.replaces:
            body["replacesOrderID"] = leg.replaces
        if leg.replaced_by:
            body["replacedByOrderID"] = leg.replaced_by
    return body
