"""The Kraken broker: the ``Broker`` protocol over Kraken's spot REST API.

::

    submit_order ──AddOrder (cl_ord_id, deadline)──▶ Kraken      poll (every poll_interval, and at once after a
    cancel_order ──CancelOrder (cl_ord_id)─────────▶             request): QueryOrders(trades) of the open orders,
    replace_order ─AmendOrder (cl_ord_id; in place)─▶            QueryTrades of new trade ids ──▶ reports, journaled
    get_order_status ─OpenOrders/ClosedOrders(cl_ord_id)         once per exec id, then delivered ─▶ sink

* **Unknown is not failed.** A timeout, a dropped connection, an HTTP 5xx (a 502 may hide an executed order),
  ``EService:*`` or ``EGeneral:Internal error`` on a write raises ``BrokerUnavailable``: the order workflow asks by
  our ``cl_ord_id`` (``OpenOrders`` then ``ClosedOrders`` by Kraken's ``cl_ord_id``; ``QueryOrders`` cannot) before
  anything is sent again. Kraken refuses a second order under a ``cl_ord_id`` only while the first is open, so
  ``submit_order`` itself looks up before sending an order it has sent before, and ``EAPI:Invalid nonce`` on
  AddOrder is looked up before the one resend. ``deadline`` on AddOrder and AmendOrder makes the engine refuse a
  request that arrives late.
* **One fill, one exec id, whichever way it came**: the exec id of a fill is Kraken's trade txid; the poll, a
  status lookup and ``fills_since`` all name a fill by it.
* **Replace** is AmendOrder: the order keeps its txid and Kraken's ``cl_ord_id``; the REPLACED report (exec id
  ``<txid>:amend:<amend_id>``) names our new ``cl_ord_id``. An amend whose answer was lost is found in
  ``OrderAmends`` (a user amend not reported yet) by the next lookup.
* **Reports survive restarts**: journaled (``broker_reports``) before delivery; what was journaled and not delivered
  is delivered again by ``start()``. Storage failures are ``BrokerUnavailable`` (``storage_boundary``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import datetime
from decimal import Decimal
from typing import Any

from brokers.base import ReportSink, storage_boundary
from brokers.journal import JournaledBroker, fill_totals
from brokers.kraken.client import KrakenError, KrakenRest, NonceRefused, NonceSource
from brokers.kraken.config import (
    EXODUS_CL_ORD_ID,
    KRAKEN_CAPABILITIES,
    KRAKEN_PAIRS,
    kraken_cl_ord_id,
    pair_of_kraken,
)
from brokers.kraken.parsing import KrakenOrderView, KrakenTrade, amend_fields, decimal_of, order_fields
from brokers.kraken.store import KrakenOrder, KrakenStore, PendingAmend
from brokers.sessions import SessionRecorder
from core.domain import (
    BrokerAck,
    CancelOrder,
    ExecutionReport,
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
from core.marketdata import Quote, QuoteSink
from core.settings import KrakenSettings

__all__ = ["KRAKEN_CAPABILITIES", "KrakenBroker"]

log = logging.getLogger(__name__)

_D = Decimal
_TERMINAL = {"canceled": ReportKind.CANCELED, "expired": ReportKind.EXPIRED}
#: Trading-counter penalty of a cancel by the order's age (seconds), BROKERS.md §3.
_CANCEL_PENALTY = ((5, 8.0), (10, 6.0), (15, 5.0), (45, 4.0), (90, 2.0))


@storage_boundary
class KrakenBroker(JournaledBroker):
    """Orders at Kraken spot (or the local Kraken venue)."""

    capabilities = KRAKEN_CAPABILITIES
    settings_section = "kraken"
    store_class = KrakenStore

    def __init__(
        self,
        settings: KrakenSettings,
        *,
        store: KrakenStore,
        name: str = "kraken",
        recorder: SessionRecorder | None = None,
        quotes: QuoteSink | None = None,
        instruments: InstrumentCatalog | None = None,
        http_hooks: dict[str, list[Any]] | None = None,
    ) -> None:
        """An adapter with ``settings`` (key, URL, tier), keeping its records in ``store``.

        ``http_hooks``: httpx event hooks on every REST call (the tests check each answer against Kraken's spec).
        """
        if settings.api_key is None or settings.api_secret is None:
            raise ConfigError(
                "the Kraken broker needs an API key: set EXODUS_KRAKEN__API_KEY and EXODUS_KRAKEN__API_SECRET "
                "(or EXODUS_KRAKEN__LOCAL_VENUE=true for the local venue)"
            )
        self._init_reports(name, store.journal, recorder)
        self.settings = settings
        self._store = store
        self.rest = KrakenRest(settings, name=name, event_hooks=http_hooks)
        if recorder is not None:
            recorder.last_call = lambda: self.rest.last_ok_at  # the broker-health page's last successful call
        self._quotes = quotes
        symbols = list(settings.quote_symbols) or [s for s in KRAKEN_PAIRS if instruments is None or s in instruments]
        self._quote_symbols = [s for s in symbols if s in KRAKEN_PAIRS]
        #: Serializes turning Kraken's answers into reports (fills are deltas over what was journaled).
        self._lock = asyncio.Lock()
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._up: bool | None = None
        #: Completed polls; set after the first one of this process (and cleared while polls fail).
        self.polls = 0
        self.caught_up = asyncio.Event()

    # -- lifecycle -------------------------------------------------------------------------------------------

    async def start(self, sink: ReportSink) -> None:
        """Deliver what a previous run left undelivered, restore the nonce floor, then poll (it catches up)."""
        key = self.settings.api_key.get_secret_value() if self.settings.api_key else ""

        async def reserve(ceiling: int) -> int:
            return await self._store.reserve_nonces(key, ceiling)

        self.rest.nonces = NonceSource(floor=await self._store.nonce_ceiling(key), reserve=reserve)
        await self._start_reports(sink)
        self._tasks.append(asyncio.create_task(self._poll_forever(), name=f"{self.name}-poll"))
        if self._quotes is not None and self.settings.quote_interval_ms > 0 and self._quote_symbols:
            self._tasks.append(asyncio.create_task(self._quote_forever(), name=f"{self.name}-quotes"))

    async def close(self) -> None:
        """Stop polling, the quotes and the delivery (idempotent)."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks.clear()
        await self._stop_reports(self.rest)

    def _state(self, up: bool, detail: str) -> None:
        if up != self._up:
            self._up = up
            if self._recorder is not None:
                self._recorder.changed(up, detail)
        if not up:
            self.caught_up.clear()

    # -- requests --------------------------------------------------------------------------------------------

    async def submit_order(self, order: SubmitOrder) -> BrokerAck:
        """AddOrder; a definite refusal is an unaccepted ack, an unknown outcome ``BrokerUnavailable``."""
        cid = order.cl_ord_id
        try:
            fields = order_fields(order, now=utcnow(), deadline_seconds=self.settings.deadline_seconds)
        except ValueError as e:
            return BrokerAck(accepted=False, cl_ord_id=cid, reason=f"UNSUPPORTED: {e}")
        now = utcnow()
        record, created = await self._store.add_order(
            KrakenOrder(
                order_id=base_order_id(cid),
                cl_ord_id=cid,
                kraken_cl_ord_id=fields["cl_ord_id"],
                account=order.account,
                symbol=order.symbol,
                side=order.side,
                qty=order.qty,
                created_at=now,
                updated_at=now,
            )
        )
        if not created:
            # Sent before (an answer lost, a retry): Kraken dedupes open orders only, so ask before sending again.
            found = await self._duplicate(record)
            if found is not None:
                return found
        pair = fields["pair"]
        for _attempt in range(3):
            try:
                result = await self.rest.private("AddOrder", fields, pair=pair)
                break
            except NonceRefused:
                found = await self._duplicate(record)
                if found is not None:  # it arrived after all: never send it again
                    return found.model_copy(update={"accepted": True, "reason": None})
                fields = {
                    **fields,
                    **order_fields(order, now=utcnow(), deadline_seconds=self.settings.deadline_seconds),
                }
            except KrakenError as e:
                if e.has("EOrder:Duplicate"):
                    found = await self._duplicate(record)
                    if found is not None:
                        return found
                    return BrokerAck(accepted=False, cl_ord_id=cid, reason=f"DUPLICATE_CLIENT_ORDER_ID: {e}")
                if record.cl_ord_id == cid and record.status is OrderStatus.SUBMITTED:
                    record.status = OrderStatus.REJECTED
                    await self._store.save_order(record)
                return BrokerAck(accepted=False, cl_ord_id=cid, reason=f"REJECTED by Kraken: {e}")
        else:
            raise BrokerUnavailable(f"{self.name}: AddOrder {cid}: the nonce was refused three times; not sent")
        txids = (result or {}).get("txid") if isinstance(result, dict) else None
        if not txids:
            raise BrokerUnavailable(f"{self.name}: AddOrder {cid} answered without a txid: {str(result)[:200]}")
        txid = str(txids[0])
        reports: list[ExecutionReport] = []
        async with self._lock:
            record = await self._store.order(record.order_id) or record
            record.txid = txid
            if record.status is OrderStatus.SUBMITTED:
                record.status = OrderStatus.ACCEPTED
            await self._store.save_order(record)
            report = self._report(record, ReportKind.ACCEPTED, f"{txid}:new", txid=txid, transact_at=now)
            await self._record(report, ref=txid, source="answer")
            reports.append(report)
        self._wake.set()
        return BrokerAck(accepted=True, cl_ord_id=cid, broker_order_id=txid, reports=reports)

    async def _duplicate(self, record: KrakenOrder) -> BrokerAck | None:
        """The refusal of a resend when Kraken has the order already (None: it does not, send it)."""
        view = await self._find(record)
        if view is None:
            return None
        reports = await self._absorb(view, record, source="status")
        return BrokerAck(
            accepted=False,
            cl_ord_id=record.cl_ord_id,
            broker_order_id=view.txid,
            reason=f"DUPLICATE_CLIENT_ORDER_ID: Kraken has {record.kraken_cl_ord_id} already ({view.status})",
            reports=reports,
        )

    async def cancel_order(self, request: CancelOrder) -> BrokerAck:
        """CancelOrder by ``cl_ord_id``; a canceled order is accepted, a closed one too late."""
        cid = request.cl_ord_id
        record = await self._record_of(cid)
        view = (
            await self._find(record)
            if record is not None
            else await self._find_cl(kraken_cl_ord_id(base_order_id(cid)))
        )
        if view is None:
            return BrokerAck(
                accepted=False, cl_ord_id=cid, not_found=True, reason=f"UNKNOWN_ORDER: Kraken has no {cid}"
            )
        record = record or await self._adopt(view, cid)
        reports = await self._absorb(view, record, source="status")
        ended = self._cancel_ended(cid, record, view, reports)
        if ended is not None:
            return ended
        age = (utcnow() - view.opentm).total_seconds() if view.opentm else 0.0
        penalty = next((p for limit, p in _CANCEL_PENALTY if age < limit), 0.0)
        pair = KRAKEN_PAIRS[record.symbol].altname if record.symbol in KRAKEN_PAIRS else None
        try:
            await self.rest.private(
                "CancelOrder", {"cl_ord_id": record.kraken_cl_ord_id}, pair=pair, trading_cost=penalty
            )
        except KrakenError as e:
            if not e.has("EOrder:Unknown order"):
                return BrokerAck(accepted=False, cl_ord_id=cid, broker_order_id=view.txid, reason=f"REFUSED: {e}")
        again = await self._find(record)
        if again is not None:
            reports += await self._absorb(again, record, source="status")
            ended = self._cancel_ended(cid, record, again, reports)
            if ended is not None:
                return ended
        # Kraken took the cancel ("pending" cancellation): the poll reports the CANCELED.
        self._wake.set()
        return BrokerAck(accepted=True, cl_ord_id=record.cl_ord_id, broker_order_id=view.txid, reports=reports)

    @staticmethod
    def _cancel_ended(
        cid: str, record: KrakenOrder, view: KrakenOrderView, reports: list[ExecutionReport]
    ) -> BrokerAck | None:
        """The cancel's answer once ``view`` has ended: accepted when canceled, else too late (None: working)."""
        if view.status == "canceled":
            return BrokerAck(accepted=True, cl_ord_id=record.cl_ord_id, broker_order_id=view.txid, reports=reports)
        if not view.working:
            return BrokerAck(
                accepted=False,
                cl_ord_id=cid,
                broker_order_id=view.txid,
                reason=f"TOO_LATE: the order is {view.status} at Kraken",
                reports=reports,
            )
        return None

    async def replace_order(self, request: ReplaceOrder) -> BrokerAck:
        """AmendOrder in place: the order keeps its txid and Kraken's cl_ord_id, and takes our new ``cl_ord_id``."""
        new_cid = request.cl_ord_id
        record = await self._record_of(request.orig_cl_ord_id)
        view = await self._find(record) if record is not None else None
        if record is None or view is None:
            return BrokerAck(
                accepted=False,
                cl_ord_id=request.orig_cl_ord_id,
                not_found=True,
                reason=f"UNKNOWN_ORDER: Kraken has no {request.orig_cl_ord_id}",
            )
        reports = await self._absorb(view, record, source="status")
        record = await self._store.order(record.order_id) or record
        if record.cl_ord_id == new_cid:  # amended already (an earlier attempt whose answer was lost)
            return BrokerAck(accepted=True, cl_ord_id=new_cid, broker_order_id=view.txid, reports=reports)
        if not view.working:
            return BrokerAck(
                accepted=False,
                cl_ord_id=new_cid,
                broker_order_id=view.txid,
                reason=f"TOO_LATE: the order is {view.status} at Kraken",
                reports=reports,
            )
        if request.qty <= view.vol_exec:
            reason = f"INCORRECT_QUANTITY: the new quantity {request.qty} must exceed the filled {view.vol_exec}"
            return BrokerAck(accepted=False, cl_ord_id=new_cid, reason=reason, reports=reports)
        async with self._lock:
            record.pending_amend = PendingAmend(
                cl_ord_id=new_cid, qty=request.qty, price=request.price, stop_price=request.stop_price
            )
            await self._store.save_order(record)
        fields = amend_fields(request, now=utcnow(), deadline_seconds=self.settings.deadline_seconds)
        fields["cl_ord_id"] = record.kraken_cl_ord_id
        try:
            result = await self.rest.private("AmendOrder", fields, pair=KRAKEN_PAIRS[record.symbol].altname)
        except KrakenError as e:
            async with self._lock:
                record = await self._store.order(record.order_id) or record
                record.pending_amend = None
                await self._store.save_order(record)
            return BrokerAck(
                accepted=False, cl_ord_id=new_cid, broker_order_id=view.txid, reason=f"REPLACE_REJECTED: {e}"
            )
        amend_id = str((result or {}).get("amend_id") or "") if isinstance(result, dict) else ""
        if not amend_id:
            raise BrokerUnavailable(f"{self.name}: AmendOrder answered without an amend_id: {str(result)[:200]}")
        async with self._lock:
            record = await self._store.order(record.order_id) or record
            report = await self._amended(record, view, amend_id, source="answer")
        return BrokerAck(
            accepted=True,
            cl_ord_id=new_cid,
            broker_order_id=view.txid,
            reports=[*reports, *([report] if report else [])],
        )

    async def get_order_status(self, cl_ord_id: str) -> OrderStatusReport | None:
        """Kraken's view of the order (by Kraken's cl_ord_id of it) with every report recorded, or None."""
        record = await self._record_of(cl_ord_id)
        if record is None:
            view = await self._find_cl(kraken_cl_ord_id(base_order_id(cl_ord_id)))
            if view is None:
                return None
            record = await self._adopt(view, cl_ord_id)
        else:
            view = await self._find(record)
            if view is None:
                return None
        await self._absorb(view, record, source="status")
        record = await self._store.order(record.order_id) or record
        return await self._status_report(view, record)

    async def open_orders(self) -> list[OrderStatusReport]:
        """Every Exodus order Kraken still works (``OpenOrders``)."""
        result = await self.rest.private("OpenOrders", {"trades": True})
        out = []
        for txid, data in ((result or {}).get("open") or {}).items():
            view = self._view(txid, data)
            if not view.kraken_cl_ord_id:
                continue
            record = await self._store.by_kraken_cl_ord_id(view.kraken_cl_ord_id)
            if record is None:
                if not EXODUS_CL_ORD_ID.match(view.kraken_cl_ord_id):
                    continue  # not ours
                record = await self._adopt(view, view.kraken_cl_ord_id)
            await self._absorb(view, record, source="status")
            record = await self._store.order(record.order_id) or record
            out.append(await self._status_report(view, record))
        return out

    async def fills_since(self, since: datetime) -> list[ExecutionReport]:
        """Exodus orders' fills after ``since``, from ``TradesHistory``."""
        fills = []
        for trade in await self._trades_since(since.timestamp()):
            record = await self._store.by_txid(trade.ordertxid)
            if record is not None:
                fills.append(self._fill(record, trade, cum=None, leaves=None))
        return fills

    async def positions(self) -> list[PositionReport]:
        """Kraken's balances of the base assets Exodus trades, as positions (spot: never short)."""
        balances = await self.rest.private("Balance")
        out = []
        seen: set[str] = set()
        for pair in KRAKEN_PAIRS.values():
            qty = decimal_of((balances or {}).get(pair.base))
            if qty is None or pair.base in seen:
                continue
            seen.add(pair.base)
            out.append(PositionReport(broker=self.name, account=self.settings.account, symbol=pair.symbol, qty=qty))
        return out

    # -- Kraken's orders -------------------------------------------------------------------------------------

    def _view(self, txid: str, data: Any) -> KrakenOrderView:
        if not isinstance(data, dict):
            raise BrokerUnavailable(f"{self.name}: an answer that is not an order: {str(data)[:200]}")
        try:
            return KrakenOrderView.of(txid, data)
        except ValueError as e:
            raise BrokerUnavailable(f"{self.name}: {e}") from e

    async def _record_of(self, cl_ord_id: str) -> KrakenOrder | None:
        return await self._store.order(base_order_id(cl_ord_id))

    async def _find(self, record: KrakenOrder) -> KrakenOrderView | None:
        """Kraken's order of ``record``: by txid when known, else by Kraken's cl_ord_id (open, then closed)."""
        if record.txid:
            result = await self.rest.private("QueryOrders", {"txid": record.txid, "trades": True})
            data = (result or {}).get(record.txid)
            if data is not None:
                return self._view(record.txid, data)
        return await self._find_cl(record.kraken_cl_ord_id)

    async def _find_cl(self, kraken_id: str) -> KrakenOrderView | None:
        """The order Kraken knows by its ``cl_ord_id`` ``kraken_id``: ``OpenOrders``, then ``ClosedOrders`` (latest)."""
        result = await self.rest.private("OpenOrders", {"cl_ord_id": kraken_id, "trades": True})
        opens = [self._view(t, d) for t, d in ((result or {}).get("open") or {}).items()]
        if opens:
            return opens[0]
        result = await self.rest.private("ClosedOrders", {"cl_ord_id": kraken_id, "trades": True})
        closed = [self._view(t, d) for t, d in ((result or {}).get("closed") or {}).items()]
        closed = [v for v in closed if v.kraken_cl_ord_id == kraken_id]
        if not closed:
            return None
        return max(closed, key=lambda v: v.opentm or utcnow())

    async def _adopt(self, view: KrakenOrderView, cl_ord_id: str) -> KrakenOrder:
        """A record for an order Kraken has and the records lack (sent by a process whose records are gone)."""
        now = utcnow()
        record, _ = await self._store.add_order(
            KrakenOrder(
                order_id=base_order_id(cl_ord_id),
                cl_ord_id=cl_ord_id,
                kraken_cl_ord_id=view.kraken_cl_ord_id or kraken_cl_ord_id(base_order_id(cl_ord_id)),
                txid=view.txid,
                account=self.settings.account,
                symbol=view.symbol,
                side=view.side,
                qty=view.vol,
                status=OrderStatus.ACCEPTED,
                created_at=view.opentm or now,
                updated_at=now,
            )
        )
        return record

    async def _status_report(self, view: KrakenOrderView, record: KrakenOrder) -> OrderStatusReport:
        return self._order_status(
            await self._journal.reports(record.order_id),
            cl_ord_id=record.cl_ord_id,
            broker_order_id=view.txid,
            qty=view.vol,
            status=view.final_status,
            price=view.limit_price,
            stop_price=view.stop_price,
        )

    # -- turning Kraken's answers into reports ----------------------------------------------------------------

    def _report(
        self, record: KrakenOrder, kind: ReportKind, exec_id: str, *, txid: str, **fields: Any
    ) -> ExecutionReport:
        return ExecutionReport(
            broker=self.name,
            exec_id=exec_id,
            kind=kind,
            cl_ord_id=fields.pop("cl_ord_id", None) or record.cl_ord_id,
            broker_order_id=txid,
            symbol=record.symbol,
            side=record.side,
            transact_at=fields.pop("transact_at", None) or utcnow(),
            **fields,
        )

    def _fill(
        self, record: KrakenOrder, trade: KrakenTrade, *, cum: Decimal | None, leaves: Decimal | None
    ) -> ExecutionReport:
        return self._report(
            record,
            ReportKind.FILL,
            trade.txid,
            txid=trade.ordertxid,
            last_qty=trade.vol,
            last_price=trade.price,
            cum_qty=cum if cum is not None else trade.vol,
            leaves_qty=leaves if leaves is not None else _D(0),
            transact_at=trade.time,
        )

    async def _absorb(self, view: KrakenOrderView, record: KrakenOrder, *, source: str) -> list[ExecutionReport]:
        """Record what ``view`` shows that was not recorded: acceptance, fills, an amend, the end.

        Returns every report that stands for it now (recorded now or before), for the answer's ``reports``.
        """
        out: list[ExecutionReport] = []
        async with self._lock:
            record = await self._store.order(record.order_id) or record
            changed = False
            if record.txid != view.txid:
                record.txid, changed = view.txid, True
            if record.status is OrderStatus.SUBMITTED:
                record.status, changed = OrderStatus.ACCEPTED, True
            accepted = self._report(
                record, ReportKind.ACCEPTED, f"{view.txid}:new", txid=view.txid, transact_at=view.opentm
            )
            if not await self._journal.has(accepted.exec_id):
                await self._record(accepted, ref=view.txid, source=source)
                out.append(accepted)
            if record.pending_amend is not None:
                report = await self._resolve_amend(record, view, source=source)
                if report is not None:
                    out.append(report)
                record = await self._store.order(record.order_id) or record
            known, _ = await self._journal.filled(view.txid)
            if view.vol_exec > known:
                out += await self._new_fills(record, view, known, source=source)
            kind = _TERMINAL.get(view.status)
            if kind is not None:
                report = self._report(
                    record,
                    kind,
                    f"{view.txid}:{view.status}",
                    txid=view.txid,
                    reason=f"{view.status} at Kraken" + (f": {view.reason}" if view.reason else ""),
                    cum_qty=view.vol_exec,
                    leaves_qty=_D(0),
                    transact_at=view.closetm,
                )
                await self._record(report, ref=view.txid, source=source)
                out.append(report)
            final = view.final_status
            if final is not None and record.open and view.vol_exec <= (await self._journal.filled(view.txid))[0]:
                record.status, record.pending_amend, changed = final, None, True
            if changed:
                await self._store.save_order(record)
        return out

    async def _new_fills(
        self, record: KrakenOrder, view: KrakenOrderView, known: Decimal, *, source: str
    ) -> list[ExecutionReport]:
        """The fills of ``view`` beyond ``known`` (call under the lock), from its trade ids or TradesHistory."""
        new_ids = [t for t in view.trades if not await self._journal.has(t)]
        trades: list[KrakenTrade] = []
        for i in range(0, len(new_ids), 20):
            result = await self.rest.private("QueryTrades", {"txid": ",".join(new_ids[i : i + 20])})
            trades += [KrakenTrade.of(t, d) for t, d in (result or {}).items() if isinstance(d, dict)]
        if not view.trades:
            start = (view.opentm.timestamp() - 1) if view.opentm else 0
            trades = [
                t
                for t in await self._trades_since(start)
                if t.ordertxid == view.txid and not await self._journal.has(t.txid)
            ]
        trades.sort(key=lambda t: (t.time or utcnow(), t.txid))
        chain, _ = fill_totals(await self._journal.reports(record.order_id))
        out = []
        own = known
        for trade in trades:
            chain += trade.vol
            own += trade.vol
            report = self._fill(record, trade, cum=chain, leaves=max(view.vol - own, _D(0)))
            if await self._record(report, ref=view.txid, source=source if source != "status" else "trades"):
                out.append(report)
        if own < view.vol_exec:
            log.warning("%s: %s shows %s executed, trades found for %s", self.name, view.txid, view.vol_exec, own)
        return out

    async def _trades_since(self, start: float) -> list[KrakenTrade]:
        out: list[KrakenTrade] = []
        ofs = 0
        while True:
            result = await self.rest.private("TradesHistory", {"start": f"{start:.4f}", "ofs": ofs})
            page = (result or {}).get("trades") or {}
            out += [KrakenTrade.of(t, d) for t, d in page.items() if isinstance(d, dict)]
            ofs += len(page)
            if len(page) < 50 or ofs >= int((result or {}).get("count") or 0):
                return out

    async def _resolve_amend(
        self, record: KrakenOrder, view: KrakenOrderView, *, source: str
    ) -> ExecutionReport | None:
        """Whether the pending amend happened: a user amend in ``OrderAmends`` not reported yet (under the lock)."""
        result = await self.rest.private("OrderAmends", {"order_id": view.txid})
        amends = [a for a in (result or {}).get("amends") or [] if isinstance(a, dict)]
        new = [a for a in amends if a.get("amend_type") == "user" and str(a.get("amend_id")) not in record.amend_ids]
        if new:
            return await self._amended(record, view, str(new[-1]["amend_id"]), source=source)
        if not view.working:
            record.pending_amend = None  # it can no longer happen
            await self._store.save_order(record)
        return None

    async def _amended(
        self, record: KrakenOrder, view: KrakenOrderView, amend_id: str, *, source: str
    ) -> ExecutionReport | None:
        """Record the pending amend as done under ``amend_id`` (call under the lock)."""
        pending = record.pending_amend
        if pending is None or amend_id in record.amend_ids:
            return None
        chain, _ = fill_totals(await self._journal.reports(record.order_id))
        report = self._report(
            record,
            ReportKind.REPLACED,
            f"{view.txid}:amend:{amend_id}",
            txid=view.txid,
            cl_ord_id=pending.cl_ord_id,
            cum_qty=chain,
            leaves_qty=max(pending.qty - chain, _D(0)),
            new_qty=pending.qty,
            new_price=pending.price,
            new_stop_price=pending.stop_price,
        )
        await self._record(report, ref=view.txid, source=source)
        record.cl_ord_id, record.qty = pending.cl_ord_id, pending.qty
        record.amend_ids = [*record.amend_ids, amend_id]
        record.pending_amend = None
        await self._store.save_order(record)
        return report

    # -- polling --------------------------------------------------------------------------------------------

    async def poll(self) -> int:
        """One poll of every open order (``QueryOrders`` with trades); the number of orders looked at."""
        records = await self._store.open_orders()
        with_txid = [r for r in records if r.txid]
        seen = 0
        for i in range(0, len(with_txid), 50):
            batch = with_txid[i : i + 50]
            result = await self.rest.private(
                "QueryOrders", {"txid": ",".join(r.txid or "" for r in batch), "trades": True}
            )
            for record in batch:
                data = (result or {}).get(record.txid)
                if data is not None:
                    await self._absorb(self._view(record.txid or "", data), record, source="poll")
                    seen += 1
        cutoff = self.settings.request_timeout_seconds
        for record in records:
            if record.txid is None and (utcnow() - record.created_at).total_seconds() > cutoff:
                view = await self._find_cl(record.kraken_cl_ord_id)  # an AddOrder whose answer was lost
                if view is not None:
                    await self._absorb(view, record, source="poll")
                    seen += 1
        return seen

    async def _poll_forever(self) -> None:
        delay = self.settings.poll_interval_ms / 1000
        failing = 0
        while True:
            try:
                # The poll takes only the upper half of the call counter's room: requests and lookups keep the rest.
                while self.rest.calls.value() + 1 > self.rest.calls.limit / 2:
                    await asyncio.sleep(max(1 / max(self.rest.calls.decay, 0.01), 0.05))
                await self.poll()
                self.polls += 1
                self._state(True, f"polling {self.settings.base_url}")
                self.caught_up.set()
                failing = 0
            except asyncio.CancelledError:
                raise
            except Exception as e:
                failing += 1
                if failing == 1 or failing % 20 == 0:
                    log.warning("%s: polling failed (%s); retrying", self.name, e)
                if failing >= 3:
                    self._state(False, f"polling fails: {e}"[:200])
            self._wake.clear()
            # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancellation that meets its timeout,
            # and close() would wait for this task forever.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay * (1 if not failing else min(2**failing, 30))):
                    await self._wake.wait()

    async def _quote_forever(self) -> None:
        assert self._quotes is not None
        names = {KRAKEN_PAIRS[s].altname: s for s in self._quote_symbols}
        failing = False
        while True:
            try:
                result = await self.rest.public("Ticker", {"pair": ",".join(names)})
                for name, tick in (result or {}).items():
                    pair = pair_of_kraken(name)
                    if pair is None or not isinstance(tick, dict):
                        continue
                    bid = decimal_of((tick.get("b") or [None])[0])
                    ask = decimal_of((tick.get("a") or [None])[0])
                    if (bid and bid > 0) or (ask and ask > 0):
                        await self._quotes(
                            Quote(symbol=pair.symbol, source=self.name, bid=bid or None, ask=ask or None, at=utcnow())
                        )
                failing = False
            except asyncio.CancelledError:
                raise
            except Exception as e:
                if not failing:
                    log.warning("%s: asking for tickers failed (%s); retrying every interval", self.name, e)
                failing = True
            await asyncio.sleep(self.settings.quote_interval_ms / 1000)
