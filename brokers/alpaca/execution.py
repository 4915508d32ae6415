"""The Alpaca broker: the ``Broker`` protocol over Alpaca's Trading API v2 and its ``trade_updates`` stream.

::

    submit_order ──POST /v2/orders───────────────▶ Alpaca ──trade_updates (WebSocket)──▶ reports, journaled once
    cancel_order ──DELETE /v2/orders/{id}────────▶         (new, fill, partial_fill,      per exec id, then the
    replace_order ─PATCH /v2/orders/{id}─────────▶          canceled, expired, replaced,   outbox ─▶ sink
    get_order_status ─GET /v2/orders:by_client_order_id     rejected, ...)
    after every (re)connect of the stream: GET /v2/account/activities/FILL + every open order ──▶ the same path

* **Unknown is not failed.** A timeout, a dropped connection, a 5xx or a 429 that outlasted the client's retries
  raises ``BrokerUnavailable``: the order, cancel or replace stays in flight and the order workflow asks Alpaca
  by our client order id before anything is sent again (``activities/broker.py``). Only a definite 4xx answer
  refuses a request. A second POST under a client order id is refused by Alpaca ("client_order_id must be
  unique"); that refusal only answers the resend, it is never a report, and the activity looks the order up.
* **One fill, one exec id, whichever way it came**: ``<Alpaca order id>:<that order's filled_qty after it>``.
  The stream's fill events (``order.filled_qty``), the FILL activities (``cum_qty``) and a status lookup
  (``filled_qty`` and ``filled_avg_price``) all name a fill by it, so a fill seen twice is booked once. The
  quantity is the growth of the order's ``filled_qty`` over what was recorded; the price is the event's or the
  activity's, else derived from the average.
* **Replace** is Alpaca's PATCH: a new Alpaca order with a new id works the new total less what the chain has
  filled (Exodus quantities are totals, Alpaca's replacement works its own quantity); the old order ends
  ``replaced``. The REPLACED report names the new client order id and the new totals.
* **Reports survive restarts**: every report is written to the shared report journal (``broker_reports``)
  before it is delivered; what was recorded but not delivered is delivered again by ``start()``.
* Storage failures (``psycopg``/``OSError``) on a call surface as ``BrokerUnavailable`` (the shared storage
  boundary, ``storage_boundary``); in the stream handler they drop the connection, whose reconnect catches up
  over REST.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from brokers.alpaca.client import AlpacaError, AlpacaRest, RateLimiter
from brokers.alpaca.config import ALPACA_CAPABILITIES, EXODUS_CL_ORD_ID
from brokers.alpaca.marketdata import QuotePoller
from brokers.alpaca.parsing import (
    AlpacaOrderView,
    decimal_of,
    leg_role,
    order_body,
    replace_body,
    rfc3339,
    time_of,
)
from brokers.alpaca.store import AlpacaOrder, AlpacaStore
from brokers.alpaca.stream import TradeUpdatesStream
from brokers.base import ReportSink, storage_boundary
from brokers.journal import JournaledBroker, fill_totals
from brokers.sessions import SessionRecorder
from core.domain import (
    BrokerAck,
    CancelOrder,
    ExecutionReport,
    InstrumentClass,
    OrderSide,
    OrderStatus,
    OrderStatusReport,
    PositionReport,
    ReplaceOrder,
    ReportKind,
    SubmitOrder,
    base_order_id,
    utcnow,
)
from core.errors import BrokerUnavailable, ConfigError
from core.instruments import InstrumentCatalog
from core.marketdata import QuoteSink
from core.settings import AlpacaSettings

__all__ = ["ALPACA_CAPABILITIES", "AccountReport", "AlpacaBroker"]

log = logging.getLogger(__name__)

_D = Decimal
_TERMINAL = {"canceled": ReportKind.CANCELED, "expired": ReportKind.EXPIRED, "rejected": ReportKind.REJECTED}
_STATUS_OF_KIND = {
    ReportKind.CANCELED: OrderStatus.CANCELED,
    ReportKind.EXPIRED: OrderStatus.EXPIRED,
    ReportKind.REJECTED: OrderStatus.REJECTED,
}


@dataclass(frozen=True)
class AccountReport:
    """The Alpaca account, for reconciliation and health."""

    status: str
    cash: Decimal | None
    equity: Decimal | None
    buying_power: Decimal | None
    trading_blocked: bool


@storage_boundary
class AlpacaBroker(JournaledBroker):
    """Orders at Alpaca (paper or live, or the local Alpaca venue)."""

    capabilities = ALPACA_CAPABILITIES
    settings_section = "alpaca"
    store_class = AlpacaStore

    def __init__(
        self,
        settings: AlpacaSettings,
        *,
        store: AlpacaStore,
        name: str = "alpaca",
        recorder: SessionRecorder | None = None,
        quotes: QuoteSink | None = None,
        instruments: InstrumentCatalog | None = None,
        http_hooks: dict[str, list[Any]] | None = None,
    ) -> None:
        """An adapter with ``settings`` (keys, URLs, limits), keeping its records in ``store``.

        ``http_hooks``: httpx event hooks on every REST call (the tests check each answer against Alpaca's spec).
        """
        if settings.key_id is None or settings.secret_key is None:
            raise ConfigError(
                "the Alpaca broker needs API keys: set EXODUS_ALPACA__KEY_ID and EXODUS_ALPACA__SECRET_KEY "
                "(or EXODUS_ALPACA__LOCAL_VENUE=true for the local venue)"
            )
        self._init_reports(name, store.journal, recorder)
        self.settings = settings
        self._store = store
        self.rest = AlpacaRest(settings.base_url, settings, name=name, event_hooks=http_hooks)
        self.data = AlpacaRest(
            settings.data_url,
            settings,
            name=f"{name}-data",
            limiter=RateLimiter(settings.rate_limit_per_minute),
            event_hooks=http_hooks,
        )
        if recorder is not None:
            recorder.last_call = self._last_call
        self._to_alpaca = dict(settings.symbol_map)
        self._from_alpaca = {v: k for k, v in self._to_alpaca.items()}
        self.stream = TradeUpdatesStream(
            settings.resolved_stream_url(),
            key_id=settings.key_id.get_secret_value(),
            secret_key=settings.secret_key.get_secret_value(),
            on_event=self._on_event,
            on_connected=self._catch_up,
            on_state=self._on_stream_state,
            name=name,
        )
        self.quote_poller: QuotePoller | None = None
        if quotes is not None and settings.quote_interval_ms > 0:
            symbols = list(settings.quote_symbols)
            if not symbols and instruments is not None:
                symbols = [i.symbol for i in instruments if i.instrument_class is InstrumentClass.EQUITY]
            self.quote_poller = QuotePoller(
                self.data,
                quotes,
                symbols={s: self._symbol(s) for s in symbols},
                interval=settings.quote_interval_ms / 1000,
                feed=settings.data_feed,
                source=name,
            )
        #: Serializes turning Alpaca's news into reports (fill quantities are deltas over what was recorded).
        self._lock = asyncio.Lock()
        #: Alpaca order ids seen that are not Exodus orders (fill activities of other orders on the account).
        self._foreign: set[str] = set()
        #: Alpaca id -> our client order id of a native list's legs (Alpaca names them with its own client ids).
        self._leg_ids: dict[str, str] = {}
        #: Completed catch-ups (one after every stream connection).
        self.catch_ups = 0
        self.caught_up = asyncio.Event()

    # -- lifecycle -------------------------------------------------------------------------------------------

    async def start(self, sink: ReportSink) -> None:
        """Deliver what a previous run left undelivered, then connect the stream (it catches up by itself)."""
        await self._start_reports(sink)
        self.stream.start()
        if self.quote_poller is not None:
            self.quote_poller.start()

    async def close(self) -> None:
        """Stop the stream, the quotes and the delivery (idempotent)."""
        await self.stream.stop()
        if self.quote_poller is not None:
            await self.quote_poller.stop()
        await self._stop_reports(self.rest, self.data)

    def _last_call(self) -> datetime | None:
        # The latest successful call to either host (trading or market data).
        times = [t for t in (self.rest.last_ok_at, self.data.last_ok_at) if t is not None]
        return max(times) if times else None

    def _on_stream_state(self, up: bool, detail: str) -> None:
        if not up:
            self.caught_up.clear()
        if self._recorder is not None:
            self._recorder.changed(up, detail)

    def _symbol(self, symbol: str) -> str:
        return self._to_alpaca.get(symbol, symbol)

    def _domain_symbol(self, symbol: str) -> str:
        return self._from_alpaca.get(symbol, symbol)

    # -- requests --------------------------------------------------------------------------------------------

    async def submit_order(self, order: SubmitOrder) -> BrokerAck:
        """POST the order; a definite refusal is an unaccepted ack, an unknown outcome ``BrokerUnavailable``."""
        cid = order.cl_ord_id
        if order.native is not None and order.native.held_by is not None:
            return await self._submit_leg(order)
        try:
            body = order_body(order, self._symbol(order.symbol))
        except ValueError as e:
            return BrokerAck(accepted=False, cl_ord_id=cid, reason=f"UNSUPPORTED: {e}")
        record = await self._add_record(order)
        try:
            data = await self.rest.request("POST", "/v2/orders", json_body=body)
        except AlpacaError as e:
            if "must be unique" in e.message:
                return BrokerAck(accepted=False, cl_ord_id=cid, reason=f"DUPLICATE_CLIENT_ORDER_ID: {e}")
            if record.status is OrderStatus.SUBMITTED and record.cl_ord_id == cid:
                record.status = OrderStatus.REJECTED
                await self._store.save_order(record)
            return BrokerAck(accepted=False, cl_ord_id=cid, reason=f"REJECTED by Alpaca: {e}")
        view = self._view(data)
        await self._map_legs(order, data)
        return await self._submitted(cid, view)

    async def _map_legs(self, order: SubmitOrder, data: Any) -> bool:
        """Note Alpaca's ids of a list head's legs (in its Order object's ``legs``) under our legs' client order ids."""
        native = order.native
        if native is None or not native.legs or not isinstance(data, dict):
            return False
        found = {leg_role(d): d for d in data.get("legs") or [] if isinstance(d, dict) and d.get("id")}
        mapped = True
        for leg in native.legs:
            d = found.get(leg.role)
            if d is None:
                mapped = False
                continue
            alpaca_id = str(d["id"])
            self._leg_ids[alpaca_id] = leg.cl_ord_id
            await self._store.add_alpaca_id(alpaca_id, base_order_id(leg.cl_ord_id), leg.cl_ord_id)
        return mapped

    async def _submit_leg(self, order: SubmitOrder) -> BrokerAck:
        """A native list's leg: never sent on its own; found among its head's legs at Alpaca and followed.

        The head unknown to Alpaca is an unknown outcome (its submission may still be on its way), never a refusal.
        """
        cid = order.cl_ord_id
        native = order.native
        assert native is not None and native.held_by is not None
        view = await self._current(cid)
        if view is None:
            try:
                head = await self.rest.get(
                    "/v2/orders:by_client_order_id", params={"client_order_id": native.held_by, "nested": "true"}
                )
            except AlpacaError as e:
                if e.status == 404:
                    raise BrokerUnavailable(
                        f"{self.name}: the head {native.held_by} of leg {cid} is not known yet"
                    ) from e
                raise BrokerUnavailable(f"{self.name}: looking up {native.held_by} was refused: {e}") from e
            if isinstance(head, dict):
                for d in head.get("legs") or []:
                    if isinstance(d, dict) and d.get("id") and leg_role(d) == native.role:
                        self._leg_ids[str(d["id"])] = cid
                        await self._store.add_alpaca_id(str(d["id"]), base_order_id(cid), cid)
            view = await self._current(cid)
        if view is None:
            missing = f"NO_LEG: Alpaca's order {native.held_by} has no {native.role} leg"
            return BrokerAck(accepted=False, cl_ord_id=cid, reason=missing)
        await self._add_record(order)
        return await self._submitted(cid, view)

    async def _add_record(self, order: SubmitOrder) -> AlpacaOrder:
        """Record an order about to be sent (or followed); the record that exists when it was recorded before."""
        now = utcnow()
        return await self._store.add_order(
            AlpacaOrder(
                order_id=base_order_id(order.cl_ord_id),
                cl_ord_id=order.cl_ord_id,
                account=order.account,
                symbol=order.symbol,
                side=order.side,
                qty=order.qty,
                created_at=now,
                updated_at=now,
            )
        )

    async def _submitted(self, cid: str, view: AlpacaOrderView) -> BrokerAck:
        """The answer to a submission Alpaca has as ``view``: its reports; refused when Alpaca rejected it."""
        reports = await self._absorb(view, event="new", source="answer")
        if view.status == "rejected":
            reason = next((r.reason for r in reports if r.kind is ReportKind.REJECTED), "rejected by Alpaca")
            return BrokerAck(accepted=False, cl_ord_id=cid, broker_order_id=view.id, reason=reason, reports=reports)
        return BrokerAck(accepted=True, cl_ord_id=cid, broker_order_id=view.id, reports=reports)

    async def _adopt(self, view: AlpacaOrderView) -> AlpacaOrderView:
        """A native list's leg under our client order id (Alpaca names it with its own); other orders as they are."""
        if EXODUS_CL_ORD_ID.match(view.cl_ord_id):
            return view
        cid = self._leg_ids.get(view.id)
        if cid is None and view.id not in self._foreign:
            cid = await self._store.cl_ord_id_of(view.id)
            if cid is not None:
                self._leg_ids[view.id] = cid
        return dataclasses.replace(view, cl_ord_id=cid) if cid is not None else view

    async def cancel_order(self, request: CancelOrder) -> BrokerAck:
        """DELETE the order Alpaca knows by our client order id (following its replacements)."""
        cid = request.cl_ord_id
        view = await self._current(cid)
        if view is None:
            return BrokerAck(
                accepted=False, cl_ord_id=cid, not_found=True, reason=f"UNKNOWN_ORDER: Alpaca has no {cid}"
            )
        reports = await self._absorb(view, source="status")
        if view.status == "canceled":
            return BrokerAck(accepted=True, cl_ord_id=view.cl_ord_id, broker_order_id=view.id, reports=reports)
        if not view.working:
            reason = f"TOO_LATE: the order is {view.status} at Alpaca"
            return BrokerAck(accepted=False, cl_ord_id=cid, broker_order_id=view.id, reason=reason, reports=reports)
        try:
            await self.rest.request("DELETE", f"/v2/orders/{view.id}")
        except AlpacaError as e:
            if e.status == 404:
                return BrokerAck(accepted=False, cl_ord_id=cid, not_found=True, reason=f"UNKNOWN_ORDER: {e}")
            # Not cancelable any more: what it became is the answer.
            again = await self._current(cid)
            if again is not None:
                reports += await self._absorb(again, source="status")
                if again.status == "canceled":
                    return BrokerAck(
                        accepted=True,
                        cl_ord_id=again.cl_ord_id,
                        broker_order_id=again.id,
                        reports=reports,
                    )
            return BrokerAck(
                accepted=False,
                cl_ord_id=cid,
                broker_order_id=view.id,
                reason=f"TOO_LATE: {e}",
                reports=reports,
            )
        return BrokerAck(accepted=True, cl_ord_id=view.cl_ord_id, broker_order_id=view.id, reports=reports)

    async def replace_order(self, request: ReplaceOrder) -> BrokerAck:
        """PATCH the order: a new Alpaca order under ``request.cl_ord_id`` works the new total less the filled."""
        new_cid = request.cl_ord_id
        view = await self._current(request.orig_cl_ord_id)
        if view is None:
            return BrokerAck(
                accepted=False,
                cl_ord_id=request.orig_cl_ord_id,
                not_found=True,
                reason=f"UNKNOWN_ORDER: Alpaca has no {request.orig_cl_ord_id}",
            )
        reports = await self._absorb(view, source="status")
        if view.cl_ord_id == new_cid:  # replaced already (an earlier attempt whose answer was lost)
            return BrokerAck(accepted=True, cl_ord_id=new_cid, broker_order_id=view.id, reports=reports)
        if not view.working:
            reason = f"TOO_LATE: the order is {view.status} at Alpaca"
            return BrokerAck(accepted=False, cl_ord_id=new_cid, broker_order_id=view.id, reason=reason, reports=reports)
        filled, _ = await self._chain_filled(base_order_id(new_cid))
        remaining = request.qty - filled
        if remaining <= 0:
            reason = f"INCORRECT_QUANTITY: the new quantity {request.qty} must exceed the filled {filled}"
            return BrokerAck(accepted=False, cl_ord_id=new_cid, reason=reason, reports=reports)
        try:
            data = await self.rest.request("PATCH", f"/v2/orders/{view.id}", json_body=replace_body(request, remaining))
        except AlpacaError as e:
            if "must be unique" in e.message:
                existing = await self._current(new_cid)
                if existing is not None:
                    return BrokerAck(accepted=True, cl_ord_id=new_cid, broker_order_id=existing.id)
            return BrokerAck(
                accepted=False, cl_ord_id=new_cid, broker_order_id=view.id, reason=f"REPLACE_REJECTED: {e}"
            )
        new = self._view(data)
        async with self._lock:
            report = await self._replaced(view, new, source="answer")
        return BrokerAck(
            accepted=True,
            cl_ord_id=new_cid,
            broker_order_id=new.id,
            reports=[*reports, *([report] if report else [])],
        )

    async def get_order_status(self, cl_ord_id: str) -> OrderStatusReport | None:
        """Alpaca's view of the order (by our client order id, following replacements) with every report recorded."""
        view = await self._current(cl_ord_id)
        if view is None:
            return None
        await self._absorb(view, source="status")
        return await self._status_report(view)

    async def open_orders(self) -> list[OrderStatusReport]:
        """Every Exodus order Alpaca still works (``GET /v2/orders?status=open``)."""
        result: list[OrderStatusReport] = []
        after: str | None = None
        while True:
            params: dict[str, Any] = {"status": "open", "limit": 500, "direction": "asc"}
            if after:
                params["after"] = after
            page = await self.rest.get("/v2/orders", params=params)
            views = [await self._adopt(self._view(d)) for d in page or []]
            for view in views:
                if EXODUS_CL_ORD_ID.match(view.cl_ord_id) and view.working:
                    await self._absorb(view, source="status")
                    result.append(await self._status_report(view))
            if len(views) < 500 or views[-1].created_at is None:
                return result
            after = rfc3339(views[-1].created_at)

    async def fills_since(self, since: datetime) -> list[ExecutionReport]:
        """Exodus orders' fills after ``since``, from Alpaca's FILL activities."""
        fills = []
        async for activity, cid in self._fill_activities(since):
            report = self._activity_report(activity, cid, known=None)
            if report is not None:
                fills.append(report)
        return fills

    async def positions(self) -> list[PositionReport]:
        """Alpaca's positions (``GET /v2/positions``), signed (short is negative)."""
        data = await self.rest.get("/v2/positions")
        result = []
        for p in data or []:
            qty = decimal_of(p.get("qty")) or _D(0)
            if p.get("side") == "short" and qty > 0:
                qty = -qty
            result.append(
                PositionReport(
                    broker=self.name,
                    account=self.settings.account,
                    symbol=self._domain_symbol(str(p.get("symbol"))),
                    qty=qty,
                    avg_price=decimal_of(p.get("avg_entry_price")),
                )
            )
        return result

    async def account(self) -> AccountReport:
        """The account (``GET /v2/account``)."""
        data = await self.rest.get("/v2/account")
        return AccountReport(
            status=str(data.get("status")),
            cash=decimal_of(data.get("cash")),
            equity=decimal_of(data.get("equity")),
            buying_power=decimal_of(data.get("buying_power")),
            trading_blocked=bool(data.get("trading_blocked") or data.get("account_blocked")),
        )

    # -- Alpaca's orders ---------------------------------------------------------------------------------------

    def _view(self, data: Any) -> AlpacaOrderView:
        if not isinstance(data, dict):
            raise BrokerUnavailable(f"{self.name}: an answer that is not an order: {str(data)[:200]}")
        try:
            return AlpacaOrderView.of(data)
        except ValueError as e:
            raise BrokerUnavailable(f"{self.name}: {e}") from e

    async def _current(self, cl_ord_id: str) -> AlpacaOrderView | None:
        """The order Alpaca knows by ``cl_ord_id``; a replaced one is followed to its live replacement."""
        try:
            data = await self.rest.get("/v2/orders:by_client_order_id", params={"client_order_id": cl_ord_id})
        except AlpacaError as e:
            if e.status != 404:
                raise BrokerUnavailable(f"{self.name}: looking up {cl_ord_id} was refused: {e}") from e
            # A native list's leg is known to Alpaca under Alpaca's own client id: by the id we noted for it.
            alpaca_id = await self._store.alpaca_id_of(cl_ord_id)
            if alpaca_id is None:
                return None
            try:
                data = await self.rest.get(f"/v2/orders/{alpaca_id}")
            except AlpacaError as e2:
                if e2.status == 404:
                    return None
                raise BrokerUnavailable(f"{self.name}: looking up {cl_ord_id} was refused: {e2}") from e2
            return await self._adopt(self._view(data))
        view = self._view(data)
        for _ in range(50):
            if view.status != "replaced" or not view.replaced_by:
                return view
            await self._absorb(view, source="status")  # its own fills first: they count in the new totals
            new = self._view(await self.rest.get(f"/v2/orders/{view.replaced_by}"))
            async with self._lock:
                await self._replaced(view, new, source="status")
            view = new
        return view

    async def _status_report(self, view: AlpacaOrderView) -> OrderStatusReport:
        reports = await self._journal.reports(base_order_id(view.cl_ord_id))
        cum, _ = fill_totals(reports)
        own, _ = await self._journal.filled(view.id)
        return self._order_status(
            reports,
            cl_ord_id=view.cl_ord_id,
            broker_order_id=view.id,
            qty=cum - own + view.qty,
            status=view.final_status,
            price=view.limit_price,
            stop_price=view.stop_price,
        )

    async def _chain_filled(self, order_id: str) -> tuple[Decimal, Decimal]:
        return fill_totals(await self._journal.reports(order_id))

    # -- turning Alpaca's news into reports ------------------------------------------------------------------

    async def _track(self, view: AlpacaOrderView) -> AlpacaOrder | None:
        """Note Alpaca's id of one of our orders; the order's record (None when this process never sent it)."""
        order_id = base_order_id(view.cl_ord_id)
        await self._store.add_alpaca_id(view.id, order_id, view.cl_ord_id)
        record = await self._store.order(order_id)
        if record is not None and record.cl_ord_id == view.cl_ord_id and record.alpaca_id != view.id:
            record.alpaca_id = view.id
            if record.status is OrderStatus.SUBMITTED:
                record.status = OrderStatus.ACCEPTED
            await self._store.save_order(record)
        return record

    def _report(self, view: AlpacaOrderView, kind: ReportKind, exec_id: str, **fields: Any) -> ExecutionReport:
        return ExecutionReport(
            broker=self.name,
            exec_id=exec_id,
            kind=kind,
            cl_ord_id=view.cl_ord_id,
            broker_order_id=view.id,
            symbol=self._domain_symbol(view.symbol),
            side=view.side,
            transact_at=fields.pop("transact_at", None) or view.updated_at or utcnow(),
            **fields,
        )

    async def _absorb(
        self,
        view: AlpacaOrderView,
        *,
        source: str,
        event: str | None = None,
        fill_price: Decimal | None = None,
        fill_qty: Decimal | None = None,
        at: datetime | None = None,
    ) -> list[ExecutionReport]:
        """Record what ``view`` (an Order object from an answer, an event or a lookup) shows that was not recorded.

        Returns every report that stands for it (recorded now or before), for the answer's ``reports``.
        """
        if not EXODUS_CL_ORD_ID.match(view.cl_ord_id):
            return []
        out: list[ExecutionReport] = []
        async with self._lock:
            record = await self._track(view)
            if event == "new" and view.replaces is None and view.status != "rejected":
                report = self._report(view, ReportKind.ACCEPTED, f"{view.id}:new", transact_at=view.created_at)
                await self._record(report, ref=view.id, source=source)
                out.append(report)
            known, known_notional = await self._journal.filled(view.id)
            if view.filled_qty > known:
                delta = view.filled_qty - known
                price = fill_price if fill_price is not None and fill_qty == delta else None
                if price is None and view.filled_avg_price is not None:
                    derived = (view.filled_avg_price * view.filled_qty - known_notional) / delta
                    price = derived.quantize(_D("1e-8")).normalize() if derived > 0 else None
                price = price or fill_price or view.filled_avg_price
                if price is None or price <= 0:
                    log.error("%s: %s shows %s filled without a price", self.name, view.cl_ord_id, view.filled_qty)
                else:
                    chain, _ = await self._chain_filled(base_order_id(view.cl_ord_id))
                    report = self._report(
                        view,
                        ReportKind.FILL,
                        f"{view.id}:{view.filled_qty.normalize():f}",
                        last_qty=delta,
                        last_price=price,
                        cum_qty=chain + delta,
                        leaves_qty=max(view.qty - view.filled_qty, _D(0)),
                        avg_price=view.filled_avg_price,
                        transact_at=at,
                    )
                    await self._record(report, ref=view.id, source=source)
                    out.append(report)
            kind = _TERMINAL.get(view.status)
            if kind is not None:
                reason = f"{view.status} at Alpaca"
                if kind is ReportKind.REJECTED:
                    reason = "REJECTED by Alpaca (the order was rejected after it was accepted)"
                report = self._report(view, kind, f"{view.id}:{view.status}", reason=reason, transact_at=at)
                await self._record(report, ref=view.id, source=source)
                out.append(report)
                if record is not None and record.cl_ord_id == view.cl_ord_id and record.open:
                    record.status = _STATUS_OF_KIND[kind]
                    await self._store.save_order(record)
            elif view.status == "filled" and record is not None and record.cl_ord_id == view.cl_ord_id:
                if record.open:
                    record.status = OrderStatus.FILLED
                    await self._store.save_order(record)
        return out

    async def _replaced(self, old: AlpacaOrderView, new: AlpacaOrderView, *, source: str) -> ExecutionReport | None:
        """Record that ``old`` was replaced by ``new`` (call under the lock)."""
        if not EXODUS_CL_ORD_ID.match(new.cl_ord_id):
            return None
        order_id = base_order_id(new.cl_ord_id)
        await self._store.add_alpaca_id(new.id, order_id, new.cl_ord_id)
        chain, _ = await self._chain_filled(order_id)
        own, _ = await self._journal.filled(new.id)
        total = chain - own + new.qty
        report = self._report(
            new,
            ReportKind.REPLACED,
            f"{old.id}:replaced",
            cum_qty=chain,
            leaves_qty=max(total - chain, _D(0)),
            new_qty=total,
            new_price=new.limit_price,
            new_stop_price=new.stop_price,
            transact_at=new.created_at,
        )
        await self._record(report, ref=old.id, source=source)
        record = await self._store.order(order_id)
        if record is not None and record.cl_ord_id != new.cl_ord_id:
            record.cl_ord_id, record.alpaca_id, record.qty = new.cl_ord_id, new.id, total
            await self._store.save_order(record)
        return report

    # -- the stream and the catch-up --------------------------------------------------------------------------

    async def _on_event(self, data: dict[str, Any]) -> None:
        """One trade_updates event (a storage failure propagates: the stream reconnects and catches up)."""
        event = str(data.get("event") or "")
        order = data.get("order")
        if not isinstance(order, dict):
            return
        try:
            view = AlpacaOrderView.of(order)
        except ValueError:
            log.warning("%s: a %s event without a readable order: %s", self.name, event, str(data)[:300])
            return
        view = await self._adopt(view)
        if not EXODUS_CL_ORD_ID.match(view.cl_ord_id):
            return
        at = time_of(data.get("timestamp"))
        if event in ("fill", "partial_fill"):
            await self._absorb(
                view,
                source=f"stream:{event}",
                fill_price=decimal_of(data.get("price")),
                fill_qty=decimal_of(data.get("qty")),
                at=at,
            )
        elif event == "replaced" and view.replaced_by:
            await self._absorb(view, source=f"stream:{event}", at=at)
            async with self._lock:
                done = await self._journal.has(f"{view.id}:replaced")
            if not done:
                new = self._view(await self.rest.get(f"/v2/orders/{view.replaced_by}"))
                async with self._lock:
                    await self._replaced(view, new, source="stream:replaced")
        elif event in ("order_cancel_rejected", "order_replace_rejected"):
            kind = ReportKind.CANCEL_REJECTED if event == "order_cancel_rejected" else ReportKind.REPLACE_REJECTED
            stamp = data.get("timestamp") or utcnow().isoformat()
            report = self._report(view, kind, f"{view.id}:{event}:{stamp}", reason=f"{event} by Alpaca", transact_at=at)
            async with self._lock:
                await self._record(report, ref=view.id, source=f"stream:{event}")
        else:
            # new, canceled, expired, rejected, and whatever else: the order object says what it is now.
            await self._absorb(view, source=f"stream:{event}", event=event, at=at)

    async def _catch_up(self) -> None:
        """After a (re)connect: what happened while nobody listened, from FILL activities and the open orders."""
        delay = 0.5
        while True:
            try:
                await self._catch_up_once()
                self.catch_ups += 1
                self.caught_up.set()
                return
            except asyncio.CancelledError:
                raise
            except Exception as e:
                log.warning("%s: catching up failed (%s); retrying in %.1fs", self.name, e, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30.0)

    async def _catch_up_once(self) -> None:
        opens = await self._store.open_orders()
        if not opens:
            return
        since = min(o.created_at for o in opens) - timedelta(minutes=1)
        async for activity, cid in self._fill_activities(since):
            alpaca_id = str(activity.get("order_id"))
            async with self._lock:
                known, _ = await self._journal.filled(alpaca_id)
                report = self._activity_report(activity, cid, known=known)
                if report is not None:
                    chain, _ = await self._chain_filled(base_order_id(cid))
                    report = report.model_copy(update={"cum_qty": chain + report.last_qty})
                    await self._record(report, ref=alpaca_id, source=f"activity:{activity.get('id')}")
        for record in opens:
            view = await self._current(record.cl_ord_id)
            if view is None:
                continue  # never arrived (or not yet visible): the order's workflow asks before resending
            await self._absorb(view, source="status")
        log.info("%s: caught up on %d open order(s)", self.name, len(opens))

    async def _fill_activities(self, since: datetime) -> AsyncIterator[tuple[dict[str, Any], str]]:
        """FILL activities after ``since`` (oldest first) of Exodus orders, with the order's client order id."""
        token: str | None = None
        while True:
            params: dict[str, Any] = {"after": rfc3339(since), "direction": "asc", "page_size": 100}
            if token:
                params["page_token"] = token
            page = await self.rest.get("/v2/account/activities/FILL", params=params)
            items = [a for a in page or [] if isinstance(a, dict)]
            for activity in items:
                cid = await self._cl_ord_id_of(str(activity.get("order_id")))
                if cid is not None:
                    yield activity, cid
            if len(items) < 100:
                return
            token = str(items[-1].get("id"))

    async def _cl_ord_id_of(self, alpaca_id: str) -> str | None:
        if alpaca_id in self._foreign:
            return None
        cid = await self._store.cl_ord_id_of(alpaca_id)
        if cid is not None:
            return cid
        try:
            view = self._view(await self.rest.get(f"/v2/orders/{alpaca_id}"))
        except AlpacaError:
            self._foreign.add(alpaca_id)
            return None
        if not EXODUS_CL_ORD_ID.match(view.cl_ord_id):
            self._foreign.add(alpaca_id)
            return None
        await self._store.add_alpaca_id(view.id, base_order_id(view.cl_ord_id), view.cl_ord_id)
        return view.cl_ord_id

    def _activity_report(self, activity: dict[str, Any], cid: str, *, known: Decimal | None) -> ExecutionReport | None:
        """The fill a FILL activity stands for: beyond ``known`` of its order (None: the activity's own quantity)."""
        cum = decimal_of(activity.get("cum_qty"))
        qty = decimal_of(activity.get("qty"))
        price = decimal_of(activity.get("price"))
        if cum is None or qty is None or price is None or price <= 0 or (known is not None and cum <= known):
            return None
        alpaca_id = str(activity.get("order_id"))
        return ExecutionReport(
            broker=self.name,
            exec_id=f"{alpaca_id}:{cum.normalize():f}",
            kind=ReportKind.FILL,
            cl_ord_id=cid,
            broker_order_id=alpaca_id,
            symbol=self._domain_symbol(str(activity.get("symbol") or "")),
            side=OrderSide.SELL if activity.get("side") == "sell" else OrderSide.BUY,
            last_qty=qty if known is None else cum - known,
            last_price=price,
            cum_qty=cum,
            leaves_qty=decimal_of(activity.get("leaves_qty")) or _D(0),
            transact_at=time_of(activity.get("transaction_time")) or utcnow(),
        )
