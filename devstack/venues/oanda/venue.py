"""The local OANDA venue: OANDA's v20 REST API and transaction stream in front of the paper matching engine.

``python -m devstack.venues.oanda`` runs it (``--help``); ``EXODUS_OANDA__LOCAL_VENUE=true make run`` starts it
beside the worker; tests run ``OandaVenue`` in process with ``VenueServer``. What it speaks (the v20 document in
``shared/specs/oanda-v20/`` for the shapes, ``BROKERS.md`` §2 and §9 for the rest), under
``/v3/accounts/{accountID}``:

* ``POST /orders`` (MARKET with FOK/IOC; LIMIT and STOP with GTC, GTD, GFD, FOK, IOC; MARKET_IF_TOUCHED with
  GTC, GTD, GFD (it triggers when the price moves in its favour to ``price``); signed ``units``;
  ``clientExtensions.id``), ``GET /orders`` (``state``, ``count``), ``GET /pendingOrders``,
  ``GET /orders/{orderSpecifier}`` (an order id or ``@<clientID>``), ``PUT /orders/{orderSpecifier}`` (replace:
  cancel and create), ``PUT /orders/{orderSpecifier}/cancel``, ``GET /summary`` (NAV, margin),
  ``GET /openPositions``, ``GET /pricing?instruments=``, ``GET /transactions/sinceid?id=``,
  ``GET /transactions/stream`` (chunked JSON lines: every transaction, a ``HEARTBEAT`` every
  ``heartbeat_seconds``), and ``GET /v3/accounts``.
* ``Authorization: Bearer <token>`` (401 ``{"errorMessage": "Insufficient authorization to perform request."}``);
  an account id other than the venue's is 404.
* Refusals as OANDA makes them: 400 with an ``orderRejectTransaction`` and its ``rejectReason``
  (``CLIENT_ORDER_ID_ALREADY_EXISTS`` while a *pending* order holds the client id, ``INSUFFICIENT_MARGIN``,
  ``INSTRUMENT_NOT_TRADEABLE`` for a halted market, ``UNITS_LIMIT_EXCEEDED``, ``UNITS_MIMIMUM_NOT_MET``,
  ``PRICE_PRECISION_EXCEEDED``, ``TIME_IN_FORCE_INVALID``, …); 404 with an ``orderCancelRejectTransaction``
  (``ORDER_DOESNT_EXIST``) for a cancel or replace of an order that is not pending. A FOK order that cannot fill is
  a 201 carrying an ``orderCancelTransaction`` (``INSUFFICIENT_LIQUIDITY``).
* Deduplication of client ids covers pending orders only: a client id of a filled or cancelled order makes a new
  order (the hazard the adapter must avoid). ``lookup_done_orders=False`` makes ``@<clientID>`` find pending orders
  only (whether OANDA's does is not documented), so the adapter's fallback to the transactions is tested.
* A rate limit per token and second (0: none): 429 ``{"errorMessage": …}``.
* Faults (``faults``): latency, a 5xx before or after the request was processed, a connection dropped after the
  request was processed, an answer that comes too late, the stream dropped (``drop_streams``), new streams refused.

Transactions and orders are derived from the engine's journaled book (``model.py``).
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from brokers.oanda.parsing import time_of
from core.domain import (
    CancelOrder,
    ExecutionReport,
    Instrument,
    OrderSide,
    OrderType,
    ReplaceOrder,
    ReportKind,
    SubmitOrder,
    TimeInForce,
    utcnow,
)
from core.errors import BrokerUnavailable
from devstack.venues import server
from devstack.venues.oanda.model import (
    ANONYMOUS,
    USER_ID,
    Derived,
    Leg,
    derive,
    instrument_of,
    num,
    oanda_time,
    order_json,
)
from devstack.venues.server import HttpVenueServer, PaperVenue
from sim.matching import SimOrder
from sim.venue import SimVenue

__all__ = ["Fault", "OandaVenue", "VenueFaults", "VenueServer"]

log = logging.getLogger(__name__)

_D = Decimal
_TYPES = {
    "MARKET": OrderType.MARKET,
    "LIMIT": OrderType.LIMIT,
    "STOP": OrderType.STOP,
    "MARKET_IF_TOUCHED": OrderType.MARKET_IF_TOUCHED,
}
_TIFS = {
    "GTC": TimeInForce.GTC,
    "GTD": TimeInForce.GTD,
    "GFD": TimeInForce.DAY,
    "FOK": TimeInForce.FOK,
    "IOC": TimeInForce.IOC,
}
_NOT_AUTHORIZED = "Insufficient authorization to perform request."


@dataclass
class Fault(server.Fault):
    """One injected failure, used up by the first request it matches."""

    #: A regular expression the path after ``/v3/accounts/{id}`` must match (``search``).
    path: str | None = None
    status: int = 503


class VenueFaults(server.VenueFaults[Fault]):
    """What tests (and demos) make go wrong; refused stream connections are answered 503."""

    def fault(self, kind: str, **kw: Any) -> Fault:
        """A fault (an error answer is ``status``, 503 by default)."""
        return Fault(kind, **kw)

    dropped = (201, b'{"orderCreateTransaction":')

    @staticmethod
    def matches(pattern: str, path: str) -> bool:
        """Whether the path after ``/v3/accounts/{id}`` matches the fault's regular expression."""
        return re.search(pattern, path) is not None


class _RateLimit:
    """A sliding window of requests per token: at most ``limit`` in any ``window`` seconds (1)."""

    def __init__(self, limit: int, window: float = 1.0) -> None:
        self.limit = limit
        self.window = window
        self.refused = 0
        self._seen: dict[str, deque[float]] = {}

    def take(self, key: str) -> bool:
        """Count a request; whether it is allowed."""
        if self.limit <= 0:
            return True
        now = time.monotonic()
        seen = self._seen.setdefault(key, deque())
        while seen and seen[0] <= now - self.window:
            seen.popleft()
        if len(seen) >= self.limit:
            self.refused += 1
            return False
        seen.append(now)
        return True


def _error(status: int, message: str, code: str | None = None, **extra: Any) -> JSONResponse:
    body: dict[str, Any] = {"errorMessage": message, **extra}
    if code:
        body["errorCode"] = code
    return JSONResponse(body, status_code=status)


class OandaVenue(PaperVenue):
    """OANDA's v20 REST API and transaction stream over a ``SimVenue``."""

    def __init__(
        self,
        sim: SimVenue,
        instruments: list[Instrument],
        *,
        token: str,
        account_id: str,
        rate_limit_per_second: int = 0,
        heartbeat_seconds: float = 5.0,
        balance: Decimal = Decimal(10_000_000),
        margin_rate: Decimal = Decimal("0.02"),
        lookup_done_orders: bool = True,
        page_size: int = 1000,
    ) -> None:
        """Serve ``sim`` (started by ``start()``) to the holder of ``token`` as account ``account_id``."""
        self.sim = sim
        self.instruments = {i.symbol: i for i in instruments}
        self.by_instrument = {instrument_of(i.symbol): i for i in instruments}
        self.token = token
        self.account_id = account_id
        self.rate_limit = _RateLimit(rate_limit_per_second)
        self.heartbeat_seconds = heartbeat_seconds
        self.balance = balance
        self.margin_rate = margin_rate
        self.lookup_done_orders = lookup_done_orders
        self.page_size = page_size
        self.faults = VenueFaults()
        #: Instruments whose market is halted (orders are refused INSTRUMENT_NOT_TRADEABLE).
        self.halted: set[str] = set()
        self.created_at = utcnow()
        #: Refusals the venue makes itself (not in the engine's journal): their transactions, with their times.
        self._own: list[tuple[datetime, dict[str, Any]]] = []
        self._listeners: set[asyncio.Queue[dict[str, Any] | None]] = set()
        self._published = 0
        #: Requests answered, by "METHOD path" (tests count resends with it).
        self.requests: dict[str, int] = {}
        self.posts: list[dict[str, Any]] = []
        self.streams_opened = 0
        #: Stream connections answered 503 (``faults.refuse_streams``).
        self.streams_refused = 0
        self.app = self._build_app()
        sim.add_listener(self._on_report)

    # -- lifecycle ----------------------------------------------------------------------------------------

    async def start(self) -> None:
        """Start the simulated venue (restores its journal); new transactions go to the streams from now on."""
        await super().start()
        self._published = self._derive().last_id

    async def stop(self) -> None:
        """Close every stream and stop the simulated venue."""
        self.drop_streams()
        await super().stop()

    def drop_streams(self) -> None:
        """End every transaction stream (the clients reconnect and catch up)."""
        for queue in list(self._listeners):
            queue.put_nowait(None)
        self._listeners.clear()

    @property
    def listening(self) -> int:
        """Open transaction streams."""
        return len(self._listeners)

    # -- derived state --------------------------------------------------------------------------------------

    def _orders(self) -> list[SimOrder]:
        return [*self.sim.engine.all_orders(), *self.sim.engine._rejected.values()]

    def _derive(self) -> Derived:
        own = sorted(self._own, key=lambda x: int(x[1]["id"]))
        return derive(
            self._orders(),
            account_id=self.account_id,
            reserved={int(t["id"]) for _, t in own},
            floors=[(at, int(t["id"])) for at, t in own],
            balance=self.balance,
        )

    async def _state(self) -> Derived:
        await self.sim.flush()  # nothing unsaved is ever revealed
        return self._derive()

    def _transactions(self, derived: Derived) -> list[dict[str, Any]]:
        txns = [*derived.transactions, *(t for _, t in self._own)]
        txns.sort(key=lambda t: int(t["id"]))
        return txns

    def _last_id(self, derived: Derived) -> int:
        return max([derived.last_id, *(int(t["id"]) for _, t in self._own)] or [0])

    def _own_transaction(self, kind: str, derived: Derived, **fields: Any) -> dict[str, Any]:
        """A transaction of a refusal the venue makes itself (kept in memory), published to the streams."""
        at = utcnow()
        tid = str(max(int(at.timestamp() * 1_000_000) * 4 + 3, self._last_id(derived) + 1))
        txn = {
            "id": tid,
            "time": oanda_time(at),
            "userID": USER_ID,
            "accountID": self.account_id,
            "batchID": tid,
            "requestID": f"6{tid}",
            "type": kind,
            **fields,
        }
        self._own.append((at, txn))
        self._publish()
        return txn

    def _on_report(self, report: ExecutionReport) -> None:
        self._publish()

    def _publish(self) -> None:
        derived = self._derive()
        for txn in self._transactions(derived):
            if int(txn["id"]) > self._published:
                for queue in list(self._listeners):
                    queue.put_nowait(txn)
                self._published = int(txn["id"])

    def _positions(self, orders: list[SimOrder]) -> dict[str, tuple[Decimal, Decimal]]:
        """Symbol -> (signed units, average price of what is held)."""
        book: dict[str, tuple[Decimal, Decimal]] = {}
        fills = sorted(
            ((o, r) for o in orders for r in o.reports if r.kind is ReportKind.FILL), key=lambda x: x[1].transact_at
        )
        for order, report in fills:
            qty, avg = book.get(order.symbol, (_D(0), _D(0)))
            signed = report.last_qty * order.side.sign
            price = report.last_price or _D(0)
            if qty == 0 or (qty > 0) == (signed > 0):
                avg = (avg * abs(qty) + price * abs(signed)) / (abs(qty) + abs(signed))
            elif abs(signed) > abs(qty):
                avg = price
            qty += signed
            book[order.symbol] = (qty, avg if qty != 0 else _D(0))
        return book

    def _usd(self, symbol: str, units: Decimal, price: Decimal) -> Decimal:
        """A position's value in the account currency (USD), roughly."""
        inst = self.instruments.get(symbol)
        if inst is not None and inst.base_currency == "USD":
            return abs(units)
        return abs(units) * price

    def _account(self, orders: list[SimOrder]) -> dict[str, Decimal]:
        unrealized = margin = value = _D(0)
        for symbol, (qty, avg) in self._positions(orders).items():
            if qty == 0:
                continue
            mid = self.sim.feed.quote(symbol).mid
            unrealized += qty * (mid - avg) / (mid if self.instruments[symbol].base_currency == "USD" else 1)
            value += self._usd(symbol, qty, mid)
            margin += self._usd(symbol, qty, mid) * self.margin_rate
        nav = self.balance + unrealized
        return {
            "nav": nav,
            "unrealized": unrealized,
            "margin_used": margin,
            "margin_available": max(nav - margin, _D(0)),
            "value": value,
        }

    # -- the HTTP API ---------------------------------------------------------------------------------------

    def _build_app(self) -> Starlette:
        h = self._handler
        a = "/v3/accounts/{account}"
        routes = [
            Route("/v3/accounts", h(self._accounts, account=False), methods=["GET"]),
            Route(f"{a}/summary", h(self._summary), methods=["GET"]),
            Route(f"{a}/pricing", h(self._pricing), methods=["GET"]),
            Route(f"{a}/orders", h(self._post_order), methods=["POST"]),
            Route(f"{a}/orders", h(self._list_orders), methods=["GET"]),
            Route(f"{a}/pendingOrders", h(self._pending_orders), methods=["GET"]),
            Route(f"{a}/orders/{{spec}}", h(self._get_order), methods=["GET"]),
            Route(f"{a}/orders/{{spec}}", h(self._replace_order), methods=["PUT"]),
            Route(f"{a}/orders/{{spec}}/cancel", h(self._cancel_order), methods=["PUT"]),
            Route(f"{a}/openPositions", h(self._open_positions), methods=["GET"]),
            Route(f"{a}/transactions/sinceid", h(self._since_id), methods=["GET"]),
            Route(f"{a}/transactions/stream", h(self._stream), methods=["GET"]),
        ]
        return Starlette(routes=routes)

    def _handler(
        self, endpoint: Callable[[Request], Awaitable[Response]], *, account: bool = True
    ) -> Callable[[Request], Awaitable[Response]]:
        async def handle(request: Request) -> Response:
            name = f"{request.method} {request.url.path}"
            self.requests[name] = self.requests.get(name, 0) + 1
            auth = request.headers.get("Authorization", "")
            if auth != f"Bearer {self.token}":
                return _error(401, _NOT_AUTHORIZED)
            if account and request.path_params.get("account") != self.account_id:
                return _error(404, "The Account specified does not exist", "NO_SUCH_ACCOUNT")
            if not self.rate_limit.take(self.token):
                return _error(429, "Requests per second exceeds the limit", "RATE_LIMIT_EXCEEDED")
            path = request.url.path.removeprefix(f"/v3/accounts/{self.account_id}")
            fault = await self.faults.arrive(request.method, path)
            if fault is not None and fault.kind == "error_before":
                return _error(fault.status, "Service unavailable (injected)")
            try:
                response = await endpoint(request)
            except BrokerUnavailable as e:
                log.warning("oanda venue: %s failed: %s", name, e)
                return _error(503, "Service unavailable")
            injected = await self.faults.injected(fault, lambda f: _error(f.status, "Internal server error (injected)"))
            if injected is not None:
                return injected
            response.headers["RequestID"] = uuid.uuid4().hex[:18]
            return response

        return handle

    @staticmethod
    async def _body(request: Request) -> dict[str, Any] | JSONResponse:
        try:
            body = json.loads(await request.body(), parse_float=Decimal)
        except ValueError:
            return _error(400, "Invalid JSON in the request body", "INVALID_JSON")
        if not isinstance(body, dict) or not isinstance(body.get("order"), dict):
            return _error(400, "Invalid value specified for 'order'", "INVALID_ORDER")
        return body

    async def _accounts(self, request: Request) -> Response:
        return JSONResponse({"accounts": [{"id": self.account_id, "tags": []}]})

    async def _summary(self, request: Request) -> Response:
        derived = await self._state()
        orders = self._orders()
        acct = self._account(orders)
        positions = [p for p in self._positions(orders).values() if p[0] != 0]
        pending = sum(1 for leg in derived.legs if leg.pending)
        return JSONResponse(
            {
                "account": {
                    "id": self.account_id,
                    "alias": "Exodus local venue",
                    "currency": "USD",
                    "balance": num(self.balance),
                    "createdByUserID": USER_ID,
                    "createdTime": oanda_time(self.created_at),
                    "guaranteedStopLossOrderMode": "DISABLED",
                    "pl": "0",
                    "resettablePL": "0",
                    "financing": "0",
                    "commission": "0",
                    "guaranteedExecutionFees": "0",
                    "marginRate": num(self.margin_rate),
                    "openTradeCount": len(positions),
                    "openPositionCount": len(positions),
                    "pendingOrderCount": pending,
                    "hedgingEnabled": False,
                    "unrealizedPL": num(acct["unrealized"].quantize(_D("0.0001"))),
                    "NAV": num(acct["nav"].quantize(_D("0.0001"))),
                    "marginUsed": num(acct["margin_used"].quantize(_D("0.0001"))),
                    "marginAvailable": num(acct["margin_available"].quantize(_D("0.0001"))),
                    "positionValue": num(acct["value"].quantize(_D("0.0001"))),
                    "marginCloseoutUnrealizedPL": num(acct["unrealized"].quantize(_D("0.0001"))),
                    "marginCloseoutNAV": num(acct["nav"].quantize(_D("0.0001"))),
                    "marginCloseoutMarginUsed": num(acct["margin_used"].quantize(_D("0.0001"))),
                    "marginCloseoutPercent": "0",
                    "marginCloseoutPositionValue": num(acct["value"].quantize(_D("0.0001"))),
                    "withdrawalLimit": num(acct["margin_available"].quantize(_D("0.0001"))),
                    "marginCallMarginUsed": num(acct["margin_used"].quantize(_D("0.0001"))),
                    "marginCallPercent": "0",
                    "lastTransactionID": str(self._last_id(derived)),
                },
                "lastTransactionID": str(self._last_id(derived)),
            }
        )

    async def _pricing(self, request: Request) -> Response:
        names = [n for n in request.query_params.get("instruments", "").split(",") if n]
        if not names:
            return _error(400, "Invalid value specified for 'instruments'", "INVALID_INSTRUMENTS")
        await self.sim.flush()
        prices = []
        now = oanda_time(utcnow())
        for name in names:
            inst = self.by_instrument.get(name)
            if inst is None:
                return _error(400, f"Invalid value specified for 'instruments': {name}", "INVALID_INSTRUMENTS")
            quote = self.sim.feed.quote(inst.symbol)
            tradeable = inst.tradable and inst.symbol not in self.halted
            prices.append(
                {
                    "type": "PRICE",
                    "instrument": name,
                    "time": now,
                    "status": "tradeable" if tradeable else "non-tradeable",
                    "tradeable": tradeable,
                    "bids": [{"price": num(quote.bid), "liquidity": 10000000}],
                    "asks": [{"price": num(quote.ask), "liquidity": 10000000}],
                    "closeoutBid": num(quote.bid),
                    "closeoutAsk": num(quote.ask),
                }
            )
        return JSONResponse({"prices": prices, "time": now})

    # -- orders ---------------------------------------------------------------------------------------------

    def _reject(
        self, derived: Derived, order: dict[str, Any], reason: str, message: str, *, status: int = 400
    ) -> JSONResponse:
        type_name = order.get("type") if order.get("type") in _TYPES else "MARKET"
        fields = {
            k: order[k]
            for k in ("instrument", "units", "price", "timeInForce", "gtdTime", "positionFill", "triggerCondition")
            if isinstance(order.get(k), str)
        }
        ext = order.get("clientExtensions")
        if isinstance(ext, dict) and isinstance(ext.get("id"), str):
            fields["clientExtensions"] = {"id": ext["id"]}
        txn = self._own_transaction(
            f"{type_name}_ORDER_REJECT", derived, reason="CLIENT_ORDER", rejectReason=reason, **fields
        )
        return JSONResponse(
            {
                "orderRejectTransaction": txn,
                "relatedTransactionIDs": [txn["id"]],
                "lastTransactionID": txn["id"],
                "errorCode": reason,
                "errorMessage": message,
            },
            status_code=status,
        )

    def _engine_cid(self, client_id: str | None) -> str:
        """The engine's client order id for a new order holding ``client_id`` (reused ids get ``~n``)."""
        if client_id is None:
            return f"{ANONYMOUS}{uuid.uuid4().hex[:16]}"
        if self.sim.engine.find(client_id) is None:
            return client_id
        n = 2
        while self.sim.engine.find(f"{client_id}~{n}") is not None:
            n += 1
        return f"{client_id}~{n}"

    def _terms(
        self, derived: Derived, order: dict[str, Any], *, replacing: Leg | None = None
    ) -> tuple[Instrument, OrderType, TimeInForce, Decimal, Decimal | None, datetime | None, str | None] | JSONResponse:
        """The order's terms, or the refusal OANDA answers."""
        type_name = order.get("type")
        if type_name not in _TYPES:
            return _error(400, f"Order type {type_name!r} is not supported by the local venue", "UNSUPPORTED")
        order_type = _TYPES[type_name]
        name = order.get("instrument")
        if not name:
            return self._reject(derived, order, "INSTRUMENT_MISSING", "The instrument is missing")
        inst = self.by_instrument.get(str(name))
        if inst is None or not inst.tradable:
            return self._reject(derived, order, "INSTRUMENT_UNKNOWN", f"The instrument {name} is unknown")
        if inst.symbol in self.halted:
            return self._reject(derived, order, "INSTRUMENT_NOT_TRADEABLE", f"The market of {name} is halted")
        if replacing is not None and (inst.symbol != replacing.order.symbol or order_type is not replacing.order.type):
            return _error(
                400, "The local venue replaces an order with one of the same type and instrument", "UNSUPPORTED"
            )
        raw = order.get("units")
        if raw is None or raw == "":
            return self._reject(derived, order, "UNITS_MISSING", "The units are missing")
        try:
            units = Decimal(str(raw))
        except InvalidOperation:
            return self._reject(derived, order, "UNITS_INVALID", f"The units {raw!r} are invalid")
        if not units.is_finite() or units == 0:
            return self._reject(derived, order, "UNITS_INVALID", f"The units {raw!r} are invalid")
        if units != units.to_integral_value():
            return self._reject(derived, order, "UNITS_PRECISION_EXCEEDED", "The units have too many decimals")
        if abs(units) < inst.min_qty:
            return self._reject(derived, order, "UNITS_MIMIMUM_NOT_MET", f"At least {num(inst.min_qty)} units")
        if abs(units) > inst.max_qty:
            return self._reject(derived, order, "UNITS_LIMIT_EXCEEDED", f"At most {num(inst.max_qty)} units")
        if not inst.on_lot(abs(units)):
            return self._reject(
                derived, order, "UNITS_INVALID", f"The units must be a multiple of {num(inst.lot_step)}"
            )
        tif_name = order.get("timeInForce") or ("FOK" if order_type is OrderType.MARKET else "GTC")
        allowed = (
            ("FOK", "IOC")
            if order_type is OrderType.MARKET
            else ("GTC", "GFD", "GTD")
            if order_type is OrderType.MARKET_IF_TOUCHED
            else tuple(_TIFS)
        )
        if tif_name not in allowed:
            return self._reject(derived, order, "TIME_IN_FORCE_INVALID", f"{type_name} orders cannot be {tif_name}")
        price: Decimal | None = None
        if order_type is not OrderType.MARKET:
            raw_price = order.get("price")
            if raw_price is None or raw_price == "":
                return self._reject(derived, order, "PRICE_MISSING", "The price is missing")
            try:
                price = Decimal(str(raw_price))
            except InvalidOperation:
                return self._reject(derived, order, "PRICE_INVALID", f"The price {raw_price!r} is invalid")
            if not price.is_finite() or price <= 0:
                return self._reject(derived, order, "PRICE_INVALID", f"The price {raw_price!r} is invalid")
            if not inst.on_tick(price):
                return self._reject(derived, order, "PRICE_PRECISION_EXCEEDED", "The price has too many decimals")
        expire_at: datetime | None = None
        if tif_name == "GTD":
            gtd = order.get("gtdTime")
            if not gtd:
                return self._reject(derived, order, "TIME_IN_FORCE_GTD_TIMESTAMP_MISSING", "GTD needs a gtdTime")
            expire_at = time_of(gtd)
            if expire_at is None:
                return self._reject(derived, order, "TIME_IN_FORCE_GTD_TIMESTAMP_MISSING", "The gtdTime is invalid")
            if expire_at <= utcnow():
                return self._reject(derived, order, "TIME_IN_FORCE_GTD_TIMESTAMP_IN_PAST", "The gtdTime is past")
        ext = order.get("clientExtensions")
        client_id: str | None = None
        if ext is not None:
            cid = ext.get("id") if isinstance(ext, dict) else None
            if cid is not None and (not isinstance(cid, str) or not cid or len(cid) > 128):
                return self._reject(derived, order, "CLIENT_ORDER_ID_INVALID", "The client order id is invalid")
            client_id = cid
        if client_id is not None:
            holder = derived.by_client_id(client_id, done_too=False)
            if holder is not None and holder is not replacing:
                return self._reject(
                    derived,
                    order,
                    "CLIENT_ORDER_ID_ALREADY_EXISTS",
                    "The client order ID specified is already assigned to another pending Order",
                )
        return inst, order_type, _TIFS[tif_name], units, price, expire_at, client_id

    def _answer(self, derived: Derived, reports: list[ExecutionReport], status: int = 201) -> JSONResponse:
        body: dict[str, Any] = {}
        related: list[str] = []
        for report in reports:
            for txn in derived.by_exec.get(report.exec_id, []):
                related.append(txn["id"])
                kind = txn["type"]
                if kind == "ORDER_FILL":
                    body.setdefault("orderFillTransaction", txn)
                elif kind == "ORDER_CANCEL":
                    body.setdefault("orderCancelTransaction", txn)
                elif kind.endswith("_REJECT"):
                    body["orderRejectTransaction"] = txn
                else:
                    body["orderCreateTransaction"] = txn
        body["relatedTransactionIDs"] = related
        body["lastTransactionID"] = str(self._last_id(derived))
        if "orderRejectTransaction" in body:
            reason = body["orderRejectTransaction"]["rejectReason"]
            body |= {"errorCode": reason, "errorMessage": f"The order was rejected: {reason}"}
            return JSONResponse(body, status_code=400)
        return JSONResponse(body, status_code=status)

    async def _post_order(self, request: Request) -> Response:
        body = await self._body(request)
        if isinstance(body, JSONResponse):
            return body
        order = body["order"]
        self.posts.append(order)
        derived = await self._state()
        terms = self._terms(derived, order)
        if isinstance(terms, JSONResponse):
            return terms
        inst, order_type, tif, units, price, expire_at, client_id = terms
        side = OrderSide.BUY if units > 0 else OrderSide.SELL
        quote = self.sim.feed.quote(inst.symbol)
        needed = self._usd(inst.symbol, units, price or quote.mid) * self.margin_rate
        if needed > self._account(self._orders())["margin_available"]:
            return self._reject(derived, order, "INSUFFICIENT_MARGIN", "Insufficient margin to open the order")
        ack = await self.sim.submit(
            SubmitOrder(
                cl_ord_id=self._engine_cid(client_id),
                account=self.account_id,
                symbol=inst.symbol,
                side=side,
                type=order_type,
                time_in_force=tif,
                qty=abs(units),
                price=price if order_type is OrderType.LIMIT else None,
                stop_price=price if order_type.needs_stop_price else None,
                expire_at=expire_at,
            )
        )
        derived = await self._state()
        return self._answer(derived, ack.reports)

    def _leg(self, derived: Derived, spec: str) -> Leg | None:
        if spec.startswith("@"):
            return derived.by_client_id(spec[1:], done_too=self.lookup_done_orders)
        return derived.leg(spec)

    async def _get_order(self, request: Request) -> Response:
        derived = await self._state()
        leg = self._leg(derived, request.path_params["spec"])
        if leg is None:
            return _error(404, "The Order specified does not exist", "NO_SUCH_ORDER")
        return JSONResponse({"order": order_json(leg), "lastTransactionID": str(self._last_id(derived))})

    async def _list_orders(self, request: Request) -> Response:
        derived = await self._state()
        state = request.query_params.get("state", "PENDING")
        try:
            count = min(int(request.query_params.get("count", "50")), 500)
        except ValueError:
            return _error(400, "Invalid value specified for 'count'", "INVALID_COUNT")
        legs = [leg for leg in derived.legs if state == "ALL" or leg.state == state]
        legs.sort(key=lambda leg: int(leg.id), reverse=True)
        return JSONResponse(
            {"orders": [order_json(leg) for leg in legs[:count]], "lastTransactionID": str(self._last_id(derived))}
        )

    async def _pending_orders(self, request: Request) -> Response:
        derived = await self._state()
        legs = sorted((leg for leg in derived.legs if leg.pending), key=lambda leg: int(leg.id), reverse=True)
        return JSONResponse(
            {"orders": [order_json(leg) for leg in legs], "lastTransactionID": str(self._last_id(derived))}
        )

    def _cancel_reject(self, derived: Derived, spec: str, leg: Leg | None) -> JSONResponse:
        fields: dict[str, Any] = {"rejectReason": "ORDER_DOESNT_EXIST"}
        if leg is not None:
            fields["orderID"] = leg.id
            if leg.client_id is not None:
                fields["clientOrderID"] = leg.client_id
        txn = self._own_transaction("ORDER_CANCEL_REJECT", derived, **fields)
        return JSONResponse(
            {
                "orderCancelRejectTransaction": txn,
                "relatedTransactionIDs": [txn["id"]],
                "lastTransactionID": txn["id"],
                "errorCode": "ORDER_DOESNT_EXIST",
                "errorMessage": "The Order specified does not exist",
            },
            status_code=404,
        )

    async def _cancel_order(self, request: Request) -> Response:
        derived = await self._state()
        spec = request.path_params["spec"]
        leg = self._leg(derived, spec)
        if leg is None or not leg.pending:
            return self._cancel_reject(derived, spec, leg)
        order = leg.order
        ack = await self.sim.cancel(
            CancelOrder(cl_ord_id=leg.engine_cid, symbol=order.symbol, side=order.side, qty=order.qty)
        )
        derived = await self._state()
        if not ack.accepted:
            return self._cancel_reject(derived, spec, leg)
        answer = self._answer(derived, ack.reports, status=200)
        return answer

    async def _replace_order(self, request: Request) -> Response:
        body = await self._body(request)
        if isinstance(body, JSONResponse):
            return body
        derived = await self._state()
        spec = request.path_params["spec"]
        leg = self._leg(derived, spec)
        if leg is None or not leg.pending:
            return self._cancel_reject(derived, spec, leg)
        terms = self._terms(derived, body["order"], replacing=leg)
        if isinstance(terms, JSONResponse):
            return terms
        inst, order_type, tif, units, price, expire_at, client_id = terms
        order = leg.order
        if (units > 0) != (order.side is OrderSide.BUY) or tif is not order.time_in_force:
            return _error(400, "The local venue keeps the side and time in force of a replaced order", "UNSUPPORTED")
        ack = await self.sim.replace(
            ReplaceOrder(
                orig_cl_ord_id=leg.engine_cid,
                cl_ord_id=self._engine_cid(client_id),
                symbol=order.symbol,
                side=order.side,
                type=order.type,
                time_in_force=order.time_in_force,
                qty=order.filled_qty + abs(units),
                price=price if order_type is OrderType.LIMIT else None,
                stop_price=price if order_type.needs_stop_price else None,
            )
        )
        derived = await self._state()
        if not ack.accepted:
            return self._cancel_reject(derived, spec, leg)
        return self._answer(derived, ack.reports)

    async def _open_positions(self, request: Request) -> Response:
        derived = await self._state()
        positions = []
        for symbol, (qty, avg) in sorted(self._positions(self._orders()).items()):
            if qty == 0:
                continue
            side: dict[str, Any] = {
                "units": num(qty),
                "averagePrice": num(avg.quantize(self.instruments[symbol].tick_size)),
                "pl": "0",
                "unrealizedPL": "0",
                "resettablePL": "0",
                "financing": "0",
                "guaranteedExecutionFees": "0",
                "tradeIDs": [],
            }
            empty = {
                "units": "0",
                "pl": "0",
                "unrealizedPL": "0",
                "resettablePL": "0",
                "financing": "0",
                "guaranteedExecutionFees": "0",
            }
            positions.append(
                {
                    "instrument": instrument_of(symbol),
                    "pl": "0",
                    "unrealizedPL": "0",
                    "marginUsed": "0",
                    "resettablePL": "0",
                    "financing": "0",
                    "commission": "0",
                    "guaranteedExecutionFees": "0",
                    "long": side if qty > 0 else empty,
                    "short": side if qty < 0 else empty,
                }
            )
        return JSONResponse({"positions": positions, "lastTransactionID": str(self._last_id(derived))})

    # -- transactions -----------------------------------------------------------------------------------------

    async def _since_id(self, request: Request) -> Response:
        raw = request.query_params.get("id")
        try:
            since = int(raw or "")
        except ValueError:
            return _error(400, "Invalid value specified for 'id'", "INVALID_ID")
        derived = await self._state()
        txns = [t for t in self._transactions(derived) if int(t["id"]) > since][: self.page_size]
        return JSONResponse({"transactions": txns, "lastTransactionID": str(self._last_id(derived))})

    async def _stream(self, request: Request) -> Response:
        if self.faults.refuse_streams:
            self.streams_refused += 1
            return _error(503, "Service unavailable (injected)")
        queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
        self._listeners.add(queue)
        self.streams_opened += 1

        async def lines() -> AsyncIterator[bytes]:
            try:
                while True:
                    try:
                        txn = await asyncio.wait_for(queue.get(), self.heartbeat_seconds)
                    except TimeoutError:
                        beat = {
                            "type": "HEARTBEAT",
                            "lastTransactionID": str(self._last_id(self._derive())),
                            "time": oanda_time(utcnow()),
                        }
                        yield (json.dumps(beat) + "\n").encode()
                        continue
                    if txn is None:
                        return
                    yield (json.dumps(txn) + "\n").encode()
            finally:
                self._listeners.discard(queue)

        return StreamingResponse(lines(), media_type="application/octet-stream")


class VenueServer(HttpVenueServer[OandaVenue]):
    """Serves an ``OandaVenue`` with uvicorn on ``host:port`` inside the running event loop (tests, ``__main__``)."""

    task_name = "oanda-venue-http"

    async def end_streams(self) -> None:
        """Close the venue's streams."""
        self.venue.drop_streams()
