"""The Interactive Brokers adapter: the ``Broker`` protocol over TWS/IB Gateway's socket API, with ``ib_async``.

::

    submit_order ──placeOrder(new id, orderRef = client order id)──▶ TWS ──openOrder / orderStatus──▶ ACCEPTED
    replace_order ─placeOrder(same id, new terms, new orderRef)────▶     ──openOrder (new orderRef)──▶ REPLACED
    cancel_order ──cancelOrder(id)─────────────────────────────────▶     ──error 202 + Cancelled─────▶ CANCELED
                                                                          ──error 201 + "Cancelled"───▶ REJECTED
                                                                          ──execDetails + commission──▶ FILL (execId)
    after every (re)connect, for every status lookup and for every broker sweep (open_orders):
                   reqExecutions, reqAllOpenOrders, reqCompletedOrders

IB's traps, and what the adapter does about each:

* **Order ids only grow.** An API order id at or below one already used is refused (103), and a Gateway restarted
  overnight can announce a ``nextValidId`` below ids used before. The adapter keeps the highest id it ever used
  (``ib_order_id_marks``) and places every order above both; the mark is written *before* the order is sent.
* **placeOrder with a working order's id modifies it.** So a resend never reuses an id, and a resend of a lost
  submission first looks the order up by its ``orderRef`` (open orders, completed orders, executions): found, the
  resend is refused as a duplicate; not found, it goes out under a new id.
* **orderStatus repeats.** Reports are derived from state (the order's status, its executions), each under one
  exec id, and journaled once (``broker_reports``), so a repeated status books nothing twice.
* **"Cancelled" can be a reject.** IB answers a refused order with an error event (201 and kin) and then status
  Cancelled; the adapter keeps the error (``ib_orders.reject_reason``) and completed orders' ``completedStatus``
  ("Rejected..."), and books REJECTED, not CANCELED. ib_async itself marks a trade Cancelled on any error, even a
  refused modification of a working order: those local statuses are ignored (only the wire's are read).
* **Connectivity.** 1100 (TWS lost IB) marks the session down: new orders are refused with BROKER_UNAVAILABLE
  while orders in flight stay so; 1101/1102 bring it back with a resync. A dropped socket (the nightly reset, a
  Gateway restart) reconnects with backoff, then resyncs executions and open and completed orders.
* **Pacing.** ib_async queues messages beyond ``max_messages_per_second`` (IB allows about 50).
* **Unknown is not failed.** No answer within ``request_timeout_seconds``, or a dropped connection, is
  ``BrokerUnavailable``; only an error event refuses.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from brokers.base import ReportSink, storage_boundary
from brokers.ib.config import EXODUS_CL_ORD_ID, IB_CAPABILITIES, IB_DONE, IB_WARNINGS, IB_WORKING
from brokers.ib.marketdata import QuotePoller
from brokers.ib.parsing import contract_fields, decimal_of, domain_symbol, order_fields, status_of
from brokers.ib.store import IBOrder, IBStore
from brokers.journal import ReportDelivery
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
    revision_of,
    utcnow,
)
from core.errors import BrokerUnavailable
from core.instruments import InstrumentCatalog
from core.marketdata import QuoteSink
from core.settings import IBSettings, Settings
from store import Pool

__all__ = ["IB_CAPABILITIES", "IBBroker"]

log = logging.getLogger(__name__)

_D = Decimal
#: Connectivity codes: lost, restored with data lost, restored with data kept.
_LOST, _RESTORED_LOST, _RESTORED = 1100, 1101, 1102
#: Codes that answer a cancel.
_CANCELED = 202
_NOT_CANCELABLE = frozenset({161, 10147, 10148})


@dataclass
class _Pending:
    """A request waiting for IB's answer about one API order id."""

    kind: str  # submit, modify, cancel
    future: asyncio.Future[tuple[bool, str]]
    order_ref: str = ""


@dataclass
class _Seen:
    """What one sync learnt at IB about an order."""

    order_ref: str
    ib_order_id: int
    perm_id: int
    status: str
    qty: Decimal
    price: Decimal | None
    stop_price: Decimal | None
    completed_status: str = ""
    #: What IB has filled of it and at what average price (its orderStatus; 0 when not known).
    filled: Decimal = _D(0)
    avg_price: Decimal | None = None


@dataclass
class _Sync:
    """The result of a sync: the orders IB knows (by Exodus order id)."""

    seen: dict[str, _Seen] = field(default_factory=dict)


@storage_boundary
class IBBroker:
    """Orders at Interactive Brokers through TWS or IB Gateway (or the local TWS venue)."""

    capabilities = IB_CAPABILITIES

    def __init__(
        self,
        settings: IBSettings,
        *,
        pool: Pool,
        name: str = "ib",
        instruments: InstrumentCatalog | None = None,
        quotes: QuoteSink | None = None,
        record_session: bool = True,
    ) -> None:
        """An adapter with ``settings`` keeping its records through ``pool``."""
        from ib_async import IB

        self.name = name
        self.settings = settings
        self.instruments = instruments
        self.quotes = quotes
        self.store = IBStore(pool, broker=name)
        self.journal = self.store.journal
        self.delivery: ReportDelivery | None = None
        #: The API session (host:port and client id) the id high-water mark belongs to.
        self.session = f"{settings.host}:{settings.port}/{settings.client_id}"
        self.recorder = SessionRecorder(pool, broker=name, session=self.session) if record_session else None
        self._recording = False
        self.ib = IB()
        self.ib.client.MaxRequests = settings.max_messages_per_second
        self.ib.orderStatusEvent += self._on_status
        self.ib.openOrderEvent += self._on_status
        self.ib.execDetailsEvent += self._on_exec
        self.ib.errorEvent += self._on_error
        self.ib.disconnectedEvent += self._on_disconnected
        self._completed_states: dict[int, tuple[str, str]] = {}
        #: What the syncs since the last (re)connect absorbed: a working order's state at IB (by Exodus order id)
        #: and the executions journaled. A sync absorbs only what changed, so a sweep over resting orders costs
        #: no statement per order; the catch-up after a (re)connect absorbs everything again.
        self._absorbed: dict[str, _Seen] = {}
        self._absorbed_execs: set[str] = set()
        wrapper_completed = self.ib.wrapper.completedOrder

        def completed(contract: Any, order: Any, state: Any) -> None:
            # ib_async drops a completed order's completedStatus; it is what tells a reject from a cancel.
            self._completed_states[order.permId] = (state.completedStatus, state.completedTime)
            wrapper_completed(contract, order, state)

        self.ib.wrapper.completedOrder = completed  # type: ignore[method-assign,assignment]  # replaced on this instance only
        self._pending: dict[int, _Pending] = {}
        self._lock = asyncio.Lock()
        self._sync_lock = asyncio.Lock()
        self._id_lock = asyncio.Lock()
        #: Held from taking a new order's ids until they are sent (``_send_new``): ids reach TWS in order.
        self._send_lock = asyncio.Lock()
        self._ready = asyncio.Event()
        self._disconnected = asyncio.Event()
        self._closing = False
        self._runner: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._cancel_requested: set[str] = set()
        #: A native list's legs placed with their head that no order workflow follows yet: their reports are
        #: journaled but held back from delivery until the leg's submission claims them (``_submit_leg``).
        self._unclaimed: set[str] = set()
        #: Completed (re)connections with their catch-up; ``caught_up`` is set after each catch-up (a reconnection's,
        #: or a restored connectivity's, 1101/1102). Tests wait on it.
        self.connections = 0
        self.caught_up = asyncio.Event()
        self.account = settings.account
        self.quote_poller: QuotePoller | None = None
        if quotes is not None and settings.quote_interval_ms > 0:
            symbols = list(settings.quote_symbols)
            if not symbols and instruments is not None:
                symbols = [i.symbol for i in instruments if i.instrument_class is InstrumentClass.EQUITY]
            self.quote_poller = QuotePoller(
                self.ib,
                quotes,
                contracts={s: self._contract(s) for s in symbols},
                interval=settings.quote_interval_ms / 1000,
                timeout=settings.request_timeout_seconds,
                source=name,
            )

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        *,
        pool: Pool,
        name: str = "ib",
        instruments: InstrumentCatalog | None = None,
        quotes: QuoteSink | None = None,
    ) -> IBBroker:
        """Build the adapter from the application settings."""
        return cls(settings.ib, pool=pool, name=name, instruments=instruments, quotes=quotes)

    # -- lifecycle -------------------------------------------------------------------------------------------

    async def start(self, sink: ReportSink) -> None:
        """Deliver what a previous run left undelivered, then connect (and keep reconnecting)."""
        if self.recorder is not None:
            await self.recorder.start()
            self._recording = True
        self.delivery = ReportDelivery(sink, journal=self.journal)
        await self.delivery.start()
        self._closing = False
        self._runner = asyncio.create_task(self._run(), name=f"{self.name}-session")
        if self.quote_poller is not None:
            self.quote_poller.start()

    async def close(self) -> None:
        """Disconnect and stop (idempotent)."""
        self._closing = True
        if self.quote_poller is not None:
            await self.quote_poller.stop()
        if self._runner is not None:
            self._runner.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._runner
            self._runner = None
        if self.ib.isConnected():
            self.ib.disconnect()
        self._fail_pending("the adapter is closing")
        for task in list(self._tasks):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self.delivery is not None:
            await self.delivery.stop()
            self.delivery = None
        if self.recorder is not None and self._recording:
            self._recording = False
            await self.recorder.stop()

    def _state(self, up: bool, detail: str) -> None:
        if up:
            self._ready.set()
        else:
            self._ready.clear()
            self.caught_up.clear()
        if self.recorder is not None and self._recording:
            self.recorder.changed(up, detail)

    async def _run(self) -> None:
        """Connect, catch up, wait for the disconnect; again, with backoff."""
        delay = self.settings.reconnect_initial_seconds
        while not self._closing:
            try:
                self._disconnected.clear()
                await self.ib.connectAsync(
                    self.settings.host,
                    self.settings.port,
                    clientId=self.settings.client_id,
                    timeout=self.settings.connect_timeout_seconds,
                    account=self.settings.account,
                )
                accounts = self.ib.managedAccounts()
                if not self.account and accounts:
                    self.account = accounts[0]
                if self.settings.market_data_type != 1:
                    self.ib.reqMarketDataType(self.settings.market_data_type)
                await self._catch_up()
                delay = self.settings.reconnect_initial_seconds
                self.connections += 1
                self._state(True, f"connected to {self.session} (server version {self.ib.client.serverVersion()})")
                self.caught_up.set()
                await self._disconnected.wait()
            except asyncio.CancelledError:
                raise
            except Exception as e:
                log.warning("%s: connecting to %s failed (%r); again in %.1fs", self.name, self.session, e, delay)
            self._state(False, "disconnected; reconnecting")
            self._fail_pending("the connection to TWS dropped; the outcome is unknown")
            if self.ib.isConnected():
                self.ib.disconnect()
            if self._closing:
                return
            await asyncio.sleep(delay)
            delay = min(delay * 2, self.settings.reconnect_max_seconds)

    def _on_disconnected(self) -> None:
        self._ready.clear()
        self._disconnected.set()
        self._fail_pending("the connection to TWS dropped; the outcome is unknown")

    def _fail_pending(self, why: str) -> None:
        for pending in list(self._pending.values()):
            if not pending.future.done():
                pending.future.set_exception(BrokerUnavailable(f"{self.name}: {why}"))
        self._pending.clear()

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.warning("%s: handling an IB event failed: %r", self.name, task.exception())

    def _require_ready(self) -> None:
        if not self._ready.is_set() or not self.ib.isConnected():
            raise BrokerUnavailable(f"{self.name}: the session with TWS/Gateway {self.session} is down")

    # -- ids -------------------------------------------------------------------------------------------------

    async def _next_order_id(self) -> int:
        """An API order id above every id used before (by this session's mark and by TWS's nextValidId)."""
        async with self._id_lock:
            announced = self.ib.client.getReqId()
            used = await self.store.last_order_id(self.session)
            order_id = max(announced, used + 1)
            await self.store.use_order_id(self.session, order_id)
            self.ib.client.updateReqId(order_id + 1)  # type: ignore[no-untyped-call]  # unannotated in ib_async
            return order_id

    # -- requests --------------------------------------------------------------------------------------------

    def _contract(self, symbol: str) -> Any:
        from ib_async import Contract

        return Contract(**contract_fields(symbol, self.settings, self.instruments))

    def _ib_order(self, order_id: int, fields: dict[str, Any]) -> Any:
        from ib_async import Order

        return Order(orderId=order_id, **fields)

    def _expect(self, ib_order_id: int, kind: str, order_ref: str = "") -> asyncio.Future[tuple[bool, str]]:
        future: asyncio.Future[tuple[bool, str]] = asyncio.get_running_loop().create_future()
        old = self._pending.get(ib_order_id)
        if old is not None and not old.future.done():
            old.future.set_exception(BrokerUnavailable(f"{self.name}: superseded by a later request"))
        self._pending[ib_order_id] = _Pending(kind, future, order_ref)
        return future

    async def _answer(self, ib_order_id: int, future: asyncio.Future[tuple[bool, str]], what: str) -> tuple[bool, str]:
        try:
            return await asyncio.wait_for(asyncio.shield(future), self.settings.request_timeout_seconds)
        except TimeoutError as e:
            raise BrokerUnavailable(
                f"{self.name}: no answer to the {what} of order id {ib_order_id} within "
                f"{self.settings.request_timeout_seconds}s; the outcome is unknown"
            ) from e
        finally:
            pending = self._pending.get(ib_order_id)
            if pending is not None and pending.future is future:
                del self._pending[ib_order_id]

    async def submit_order(self, order: SubmitOrder) -> BrokerAck:
        """PlaceOrder under a new id; a resend of a known order is looked up by orderRef first, never sent twice."""
        cid = order.cl_ord_id
        if order.native is not None and order.native.held_by is not None:
            return await self._submit_leg(order)
        try:
            fields = order_fields(order, account=self.account)
            contract = self._contract(order.symbol)
            legs = self._leg_orders(order)
            for leg in legs:
                order_fields(leg, account=self.account)
        except ValueError as e:
            return BrokerAck(accepted=False, cl_ord_id=cid, reason=f"UNSUPPORTED: {e}")
        record = await self.store.order(base_order_id(cid))
        self._require_ready()
        if record is not None:
            sync = await self._sync()
            if record.order_id in sync.seen or record.status is OrderStatus.REJECTED:
                reports = await self.journal.reports(record.order_id)
                return BrokerAck(
                    accepted=False,
                    cl_ord_id=cid,
                    broker_order_id=str(record.perm_id or record.ib_order_id),
                    reason=f"DUPLICATE_CLIENT_ORDER_ID: IB already has {cid} (order id {record.ib_order_id})",
                    reports=reports,
                )
            self._require_ready()
        async with self._send_lock:
            ib_order_id, future = await self._send_new(order, cid, record, contract, fields, legs)
        ok, reason = await self._answer(ib_order_id, future, "placeOrder")
        reports = await self.journal.reports(base_order_id(cid))
        if not ok:
            return BrokerAck(accepted=False, cl_ord_id=cid, reason=reason, reports=reports)
        current = await self.store.order(base_order_id(cid))
        perm = current.perm_id if current is not None else None
        return BrokerAck(accepted=True, cl_ord_id=cid, broker_order_id=str(perm or ib_order_id), reports=reports)

    async def _send_new(
        self,
        order: SubmitOrder,
        cid: str,
        record: IBOrder | None,
        contract: Any,
        fields: dict[str, Any],
        legs: list[SubmitOrder],
    ) -> tuple[int, asyncio.Future[tuple[bool, str]]]:
        """Take the order's (and its legs') new ids, record them, and send them: under ``_send_lock``.

        TWS refuses an id at or below one it has already seen from this client (103, duplicate order id), so ids
        must reach it in the order they were taken: two submissions that took 21 and 22 and then raced through their
        records' writes would otherwise send 22 first, and 21 would be refused.
        """
        ib_order_id = await self._next_order_id()
        now = utcnow()
        record = IBOrder(
            order_id=base_order_id(cid),
            cl_ord_id=cid,
            ib_order_id=ib_order_id,
            account=self.account,
            symbol=order.symbol,
            side=order.side,
            qty=order.qty,
            price=order.price,
            stop_price=order.stop_price,
            created_at=record.created_at if record is not None else now,
            updated_at=now,
        )
        await self.store.save(record)
        placed = await self._place_legs(order, ib_order_id, fields, legs) if legs else []
        self._require_ready()  # the records' writes took time: a session that dropped meanwhile sends nothing
        future = self._expect(ib_order_id, "submit", cid)
        self.ib.placeOrder(contract, self._ib_order(ib_order_id, fields))
        for leg_id, leg_fields in placed:
            self.ib.placeOrder(contract, self._ib_order(leg_id, leg_fields))
        return ib_order_id, future

    # -- native lists (parent + children, OCA groups) --------------------------------------------------------

    def _leg_orders(self, order: SubmitOrder) -> list[SubmitOrder]:
        """A native list head's attached legs as orders of their own (same instrument, quantity, time in force)."""
        if order.native is None or order.native.held_by is not None:
            return []
        return [
            order.model_copy(
                update={
                    "cl_ord_id": leg.cl_ord_id,
                    "side": leg.side,
                    "type": leg.type,
                    "price": leg.price,
                    "stop_price": leg.stop_price,
                    "native": None,
                }
            )
            for leg in order.native.legs
        ]

    async def _place_legs(
        self, order: SubmitOrder, head_id: int, fields: dict[str, Any], legs: list[SubmitOrder]
    ) -> list[tuple[int, dict[str, Any]]]:
        """Record a native head's legs under new API ids; the placeOrder arguments of each, in sending order.

        A bracket's and OTO's legs are children (``parentId`` = the head's id), a bracket's exits and an OCO's two
        orders one OCA group (``ocaType`` 1: a fill cancels the others). The head and every leg but the last go
        with ``transmit=False``: TWS works nothing until the last one arrives (``transmit=True``) and sends all.
        """
        native = order.native
        assert native is not None
        if native.order_class == "oco":
            # An OCO's orders work side by side: each transmits itself.
            fields.update(ocaGroup=f"EX-OCA-{head_id}", ocaType=1)
        else:
            fields["transmit"] = False
        now = utcnow()
        out: list[tuple[int, dict[str, Any]]] = []
        for i, leg in enumerate(legs):
            leg_fields = order_fields(leg, account=self.account)
            if native.order_class == "oco":
                leg_fields.update(ocaGroup=f"EX-OCA-{head_id}", ocaType=1)
            else:
                leg_fields.update(parentId=head_id, transmit=i == len(legs) - 1)
                if native.order_class == "bracket":
                    leg_fields.update(ocaGroup=f"EX-OCA-{head_id}", ocaType=1)
            leg_id = await self._next_order_id()
            known = await self.store.order(base_order_id(leg.cl_ord_id))
            await self.store.save(
                IBOrder(
                    order_id=base_order_id(leg.cl_ord_id),
                    cl_ord_id=leg.cl_ord_id,
                    ib_order_id=leg_id,
                    account=self.account,
                    symbol=leg.symbol,
                    side=leg.side,
                    qty=leg.qty,
                    price=leg.price,
                    stop_price=leg.stop_price,
                    created_at=known.created_at if known is not None else now,
                    updated_at=now,
                )
            )
            self._unclaimed.add(base_order_id(leg.cl_ord_id))
            out.append((leg_id, leg_fields))
        return out

    async def _submit_leg(self, order: SubmitOrder) -> BrokerAck:
        """A native list's leg: placed with its head, never on its own; found under its own orderRef and followed.

        Not placed yet, or not (yet) shown by IB: an unknown outcome, looked up again (never a resend).
        """
        cid = order.cl_ord_id
        native = order.native
        assert native is not None and native.held_by is not None
        record = await self.store.order(base_order_id(cid))
        if record is None:
            raise BrokerUnavailable(f"{self.name}: leg {cid} of {native.held_by} is not placed yet")
        self._require_ready()
        self._unclaimed.discard(record.order_id)
        sync = await self._sync()
        record = await self.store.order(record.order_id) or record
        broker_id = str(record.perm_id or record.ib_order_id)
        reports = await self.journal.reports(record.order_id)
        if self.delivery is not None:
            for report in reports:  # held back while no order followed the leg
                self.delivery.put(report)
        if record.status is OrderStatus.REJECTED:
            reason = record.reject_reason or f"REJECTED by IB: leg {cid} of {native.held_by}"
            return BrokerAck(accepted=False, cl_ord_id=cid, broker_order_id=broker_id, reason=reason, reports=reports)
        if record.order_id not in sync.seen:
            raise BrokerUnavailable(f"{self.name}: IB shows no leg {cid} of {native.held_by} (yet)")
        return BrokerAck(accepted=True, cl_ord_id=record.cl_ord_id, broker_order_id=broker_id, reports=reports)

    async def cancel_order(self, request: CancelOrder) -> BrokerAck:
        """CancelOrder by the API order id; a cancel of a canceled order is accepted, of a done one refused."""
        cid = request.cl_ord_id
        record = await self.store.order(base_order_id(cid))
        if record is None:
            return BrokerAck(accepted=False, cl_ord_id=cid, not_found=True, reason=f"UNKNOWN_ORDER: IB has no {cid}")
        self._require_ready()
        sync = await self._sync()
        record = await self.store.order(record.order_id) or record
        reports = await self.journal.reports(record.order_id)
        broker_id = str(record.perm_id or record.ib_order_id)
        if record.order_id not in sync.seen and record.status is OrderStatus.SUBMITTED:
            return BrokerAck(accepted=False, cl_ord_id=cid, not_found=True, reason=f"UNKNOWN_ORDER: IB has no {cid}")
        if record.status is OrderStatus.CANCELED:
            return BrokerAck(accepted=True, cl_ord_id=record.cl_ord_id, broker_order_id=broker_id, reports=reports)
        if record.status.is_terminal:
            return BrokerAck(
                accepted=False,
                cl_ord_id=cid,
                broker_order_id=broker_id,
                reason=f"TOO_LATE: the order is {record.status.value} at IB",
                reports=reports,
            )
        self._cancel_requested.add(record.order_id)
        future = self._expect(record.ib_order_id, "cancel")
        self.ib.client.cancelOrder(record.ib_order_id, "")  # type: ignore[no-untyped-call]  # unannotated in ib_async
        ok, reason = await self._answer(record.ib_order_id, future, "cancelOrder")
        if ok:
            await self._sync()
            return BrokerAck(
                accepted=True,
                cl_ord_id=record.cl_ord_id,
                broker_order_id=broker_id,
                reports=await self.journal.reports(record.order_id),
            )
        await self._sync()
        again = await self.store.order(record.order_id) or record
        if again.status is OrderStatus.CANCELED:
            return BrokerAck(accepted=True, cl_ord_id=again.cl_ord_id, broker_order_id=broker_id)
        return BrokerAck(
            accepted=False,
            cl_ord_id=cid,
            broker_order_id=broker_id,
            reason=f"TOO_LATE: {reason}",
            reports=await self.journal.reports(record.order_id),
        )

    async def replace_order(self, request: ReplaceOrder) -> BrokerAck:
        """PlaceOrder under the working order's id with the new terms (orderRef: the new client order id)."""
        new_cid = request.cl_ord_id
        record = await self.store.order(base_order_id(new_cid))
        if record is None:
            return BrokerAck(
                accepted=False,
                cl_ord_id=request.orig_cl_ord_id,
                not_found=True,
                reason=f"UNKNOWN_ORDER: IB has no {request.orig_cl_ord_id}",
            )
        self._require_ready()
        await self._sync()
        record = await self.store.order(record.order_id) or record
        broker_id = str(record.perm_id or record.ib_order_id)
        if record.cl_ord_id == new_cid:  # modified already (an earlier attempt whose answer was lost)
            return BrokerAck(
                accepted=True,
                cl_ord_id=new_cid,
                broker_order_id=broker_id,
                reports=await self.journal.reports(record.order_id),
            )
        if revision_of(record.cl_ord_id) > revision_of(new_cid) or not record.open:
            reason = f"TOO_LATE: the order is {record.status.value} at IB"
            return BrokerAck(accepted=False, cl_ord_id=new_cid, broker_order_id=broker_id, reason=reason)
        try:
            fields = order_fields(request, account=record.account or self.account)
            contract = self._contract(request.symbol)
        except ValueError as e:
            return BrokerAck(accepted=False, cl_ord_id=new_cid, reason=f"UNSUPPORTED: {e}")
        future = self._expect(record.ib_order_id, "modify", new_cid)
        # The client call, not IB.placeOrder: ib_async refuses to modify a trade it marked done itself.
        self.ib.client.placeOrder(record.ib_order_id, contract, self._ib_order(record.ib_order_id, fields))  # type: ignore[no-untyped-call]  # unannotated in ib_async
        ok, reason = await self._answer(record.ib_order_id, future, "modification")
        if not ok:
            return BrokerAck(
                accepted=False, cl_ord_id=new_cid, broker_order_id=broker_id, reason=f"REPLACE_REJECTED: {reason}"
            )
        await self._sync()
        return BrokerAck(
            accepted=True,
            cl_ord_id=new_cid,
            broker_order_id=broker_id,
            reports=await self.journal.reports(record.order_id),
        )

    async def get_order_status(self, cl_ord_id: str) -> OrderStatusReport | None:
        """IB's view of the order, found by orderRef among open and completed orders and executions."""
        record = await self.store.order(base_order_id(cl_ord_id))
        if record is None:
            return None
        self._require_ready()
        sync = await self._sync()
        record = await self.store.order(record.order_id) or record
        if record.order_id not in sync.seen and record.status is not OrderStatus.REJECTED:
            return None
        return await self._status_report(record)

    async def open_orders(self) -> list[OrderStatusReport]:
        """Every Exodus order IB still works, as IB's orderStatus has it: the broker sweep's mass status.

        One sync, so three requests however many orders work (reqExecutions, reqAllOpenOrders, reqCompletedOrders,
        each ended by its ``...End`` message); what it finds that was never reported (a fill, a cancel, a reject
        whose report was lost) is journaled and delivered on the way, and an order whose state at IB did not change
        costs no statement. No answer, or the connection dropping, is ``BrokerUnavailable``: the sweep fails and
        the next one asks again; nothing is refused. Without reports (``get_order_status`` has them).
        """
        await self.store.open_orders()
        self._require_ready()
        sync = await self._sync()
        result = []
        for record in await self.store.open_orders():
            seen = sync.seen.get(record.order_id)
            if seen is not None and seen.status in IB_WORKING:
                result.append(
                    OrderStatusReport(
                        broker=self.name,
                        cl_ord_id=record.cl_ord_id,
                        broker_order_id=str(record.perm_id or record.ib_order_id),
                        status=OrderStatus.PARTIALLY_FILLED if seen.filled > 0 else OrderStatus.ACCEPTED,
                        qty=record.qty,
                        cum_qty=seen.filled,
                        avg_price=seen.avg_price,
                        price=record.price,
                        stop_price=record.stop_price,
                    )
                )
        return result

    async def fills_since(self, since: datetime) -> list[ExecutionReport]:
        """Exodus orders' fills after ``since`` (reqExecutions)."""
        await self.store.open_orders()
        self._require_ready()
        await self._sync()
        return await self.journal.fills(since=since)

    async def positions(self) -> list[PositionReport]:
        """IB's positions (reqPositions), signed."""
        await self.store.open_orders()
        self._require_ready()
        result = []
        for p in await self._timed(self.ib.reqPositionsAsync(), "reqPositions"):
            c = p.contract
            result.append(
                PositionReport(
                    broker=self.name,
                    account=p.account,
                    symbol=domain_symbol(c.symbol, c.secType, c.currency, self.settings),
                    qty=decimal_of(p.position) or _D(0),
                    avg_price=decimal_of(p.avgCost),
                )
            )
        return result

    async def account_values(self) -> dict[str, tuple[Decimal | None, str]]:
        """The account's summary values (NetLiquidation, TotalCashValue, BuyingPower, ...): tag -> (value, ccy)."""
        self._require_ready()
        values = await self._timed(self.ib.accountSummaryAsync(self.account), "reqAccountSummary")
        out: dict[str, tuple[Decimal | None, str]] = {}
        for v in values:
            try:
                out[v.tag] = (Decimal(v.value), v.currency)
            except ArithmeticError:
                out[v.tag] = (None, v.currency)
        return out

    async def _timed(self, awaitable: Any, what: str) -> Any:
        try:
            return await asyncio.wait_for(awaitable, self.settings.request_timeout_seconds)
        except (TimeoutError, ConnectionError) as e:
            raise BrokerUnavailable(f"{self.name}: {what} got no answer; {e!r}") from e

    # -- status reports --------------------------------------------------------------------------------------

    async def _status_report(self, record: IBOrder) -> OrderStatusReport:
        reports = await self.journal.reports(record.order_id)
        fills = [r for r in reports if r.kind is ReportKind.FILL]
        cum = sum((f.last_qty for f in fills), _D(0))
        notional = sum((f.last_qty * (f.last_price or 0) for f in fills), _D(0))
        status = record.status
        if not status.is_terminal:
            status = OrderStatus.PARTIALLY_FILLED if cum > 0 else OrderStatus.ACCEPTED
        return OrderStatusReport(
            broker=self.name,
            cl_ord_id=record.cl_ord_id,
            broker_order_id=str(record.perm_id or record.ib_order_id),
            status=status,
            qty=record.qty,
            cum_qty=cum,
            avg_price=notional / cum if cum > 0 else None,
            price=record.price,
            stop_price=record.stop_price,
            reports=reports,
        )

    # -- the sync: what IB knows now -------------------------------------------------------------------------

    async def _sync(self, *, catching_up: bool = False) -> _Sync:
        """Executions, open orders and completed orders from IB, absorbed; what IB knows of our orders."""
        async with self._sync_lock:
            from ib_async import ExecutionFilter

            if catching_up:
                if not self.ib.isConnected():
                    raise BrokerUnavailable(f"{self.name}: the connection dropped while catching up")
                self._absorbed.clear()
                self._absorbed_execs.clear()
            else:
                self._require_ready()
            sync = _Sync()
            fills = await self._timed(self.ib.reqExecutionsAsync(ExecutionFilter()), "reqExecutions")
            for fill in fills:
                exec_id = fill.execution.execId
                if exec_id not in self._absorbed_execs:
                    known = self.ib.wrapper.fills.get(exec_id, fill)
                    if await self._absorb_fill(known.execution, known.commissionReport, source="reqExecutions"):
                        self._absorbed_execs.add(exec_id)
                ref = fill.execution.orderRef
                if EXODUS_CL_ORD_ID.match(ref or ""):
                    sync.seen.setdefault(
                        base_order_id(ref),
                        _Seen(ref, fill.execution.orderId, fill.execution.permId, "Filled?", _D(0), None, None),
                    )
            trades = await self._timed(self.ib.reqAllOpenOrdersAsync(), "reqAllOpenOrders")
            completed = await self._timed(self.ib.reqCompletedOrdersAsync(False), "reqCompletedOrders")
            for trade, done in [(t, False) for t in completed] + [(t, True) for t in trades]:
                o, st = trade.order, trade.orderStatus
                if not EXODUS_CL_ORD_ID.match(o.orderRef or ""):
                    continue
                completed_status = self._completed_states.get(o.permId, ("", ""))[0] if not done else ""
                filled = decimal_of(st.filled) or _D(0)
                seen = _Seen(
                    o.orderRef,
                    o.orderId,
                    o.permId,
                    st.status,
                    decimal_of(o.totalQuantity) or _D(0),
                    decimal_of(o.lmtPrice) if o.orderType in ("LMT", "STP LMT") else None,
                    decimal_of(o.auxPrice) if o.orderType in ("STP", "STP LMT") else None,
                    completed_status,
                    filled=filled,
                    avg_price=decimal_of(st.avgFillPrice) if filled > 0 else None,
                )
                order_id = base_order_id(o.orderRef)
                sync.seen[order_id] = seen
                if self._absorbed.get(order_id) == seen:
                    continue  # a working order whose state at IB has not changed since it was absorbed
                await self._absorb_state(seen, source="sync")
                if seen.status in IB_WORKING:
                    self._absorbed[order_id] = seen
                else:
                    self._absorbed.pop(order_id, None)
            return sync

    async def _catch_up(self) -> None:
        """After a (re)connect: what happened while nobody listened."""
        await self._sync(catching_up=True)

    # -- events ----------------------------------------------------------------------------------------------

    def _on_status(self, trade: Any) -> None:
        """OpenOrder and orderStatus (from the wire; ib_async's own statuses after an error are skipped)."""
        if trade.log and getattr(trade.log[-1], "errorCode", 0):
            return
        o, st = trade.order, trade.orderStatus
        pending = self._pending.get(o.orderId)
        if pending is not None and not pending.future.done():
            if pending.kind == "submit" and st.status not in ("PendingSubmit", "ApiPending", ""):
                if st.status in IB_WORKING or st.status == "Filled":
                    pending.future.set_result((True, ""))
            elif pending.kind == "modify" and o.orderRef == pending.order_ref and st.status in IB_WORKING:
                pending.future.set_result((True, ""))
            elif pending.kind == "cancel" and st.status in ("Cancelled", "ApiCancelled"):
                pending.future.set_result((True, ""))
            elif pending.kind == "modify" and st.status in IB_DONE:
                pending.future.set_result((False, f"the order is {st.status} at IB"))
        if not EXODUS_CL_ORD_ID.match(o.orderRef or ""):
            return
        seen = _Seen(
            o.orderRef,
            o.orderId,
            o.permId or st.permId,
            st.status,
            decimal_of(o.totalQuantity) or _D(0),
            decimal_of(o.lmtPrice) if o.orderType in ("LMT", "STP LMT") else None,
            decimal_of(o.auxPrice) if o.orderType in ("STP", "STP LMT") else None,
        )
        self._spawn(self._absorb_state(seen, source="stream"))

    def _on_exec(self, trade: Any, fill: Any) -> None:
        self._spawn(self._exec_with_commission(fill))

    async def _exec_with_commission(self, fill: Any) -> None:
        deadline = asyncio.get_running_loop().time() + self.settings.commission_wait_seconds
        while not fill.commissionReport.execId and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.02)
        await self._absorb_fill(fill.execution, fill.commissionReport, source="execDetails")

    def _on_error(self, req_id: int, code: int, text: str, contract: Any) -> None:
        if code == _LOST:
            self._state(False, f"TWS lost its connection to IB (1100): {text}")
            return
        if code in (_RESTORED, _RESTORED_LOST):
            self._spawn(self._restored(code, text))
            return
        if req_id < 0 or code in IB_WARNINGS or 2100 <= code < 2200:
            return
        pending = self._pending.get(req_id)
        if pending is not None and not pending.future.done():
            if pending.kind == "cancel":
                if code == _CANCELED:
                    pending.future.set_result((True, ""))
                else:
                    pending.future.set_result((False, f"IB error {code}: {text}"))
            elif pending.kind == "modify":
                pending.future.set_result((False, f"IB error {code}: {text}"))
            else:
                pending.future.set_result((False, f"REJECTED by IB ({code}): {text}"))
        if code != _CANCELED:
            self._spawn(self._rejected(req_id, code, text))

    async def _restored(self, code: int, text: str) -> None:
        caught_up = False
        try:
            await self._catch_up()
            caught_up = True
        finally:
            if self.ib.isConnected():
                self._state(True, f"connectivity restored ({code}): {text}")
                if caught_up:
                    self.caught_up.set()

    async def _rejected(self, ib_order_id: int, code: int, text: str) -> None:
        """An error event about one of our orders: a refused new order is a reject (its "Cancelled" too).

        An error about an order IB had accepted (a refused modification or cancel) leaves the order working.
        """
        async with self._lock:
            record = await self.store.by_ib_id(ib_order_id)
            if record is None or record.status is not OrderStatus.SUBMITTED:
                return
            reason = f"REJECTED by IB ({code}): {text}"
            record.reject_reason = reason
            record.status = OrderStatus.REJECTED
            await self.store.save(record)
            report = self._report(record, ReportKind.REJECTED, f"{record.order_id}:rejected", reason=reason)
            await self._record(report, source=f"error:{code}")

    # -- turning IB's news into reports ----------------------------------------------------------------------

    def _report(self, record: IBOrder, kind: ReportKind, exec_id: str, **fields: Any) -> ExecutionReport:
        return ExecutionReport(
            broker=self.name,
            exec_id=exec_id,
            kind=kind,
            cl_ord_id=fields.pop("cl_ord_id", record.cl_ord_id),
            broker_order_id=str(record.perm_id or record.ib_order_id),
            symbol=record.symbol,
            side=record.side,
            transact_at=fields.pop("transact_at", None) or utcnow(),
            **fields,
        )

    async def _record(self, report: ExecutionReport, *, source: str) -> bool:
        """Journal a report and hand it to the delivery; False when it was journaled before."""
        if not await self.journal.add(report, ref=report.broker_order_id, source=source):
            return False
        if self.delivery is not None and report.order_id not in self._unclaimed:
            self.delivery.put(report)
        return True

    async def _chain_filled(self, order_id: str) -> Decimal:
        fills = [r for r in await self.journal.reports(order_id) if r.kind is ReportKind.FILL]
        return sum((f.last_qty for f in fills), _D(0))

    async def _accepted(self, record: IBOrder, source: str) -> None:
        report = self._report(record, ReportKind.ACCEPTED, f"{record.order_id}:accepted", cl_ord_id=record.order_id)
        await self._record(report, source=source)

    async def _absorb_state(self, seen: _Seen, *, source: str) -> None:
        """Record what an order's state at IB shows that was not recorded (idempotent: one exec id per fact)."""
        status = seen.status
        if status in ("Cancelled", "ApiCancelled") and source == "stream":
            # IB sends the error that says "rejected" around the status; give it a moment before calling it a cancel.
            record = await self.store.by_ib_id(seen.ib_order_id)
            if record is not None and record.reject_reason is None and record.order_id not in self._cancel_requested:
                await asyncio.sleep(0.2)
        async with self._lock:
            record = await self.store.order(base_order_id(seen.order_ref))
            if record is None:
                return
            changed = False
            if seen.perm_id and record.perm_id != seen.perm_id:
                record.perm_id, changed = seen.perm_id, True
            if status in IB_WORKING or status == "Filled":
                await self._accepted(record, source)
                if record.status is OrderStatus.SUBMITTED:
                    record.status, changed = OrderStatus.ACCEPTED, True
            if (
                seen.order_ref != record.cl_ord_id
                and revision_of(seen.order_ref) > revision_of(record.cl_ord_id)
                and seen.qty > 0
            ):
                filled = await self._chain_filled(record.order_id)
                record.cl_ord_id, record.qty = seen.order_ref, seen.qty
                record.price, record.stop_price = seen.price, seen.stop_price
                changed = True
                report = self._report(
                    record,
                    ReportKind.REPLACED,
                    f"{seen.order_ref}:replaced",
                    cum_qty=filled,
                    leaves_qty=max(seen.qty - filled, _D(0)),
                    new_qty=seen.qty,
                    new_price=seen.price,
                    new_stop_price=seen.stop_price,
                )
                await self._record(report, source=source)
            rejected = record.reject_reason is not None or seen.completed_status.lower().startswith("rejected")
            filled_any = await self._chain_filled(record.order_id) > 0
            final = status_of(status, rejected=rejected, filled=filled_any)
            if final is OrderStatus.CANCELED:
                reason = seen.completed_status or "Cancelled at IB"
                report = self._report(record, ReportKind.CANCELED, f"{record.order_id}:canceled", reason=reason)
                await self._record(report, source=source)
            elif final is OrderStatus.REJECTED:
                reason = record.reject_reason or f"REJECTED by IB: {seen.completed_status or status}"
                record.reject_reason = reason
                report = self._report(record, ReportKind.REJECTED, f"{record.order_id}:rejected", reason=reason)
                await self._record(report, source=source)
            if final is not None and record.status is not final:
                record.status, changed = final, True
            if changed:
                await self.store.save(record)

    async def _absorb_fill(self, execution: Any, commission: Any, *, source: str) -> bool:
        """One execution (however learnt) as a FILL under IB's execId, once; its commission is the fee.

        True when there is nothing more to learn from it: journaled (now or before), or not an Exodus order's.
        """
        ref = execution.orderRef or ""
        if not EXODUS_CL_ORD_ID.match(ref):
            return True
        async with self._lock:
            if await self.journal.has(execution.execId):
                return True
            record = await self.store.order(base_order_id(ref))
            if record is None:
                return False
            qty = decimal_of(execution.shares) or _D(0)
            price = decimal_of(execution.price)
            if qty <= 0 or price is None:
                return True
            if execution.permId and record.perm_id != execution.permId:
                record.perm_id = execution.permId
                await self.store.save(record)
            await self._accepted(record, source)
            cum = await self._chain_filled(record.order_id) + qty
            fee = _D(0)
            if commission is not None and commission.execId == execution.execId:
                fee = decimal_of(commission.commission) or _D(0)
            report = self._report(
                record,
                ReportKind.FILL,
                execution.execId,
                last_qty=qty,
                last_price=price,
                cum_qty=cum,
                leaves_qty=max(record.qty - cum, _D(0)),
                avg_price=decimal_of(execution.avgPrice),
                fee=fee,
                transact_at=execution.time if isinstance(execution.time, datetime) else None,
            )
            await self._record(report, source=source)
            if cum >= record.qty and record.status is not OrderStatus.FILLED:
                record.status = OrderStatus.FILLED
                await self.store.save(record)
            return True
