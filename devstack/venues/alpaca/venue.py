"""The local Alpaca venue: Alpaca's Trading API v2 and trade_updates stream in front of the paper matching engine.

``python -m devstack.venues.alpaca`` runs it (``--help``); ``EXODUS_ALPACA__LOCAL_VENUE=true make run`` starts
it beside the worker; tests run ``AlpacaVenue`` in process with ``serve()``. What it speaks (the Trading API's
OpenAPI document in ``shared/specs/alpaca-trading/`` for the shapes, ``BROKERS.md`` §1 and §9 for the rest):

* ``POST /v2/orders`` (market, limit, stop, stop_limit; day, gtc, ioc, fok), ``GET /v2/orders`` (status
  open/closed/all, limit, after, until, direction, symbols), ``GET /v2/orders:by_client_order_id``,
  ``GET/PATCH/DELETE /v2/orders/{order_id}``, ``GET /v2/account``, ``GET /v2/positions``,
  ``GET /v2/account/activities/FILL`` (and ``/v2/account/activities?activity_types=FILL``; paging by
  ``page_token``/``page_size``), and the market data ``GET /v2/stocks/quotes/latest?symbols=`` and
  ``GET /v2/stocks/{symbol}/quotes/latest`` (the top of the simulated book).
* Authentication by ``APCA-API-KEY-ID`` and ``APCA-API-SECRET-KEY`` (401 ``{"code": 40110000, ...}``).
* Errors as ``{"code": <8 digits>, "message": ...}``: 403 insufficient buying power (40310000), 404 order not
  found (40410000), 422 invalid input (40010000), unknown asset or a client order id used before
  (40010001 "client_order_id must be unique"), an order that is no longer cancelable or replaceable (42210000).
* A rate limit per key and minute (0: none): 429 with ``X-RateLimit-Limit``, ``-Remaining`` and ``-Reset`` (the
  epoch second the window frees a request); every answer carries the three headers.
* The ``/stream`` WebSocket: ``authenticate`` then ``listen`` to ``trade_updates``; events ``new``, ``fill``,
  ``partial_fill``, ``canceled``, ``expired``, ``replaced``, ``rejected``, ``order_cancel_rejected``,
  ``order_replace_rejected``, sent as binary frames like the paper stream. Events happen whether or not anybody
  listens: a client that was away catches up over REST, as with Alpaca.
* Faults (``faults``): latency, a 5xx before or after the request was processed, a connection dropped after the
  order was accepted, an answer that never comes, the stream dropped, new stream connections refused.

Refusals the engine itself makes after validation (the injected ``reject_symbols``) are accepted orders that end
``rejected`` at once, with a ``rejected`` event, as an Alpaca order rejected by the exchange.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from core.domain import (
    CancelOrder,
    ExecutionReport,
    Instrument,
    InstrumentClass,
    OrderSide,
    OrderType,
    ReplaceOrder,
    ReportKind,
    SubmitOrder,
    TimeInForce,
    utcnow,
)
from core.errors import BrokerUnavailable
from core.tasks import run_later
from devstack.venues import server
from devstack.venues.alpaca.classes import HeldLeg, OrderClass, Trail, held_json, trail_json
from devstack.venues.alpaca.model import (
    ALPACA_TIF,
    ALPACA_TYPE,
    Leg,
    activity_json,
    alpaca_time,
    asset_id,
    decimal_text,
    execution_id,
    legs_of,
    order_json,
)
from devstack.venues.server import Fault, HttpVenueServer, PaperVenue
from sim.matching import US_EQUITY_AUCTIONS, RejectReason, SimOrder
from sim.venue import SimVenue

__all__ = ["AlpacaVenue", "Fault", "VenueFaults", "VenueServer", "development_keys"]

log = logging.getLogger(__name__)

_TYPES = {v: k for k, v in ALPACA_TYPE.items()}
_TIFS = {v: k for k, v in ALPACA_TIF.items()}
_D = Decimal


class VenueFaults(server.VenueFaults[Fault]):
    """What tests (and demos) make go wrong; a fault's ``path`` is a prefix of the request's (``/v2/orders``).

    Refused stream connections are closed at once.
    """

    dropped = (200, b'{"id":')

    def fault(self, kind: str, **kw: Any) -> Fault:
        """A fault (an error answer is ``status``, 500 by default)."""
        return Fault(kind, **kw)


def _time_param(value: str | None) -> datetime | None | JSONResponse:
    if not value:
        return None
    try:
        at = datetime.fromisoformat(value.replace("Z", "+00:00").replace(" ", "+"))
    except ValueError:
        return _error(422, 40010000, f"invalid timestamp {value!r}")
    return at if at.tzinfo else at.replace(tzinfo=UTC)


def _error(status: int, code: int, message: str, **extra: Any) -> JSONResponse:
    return JSONResponse({"code": code, "message": message, **extra}, status_code=status)


def _injected_error(fault: Fault) -> JSONResponse:
    return _error(fault.status, 50010000, "internal server error (injected)")


class _RateLimit:
    """A sliding window of requests per key: at most ``per_minute`` in any ``window`` seconds (60)."""

    def __init__(self, per_minute: int, window: float = 60.0) -> None:
        self.per_minute = per_minute
        self.window = window
        self.refused = 0
        self._seen: dict[str, deque[float]] = {}

    def take(self, key: str) -> tuple[bool, dict[str, str]]:
        """Count a request; (allowed, rate-limit headers)."""
        now = time.time()
        window = self._seen.setdefault(key, deque())
        while window and window[0] <= now - self.window:
            window.popleft()
        limit = self.per_minute
        if limit <= 0:
            return True, {"X-RateLimit-Limit": "0", "X-RateLimit-Remaining": "0", "X-RateLimit-Reset": str(int(now))}
        allowed = len(window) < limit
        if allowed:
            window.append(now)
        else:
            self.refused += 1
        reset = int(window[0] + self.window) + 1 if len(window) >= limit else int(now)
        headers = {
            "X-RateLimit-Limit": str(limit),
            "X-RateLimit-Remaining": str(max(limit - len(window), 0)),
            "X-RateLimit-Reset": str(reset),
        }
        return allowed, headers


class _Listener:
    """One authenticated stream connection listening to trade_updates."""

    def __init__(self, ws: WebSocket, binary: bool) -> None:
        self.ws = ws
        self.binary = binary
        self.queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()


class AlpacaVenue(PaperVenue):
    """The Alpaca Trading API v2 and its trade_updates stream over a ``SimVenue``."""

    def __init__(
        self,
        sim: SimVenue,
        instruments: list[Instrument],
        *,
        key_id: str,
        secret_key: str,
        rate_limit_per_minute: int = 0,
        initial_cash: Decimal = Decimal(1_000_000),
        binary_frames: bool = True,
    ) -> None:
        """Serve ``sim`` (started by ``start()``) to the holder of ``key_id``/``secret_key``.

        OPG/CLS orders trade at US equities' open and close (``US_EQUITY_AUCTIONS``) unless ``sim`` has auctions.
        """
        self.sim = sim
        if sim.engine.auctions is None:
            sim.engine.auctions = US_EQUITY_AUCTIONS
        self.instruments = {i.symbol: i for i in instruments}
        self.key_id = key_id
        self.secret_key = secret_key
        self.rate_limit = _RateLimit(rate_limit_per_minute)
        self.data_rate_limit = _RateLimit(rate_limit_per_minute)
        self.initial_cash = initial_cash
        self.binary_frames = binary_frames
        self.faults = VenueFaults()
        self.account_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"exodus-alpaca-venue/{key_id}"))
        self.created_at = utcnow()
        self._listeners: set[_Listener] = set()
        #: Requests answered, by "METHOD path" (tests count resends with it).
        self.requests: dict[str, int] = {}
        self.events_sent = 0
        #: Order classes (``classes``): by the head's first client order id, and each leg by its client order id.
        self.order_classes: dict[str, OrderClass] = {}
        self._class_legs: dict[str, tuple[OrderClass, HeldLeg]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        #: Trailing stops by client order id (``classes.Trail``): held here until triggered, then engine orders.
        self.trails: dict[str, Trail] = {}
        self.app = self._build_app()
        sim.add_listener(self._on_report)
        sim.add_feed_listener(self._on_feed)

    # -- lifecycle ----------------------------------------------------------------------------------------

    async def stop(self) -> None:
        """Close every stream and stop the simulated venue."""
        for task in list(self._tasks):
            task.cancel()
        await self.drop_streams()
        await super().stop()

    async def drop_streams(self) -> None:
        """Close every stream connection (the clients reconnect and catch up)."""
        for listener in list(self._listeners):
            listener.queue.put_nowait(None)
        self._listeners.clear()

    @property
    def listening(self) -> int:
        """Stream connections listening to trade_updates."""
        return len(self._listeners)

    # -- state, derived from the engine's orders ----------------------------------------------------------

    def _chains(self) -> list[SimOrder]:
        orders = list(self.sim.engine.all_orders())
        orders.extend(self.sim.engine._rejected.values())  # refused by the engine: Alpaca orders that were rejected
        return orders

    async def _synced(self) -> list[SimOrder]:
        await self.sim.flush()  # nothing unsaved is ever revealed
        return self._chains()

    def _trail_by_id(self, alpaca_id: str) -> Trail | None:
        return next((t for t in self.trails.values() if t.alpaca_id == alpaca_id), None)

    async def _leg_by_id(self, alpaca_id: str) -> Leg | None:
        if self._held(alpaca_id) is not None:
            return None
        trail = self._trail_by_id(alpaca_id)
        if trail is not None:
            return await self._leg_by_cl_ord_id(trail.cl_ord_id) if trail.triggered else None
        active = next((h for _, h in self._class_legs.values() if h.active and h.alpaca_id == alpaca_id), None)
        if active is not None:
            return await self._leg_by_cl_ord_id(active.cl_ord_id)
        for order in await self._synced():
            for leg in legs_of(order):
                if leg.alpaca_id == alpaca_id:
                    return leg
        return None

    async def _leg_by_cl_ord_id(self, cl_ord_id: str) -> Leg | None:
        await self.sim.flush()
        order = self.sim.engine.find(cl_ord_id)
        if order is None:
            return None
        return next((leg for leg in legs_of(order) if leg.cl_ord_id == cl_ord_id), None)

    def _positions(self, orders: list[SimOrder]) -> dict[str, tuple[Decimal, Decimal, Decimal]]:
        """Symbol -> (signed qty, cost basis of what is held, cash flow) from every fill."""
        book: dict[str, tuple[Decimal, Decimal, Decimal]] = {}
        fills = sorted(
            ((o, r) for o in orders for r in o.reports if r.kind is ReportKind.FILL), key=lambda x: x[1].transact_at
        )
        for order, report in fills:
            qty, cost, cash = book.get(order.symbol, (_D(0), _D(0), _D(0)))
            signed = report.last_qty * order.side.sign
            price = report.last_price or _D(0)
            cash -= signed * price
            if qty == 0 or (qty > 0) == (signed > 0):
                cost += signed * price
            else:
                closing = min(abs(signed), abs(qty))
                avg = cost / qty
                cost -= avg * closing * (1 if qty > 0 else -1)
                if abs(signed) > abs(qty):
                    cost = (signed + qty) * price
            qty += signed
            if qty == 0:
                cost = _D(0)
            book[order.symbol] = (qty, cost, cash)
        return book

    def _mid(self, symbol: str) -> Decimal:
        quote = self.sim.feed.quote(symbol)
        return quote.mid

    def _cash(self, orders: list[SimOrder]) -> Decimal:
        return self.initial_cash + sum((cash for _, _, cash in self._positions(orders).values()), _D(0))

    def _buying_power(self, orders: list[SimOrder]) -> Decimal:
        reserved = _D(0)
        for order in orders:
            if order.is_open and order.side is OrderSide.BUY:
                price = order.price or self._mid(order.symbol)
                reserved += order.leaves_qty * price
        return max(self._cash(orders) - reserved, _D(0))

    # -- the stream ----------------------------------------------------------------------------------------

    def _on_report(self, report: ExecutionReport) -> None:
        order = self.sim.engine.find(report.cl_ord_id)
        if order is None:
            return
        index = next((i for i, r in enumerate(order.reports) if r.exec_id == report.exec_id), None)
        if index is None:
            return
        legs = legs_of(order, index + 1)
        leg = legs[-1]
        at = alpaca_time(report.transact_at)
        events: list[dict[str, Any]] = []
        kind = report.kind
        if kind is ReportKind.ACCEPTED:
            events.append({"event": "new", "order": order_json(leg), "timestamp": at})
        elif kind is ReportKind.FILL:
            event = {
                "event": "fill" if leg.status == "filled" else "partial_fill",
                "execution_id": execution_id(report),
                "order": order_json(leg),
                "timestamp": at,
                "price": decimal_text(report.last_price),
                "qty": decimal_text(report.last_qty),
                "position_qty": decimal_text(self._positions(self._chains()).get(order.symbol, (_D(0),))[0]),
            }
            events.append(event)
        elif kind is ReportKind.REPLACED:
            old = legs[-2]
            events.append({"event": "replaced", "order": order_json(old), "timestamp": at})
            events.append({"event": "new", "order": order_json(leg), "timestamp": at})
        elif kind in (ReportKind.CANCELED, ReportKind.EXPIRED, ReportKind.REJECTED):
            name = {ReportKind.CANCELED: "canceled", ReportKind.EXPIRED: "expired", ReportKind.REJECTED: "rejected"}
            events.append({"event": name[kind], "order": order_json(leg), "timestamp": at})
        elif kind is ReportKind.CANCEL_REJECTED:
            events.append({"event": "order_cancel_rejected", "order": order_json(leg), "timestamp": at})
        elif kind is ReportKind.REPLACE_REJECTED:
            events.append({"event": "order_replace_rejected", "order": order_json(leg), "timestamp": at})
        for data in events:
            data["order"] = self._classed(data["order"])
            self._send(data)
        self._contingent(order, leg, kind)

    def _send(self, data: dict[str, Any]) -> None:
        message = {"stream": "trade_updates", "data": data}
        for listener in list(self._listeners):
            listener.queue.put_nowait(message)
        self.events_sent += 1

    # -- order classes (``classes``) ------------------------------------------------------------------------

    def _held(self, alpaca_id: str) -> tuple[OrderClass, HeldLeg] | None:
        """A leg of an order class that is not in the engine (held, or canceled before it ever worked)."""
        for group, leg in self._class_legs.values():
            if leg.alpaca_id == alpaca_id and not leg.active:
                return group, leg
        return None

    def _class_ids(self) -> dict[str, str]:
        """The engine's ids of working legs -> the ids their held orders were announced under (kept for good)."""
        ids = {}
        for _, held in self._class_legs.values():
            order = self.sim.engine.find(held.cl_ord_id) if held.active else None
            if order is not None:
                ids[legs_of(order, 0)[0].alpaca_id] = held.alpaca_id
        for trail in self.trails.values():
            order = self.sim.engine.find(trail.cl_ord_id) if trail.triggered else None
            if order is not None:
                ids[legs_of(order, 0)[0].alpaca_id] = trail.alpaca_id
        return ids

    def _classed(self, data: dict[str, Any], *, nested: bool = False) -> dict[str, Any]:
        """An engine order's Order object with its order class (and, ``nested``, a head's legs).

        A leg keeps the id it was announced under while held (the engine's order gets its own when it works).
        """
        if self._class_legs or self.trails:
            ids = self._class_ids()
            for name in ("id", "replaces", "replaced_by"):
                if data.get(name) in ids:
                    data[name] = ids[data[name]]
        cid = data["client_order_id"]
        if cid in self.trails:
            return trail_json(self.trails[cid], base=data)
        order = self.sim.engine.find(cid)
        head = order.cl_ord_ids[0] if order is not None else cid
        group = self.order_classes.get(head)
        if group is not None:
            data["order_class"] = group.order_class
            if nested:
                data["legs"] = [self._leg_json(group, leg) for leg in group.legs]
        elif head in self._class_legs:
            data["order_class"] = self._class_legs[head][0].order_class
        return data

    def _leg_json(self, group: OrderClass, leg: HeldLeg) -> dict[str, Any]:
        if leg.active:
            order = self.sim.engine.find(leg.cl_ord_id)
            if order is not None:
                return self._classed(order_json(legs_of(order)[-1]))
        return held_json(leg, group.order_class)

    def _later(self, coro: Awaitable[None]) -> None:
        run_later(self._tasks, coro, what="alpaca venue: an order class's step")

    def _contingent(self, order: SimOrder, leg: Leg, kind: ReportKind) -> None:
        """What a report of a head or a leg sets off: legs activated or canceled, the other side canceled."""
        head = order.cl_ord_ids[0]
        ended = kind in (ReportKind.CANCELED, ReportKind.EXPIRED, ReportKind.REJECTED)
        done = kind is ReportKind.FILL and leg.status == "filled"
        group = self.order_classes.get(head)
        if group is not None and not group.settled:
            if group.order_class in ("bracket", "oto"):
                filled = leg.base + leg.filled
                if done or (ended and filled > 0):
                    group.settled = True
                    self._later(self._activate(group, filled))
                elif ended:
                    group.settled = True
                    self._cancel_legs(group, skip=None)
            elif done or ended:  # oco: the limit filled (or ended): the stop goes
                group.settled = True
                self._cancel_legs(group, skip=None)
        member = self._class_legs.get(head)
        if member is not None and done:
            group, filled_leg = member
            if not group.settled or group.order_class != "oto":
                group.settled = True
                self._cancel_legs(group, skip=filled_leg)
                if group.order_class == "oco":
                    self._later(self._cancel_engine(group.head))

    def _cancel_legs(self, group: OrderClass, *, skip: HeldLeg | None) -> None:
        now = utcnow()
        for leg in group.legs:
            if leg is skip or leg.status != "held" and not leg.active:
                continue
            if leg.active:
                self._later(self._cancel_engine(leg.cl_ord_id))
            else:
                leg.status, leg.canceled_at = "canceled", now
                self._send(
                    {"event": "canceled", "order": held_json(leg, group.order_class), "timestamp": alpaca_time(now)}
                )

    async def _cancel_engine(self, cl_ord_id: str) -> None:
        order = self.sim.engine.find(cl_ord_id)
        if order is None or not order.is_open:
            return
        await self.sim.cancel(
            CancelOrder(cl_ord_id=order.cl_ord_ids[-1], symbol=order.symbol, side=order.side, qty=order.qty)
        )

    async def _activate(self, group: OrderClass, qty: Decimal) -> None:
        for leg in group.legs:
            if leg.status != "held":
                continue
            leg.active, leg.qty, leg.status = True, qty, "new"
            await self.sim.submit(
                SubmitOrder(
                    cl_ord_id=leg.cl_ord_id,
                    account=self.account_id,
                    symbol=leg.symbol,
                    side=leg.side,
                    type=leg.type,
                    time_in_force=leg.time_in_force,
                    qty=qty,
                    price=leg.limit_price,
                    stop_price=leg.stop_price,
                )
            )

    async def _on_feed(self, symbols: list[str], by_hand: bool) -> None:
        """Trailing stops follow the mid; one whose stop was crossed goes to the engine as a market order."""
        for trail in list(self.trails.values()):
            if trail.triggered or trail.status != "new" or trail.symbol not in symbols:
                continue
            if trail.follow(self._mid(trail.symbol)):
                trail.triggered = True
                await self.sim.submit(
                    SubmitOrder(
                        cl_ord_id=trail.cl_ord_id,
                        account=self.account_id,
                        symbol=trail.symbol,
                        side=trail.side,
                        type=OrderType.MARKET,
                        time_in_force=TimeInForce.DAY,
                        qty=trail.qty,
                    )
                )

    def _trailing(
        self, body: dict[str, Any], *, cid: str, symbol: str, side: str, tif: TimeInForce, qty: Decimal
    ) -> Response:
        """Take a ``trailing_stop`` order (``trail_price`` or ``trail_percent``; day or gtc; simple class only)."""
        if body.get("order_class") not in (None, "", "simple"):
            return _error(422, 40010000, "trailing_stop orders cannot be bracket, oco or oto orders")
        if tif not in (TimeInForce.DAY, TimeInForce.GTC):
            return _error(422, 40010000, "trailing_stop orders must be day or gtc")
        values = {name: self._decimal(body, name) for name in ("trail_price", "trail_percent")}
        for value in values.values():
            if isinstance(value, str):
                return _error(422, 40010000, value)
        price, percent = values["trail_price"], values["trail_percent"]
        if (price is None) == (percent is None):
            return _error(422, 40010000, "trailing_stop orders require one of trail_price or trail_percent")
        if cid in self.trails or self.sim.engine.find(cid) is not None:
            return _error(422, 40010001, "client_order_id must be unique")
        now = utcnow()
        trail = Trail(
            alpaca_id=str(uuid.uuid5(uuid.NAMESPACE_URL, f"exodus-alpaca-venue/trail/{cid}")),
            cl_ord_id=cid,
            symbol=symbol,
            side=OrderSide.BUY if side == "buy" else OrderSide.SELL,
            time_in_force=tif,
            qty=qty,
            trail_price=price if isinstance(price, Decimal) else None,
            trail_percent=percent if isinstance(percent, Decimal) else None,
            hwm=self._mid(symbol),
            created_at=now,
        )
        self.trails[cid] = trail
        data = trail_json(trail)
        self._send({"event": "new", "order": data, "timestamp": alpaca_time(now)})
        return JSONResponse(data)

    def _class_problem(
        self,
        body: dict[str, Any],
        *,
        head: str,
        symbol: str,
        side: str,
        type_name: str,
        tif: TimeInForce,
        qty: Decimal,
        limit: Decimal | None,
        inst: Instrument,
    ) -> OrderClass | JSONResponse | None:
        """The order class of a POST (None: a simple order), or the 422 refusing it."""
        order_class = body.get("order_class") or "simple"
        take, stop = body.get("take_profit"), body.get("stop_loss")
        if order_class == "simple":
            if take is not None or stop is not None:
                return _error(422, 40010000, "take_profit and stop_loss are for bracket, oco and oto orders")
            return None
        if order_class not in ("bracket", "oco", "oto"):
            return _error(422, 40010000, f"invalid order_class {order_class!r}")
        if tif not in (TimeInForce.DAY, TimeInForce.GTC):
            return _error(422, 40010000, f"{order_class} orders must be day or gtc")
        for name, part in (("take_profit", take), ("stop_loss", stop)):
            if part is not None and not isinstance(part, dict):
                return _error(422, 40010000, f"{name} must be an object")
        if order_class in ("bracket", "oco") and (take is None or stop is None):
            return _error(422, 40010000, f"{order_class} orders require take_profit and stop_loss")
        if order_class == "oto" and (take is None) == (stop is None):
            return _error(422, 40010000, "oto orders require one of take_profit or stop_loss")
        if order_class == "oco" and type_name != "limit":
            return _error(422, 40010000, "oco orders must be limit orders")
        prices: dict[str, Decimal | None] = {}
        for name, part, field_name, required in (
            ("take_profit.limit_price", take, "limit_price", True),
            ("stop_loss.stop_price", stop, "stop_price", True),
            ("stop_loss.limit_price", stop, "limit_price", False),
        ):
            if part is None:
                prices[name] = None
                continue
            value = self._decimal(part, field_name)
            if isinstance(value, str):
                return _error(422, 40010000, f"{name}: {value}")
            if value is None and required:
                return _error(422, 40010000, f"{name} is required")
            if value is not None and (problem := self._price_problem(name, value, inst)):
                return _error(422, 42210000, problem)
            prices[name] = value
        tp, sp = prices["take_profit.limit_price"], prices["stop_loss.stop_price"]
        buy = side == "buy"
        cent = _D("0.01")
        if order_class == "oco":
            # Exit orders: a sell OCO takes profit above its stop, a buy OCO below.
            if tp is not None and sp is not None and (tp <= sp if not buy else tp >= sp):
                op = ">" if not buy else "<"
                return _error(422, 42210000, f"take_profit.limit_price must be {op} stop_loss.stop_price")
        else:
            top = self.sim.feed.quote(symbol)
            base = limit if limit is not None else (top.ask if buy else top.bid)
            if tp is not None and (tp < base + cent if buy else tp > base - cent):
                op = ">=" if buy else "<="
                sign = "+" if buy else "-"
                return _error(422, 42210000, f"take_profit.limit_price must be {op} base_price {sign} 0.01")
            if sp is not None and (sp > base - cent if buy else sp < base + cent):
                op = "<=" if buy else ">="
                sign = "-" if buy else "+"
                return _error(422, 42210000, f"stop_loss.stop_price must be {op} base_price {sign} 0.01")
        exit_side = OrderSide.SELL if buy else OrderSide.BUY
        if order_class == "oco":
            exit_side = OrderSide.BUY if buy else OrderSide.SELL
        group = OrderClass(order_class=order_class, head=head)
        now = utcnow()
        terms = {"symbol": symbol, "side": exit_side, "time_in_force": tif, "qty": qty, "created_at": now}
        if tp is not None and order_class != "oco":
            group.legs.append(
                HeldLeg.new(head, "take_profit", type=OrderType.LIMIT, limit_price=tp, stop_price=None, **terms)
            )
        if sp is not None:
            sl = prices["stop_loss.limit_price"]
            kind = OrderType.STOP_LIMIT if sl is not None else OrderType.STOP
            group.legs.append(HeldLeg.new(head, "stop_loss", type=kind, limit_price=sl, stop_price=sp, **terms))
        return group

    async def _stream(self, ws: WebSocket) -> None:
        await ws.accept()
        if self.faults.refuse_streams:
            await ws.close(code=1011)
            return
        listener: _Listener | None = None
        binary = self.binary_frames

        async def send(message: dict[str, Any]) -> None:
            text = json.dumps(message)
            if binary:
                await ws.send_bytes(text.encode())
            else:
                await ws.send_text(text)

        async def pump(target: _Listener) -> None:
            while True:
                message = await target.queue.get()
                if message is None:
                    await ws.close(code=1001)
                    return
                await send(message)

        pump_task: asyncio.Task[None] | None = None
        authorized = False
        try:
            while True:
                raw = await ws.receive()
                if raw["type"] == "websocket.disconnect":
                    return
                text = raw.get("text") or (raw.get("bytes") or b"").decode(errors="replace")
                try:
                    msg = json.loads(text)
                    action, data = msg.get("action"), msg.get("data") or {}
                except (ValueError, AttributeError):
                    await send({"stream": "error", "data": {"error_message": "invalid syntax"}})
                    continue
                if action == "authenticate":
                    authorized = data.get("key_id") == self.key_id and data.get("secret_key") == self.secret_key
                    status = "authorized" if authorized else "unauthorized"
                    await send({"stream": "authorization", "data": {"action": "authenticate", "status": status}})
                    if not authorized:
                        await ws.close(code=1008)
                        return
                elif action == "listen":
                    if not authorized:
                        await send({"stream": "authorization", "data": {"action": "listen", "status": "unauthorized"}})
                        await ws.close(code=1008)
                        return
                    streams = [s for s in data.get("streams") or [] if s == "trade_updates"]
                    await send({"stream": "listening", "data": {"streams": streams}})
                    if streams and listener is None:
                        listener = _Listener(ws, binary)
                        self._listeners.add(listener)
                        pump_task = asyncio.create_task(pump(listener))
                    elif not streams and listener is not None:
                        self._listeners.discard(listener)
                        listener = None
                else:
                    await send({"stream": "error", "data": {"error_message": f"unknown action {action!r}"}})
        except WebSocketDisconnect:
            return
        finally:
            if listener is not None:
                self._listeners.discard(listener)
            if pump_task is not None:
                pump_task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await pump_task

    # -- the REST API --------------------------------------------------------------------------------------

    def _build_app(self) -> Starlette:
        h = self._handler
        routes = [
            Route("/v2/orders", h(self._post_order), methods=["POST"]),
            Route("/v2/orders", h(self._list_orders), methods=["GET"]),
            Route("/v2/orders:by_client_order_id", h(self._get_by_cl_ord_id), methods=["GET"]),
            Route("/v2/orders/{order_id}", h(self._get_order), methods=["GET"]),
            Route("/v2/orders/{order_id}", h(self._patch_order), methods=["PATCH"]),
            Route("/v2/orders/{order_id}", h(self._delete_order), methods=["DELETE"]),
            Route("/v2/account", h(self._account), methods=["GET"]),
            Route("/v2/positions", h(self._positions_route), methods=["GET"]),
            Route("/v2/account/activities", h(self._activities), methods=["GET"]),
            Route("/v2/account/activities/{activity_type}", h(self._activities), methods=["GET"]),
            Route("/v2/stocks/quotes/latest", h(self._latest_quotes, data=True), methods=["GET"]),
            Route("/v2/stocks/{symbol}/quotes/latest", h(self._latest_quote, data=True), methods=["GET"]),
            WebSocketRoute("/stream", self._stream),
        ]
        return Starlette(routes=routes)

    def _handler(
        self, endpoint: Callable[[Request], Awaitable[Response]], *, data: bool = False
    ) -> Callable[[Request], Awaitable[Response]]:
        async def handle(request: Request) -> Response:
            name = f"{request.method} {request.url.path}"
            self.requests[name] = self.requests.get(name, 0) + 1
            key = request.headers.get("APCA-API-KEY-ID")
            if key != self.key_id or request.headers.get("APCA-API-SECRET-KEY") != self.secret_key:
                return _error(401, 40110000, "request is not authorized")
            allowed, headers = (self.data_rate_limit if data else self.rate_limit).take(key)
            if not allowed:
                return JSONResponse(
                    {"code": 42910000, "message": "rate limit exceeded"}, status_code=429, headers=headers
                )
            fault = await self.faults.arrive(request.method, request.url.path)
            if fault is not None and fault.kind == "error_before":
                return _injected_error(fault)
            try:
                response = await endpoint(request)
            except BrokerUnavailable as e:
                log.warning("alpaca venue: %s failed: %s", name, e)
                return _error(503, 50310000, "service unavailable")
            injected = await self.faults.injected(fault, _injected_error)
            if injected is not None:
                return injected
            response.headers.update(headers)
            return response

        return handle

    @staticmethod
    async def _body(request: Request) -> dict[str, Any] | JSONResponse:
        try:
            body = json.loads(await request.body(), parse_float=Decimal)
        except ValueError:
            return _error(400, 40010000, "request body format is invalid")
        if not isinstance(body, dict):
            return _error(422, 40010000, "request body format is invalid")
        return body

    @staticmethod
    def _decimal(body: dict[str, Any], name: str) -> Decimal | None | str:
        value = body.get(name)
        if value is None or value == "":
            return None
        try:
            number = Decimal(str(value))
        except InvalidOperation:
            return f"invalid {name} {value!r}"
        if not number.is_finite() or number <= 0:
            return f"{name} must be > 0"
        return number

    def _price_problem(self, name: str, price: Decimal, inst: Instrument) -> str | None:
        places = 2 if price >= 1 else 4
        if price != price.quantize(Decimal(1).scaleb(-places)) or not inst.on_tick(price):
            return (
                f"invalid {name} {decimal_text(price)}. sub-penny increment does not fulfill minimum pricing criteria"
            )
        return None

    async def _post_order(self, request: Request) -> Response:
        body = await self._body(request)
        if isinstance(body, JSONResponse):
            return body
        symbol = body.get("symbol")
        inst = self.instruments.get(symbol) if isinstance(symbol, str) else None
        if not symbol:
            return _error(422, 40010000, "symbol is required")
        if inst is None or inst.instrument_class is not InstrumentClass.EQUITY or not inst.tradable:
            return _error(422, 40010001, f'asset "{symbol}" not found')
        side = body.get("side")
        if side not in ("buy", "sell"):
            return _error(422, 40010000, "side must be buy or sell")
        type_name = body.get("type") or body.get("order_type")
        trailing = type_name == "trailing_stop"
        if trailing:
            type_name = "market"  # checked as one below (no limit or stop price); taken by ``_trailing``
        if type_name not in _TYPES:
            return _error(422, 40010000, f"invalid order type {type_name!r}")
        tif_name = body.get("time_in_force")
        if tif_name in ("opg", "cls") and type_name not in ("market", "limit"):
            return _error(422, 40010000, f"time_in_force {tif_name} is only allowed for market and limit orders")
        if tif_name not in _TIFS:
            return _error(422, 40010000, f"invalid time_in_force {tif_name!r}")
        if body.get("notional") is not None:
            return _error(422, 40010000, "notional orders are not supported by the local venue")
        cid = body.get("client_order_id") or str(uuid.uuid4())
        if not isinstance(cid, str) or len(cid) > 48:
            return _error(422, 40010000, "client_order_id must be no more than 48 characters")
        qty = self._decimal(body, "qty")
        if qty is None:
            return _error(422, 40010000, "qty is required")
        if isinstance(qty, str):
            return _error(422, 40010000, qty)
        order_type = _TYPES[type_name]
        tif = _TIFS[tif_name]
        if not inst.on_lot(qty) and not (order_type is OrderType.MARKET and tif_name == "day"):
            return _error(422, 40010000, "fractional orders must be market orders with time_in_force day")
        if not inst.on_lot(qty) or qty < inst.min_qty:
            return _error(422, 40010000, f"qty must be a multiple of {decimal_text(inst.lot_step)}")
        if qty > inst.max_qty:
            return _error(422, 40010001, f"qty {decimal_text(qty)} exceeds the maximum of {decimal_text(inst.max_qty)}")
        prices: dict[str, Decimal | None] = {}
        for name, needed in (("limit_price", order_type.needs_price), ("stop_price", order_type.needs_stop_price)):
            value = self._decimal(body, name)
            if isinstance(value, str):
                return _error(422, 40010000, value)
            if needed and value is None:
                return _error(422, 40010000, f"{name} is required for {type_name} orders")
            if value is not None and not needed:
                return _error(422, 40010000, f"{name} must not be given for {type_name} orders")
            if value is not None and (problem := self._price_problem(name, value, inst)):
                return _error(422, 42210000, problem)
            prices[name] = value
        if trailing:
            return self._trailing(body, cid=cid, symbol=symbol, side=side, tif=tif, qty=qty)
        fresh = self.sim.engine.find(cid) is None
        group = self._class_problem(
            body,
            head=cid,
            symbol=symbol,
            side=side,
            type_name=type_name,
            tif=tif,
            qty=qty,
            limit=prices["limit_price"],
            inst=inst,
        )
        if isinstance(group, JSONResponse):
            return group
        orders = await self._synced()
        if fresh and side == "buy":
            cost = qty * (prices["limit_price"] or self.sim.feed.quote(symbol).ask)
            power = self._buying_power(orders)
            if cost > power:
                return _error(
                    403,
                    40310000,
                    "insufficient buying power",
                    buying_power=decimal_text(power),
                    cost_basis=decimal_text(cost),
                )
        order = SubmitOrder(
            cl_ord_id=cid,
            account=self.account_id,
            symbol=symbol,
            side=OrderSide.BUY if side == "buy" else OrderSide.SELL,
            type=order_type,
            time_in_force=tif,
            qty=qty,
            price=prices["limit_price"],
            stop_price=prices["stop_price"],
        )
        if group is not None and fresh:
            # Known before the entry can fill (a marketable entry fills inside the submission).
            self.order_classes[cid] = group
            for held in group.legs:
                self._class_legs[held.cl_ord_id] = (group, held)
        ack = await self.sim.submit(order)
        if not ack.accepted and ack.reason and ack.reason.startswith(RejectReason.DUPLICATE_ORDER):
            return _error(422, 40010001, "client_order_id must be unique")
        if group is not None and fresh and group.order_class == "oco":
            # The OCO's stop works beside its limit at once (unless the limit already filled: then it is canceled).
            if any(held.status == "held" for held in group.legs):
                await self._activate(group, qty)
        leg = await self._leg_by_cl_ord_id(cid)
        if leg is None:  # pragma: no cover - the engine keeps every order it answered
            return _error(500, 50010000, "internal server error")
        return JSONResponse(self._classed(order_json(leg), nested=True))

    async def _list_orders(self, request: Request) -> Response:
        q = request.query_params
        status = q.get("status", "open")
        if status not in ("open", "closed", "all"):
            return _error(422, 40010000, "invalid status")
        try:
            limit = min(int(q.get("limit", "50")), 500)
        except ValueError:
            return _error(422, 40010000, "invalid limit")
        symbols = {s for s in q.get("symbols", "").split(",") if s}
        nested = q.get("nested", "false").lower() == "true"
        legs = [leg for order in await self._synced() for leg in legs_of(order)]
        held = [(g, h) for g, h in self._class_legs.values() if not h.active]
        if nested:  # a head's legs are in its ``legs``, not listed beside it
            legs = [leg for leg in legs if leg.order.cl_ord_ids[0] not in self._class_legs]
            held = []
        if status != "all":
            legs = [leg for leg in legs if leg.open == (status == "open")]
            held = [(g, h) for g, h in held if (h.status == "held") == (status == "open")]
        if symbols:
            legs = [leg for leg in legs if leg.order.symbol in symbols]
            held = [(g, h) for g, h in held if h.symbol in symbols]
        after, until = _time_param(q.get("after")), _time_param(q.get("until"))
        if isinstance(after, JSONResponse):
            return after
        if isinstance(until, JSONResponse):
            return until
        if after is not None:
            legs = [leg for leg in legs if leg.created_at > after]
        if until is not None:
            legs = [leg for leg in legs if leg.created_at < until]
        if after is not None:
            held = [(g, h) for g, h in held if h.created_at > after]
        if until is not None:
            held = [(g, h) for g, h in held if h.created_at < until]
        items = [(leg.created_at, self._classed(order_json(leg), nested=nested)) for leg in legs]
        items += [(h.created_at, held_json(h, g.order_class)) for g, h in held]
        trails = [t for t in self.trails.values() if not t.triggered]
        if status != "all":
            trails = [t for t in trails if (t.status == "new") == (status == "open")]
        trails = [t for t in trails if (not symbols or t.symbol in symbols)]
        trails = [
            t for t in trails if (after is None or t.created_at > after) and (until is None or t.created_at < until)
        ]
        items += [(t.created_at, trail_json(t)) for t in trails]
        items.sort(key=lambda item: item[0], reverse=q.get("direction", "desc") == "desc")
        return JSONResponse([data for _, data in items[:limit]])

    async def _get_by_cl_ord_id(self, request: Request) -> Response:
        cid = request.query_params.get("client_order_id")
        if not cid:
            return _error(422, 40010000, "client_order_id is required")
        nested = request.query_params.get("nested", "false").lower() == "true"
        leg = await self._leg_by_cl_ord_id(cid)
        if leg is None and cid in self.trails:
            return JSONResponse(trail_json(self.trails[cid]))
        if leg is None:
            member = self._class_legs.get(cid)
            if member is not None and not member[1].active:
                return JSONResponse(held_json(member[1], member[0].order_class))
            return _error(404, 40410000, "order not found")
        return JSONResponse(self._classed(order_json(leg), nested=nested))

    async def _get_order(self, request: Request) -> Response:
        nested = request.query_params.get("nested", "false").lower() == "true"
        alpaca_id = request.path_params["order_id"]
        held = self._held(alpaca_id)
        if held is not None:
            return JSONResponse(held_json(held[1], held[0].order_class))
        trail = self._trail_by_id(alpaca_id)
        if trail is not None and not trail.triggered:
            return JSONResponse(trail_json(trail))
        leg = await self._leg_by_id(alpaca_id)
        if leg is None:
            return _error(404, 40410000, "order not found")
        return JSONResponse(self._classed(order_json(leg), nested=nested))

    async def _delete_order(self, request: Request) -> Response:
        held = self._held(request.path_params["order_id"])
        if held is not None:
            group, leg_held = held
            if leg_held.status != "held":
                return _error(422, 42210000, f"order is not cancelable (status {leg_held.status})")
            now = utcnow()
            leg_held.status, leg_held.canceled_at = "canceled", now
            self._send(
                {"event": "canceled", "order": held_json(leg_held, group.order_class), "timestamp": alpaca_time(now)}
            )
            return Response(status_code=204)
        trail = self._trail_by_id(request.path_params["order_id"])
        if trail is not None and not trail.triggered:
            if trail.status != "new":
                return _error(422, 42210000, f"order is not cancelable (status {trail.status})")
            now = utcnow()
            trail.status, trail.canceled_at = "canceled", now
            self._send({"event": "canceled", "order": trail_json(trail), "timestamp": alpaca_time(now)})
            return Response(status_code=204)
        leg = await self._leg_by_id(request.path_params["order_id"])
        if leg is None:
            return _error(404, 40410000, "order not found")
        if not leg.open:
            return _error(422, 42210000, f"order is not cancelable (status {leg.status})")
        order = leg.order
        ack = await self.sim.cancel(
            CancelOrder(cl_ord_id=leg.cl_ord_id, symbol=order.symbol, side=order.side, qty=order.qty)
        )
        if not ack.accepted:
            return _error(422, 42210000, f"order is not cancelable ({ack.reason})")
        return Response(status_code=204)

    async def _patch_order(self, request: Request) -> Response:
        body = await self._body(request)
        if isinstance(body, JSONResponse):
            return body
        if self._trail_by_id(request.path_params["order_id"]) is not None:
            return _error(422, 42210000, "trailing_stop orders are not replaceable at the local venue")
        leg = await self._leg_by_id(request.path_params["order_id"])
        if leg is None:
            return _error(404, 40410000, "order not found")
        if not leg.open:
            return _error(422, 42210000, f"order is not replaceable (status {leg.status})")
        order = leg.order
        inst = self.instruments[order.symbol]
        tif = body.get("time_in_force")
        if tif is not None and tif != ALPACA_TIF.get(order.time_in_force):
            return _error(422, 40010000, "time_in_force cannot be changed by the local venue")
        if body.get("trail") is not None:
            return _error(422, 40010000, "trail applies to trailing_stop orders only")
        values: dict[str, Decimal | None] = {}
        for name in ("qty", "limit_price", "stop_price"):
            value = self._decimal(body, name)
            if isinstance(value, str):
                return _error(422, 40010000, value)
            values[name] = value
        if values["limit_price"] is not None and not order.type.needs_price:
            return _error(422, 40010000, "limit_price applies to limit and stop_limit orders only")
        if values["stop_price"] is not None and not order.type.needs_stop_price:
            return _error(422, 40010000, "stop_price applies to stop and stop_limit orders only")
        for name in ("limit_price", "stop_price"):
            value = values[name]
            if value is not None and (problem := self._price_problem(name, value, inst)):
                return _error(422, 42210000, problem)
        new_cid = body.get("client_order_id") or str(uuid.uuid4())
        if not isinstance(new_cid, str) or len(new_cid) > 48:
            return _error(422, 40010000, "client_order_id must be no more than 48 characters")
        if self.sim.engine.find(new_cid) is not None:
            return _error(422, 40010001, "client_order_id must be unique")
        # Without a qty the replacement works the replaced order's own quantity (as Alpaca does, Alpaca-API#165).
        leg_qty = values["qty"] or leg.qty
        ack = await self.sim.replace(
            ReplaceOrder(
                orig_cl_ord_id=leg.cl_ord_id,
                cl_ord_id=new_cid,
                **order.terms(
                    qty=order.filled_qty + leg_qty,
                    price=values["limit_price"] or order.price,
                    stop_price=values["stop_price"] or order.stop_price,
                ),
            )
        )
        if not ack.accepted:
            return _error(422, 42210000, f"order is not replaceable ({ack.reason})")
        new = await self._leg_by_cl_ord_id(new_cid)
        assert new is not None
        return JSONResponse(self._classed(order_json(new)))

    async def _account(self, request: Request) -> Response:
        orders = await self._synced()
        book = self._positions(orders)
        long_value = sum((q * self._mid(s) for s, (q, _, _) in book.items() if q > 0), _D(0))
        short_value = sum((q * self._mid(s) for s, (q, _, _) in book.items() if q < 0), _D(0))
        cash = self._cash(orders)
        equity = cash + long_value + short_value
        power = decimal_text(self._buying_power(orders))
        money = {k: decimal_text(v) for k, v in {"cash": cash, "equity": equity}.items()}
        return JSONResponse(
            {
                "id": self.account_id,
                "account_number": "PA" + self.account_id.replace("-", "")[:10].upper(),
                "status": "ACTIVE",
                "currency": "USD",
                "cash": money["cash"],
                "portfolio_value": money["equity"],
                "equity": money["equity"],
                "last_equity": decimal_text(self.initial_cash),
                "long_market_value": decimal_text(long_value),
                "short_market_value": decimal_text(short_value),
                "buying_power": power,
                "regt_buying_power": power,
                "daytrading_buying_power": power,
                "initial_margin": "0",
                "maintenance_margin": "0",
                "last_maintenance_margin": "0",
                "sma": "0",
                "daytrade_count": 0,
                "multiplier": "1",
                "pattern_day_trader": False,
                "trade_suspended_by_user": False,
                "trading_blocked": False,
                "transfers_blocked": False,
                "account_blocked": False,
                "shorting_enabled": True,
                "created_at": alpaca_time(self.created_at),
            }
        )

    async def _positions_route(self, request: Request) -> Response:
        result = []
        for symbol, (qty, cost, _) in sorted(self._positions(await self._synced()).items()):
            if qty == 0:
                continue
            price = self._mid(symbol)
            value = qty * price
            pl = value - cost
            plpc = pl / abs(cost) if cost else _D(0)
            result.append(
                {
                    "asset_id": asset_id(symbol),
                    "symbol": symbol,
                    "exchange": "NASDAQ",
                    "asset_class": "us_equity",
                    "asset_marginable": True,
                    "avg_entry_price": decimal_text(cost / qty),
                    "qty": decimal_text(qty),
                    "qty_available": decimal_text(qty),
                    "side": "long" if qty > 0 else "short",
                    "market_value": decimal_text(value),
                    "cost_basis": decimal_text(cost),
                    "unrealized_pl": decimal_text(pl),
                    "unrealized_plpc": decimal_text(plpc.quantize(_D("1e-10"))),
                    "unrealized_intraday_pl": decimal_text(pl),
                    "unrealized_intraday_plpc": decimal_text(plpc.quantize(_D("1e-10"))),
                    "current_price": decimal_text(price),
                    "lastday_price": decimal_text(price),
                    "change_today": "0",
                }
            )
        return JSONResponse(result)

    async def _activities(self, request: Request) -> Response:
        q = request.query_params
        kind = request.path_params.get("activity_type") or q.get("activity_types", "FILL")
        if set(kind.split(",")) != {"FILL"}:
            return JSONResponse([])  # the venue has fills only
        try:
            page_size = min(int(q.get("page_size", "100")), 100)
        except ValueError:
            return _error(422, 40010000, "invalid page_size")
        after, until = _time_param(q.get("after")), _time_param(q.get("until"))
        if isinstance(after, JSONResponse):
            return after
        if isinstance(until, JSONResponse):
            return until
        items = [
            activity_json(leg, report, cum)
            for order in await self._synced()
            for leg in legs_of(order)
            for report, cum in leg.fills
            if (after is None or report.transact_at > after) and (until is None or report.transact_at < until)
        ]
        if self._class_legs or self.trails:
            ids = self._class_ids()
            for item in items:
                item["order_id"] = ids.get(item["order_id"], item["order_id"])
        descending = q.get("direction", "desc") == "desc"
        items.sort(key=lambda i: i["id"], reverse=descending)
        token = q.get("page_token")
        if token:
            items = [i for i in items if (i["id"] < token if descending else i["id"] > token)]
        return JSONResponse(items[:page_size])

    def _quote(self, symbol: str) -> dict[str, Any]:
        top = self.sim.feed.quote(symbol)
        return {
            "ap": float(top.ask),
            "as": 1,
            "ax": "V",
            "bp": float(top.bid),
            "bs": 1,
            "bx": "V",
            "c": ["R"],
            "t": alpaca_time(utcnow()),
            "z": "C",
        }

    def _quotable(self, symbol: str) -> bool:
        inst = self.instruments.get(symbol)
        return inst is not None and inst.instrument_class is InstrumentClass.EQUITY

    async def _latest_quotes(self, request: Request) -> Response:
        symbols = [s for s in request.query_params.get("symbols", "").split(",") if s]
        if not symbols:
            return _error(400, 40010000, "missing symbols")
        await self.sim.flush()
        return JSONResponse({"quotes": {s: self._quote(s) for s in symbols if self._quotable(s)}})

    async def _latest_quote(self, request: Request) -> Response:
        symbol = request.path_params["symbol"]
        if not self._quotable(symbol):
            return _error(404, 40410000, f"no quote for {symbol}")
        return JSONResponse({"symbol": symbol, "quote": self._quote(symbol)})


def development_keys() -> tuple[str, str]:
    """A key pair for a venue nobody configured keys for."""
    return "PK" + secrets.token_hex(8).upper(), secrets.token_urlsafe(24)


class VenueServer(HttpVenueServer[AlpacaVenue]):
    """Serves an ``AlpacaVenue`` with uvicorn on ``host:port`` inside the running event loop (tests, ``__main__``)."""

    task_name = "alpaca-venue-http"
    websockets = "websockets-sansio"

    async def end_streams(self) -> None:
        """Close the venue's streams."""
        await self.venue.drop_streams()
