"""The local Kraken venue: Kraken's spot REST API in front of the paper matching engine.

``python -m devstack.venues.kraken`` runs it (``--help``); ``EXODUS_KRAKEN__LOCAL_VENUE=true make run`` starts it
beside the worker; tests run ``KrakenVenue`` in process with ``VenueServer``. What it speaks (Kraken's spot REST
OpenAPI document in ``shared/specs/kraken-spot-rest/`` for the shapes, BROKERS.md §3 and §9 for the rest):

* ``POST /0/private/{AddOrder, AmendOrder, CancelOrder, OpenOrders, ClosedOrders, QueryOrders, OrderAmends,
  TradesHistory, QueryTrades, Balance}``, bodies form-encoded (or JSON), and ``GET /0/public/{Ticker, Time}``.
* Authentication: ``API-Key`` and ``API-Sign`` (HMAC-SHA512 of the path and SHA-256 of nonce + body, with the
  base64 secret), and a nonce that must exceed the key's last one (``EAPI:Invalid key``, ``EAPI:Invalid
  signature``, ``EAPI:Invalid nonce``).
* Answers ``{"error": [...], "result": ...}``, errors as Kraken's strings with HTTP 200: ``EQuery:Unknown asset
  pair``, ``EGeneral:Invalid arguments:<field>``, ``EOrder:Order minimum not met``, ``EOrder:Tick size check
  failed``, ``EOrder:Insufficient funds``, ``EOrder:Unknown order``, ``EService:Deadline elapsed``, and for a
  ``cl_ord_id`` an open order already has, ``EOrder:Duplicate cl_ord_id`` (Kraken's own text for it is not
  documented: BROKERS.md §8).
* ``cl_ord_id`` (free text of at most 18 printable characters, or a UUID) unique among **open** orders only, and
  ``userref`` (int32, not unique; not together with ``cl_ord_id``); ``deadline`` (now + 2 s to 60 s) past which a
  request is refused; ``validate=true`` checks only.
* Kraken's decaying counters: the REST call counter per key (``EAPI:Rate limit exceeded``; trade history costs 2,
  trading calls count elsewhere) and the trading counter per pair (``EOrder:Rate limit exceeded``; AddOrder and
  AmendOrder +1, CancelOrder a penalty by the order's age). Both off unless configured.
* Faults (``faults``): latency, errors before processing (an HTTP status, or Kraken error strings with 200), errors
  after processing ("502 after execution"), an answer dropped after processing, an answer that never comes, a
  request held before processing (so it reaches the engine after its ``deadline``).

The venue has no WebSocket API (the adapter polls); the REST answers are all it says.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import parse_qsl

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from brokers.kraken.config import CL_ORD_ID_FREE_TEXT, KRAKEN_PAIRS, pair_of_kraken
from core.domain import (
    CancelOrder,
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
from devstack.venues import server
from devstack.venues.kraken.model import (
    ORDERTYPE,
    OrderMeta,
    amend_id,
    amends_json,
    kraken_id,
    order_json,
    price_text,
    trade_id,
    trade_json,
    trades_of,
    txid_of,
    volume_text,
)
from devstack.venues.server import HttpVenueServer, PaperVenue
from sim.matching import RejectReason, SimOrder
from sim.venue import SimVenue

__all__ = ["CANCEL_PENALTY", "Counter", "Fault", "KrakenVenue", "VenueFaults", "VenueServer"]

log = logging.getLogger(__name__)

_D = Decimal
_UUID_HEX = set("0123456789abcdefABCDEF")

#: Trading-counter penalty of a cancel by the order's age in seconds (BROKERS.md §3).
CANCEL_PENALTY = ((5, 8.0), (10, 6.0), (15, 5.0), (45, 4.0), (90, 2.0))
_HISTORY_COST = {"TradesHistory": 2.0, "QueryTrades": 2.0, "Ledgers": 2.0, "QueryLedgers": 2.0}
_TRADING = {"AddOrder", "AmendOrder", "CancelOrder"}


def ok(result: Any) -> JSONResponse:
    """Kraken's answer carrying ``result``."""
    return JSONResponse({"error": [], "result": result})


def fail(*errors: str, status: int = 200) -> JSONResponse:
    """Kraken's answer carrying errors (HTTP 200, as Kraken answers them)."""
    return JSONResponse({"error": list(errors)}, status_code=status)


def _after(t: float, bound: float) -> bool:
    return t > bound


def _at_or_before(t: float, bound: float) -> bool:
    return t <= bound


#: Kraken's ``start`` (exclusive) and ``end`` (inclusive) time filters.
_TIME_BOUNDS: tuple[tuple[str, Callable[[float, float], bool]], ...] = (("start", _after), ("end", _at_or_before))


class Counter:
    """A decaying counter: ``limit`` 0 is no limit."""

    def __init__(self, limit: float = 0.0, decay: float = 1.0) -> None:
        self.limit = limit
        self.decay = decay
        self.value = 0.0
        self._at = time.monotonic()

    def _decayed(self) -> float:
        now = time.monotonic()
        self.value = max(self.value - (now - self._at) * self.decay, 0.0)
        self._at = now
        return self.value

    def take(self, cost: float) -> bool:
        """Count ``cost``; False (nothing counted) when it would go above the limit."""
        value = self._decayed()
        if self.limit > 0 and value + cost > self.limit:
            return False
        self.value = value + cost
        return True

    def add(self, cost: float) -> None:
        """Count ``cost`` whatever the limit (a cancel penalty)."""
        self.value = self._decayed() + cost


@dataclass
class Fault(server.Fault):
    """One injected failure, used up by the first request of its method (``path`` is not used).

    Beyond the shared kinds: "error_before"/"error_after" answer ``errors`` with 200 when given (else ``status``);
    "hold_before": wait ``seconds``, then process.
    """

    #: Kraken's method name (``AddOrder``), None: any.
    method: str | None = None
    status: int = 502
    errors: list[str] | None = None


class VenueFaults(server.VenueFaults[Fault]):
    """What tests (and demos) make go wrong, by Kraken method."""

    def fault(self, kind: str, **kw: Any) -> Fault:
        """A fault (an error answer is ``errors``, else ``status``, 502 by default)."""
        return Fault(kind, **kw)

    dropped = (200, b'{"error":[],')


def _injected_error(fault: Fault) -> Response:
    return fail(*fault.errors) if fault.errors else _gateway_error(fault.status)


def _gateway_error(status: int) -> Response:
    # What Kraken's edge answers on a 5xx: an HTML page, not Kraken's JSON.
    return Response(
        f"<html><body><h1>{status} Bad Gateway</h1></body></html>", status_code=status, media_type="text/html"
    )


class _Invalid(Exception):
    """A request Kraken refuses: its error strings."""

    def __init__(self, *errors: str) -> None:
        super().__init__(", ".join(errors))
        self.errors = list(errors)


def _decimal(fields: dict[str, str], name: str, *, required: bool = False) -> Decimal | None:
    value = fields.get(name)
    if value is None or value == "":
        if required:
            raise _Invalid(f"EGeneral:Invalid arguments:{name}")
        return None
    if value[:1] in "+-#" or value.endswith("%"):
        raise _Invalid(f"EGeneral:Invalid arguments:{name} (relative prices are not supported by the local venue)")
    try:
        number = Decimal(value)
    except InvalidOperation:
        raise _Invalid(f"EGeneral:Invalid arguments:{name}") from None
    if not number.is_finite() or number <= 0:
        raise _Invalid(f"EGeneral:Invalid arguments:{name}")
    return number


def _flag(value: str | None) -> bool:
    return str(value).lower() in ("true", "1")


def _valid_cl_ord_id(value: str) -> bool:
    if CL_ORD_ID_FREE_TEXT.match(value):
        return True
    hexes = value.replace("-", "")
    dashed = len(value) == 36 and [len(p) for p in value.split("-")] == [8, 4, 4, 4, 12]
    return len(hexes) == 32 and set(hexes) <= _UUID_HEX and (dashed or "-" not in value)


class KrakenVenue(PaperVenue):
    """Kraken's spot REST API over a ``SimVenue``."""

    def __init__(
        self,
        sim: SimVenue,
        instruments: list[Instrument],
        *,
        api_key: str,
        api_secret: str,
        balances: dict[str, Decimal] | None = None,
    ) -> None:
        """Serve ``sim`` (started by ``start()``) to the holder of ``api_key``/``api_secret`` (base64)."""
        self.sim = sim
        self.instruments = {
            i.symbol: i
            for i in instruments
            if i.symbol in KRAKEN_PAIRS and i.instrument_class is InstrumentClass.CRYPTO
        }
        self.api_key = api_key
        self.api_secret = api_secret
        self._secret = base64.b64decode(api_secret)
        self.initial_balances = balances or {
            "ZUSD": _D(10_000_000),
            "ZEUR": _D(1_000_000),
            "XXBT": _D(100),
            "XETH": _D(1_000),
            "SOL": _D(10_000),
        }
        self.faults = VenueFaults()
        #: The REST call counter of the key (limit 0: none) and the trading counter per pair.
        self.calls = Counter()
        self.trading_limit = (0.0, 1.0)
        self._trading: dict[str, Counter] = {}
        #: Rate-limit refusals given (both counters).
        self.throttled = 0
        self._last_nonce = 0
        #: Answers by method and first error ("AddOrder EOrder:..."), for tests; requests by method.
        self.requests: dict[str, int] = {}
        self.refusals: dict[str, int] = {}
        self.app = self._build_app()

    # -- lifecycle ----------------------------------------------------------------------------------------

    def throttle(self, calls: float, decay: float) -> None:
        """Both counters: at most ``calls``, decaying at ``decay`` per second (0 calls: no limit)."""
        self.calls = Counter(calls, decay)
        self.trading_limit = (calls, decay)
        self._trading.clear()

    def _trading_counter(self, pair: str) -> Counter:
        counter = self._trading.get(pair)
        if counter is None:
            counter = self._trading[pair] = Counter(*self.trading_limit)
        return counter

    # -- state ---------------------------------------------------------------------------------------------

    async def _orders(self) -> list[SimOrder]:
        await self.sim.flush()  # nothing unsaved is ever revealed
        return [o for o in self.sim.engine.all_orders() if o.symbol in self.instruments]

    def _by_txid(self, txid: str) -> SimOrder | None:
        order = self.sim.engine.find(txid)
        return order if order is not None and txid_of(order) == txid and order.symbol in self.instruments else None

    def _holdings(self, orders: list[SimOrder]) -> dict[str, Decimal]:
        book = dict(self.initial_balances)
        for order in orders:
            pair = KRAKEN_PAIRS[order.symbol]
            for fill in trades_of(order):
                signed = fill.last_qty * order.side.sign
                book[pair.base] = book.get(pair.base, _D(0)) + signed
                book[pair.quote] = book.get(pair.quote, _D(0)) - signed * (fill.last_price or _D(0))
        return book

    def _available(self, orders: list[SimOrder], asset: str) -> Decimal:
        held = self._holdings(orders).get(asset, _D(0))
        for order in orders:
            if not order.is_open:
                continue
            pair = KRAKEN_PAIRS[order.symbol]
            if order.side is OrderSide.BUY and pair.quote == asset:
                held -= order.leaves_qty * (order.price or self.sim.feed.quote(order.symbol).ask)
            elif order.side is OrderSide.SELL and pair.base == asset:
                held -= order.leaves_qty
        return held

    # -- the HTTP layer ------------------------------------------------------------------------------------

    def _build_app(self) -> Starlette:
        routes = [
            Route("/0/private/{method}", self._private, methods=["POST"]),
            Route("/0/public/{method}", self._public, methods=["GET", "POST"]),
        ]
        return Starlette(routes=routes)

    async def _public(self, request: Request) -> Response:
        method = request.path_params["method"]
        self.requests[method] = self.requests.get(method, 0) + 1
        if method == "Time":
            now = time.time()
            stamp = datetime.fromtimestamp(now, tz=UTC).strftime("%a, %d %b %y %H:%M:%S +0000")
            return ok({"unixtime": int(now), "rfc1123": stamp})
        if method == "Ticker":
            return await self._ticker(request)
        return fail("EGeneral:Unknown method")

    async def _fields(self, request: Request) -> dict[str, str] | None:
        raw = await request.body()
        if request.headers.get("content-type", "").startswith("application/json"):
            try:
                data = json.loads(raw or b"{}")
            except ValueError:
                return None
            if not isinstance(data, dict):
                return None
            return {
                k: (json.dumps(v) if isinstance(v, (dict, list)) else str(v).lower() if isinstance(v, bool) else str(v))
                for k, v in data.items()
            }
        try:
            return dict(parse_qsl(raw.decode(), keep_blank_values=True, strict_parsing=bool(raw)))
        except (ValueError, UnicodeDecodeError):
            return None

    def _authenticate(self, request: Request, raw: bytes, fields: dict[str, str]) -> str | None:
        """The error when the request is not Kraken-authentic (key, signature, nonce), else None."""
        if request.headers.get("API-Key") != self.api_key:
            return "EAPI:Invalid key"
        nonce_text = fields.get("nonce", "")
        if not nonce_text.isdigit():
            return "EAPI:Invalid nonce"
        digest = hashlib.sha256(nonce_text.encode() + raw).digest()
        expected = hmac.new(self._secret, request.url.path.encode() + digest, hashlib.sha512).digest()
        try:
            given = base64.b64decode(request.headers.get("API-Sign", ""), validate=True)
        except ValueError:
            return "EAPI:Invalid signature"
        if not hmac.compare_digest(expected, given):
            return "EAPI:Invalid signature"
        nonce = int(nonce_text)
        if nonce <= self._last_nonce:
            return "EAPI:Invalid nonce"
        self._last_nonce = nonce
        return None

    async def _private(self, request: Request) -> Response:
        method = request.path_params["method"]
        self.requests[method] = self.requests.get(method, 0) + 1
        raw = await request.body()
        fields = await self._fields(request)
        if fields is None:
            return self._refused(method, "EGeneral:Invalid arguments")
        problem = self._authenticate(request, raw, fields)
        if problem is not None:
            return self._refused(method, problem)
        endpoint = self._endpoints().get(method)
        if endpoint is None:
            return self._refused(method, "EGeneral:Unknown method")
        if method not in _TRADING and not self.calls.take(_HISTORY_COST.get(method, 1.0)):
            self.throttled += 1
            return self._refused(method, "EAPI:Rate limit exceeded")
        fault = await self.faults.arrive(method)
        if fault is not None and fault.kind == "error_before":
            return _injected_error(fault)
        if fault is not None and fault.kind == "hold_before":
            await asyncio.sleep(fault.seconds)
        try:
            response = await endpoint(fields)
        except _Invalid as e:
            response = self._refused(method, *e.errors)
        except BrokerUnavailable as e:
            log.warning("kraken venue: %s failed: %s", method, e)
            response = self._refused(method, "EService:Unavailable")
        injected = await self.faults.injected(fault, _injected_error)
        return response if injected is None else injected

    def _refused(self, method: str, *errors: str) -> JSONResponse:
        key = f"{method} {errors[0]}" if errors else method
        self.refusals[key] = self.refusals.get(key, 0) + 1
        return fail(*errors)

    def _endpoints(self) -> dict[str, Callable[[dict[str, str]], Awaitable[Response]]]:
        return {
            "AddOrder": self._add_order,
            "AmendOrder": self._amend_order,
            "CancelOrder": self._cancel_order,
            "OpenOrders": self._open_orders,
            "ClosedOrders": self._closed_orders,
            "QueryOrders": self._query_orders,
            "OrderAmends": self._order_amends,
            "TradesHistory": self._trades_history,
            "QueryTrades": self._query_trades,
            "Balance": self._balance,
        }

    # -- trading -------------------------------------------------------------------------------------------

    def _pair(self, fields: dict[str, str]) -> Instrument:
        name = fields.get("pair")
        if not name:
            raise _Invalid("EGeneral:Invalid arguments:pair")
        pair = pair_of_kraken(name)
        inst = self.instruments.get(pair.symbol) if pair else None
        if inst is None or not inst.tradable:
            raise _Invalid("EQuery:Unknown asset pair")
        return inst

    @staticmethod
    def _deadline(fields: dict[str, str]) -> None:
        text = fields.get("deadline")
        if not text:
            return
        try:
            at = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            raise _Invalid("EGeneral:Invalid arguments:deadline") from None
        at = at if at.tzinfo else at.replace(tzinfo=UTC)
        now = utcnow()
        if at <= now:
            raise _Invalid("EService:Deadline elapsed")
        if at > now + timedelta(seconds=61):
            raise _Invalid("EGeneral:Invalid arguments:deadline")

    @staticmethod
    def _price_check(inst: Instrument, price: Decimal | None) -> None:
        if price is not None and not inst.on_tick(price):
            raise _Invalid("EOrder:Tick size check failed")

    async def _add_order(self, fields: dict[str, str]) -> Response:
        inst = self._pair(fields)
        side = fields.get("type")
        if side not in ("buy", "sell"):
            raise _Invalid("EGeneral:Invalid arguments:type")
        ordertype = fields.get("ordertype")
        if ordertype not in ORDERTYPE:
            raise _Invalid("EGeneral:Invalid arguments:ordertype")
        order_type = ORDERTYPE[ordertype]
        volume = _decimal(fields, "volume", required=True)
        assert volume is not None
        if not inst.on_lot(volume) or volume > inst.max_qty:
            raise _Invalid("EGeneral:Invalid arguments:volume")
        if volume < inst.min_qty:
            raise _Invalid("EOrder:Order minimum not met")
        price: Decimal | None = None
        stop: Decimal | None = None
        if order_type is OrderType.LIMIT:
            price = _decimal(fields, "price", required=True)
        elif order_type.limit_once_triggered:  # stop-loss-limit, take-profit-limit
            stop = _decimal(fields, "price", required=True)
            price = _decimal(fields, "price2", required=True)
        elif order_type.needs_stop_price:  # stop-loss, take-profit
            stop = _decimal(fields, "price", required=True)
        self._price_check(inst, price)
        self._price_check(inst, stop)
        tif_name = fields.get("timeinforce") or "GTC"
        tifs = {"GTC": TimeInForce.GTC, "IOC": TimeInForce.IOC, "GTD": TimeInForce.GTD}
        if tif_name not in tifs:
            raise _Invalid("EGeneral:Invalid arguments:timeinforce")
        tif = tifs[tif_name]
        expire_at = None
        if tif is TimeInForce.GTD:
            expire_at = self._expiretm(fields.get("expiretm"))
            if expire_at is None:
                raise _Invalid("EGeneral:Invalid arguments:expiretm")
        cl_ord_id = fields.get("cl_ord_id") or None
        userref_text = fields.get("userref")
        if cl_ord_id is not None and userref_text:
            raise _Invalid("EGeneral:Invalid arguments:cl_ord_id and userref are mutually exclusive")
        if cl_ord_id is not None and not _valid_cl_ord_id(cl_ord_id):
            raise _Invalid("EGeneral:Invalid arguments:cl_ord_id")
        userref: int | None = None
        if userref_text:
            try:
                userref = int(userref_text)
            except ValueError:
                raise _Invalid("EGeneral:Invalid arguments:userref") from None
            if not -(2**31) <= userref < 2**31:
                raise _Invalid("EGeneral:Invalid arguments:userref")
        self._deadline(fields)
        orders = await self._orders()
        if cl_ord_id is not None and any(o.is_open and OrderMeta.of(o).cl_ord_id == cl_ord_id for o in orders):
            raise _Invalid("EOrder:Duplicate cl_ord_id")
        pair = KRAKEN_PAIRS[inst.symbol]
        if side == "buy":
            cost = volume * (price or stop or self.sim.feed.quote(inst.symbol).ask)
            if cost > self._available(orders, pair.quote):
                raise _Invalid("EOrder:Insufficient funds")
        elif volume > self._available(orders, pair.base):
            raise _Invalid("EOrder:Insufficient funds")
        descr_side = f"{side} {volume_text(volume)} {pair.altname} @ {ordertype}"
        if _flag(fields.get("validate")):
            return ok({"descr": {"order": descr_side}})
        if not self._trading_counter(pair.altname).take(1.0):
            self.throttled += 1
            raise _Invalid("EOrder:Rate limit exceeded")
        txid = kraken_id("O", f"order/{self.sim.name}/{time.time_ns()}/{cl_ord_id}/{len(orders)}")
        meta = OrderMeta(cl_ord_id=cl_ord_id, userref=userref, qty=volume, price=price, stop_price=stop)
        ack = await self.sim.submit(
            SubmitOrder(
                cl_ord_id=txid,
                account=meta.dump(),
                symbol=inst.symbol,
                side=OrderSide.BUY if side == "buy" else OrderSide.SELL,
                type=order_type,
                time_in_force=tif,
                qty=volume,
                price=price,
                stop_price=stop,
                expire_at=expire_at,
            )
        )
        if not ack.accepted:
            reason = ack.reason or ""
            if reason.startswith(RejectReason.UNKNOWN_SYMBOL):
                raise _Invalid("EQuery:Unknown asset pair")
            if reason.startswith(RejectReason.INCORRECT_QUANTITY):
                raise _Invalid("EGeneral:Invalid arguments:volume")
            if reason.startswith(RejectReason.INVALID_PRICE):
                raise _Invalid("EOrder:Invalid price")
            raise _Invalid("EOrder:Invalid order")
        order = self._by_txid(txid)
        descr = order_json(order)["descr"]["order"] if order is not None else descr_side
        return ok({"descr": {"order": descr}, "txid": [txid]})

    @staticmethod
    def _expiretm(text: str | None) -> datetime | None:
        if not text or text == "0":
            return None
        try:
            if text.startswith(("+", " ")):
                seconds = int(text.strip().lstrip("+"))
                return utcnow() + timedelta(seconds=max(seconds, 5))
            return datetime.fromtimestamp(int(Decimal(text)), tz=UTC)
        except (ValueError, InvalidOperation):
            raise _Invalid("EGeneral:Invalid arguments:expiretm") from None

    def _open_by(self, orders: list[SimOrder], fields: dict[str, str]) -> list[SimOrder]:
        """Open orders named by ``txid`` (a txid, or a userref) or ``cl_ord_id``."""
        txid, cl_ord_id = fields.get("txid"), fields.get("cl_ord_id")
        if bool(txid) == bool(cl_ord_id):
            raise _Invalid("EGeneral:Invalid arguments:txid or cl_ord_id")
        open_orders = [o for o in orders if o.is_open]
        if cl_ord_id:
            return [o for o in open_orders if OrderMeta.of(o).cl_ord_id == cl_ord_id]
        assert txid is not None
        if txid.lstrip("-").isdigit():
            return [o for o in open_orders if OrderMeta.of(o).userref == int(txid)]
        return [o for o in open_orders if txid_of(o) == txid]

    async def _cancel_order(self, fields: dict[str, str]) -> Response:
        targets = self._open_by(await self._orders(), fields)
        if not targets:
            raise _Invalid("EOrder:Unknown order")
        count = 0
        for order in targets:
            age = (utcnow() - order.created_at).total_seconds()
            penalty = next((p for limit, p in CANCEL_PENALTY if age < limit), 0.0)
            self._trading_counter(KRAKEN_PAIRS[order.symbol].altname).add(penalty)
            ack = await self.sim.cancel(
                CancelOrder(cl_ord_id=order.cl_ord_id, symbol=order.symbol, side=order.side, qty=order.qty)
            )
            count += 1 if ack.accepted else 0
        if count == 0:
            raise _Invalid("EOrder:Unknown order")
        return ok({"count": count})

    async def _amend_order(self, fields: dict[str, str]) -> Response:
        targets = self._open_by(await self._orders(), fields)
        if not targets:
            raise _Invalid("EOrder:Unknown order")
        order = targets[0]
        inst = self.instruments[order.symbol]
        qty = _decimal(fields, "order_qty")
        limit = _decimal(fields, "limit_price")
        trigger = _decimal(fields, "trigger_price")
        if limit is not None and not order.type.needs_price:
            raise _Invalid("EGeneral:Invalid arguments:limit_price")
        if trigger is not None and not order.type.needs_stop_price:
            raise _Invalid("EGeneral:Invalid arguments:trigger_price")
        if qty is None and limit is None and trigger is None:
            raise _Invalid("EGeneral:Invalid arguments:nothing to amend")
        if qty is not None and (not inst.on_lot(qty) or qty > inst.max_qty):
            raise _Invalid("EGeneral:Invalid arguments:order_qty")
        if qty is not None and qty <= order.filled_qty:
            raise _Invalid("EGeneral:Invalid arguments:order_qty below the executed volume")
        self._price_check(inst, limit)
        self._price_check(inst, trigger)
        self._deadline(fields)
        if not self._trading_counter(KRAKEN_PAIRS[order.symbol].altname).take(1.0):
            self.throttled += 1
            raise _Invalid("EOrder:Rate limit exceeded")
        n = sum(1 for r in order.reports if r.kind is ReportKind.REPLACED) + 1
        txid = txid_of(order)
        ack = await self.sim.replace(
            ReplaceOrder(
                orig_cl_ord_id=order.cl_ord_id,
                cl_ord_id=f"{txid}/{n}",
                symbol=order.symbol,
                side=order.side,
                type=order.type,
                time_in_force=order.time_in_force,
                qty=qty or order.qty,
                price=limit or order.price,
                stop_price=trigger or order.stop_price,
            )
        )
        if not ack.accepted:
            raise _Invalid("EOrder:Invalid order")
        return ok({"amend_id": amend_id(txid, n)})

    # -- queries -------------------------------------------------------------------------------------------

    @staticmethod
    def _matches(order: SimOrder, fields: dict[str, str]) -> bool:
        meta = OrderMeta.of(order)
        if fields.get("cl_ord_id") and meta.cl_ord_id != fields["cl_ord_id"]:
            return False
        userref = fields.get("userref")
        return not (userref and (meta.userref is None or str(meta.userref) != userref))

    async def _open_orders(self, fields: dict[str, str]) -> Response:
        trades = _flag(fields.get("trades"))
        orders = [o for o in await self._orders() if o.is_open and self._matches(o, fields)]
        orders.sort(key=lambda o: o.created_at, reverse=True)
        return ok({"open": {txid_of(o): order_json(o, trades=trades) for o in orders}})

    async def _closed_orders(self, fields: dict[str, str]) -> Response:
        trades = _flag(fields.get("trades"))
        closed = [o for o in await self._orders() if not o.is_open and self._matches(o, fields)]
        closetime = fields.get("closetime") or "both"

        def stamp(order: SimOrder) -> float:
            info = order_json(order)
            return float(info["opentm"] if closetime == "open" else info.get("closetm") or info["opentm"])

        for name, keep in _TIME_BOUNDS:
            value = fields.get(name)
            if value:
                try:
                    bound = float(value)
                except ValueError:
                    raise _Invalid(f"EGeneral:Invalid arguments:{name}") from None
                closed = [o for o in closed if keep(stamp(o), bound)]
        closed.sort(key=stamp, reverse=True)
        try:
            ofs = int(fields.get("ofs") or 0)
        except ValueError:
            raise _Invalid("EGeneral:Invalid arguments:ofs") from None
        page = closed[ofs : ofs + 50]
        return ok({"closed": {txid_of(o): order_json(o, trades=trades) for o in page}, "count": len(closed)})

    async def _query_orders(self, fields: dict[str, str]) -> Response:
        trades = _flag(fields.get("trades"))
        wanted = [t for t in (fields.get("txid") or "").split(",") if t]
        if not wanted or len(wanted) > 50:
            raise _Invalid("EGeneral:Invalid arguments:txid")
        out: dict[str, Any] = {}
        for txid in wanted:
            order = self._by_txid(txid)
            if order is None:
                raise _Invalid("EOrder:Invalid order")
            if self._matches(order, {"userref": fields.get("userref", "")}):
                out[txid] = order_json(order, trades=trades)
        await self.sim.flush()
        return ok(out)

    async def _order_amends(self, fields: dict[str, str]) -> Response:
        txid = fields.get("order_id") or fields.get("txid")
        order = self._by_txid(txid) if txid else None
        if order is None:
            raise _Invalid("EOrder:Unknown order")
        await self.sim.flush()
        amends = amends_json(order)
        return ok({"amends": amends, "count": len(amends)})

    def _all_trades(self, orders: list[SimOrder]) -> list[tuple[SimOrder, Any, int]]:
        fills = sorted(((o, f) for o in orders for f in trades_of(o)), key=lambda x: (x[1].transact_at, x[1].exec_id))
        return [(o, f, n) for n, (o, f) in enumerate(fills, start=1)]

    async def _trades_history(self, fields: dict[str, str]) -> Response:
        items = self._all_trades(await self._orders())
        kind = fields.get("type") or "all"
        if kind not in ("all", "any position", "closed position", "closing position", "no position"):
            raise _Invalid("EGeneral:Invalid arguments:type")
        for name, keep in _TIME_BOUNDS:
            value = fields.get(name)
            if value:
                try:
                    bound = float(value)
                except ValueError:
                    raise _Invalid(f"EGeneral:Invalid arguments:{name}") from None
                items = [i for i in items if keep(i[1].transact_at.timestamp(), bound)]
        items.reverse()  # the most recent first
        try:
            ofs = int(fields.get("ofs") or 0)
        except ValueError:
            raise _Invalid("EGeneral:Invalid arguments:ofs") from None
        page = items[ofs : ofs + 50]
        return ok({"trades": {trade_id(f): trade_json(o, f, number=n) for o, f, n in page}, "count": len(items)})

    async def _query_trades(self, fields: dict[str, str]) -> Response:
        wanted = [t for t in (fields.get("txid") or "").split(",") if t]
        if not wanted or len(wanted) > 20:
            raise _Invalid("EGeneral:Invalid arguments:txid")
        known = {trade_id(f): (o, f, n) for o, f, n in self._all_trades(await self._orders())}
        out: dict[str, Any] = {}
        for tid in wanted:
            if tid not in known:
                raise _Invalid("EGeneral:Invalid arguments:txid")
            o, f, n = known[tid]
            out[tid] = trade_json(o, f, number=n)
        return ok(out)

    async def _balance(self, fields: dict[str, str]) -> Response:
        book = self._holdings(await self._orders())
        return ok({asset: f"{qty.quantize(_D('1e-10')):f}" for asset, qty in sorted(book.items())})

    async def _ticker(self, request: Request) -> Response:
        names = [n for n in request.query_params.get("pair", "").split(",") if n]
        await self.sim.flush()
        out: dict[str, Any] = {}
        for name in names or [p.altname for p in KRAKEN_PAIRS.values() if p.symbol in self.instruments]:
            pair = pair_of_kraken(name)
            if pair is None or pair.symbol not in self.instruments:
                return fail("EQuery:Unknown asset pair")
            q = self.sim.feed.quote(pair.symbol)
            mid = price_text(q.mid, 5)
            out[pair.name] = {
                "a": [price_text(q.ask, 5), "1", "1.000"],
                "b": [price_text(q.bid, 5), "1", "1.000"],
                "c": [mid, "0.00100000"],
                "v": ["0.00000000", "0.00000000"],
                "p": [mid, mid],
                "t": [0, 0],
                "l": [mid, mid],
                "h": [mid, mid],
                "o": mid,
            }
        return ok(out)


class VenueServer(HttpVenueServer[KrakenVenue]):
    """Serves a ``KrakenVenue`` with uvicorn on ``host:port`` inside the running event loop (tests, ``__main__``)."""

    task_name = "kraken-venue-http"
