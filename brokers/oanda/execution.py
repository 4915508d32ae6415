"""The OANDA broker: the ``Broker`` protocol over OANDA's v20 REST API and its transaction stream.

::

    submit_order ──POST  …/orders──────────────▶ OANDA ──…/transactions/stream (JSON lines, HEARTBEAT)──▶ reports,
    cancel_order ──PUT   …/orders/{id}/cancel──▶        (LIMIT_ORDER, ORDER_FILL, ORDER_CANCEL, …)      journaled
    replace_order ─PUT   …/orders/{id}─────────▶                                                        once per
    get_order_status ─GET …/orders/@<client id>, then the journal                                      transaction
    after every (re)connect, before every lookup: GET …/transactions/sinceid?id=<cursor> ──▶ the same path

* **One fact, one exec id: OANDA's transaction id.** The order's creation (ACCEPTED, or REPLACED for a
  replacement), each ``ORDER_FILL`` (FILL) and its ``ORDER_CANCEL`` (CANCELED, EXPIRED) are transactions; the POST's
  answer, the stream and ``/transactions/sinceid`` all carry the same ids, so a fact learnt twice is booked once.
* **Nothing missed.** The adapter keeps a cursor, the last transaction id read without a gap (``oanda_cursor``).
  After every (re)connect of the stream, before every status lookup and whenever a heartbeat names a later
  transaction than any seen, it reads ``/transactions/sinceid`` from the cursor and moves it on.
* **Unknown is not failed.** A timeout, a dropped connection, a 5xx or a 429 that outlasted the client's retries
  raises ``BrokerUnavailable``; only a definite 4xx answer refuses a request.
* **Never resend a possibly-filled order.** OANDA refuses a client id (``CLIENT_ORDER_ID_ALREADY_EXISTS``) only
  while the order holding it is *pending*: once filled or cancelled the id can be used again, and a resend creates a
  second order. So a client order id this adapter has sent before (``oanda_orders``) is looked up (``@<id>``, then
  the transactions, which the catch-up journaled) before anything is sent again; if OANDA has it, the resend is
  refused as a duplicate and the order workflow reads the status.
* **Replace** is OANDA's cancel-and-create (``PUT …/orders/{id}``): the old order is cancelled
  (``CLIENT_REQUEST_REPLACED``) and a new order with a new OANDA id works the new total less what the chain has
  filled, under the new client order id. Its creation transaction (reason ``REPLACEMENT``) is the REPLACED report.
* Reports are journaled (``broker_reports``) before they are delivered; ``start()`` delivers what a previous process
  journaled and never delivered. Storage failures are ``BrokerUnavailable`` (``storage_boundary``); in the stream
  they drop the stream, whose reconnect catches up.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from brokers.base import ReportSink, storage_boundary
from brokers.http import loads
from brokers.journal import JournaledBroker, fill_totals
from brokers.oanda.client import OandaError, OandaRest
from brokers.oanda.config import EXODUS_CL_ORD_ID, OANDA_CAPABILITIES, ORDER_CREATE_TYPES
from brokers.oanda.marketdata import PricePoller
from brokers.oanda.parsing import (
    OandaOrderView,
    decimal_of,
    instrument_of,
    order_body,
    replace_body,
    side_of,
    symbol_of,
    time_of,
)
from brokers.oanda.store import OandaOrder, OandaStore
from brokers.sessions import SessionRecorder
from core.domain import (
    BrokerAck,
    CancelOrder,
    ExecutionReport,
    InstrumentClass,
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
from core.settings import OandaSettings

__all__ = ["OANDA_CAPABILITIES", "AccountReport", "OandaBroker"]

log = logging.getLogger(__name__)

_D = Decimal
_TERMINAL_STATUS = {
    ReportKind.CANCELED: OrderStatus.CANCELED,
    ReportKind.EXPIRED: OrderStatus.EXPIRED,
    ReportKind.REJECTED: OrderStatus.REJECTED,
}
#: The transactions of a POST/PUT answer that are facts about the order, in the order they happened.
_ANSWER_TRANSACTIONS = (
    "orderCancelTransaction",
    "orderCreateTransaction",
    "orderFillTransaction",
    "replacingOrderCancelTransaction",
)


@dataclass(frozen=True)
class AccountReport:
    """The OANDA account, for reconciliation and risk."""

    currency: str
    balance: Decimal | None
    nav: Decimal | None
    margin_used: Decimal | None
    margin_available: Decimal | None
    unrealized_pl: Decimal | None
    last_transaction_id: str | None


@storage_boundary
class OandaBroker(JournaledBroker):
    """Orders at OANDA (practice or live, or the local OANDA venue)."""

    capabilities = OANDA_CAPABILITIES
    settings_section = "oanda"
    store_class = OandaStore

    def __init__(
        self,
        settings: OandaSettings,
        *,
        store: OandaStore,
        name: str = "oanda",
        recorder: SessionRecorder | None = None,
        quotes: QuoteSink | None = None,
        instruments: InstrumentCatalog | None = None,
        http_hooks: dict[str, list[Any]] | None = None,
    ) -> None:
        """An adapter with ``settings`` (token, account, URLs, limits), keeping its records in ``store``.

        ``http_hooks``: httpx event hooks on every REST call (the tests check each answer against OANDA's spec).
        """
        if settings.token is None or not settings.account_id:
            raise ConfigError(
                "the OANDA broker needs a token and an account: set EXODUS_OANDA__TOKEN and EXODUS_OANDA__ACCOUNT_ID "
                "(or EXODUS_OANDA__LOCAL_VENUE=true for the local venue)"
            )
        self._init_reports(name, store.journal, recorder)
        self.settings = settings
        self._store = store
        self.rest = OandaRest(settings, name=name, event_hooks=http_hooks)
        if recorder is not None:
            recorder.last_call = lambda: self.rest.last_ok_at  # the broker-health page's last successful call
        self._map = dict(settings.symbol_map)
        self.price_poller: PricePoller | None = None
        if quotes is not None and settings.quote_interval_ms > 0:
            symbols = list(settings.quote_symbols)
            if not symbols and instruments is not None:
                symbols = [i.symbol for i in instruments if i.instrument_class is InstrumentClass.FX]
            self.price_poller = PricePoller(
                self.rest,
                quotes,
                symbols={s: instrument_of(s, self._map) for s in symbols},
                interval=settings.quote_interval_ms / 1000,
                source=name,
            )
        #: Serializes turning transactions into reports (fill totals are sums over what was journaled).
        self._lock = asyncio.Lock()
        #: Serializes catch-ups (each reads from the cursor and moves it).
        self._sync_lock = asyncio.Lock()
        self._stream_task: asyncio.Task[None] | None = None
        #: The highest transaction id seen in any way (a heartbeat naming a later one starts a catch-up).
        self._seen = 0
        #: Completed catch-ups after a stream connection, heartbeats read, stream connections made.
        self.catch_ups = 0
        self.heartbeats = 0
        self.connections = 0
        self.caught_up = asyncio.Event()

    @staticmethod
    def session_name(settings: Any) -> str:
        """The session its recorder records: the URL and the account."""
        return f"{settings.base_url} {settings.account_id}"

    # -- lifecycle -------------------------------------------------------------------------------------------

    async def start(self, sink: ReportSink) -> None:
        """Deliver what a previous run left undelivered, then connect the stream (it catches up by itself)."""
        await self._start_reports(sink)
        self._stream_task = asyncio.create_task(self._stream_forever(), name=f"{self.name}-transactions")
        if self.price_poller is not None:
            self.price_poller.start()

    async def close(self) -> None:
        """Stop the stream, the prices and the delivery (idempotent)."""
        if self._stream_task is not None:
            self._stream_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._stream_task
            self._stream_task = None
        if self.price_poller is not None:
            await self.price_poller.stop()
        await self._stop_reports(self.rest)

    def _session(self, up: bool, detail: str) -> None:
        if not up:
            self.caught_up.clear()
        if self._recorder is not None:
            self._recorder.changed(up, detail)

    # -- requests --------------------------------------------------------------------------------------------

    async def submit_order(self, order: SubmitOrder) -> BrokerAck:
        """POST the order, unless OANDA may have it already (then look it up: never a second order)."""
        cid = order.cl_ord_id
        try:
            body = order_body(order, instrument_of(order.symbol, self._map))
        except ValueError as e:
            return BrokerAck(accepted=False, cl_ord_id=cid, reason=f"UNSUPPORTED: {e}")
        record, new = await self._store.add_order(
            OandaOrder(
                order_id=base_order_id(cid),
                cl_ord_id=cid,
                account=order.account,
                symbol=order.symbol,
                side=order.side,
                qty=order.qty,
                sent_after=await self._store.cursor(),
                created_at=utcnow(),
            )
        )
        if not new:
            # Sent before (a retry after an unknown outcome, or a resend): OANDA's deduplication does not cover a
            # filled or cancelled order, so what it has decides, never a second POST.
            status = await self.get_order_status(cid)
            if status is not None:
                return BrokerAck(
                    accepted=False,
                    cl_ord_id=cid,
                    broker_order_id=status.broker_order_id,
                    reason=f"DUPLICATE_CLIENT_ORDER_ID: OANDA has {cid} ({status.status.value}); not sent again",
                )
        try:
            data = await self.rest.request("POST", "/orders", json_body=body)
        except OandaError as e:
            reason = e.reject_reason or "REJECTED"
            if e.status == 404 and not e.body.get("orderRejectTransaction"):
                raise BrokerUnavailable(
                    f"{self.name}: OANDA does not know account {self.settings.account_id}: {e}"
                ) from e
            if reason == "CLIENT_ORDER_ID_ALREADY_EXISTS":
                return BrokerAck(accepted=False, cl_ord_id=cid, reason=f"DUPLICATE_CLIENT_ORDER_ID: {e}")
            return BrokerAck(accepted=False, cl_ord_id=cid, reason=f"REJECTED by OANDA: {reason}: {e.message}")
        reports = await self._absorb_answer(data)
        create = data.get("orderCreateTransaction") if isinstance(data, dict) else None
        oanda_id = str(create.get("id")) if isinstance(create, dict) and create.get("id") else None
        return BrokerAck(accepted=True, cl_ord_id=cid, broker_order_id=oanda_id, reports=reports)

    async def cancel_order(self, request: CancelOrder) -> BrokerAck:
        """Cancel the order OANDA knows by our client order id (following its replacements)."""
        cid = request.cl_ord_id
        view, reports = await self._current(cid)
        if view is None:
            status = await self._journal_status(cid, reports)
            if status is None:
                return BrokerAck(
                    accepted=False, cl_ord_id=cid, not_found=True, reason=f"UNKNOWN_ORDER: OANDA has no {cid}"
                )
            return self._cancel_answer(cid, status.status, status.broker_order_id, reports)
        if not view.working:
            return self._cancel_answer(cid, self._status_of(view, reports), view.id, reports)
        try:
            data = await self.rest.request("PUT", f"/orders/{view.id}/cancel")
        except OandaError as e:
            again, reports = await self._current(cid)
            if again is not None and not again.working:
                return self._cancel_answer(cid, self._status_of(again, reports), again.id, reports, detail=str(e))
            if e.status == 404 and again is None:
                return BrokerAck(accepted=False, cl_ord_id=cid, not_found=True, reason=f"UNKNOWN_ORDER: {e}")
            return BrokerAck(accepted=False, cl_ord_id=cid, broker_order_id=view.id, reason=f"TOO_LATE: {e}")
        done = await self._absorb_answer(data)
        return BrokerAck(accepted=True, cl_ord_id=view.cl_ord_id or cid, broker_order_id=view.id, reports=done)

    def _cancel_answer(
        self,
        cid: str,
        status: OrderStatus,
        oanda_id: str | None,
        reports: list[ExecutionReport],
        *,
        detail: str = "",
    ) -> BrokerAck:
        if status is OrderStatus.CANCELED:
            return BrokerAck(accepted=True, cl_ord_id=cid, broker_order_id=oanda_id, reports=reports)
        reason = f"TOO_LATE: the order is {status.value} at OANDA" + (f" ({detail})" if detail else "")
        return BrokerAck(accepted=False, cl_ord_id=cid, broker_order_id=oanda_id, reason=reason, reports=reports)

    async def replace_order(self, request: ReplaceOrder) -> BrokerAck:
        """PUT the replacement: a new OANDA order under the new client id works the new total less the filled."""
        new_cid = request.cl_ord_id
        view, reports = await self._current(request.orig_cl_ord_id)
        if view is None:
            return BrokerAck(
                accepted=False,
                cl_ord_id=request.orig_cl_ord_id,
                not_found=True,
                reason=f"UNKNOWN_ORDER: OANDA has no working {request.orig_cl_ord_id}",
            )
        if view.cl_ord_id == new_cid:  # replaced already (an earlier attempt whose answer was lost)
            return BrokerAck(accepted=True, cl_ord_id=new_cid, broker_order_id=view.id, reports=reports)
        if not view.working:
            reason = f"TOO_LATE: the order is {view.state} at OANDA"
            return BrokerAck(accepted=False, cl_ord_id=new_cid, broker_order_id=view.id, reason=reason, reports=reports)
        filled, _ = fill_totals(reports)
        remaining = request.qty - filled
        if remaining <= 0:
            reason = f"INCORRECT_QUANTITY: the new quantity {request.qty} must exceed the filled {filled}"
            return BrokerAck(accepted=False, cl_ord_id=new_cid, reason=reason, reports=reports)
        try:
            body = replace_body(request, instrument_of(request.symbol, self._map), remaining, expire_at=view.gtd_time)
        except ValueError as e:
            return BrokerAck(accepted=False, cl_ord_id=new_cid, reason=f"UNSUPPORTED: {e}")
        try:
            data = await self.rest.request("PUT", f"/orders/{view.id}", json_body=body)
        except OandaError as e:
            if e.reject_reason == "CLIENT_ORDER_ID_ALREADY_EXISTS":
                existing, _ = await self._current(new_cid)
                if existing is not None and existing.cl_ord_id == new_cid:
                    return BrokerAck(accepted=True, cl_ord_id=new_cid, broker_order_id=existing.id)
            return BrokerAck(
                accepted=False, cl_ord_id=new_cid, broker_order_id=view.id, reason=f"REPLACE_REJECTED: {e}"
            )
        done = await self._absorb_answer(data)
        create = data.get("orderCreateTransaction") if isinstance(data, dict) else None
        new_id = str(create.get("id")) if isinstance(create, dict) and create.get("id") else None
        return BrokerAck(accepted=True, cl_ord_id=new_cid, broker_order_id=new_id, reports=done)

    async def get_order_status(self, cl_ord_id: str) -> OrderStatusReport | None:
        """OANDA's view of the order (``@<id>``, following replacements; else its transactions) and its reports."""
        view, reports = await self._current(cl_ord_id)
        if view is None:
            return await self._journal_status(cl_ord_id, reports)
        return await self._status_report(view, reports)

    async def open_orders(self) -> list[OrderStatusReport]:
        """Every Exodus order OANDA still works (``GET …/pendingOrders``)."""
        await self.catch_up()
        data = await self.rest.get("/pendingOrders")
        result = []
        for item in (data or {}).get("orders") or []:
            view = self._view(item)
            cid = view.cl_ord_id
            if cid is None or not EXODUS_CL_ORD_ID.match(cid) or not view.working:
                continue
            reports = await self._journal.reports(base_order_id(cid))
            result.append(await self._status_report(view, reports))
        return result

    async def fills_since(self, since: datetime) -> list[ExecutionReport]:
        """Exodus orders' fills after ``since`` (the ``ORDER_FILL`` transactions, through the catch-up)."""
        await self.catch_up()
        return await self._journal.fills(since=since)

    async def positions(self) -> list[PositionReport]:
        """OANDA's open positions (``GET …/openPositions``): long units plus short units (negative)."""
        data = await self.rest.get("/openPositions")
        result = []
        for p in (data or {}).get("positions") or []:
            long, short = p.get("long") or {}, p.get("short") or {}
            long_units = decimal_of(long.get("units")) or _D(0)
            short_units = decimal_of(short.get("units")) or _D(0)
            qty = long_units + short_units
            if qty == 0:
                continue
            side = long if long_units != 0 else short
            result.append(
                PositionReport(
                    broker=self.name,
                    account=self.settings.account,
                    symbol=symbol_of(str(p.get("instrument")), self._map),
                    qty=qty,
                    avg_price=decimal_of(side.get("averagePrice")),
                )
            )
        return result

    async def account(self) -> AccountReport:
        """The account's NAV and margin (``GET …/summary``)."""
        data = await self.rest.get("/summary")
        a = (data or {}).get("account") or {}
        return AccountReport(
            currency=str(a.get("currency") or ""),
            balance=decimal_of(a.get("balance")),
            nav=decimal_of(a.get("NAV")),
            margin_used=decimal_of(a.get("marginUsed")),
            margin_available=decimal_of(a.get("marginAvailable")),
            unrealized_pl=decimal_of(a.get("unrealizedPL")),
            last_transaction_id=a.get("lastTransactionID"),
        )

    # -- OANDA's orders ----------------------------------------------------------------------------------------

    def _view(self, data: Any) -> OandaOrderView:
        if not isinstance(data, dict):
            raise BrokerUnavailable(f"{self.name}: an answer that is not an order: {str(data)[:200]}")
        try:
            return OandaOrderView.of(data)
        except ValueError as e:
            raise BrokerUnavailable(f"{self.name}: {e}") from e

    async def _order(self, specifier: str) -> OandaOrderView | None:
        """``GET …/orders/{specifier}``; None when OANDA does not have it (404)."""
        try:
            data = await self.rest.get(f"/orders/{specifier}")
        except OandaError as e:
            if e.status == 404:
                return None
            raise BrokerUnavailable(f"{self.name}: looking up order {specifier} was refused: {e}") from e
        return self._view((data or {}).get("order"))

    async def _current(self, cl_ord_id: str) -> tuple[OandaOrderView | None, list[ExecutionReport]]:
        """The order OANDA knows by ``cl_ord_id`` now (replacements followed), and its chain's reports.

        Every transaction is journaled by a catch-up first.
        ``@<id>`` may not find an order that is no longer pending (OANDA's client ids belong to pending orders): then
        the journal, which holds every transaction of the order read by the catch-up, names the current client id.
        """
        await self.catch_up()
        view = await self._order(f"@{cl_ord_id}")
        reports = await self._journal.reports(base_order_id(cl_ord_id))
        if view is None:
            current = self._current_cid(cl_ord_id, reports)
            if current is not None and current != cl_ord_id:
                view = await self._order(f"@{current}")
        for _ in range(50):
            if view is None or view.state != "CANCELLED" or not view.replaced_by:
                break
            view = await self._order(view.replaced_by)
        return view, reports

    @staticmethod
    def _current_cid(cl_ord_id: str, reports: list[ExecutionReport]) -> str | None:
        """The client id the chain's latest order has, per the journal (None: the journal never saw the order)."""
        if not any(r.cl_ord_id == cl_ord_id for r in reports):
            return None
        replaced = [r for r in reports if r.kind is ReportKind.REPLACED]
        return replaced[-1].cl_ord_id if replaced else cl_ord_id

    def _status_of(self, view: OandaOrderView, reports: list[ExecutionReport]) -> OrderStatus:
        if view.state == "FILLED":
            return OrderStatus.FILLED
        if view.state == "CANCELLED":
            mine = [r for r in reports if r.broker_order_id == view.id and r.kind in _TERMINAL_STATUS]
            return _TERMINAL_STATUS[mine[-1].kind] if mine else OrderStatus.CANCELED
        filled = any(r.kind is ReportKind.FILL for r in reports)
        return OrderStatus.PARTIALLY_FILLED if filled else OrderStatus.ACCEPTED

    async def _status_report(self, view: OandaOrderView, reports: list[ExecutionReport]) -> OrderStatusReport:
        cum, _ = fill_totals(reports)
        own, _ = fill_totals([r for r in reports if r.broker_order_id == view.id])
        is_stop = view.type in ("STOP", "MARKET_IF_TOUCHED")
        return self._order_status(
            reports,
            cl_ord_id=view.cl_ord_id or "",
            broker_order_id=view.id,
            qty=cum - own + view.qty,
            status=self._status_of(view, reports),
            price=None if is_stop else view.price,
            stop_price=view.price if is_stop else None,
        )

    async def _journal_status(self, cid: str, reports: list[ExecutionReport]) -> OrderStatusReport | None:
        """The order's status from its transactions alone (OANDA's ``@id`` no longer finds it), or None."""
        current = self._current_cid(cid, reports)
        if current is None:
            return None
        cum, _ = fill_totals(reports)
        record = await self._store.order(base_order_id(cid))
        qty = record.qty if record is not None else cum
        terminal = [r for r in reports if r.kind in _TERMINAL_STATUS]
        status = None  # working: partially filled or accepted
        if terminal:
            status = _TERMINAL_STATUS[terminal[-1].kind]
        elif cum >= qty > 0:
            status = OrderStatus.FILLED
        last = next((r for r in reversed(reports) if r.cl_ord_id == current), reports[-1])
        return self._order_status(
            reports, cl_ord_id=current, broker_order_id=last.broker_order_id, qty=qty, status=status
        )

    # -- turning transactions into reports ----------------------------------------------------------------------

    async def _absorb_answer(self, data: Any) -> list[ExecutionReport]:
        """Journal the transactions a POST/PUT answer carries (in id order); the reports they stand for."""
        if not isinstance(data, dict):
            return []
        txns = [data[k] for k in _ANSWER_TRANSACTIONS if isinstance(data.get(k), dict)]
        txns.sort(key=_txn_id)
        out = []
        async with self._lock:
            for txn in txns:
                report = await self._absorb(txn, source="answer")
                if report is not None:
                    out.append(report)
        return out

    async def _absorb(self, txn: dict[str, Any], *, source: str) -> ExecutionReport | None:
        """Journal (once) and deliver the report a transaction stands for (call under ``_lock``); None: none.

        A transaction journaled before gives the report journaled then (its totals were those of that moment).
        """
        self._seen = max(self._seen, _txn_id(txn))
        cid = _client_id_of(txn)
        if cid is None or not EXODUS_CL_ORD_ID.match(cid):
            return None
        chain = await self._journal.reports(base_order_id(cid))
        tid = str(txn.get("id") or "")
        known = next((r for r in chain if r.exec_id == tid), None)
        if known is not None:
            return known
        report = await self._report_of(txn, cid, chain)
        if report is None:
            return None
        await self._record(report, ref=report.broker_order_id, source=f"{source}:{txn.get('type')}")
        return report

    async def _report_of(self, txn: dict[str, Any], cid: str, chain: list[ExecutionReport]) -> ExecutionReport | None:
        """The report of one of our orders' transactions, given the reports of its chain journaled so far."""
        kind = str(txn.get("type") or "")
        tid = str(txn.get("id") or "")
        at = time_of(txn.get("time")) or utcnow()
        filled, _ = fill_totals(chain)
        if not tid:
            return None
        if kind in ORDER_CREATE_TYPES:
            units = decimal_of(txn.get("units"))
            if units is None:
                return None
            price = decimal_of(txn.get("price"))
            stop = ORDER_CREATE_TYPES[kind].needs_stop_price
            common: dict[str, Any] = {
                "broker": self.name,
                "exec_id": tid,
                "cl_ord_id": cid,
                "broker_order_id": tid,
                "symbol": symbol_of(str(txn.get("instrument")), self._map),
                "side": side_of(units),
                "transact_at": at,
            }
            if txn.get("reason") == "REPLACEMENT":
                total = filled + abs(units)
                await self._note(cid, tid, qty=total)
                return ExecutionReport(
                    kind=ReportKind.REPLACED,
                    cum_qty=filled,
                    leaves_qty=abs(units),
                    new_qty=total,
                    new_price=None if stop else price,
                    new_stop_price=price if stop else None,
                    **common,
                )
            await self._note(cid, tid)
            return ExecutionReport(kind=ReportKind.ACCEPTED, leaves_qty=abs(units), **common)
        if kind == "ORDER_FILL":
            units = decimal_of(txn.get("units"))
            price = decimal_of(txn.get("fullVWAP")) or decimal_of(txn.get("price"))
            if not units or not price:
                log.error("%s: fill transaction %s without units or a price: %s", self.name, tid, str(txn)[:300])
                return None
            qty = abs(units)
            cum = filled + qty
            record = await self._store.order(base_order_id(cid))
            total = record.qty if record is not None else cum
            commission = decimal_of(txn.get("commission")) or _D(0)
            return ExecutionReport(
                broker=self.name,
                exec_id=tid,
                kind=ReportKind.FILL,
                cl_ord_id=cid,
                broker_order_id=str(txn.get("orderID") or "") or None,
                symbol=symbol_of(str(txn.get("instrument")), self._map),
                side=side_of(units),
                last_qty=qty,
                last_price=price,
                cum_qty=cum,
                leaves_qty=max(total - cum, _D(0)),
                fee=abs(commission),
                transact_at=at,
            )
        if kind == "ORDER_CANCEL":
            reason = str(txn.get("reason") or "")
            if reason == "CLIENT_REQUEST_REPLACED" or txn.get("replacedByOrderID"):
                return None  # the replacement's creation is the REPLACED report
            record = await self._store.order(base_order_id(cid))
            first = chain[0] if chain else None
            if record is not None:
                symbol, side = record.symbol, record.side
            elif first is not None:
                symbol, side = first.symbol, first.side
            else:
                log.warning("%s: a cancel of %s, an order it knows nothing of", self.name, cid)
                return None
            return ExecutionReport(
                broker=self.name,
                exec_id=tid,
                kind=ReportKind.EXPIRED if reason == "TIME_IN_FORCE_EXPIRED" else ReportKind.CANCELED,
                cl_ord_id=cid,
                broker_order_id=str(txn.get("orderID") or "") or None,
                symbol=symbol,
                side=side,
                cum_qty=filled,
                reason=f"{reason or 'CANCELLED'} at OANDA",
                transact_at=at,
            )
        return None

    async def _note(self, cid: str, oanda_id: str, *, qty: Decimal | None = None) -> None:
        """Record OANDA's id of the chain's current order (and the new total after a replacement)."""
        record = await self._store.order(base_order_id(cid))
        if record is None:
            return
        if record.oanda_id == oanda_id and (qty is None or record.qty == qty):
            return
        if qty is not None or record.oanda_id is None:
            record.cl_ord_id, record.oanda_id = cid, oanda_id
            if qty is not None:
                record.qty = qty
            await self._store.save_order(record)

    # -- the catch-up and the stream ----------------------------------------------------------------------------

    async def catch_up(self) -> int:
        """Read every transaction after the cursor (``/transactions/sinceid``), journal it, move the cursor on.

        The first time ever (no cursor) the cursor starts at the account's last transaction. Returns the number of
        transactions read.
        """
        async with self._sync_lock:
            cursor = await self._store.cursor()
            if cursor is None:
                summary = await self.rest.get("/summary")
                last = int(((summary or {}).get("account") or {}).get("lastTransactionID") or 0)
                await self._store.advance(last)
                self._seen = max(self._seen, last)
                return 0
            read = 0
            while True:
                data = await self.rest.get("/transactions/sinceid", params={"id": str(cursor)})
                txns = sorted((t for t in (data or {}).get("transactions") or [] if isinstance(t, dict)), key=_txn_id)
                last = int((data or {}).get("lastTransactionID") or cursor)
                async with self._lock:
                    for txn in txns:
                        if _txn_id(txn) > cursor:
                            await self._absorb(txn, source="sinceid")
                read += len(txns)
                top = max((_txn_id(t) for t in txns), default=cursor)
                if txns and top < last:
                    cursor = top  # a page: read on from its last transaction
                    await self._store.advance(cursor)
                    continue
                cursor = max(cursor, last, top)
                await self._store.advance(cursor)
                self._seen = max(self._seen, cursor)
                return read

    async def _stream_forever(self) -> None:
        delay = 0.2
        while True:
            try:
                await self._stream_once()
                self._session(False, "the transaction stream ended")
                log.info("%s: the transaction stream ended; reconnecting", self.name)
            except asyncio.CancelledError:
                raise
            except Exception as e:
                self._session(False, f"the transaction stream is down: {e}")
                log.warning("%s: the transaction stream failed (%s); reconnecting in %.1fs", self.name, e, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)
                continue
            delay = 0.2

    async def _connected(self) -> None:
        # Connected: whatever happened while nobody listened comes from the transactions, then the stream.
        self.connections += 1
        await self.catch_up()
        self.catch_ups += 1
        self.caught_up.set()
        self._session(True, "transaction stream connected")

    async def _stream_once(self) -> None:
        async for line in self.rest.stream_lines("/transactions/stream", on_open=self._connected):
            try:
                message = loads(line)
            except ValueError:
                log.warning("%s: a stream line that is not JSON: %r", self.name, line[:200])
                continue
            if not isinstance(message, dict):
                continue
            if message.get("type") == "HEARTBEAT":
                self.heartbeats += 1
                last = int(message.get("lastTransactionID") or 0)
                if last > self._seen:
                    await self.catch_up()  # a transaction the stream did not show: read it
                continue
            async with self._lock:
                await self._absorb(message, source="stream")


def _txn_id(txn: dict[str, Any]) -> int:
    try:
        return int(str(txn.get("id")))
    except ValueError:
        return 0


def _client_id_of(txn: dict[str, Any]) -> str | None:
    """Our client order id in a transaction: ``clientExtensions.id`` of an order's creation, else ``clientOrderID``."""
    ext = txn.get("clientExtensions")
    cid = ext.get("id") if isinstance(ext, dict) else None
    if cid is None:
        cid = txn.get("clientOrderID")
    return cid if isinstance(cid, str) else None
