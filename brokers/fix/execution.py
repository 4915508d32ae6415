"""The FIX broker: the ``Broker`` protocol over one QuickFIX initiator session (FIX 4.2, 4.4, 5.0 SP2).

::

    submit_order ──NewOrderSingle (D)──────────▶ venue ──ExecutionReport (8)──▶ answers the waiting request,
    cancel_order ──OrderCancelRequest (F)──────▶          OrderCancelReject (9)   is stored once per ExecID
    replace_order ─OrderCancelReplaceRequest (G)▶                                  and goes to the outbox ─▶ sink
    get_order_status ─OrderStatusRequest (H)───▶          ExecutionReport 150=I / 20=3 (the venue's view)
    open_orders ──OrderMassStatusRequest (AF)──▶          ExecutionReport 150=I per working order, 584 echoed,
                                                           the last with LastRptRequested 912=Y

* Every report is stored (the shared report journal, ``broker_reports``, one stream per session, unique per
  ExecID) before QuickFIX counts its sequence number as processed, then delivered (``ReportDelivery``); reports
  stored but not delivered are delivered again after a restart. Unknown ClOrdIDs are delivered too: the
  dispatcher records them as orphans.
* A failure of the adapter's records (Postgres) during a call is ``BrokerUnavailable`` (the shared storage
  boundary, ``storage_boundary``): the outcome is unknown, never a refusal.
* A request whose answer does not come (timeout, session dropped) raises ``BrokerUnavailable``: its outcome
  is unknown and the order stays in flight. The adapter never resends an order by itself: QuickFIX's resend
  of our own application messages is answered with a gap fill, and a retried submission first asks the venue
  (OrderStatusRequest) and only sends the same ClOrdID again when the venue does not know it.
* A "duplicate ClOrdID" rejection (OrdRejReason 6) only answers the submission that caused it; it is never
  delivered as a REJECTED report, so the live order that owns the id is not touched.
* After every logon the orders that may still work are asked about (OrderStatusRequest each). The venue
  answers after the messages it resends, so by then every report it kept has arrived; what the answer still
  shows beyond that (fills or a final status that never arrived as reports, for example from a counterparty
  that gap-fills instead of resending) is delivered as synthesized reports.
* Liberal in what it accepts: ExecutionReports are validated for their structure only (``dictionary.py``) and
  read with every FIX version's codes (150=1/2 fills on any session, done for day, restated); when the
  ExecType says nothing usable the report is judged by LastQty/LastPx/CumQty/OrdStatus. What still cannot be
  interpreted (and trade busts and corrections) is kept in ``fix_unprocessed`` with a reconciliation break,
  never dropped.
* A venue that refuses a request (35=j or 35=3) refuses that request, not the order: a refused status request
  is answered from the reports received (``status_requests`` falls back to "none" when the venue does not
  support them at all), a refused cancel or replace leaves the order working as it was and opens a break.
* ``open_orders`` (the broker sweep's one request, ``worker/sweep.py``) is one OrderMassStatusRequest (35=AF,
  MassStatusReqType 7) on FIX 4.4 and 5.0, answered once the report with 912=Y has come. A venue that refuses AF
  as unsupported is not asked again: the orders are then asked about one by one as before (35=H each, or as
  their reports say with ``status_requests`` "none", which also never sends AF); FIX 4.2 has no AF.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

import psycopg

from brokers.base import ReportSink, storage_boundary
from brokers.fix.config import FIX_CAPABILITIES, SessionConfig, session_config_for
from brokers.fix.marketdata import FixMarketData
from brokers.fix.parsing import (
    CANCEL_ID_MARKER,
    CXL_REJ_UNKNOWN_ORDER,
    EXEC_TYPE_CORRECTIONS,
    EXEC_TYPE_INFORMATIONAL,
    MAP_EXEC_TYPE_ANY,
    MAP_ORD_TYPE,
    MAP_PEG_EXEC_INST,
    MAP_SIDE,
    MAP_SIDE_IN,
    MAP_TIF,
    ORD_REJ_DUPLICATE,
    ORD_REJ_UNKNOWN_ORDER,
    Tag,
    fix_decimal,
    fix_timestamp,
    is_cancel_id,
    order_status_of,
    parse_decimal,
    parse_timestamp,
)
from brokers.fix.session import FieldValue, FixConnector, FixMessage
from brokers.fix.store import FixOrder, FixStore
from brokers.journal import ReportDelivery
from brokers.sessions import SessionRecorder
from core.domain import (
    BrokerAck,
    CancelOrder,
    ExecutionReport,
    OrderSide,
    OrderStatus,
    OrderStatusReport,
    OrderTerms,
    OrderType,
    PegType,
    PositionReport,
    ReplaceOrder,
    ReportKind,
    SubmitOrder,
    TimeInForce,
    base_order_id,
    utcnow,
)
from core.errors import BrokerUnavailable
from core.instruments import InstrumentCatalog
from core.marketdata import QuoteSink
from core.settings import FixSettings, Settings
from store import Pool

__all__ = ["FIX_CAPABILITIES", "FixBroker"]

log = logging.getLogger(__name__)

_D = Decimal
_TERMINAL_KINDS = (ReportKind.CANCELED, ReportKind.EXPIRED, ReportKind.REJECTED)
_STATUS_KINDS = {
    OrderStatus.CANCELED: ReportKind.CANCELED,
    OrderStatus.EXPIRED: ReportKind.EXPIRED,
    OrderStatus.REJECTED: ReportKind.REJECTED,
}
#: How long QuickFIX's thread waits for a report to be stored; longer (or a failure) and the message is left
#: unprocessed, for the counterparty to resend after a reconnect.
_STORE_WAIT_SECONDS = 10.0
#: Status requests per open order after a logon before the resync gives up on it (each waits the request timeout).
_RESYNC_ATTEMPTS = 3
#: Failures of storage that may pass: the message is left unprocessed and comes again.
_TRANSIENT = (psycopg.OperationalError, psycopg.InterfaceError, OSError)
_REFUSAL_WORDS = {"F": ("CANCEL", "OrderCancelRequest"), "G": ("REPLACE", "OrderCancelReplaceRequest")}
_BY_ORD_STATUS = {"4": ReportKind.CANCELED, "C": ReportKind.EXPIRED, "8": ReportKind.REJECTED}


@dataclass(frozen=True)
class _Refused:
    """The venue refused a status request (35=j or 35=3) instead of answering it."""

    reason: str
    unsupported: bool


@dataclass
class _MassStatus:
    """The answers to one OrderMassStatusRequest, collected until the one with LastRptRequested 912=Y."""

    reports: list[FixMessage]
    #: None once complete; a ``_Refused`` when the venue refused the request.
    done: asyncio.Future[_Refused | None]


#: MassStatusReqType 585=7: the status of every order of this session (of ``fix.account`` when it is set).
_MASS_STATUS_ALL = "7"
#: Mass status requests in a row left unanswered (session logged on) before the adapter asks order by order.
_MASS_STATUS_MAX_UNANSWERED = 3


@storage_boundary
class FixBroker:
    """Orders over a FIX session to a counterparty (or the local FIX venue)."""

    capabilities = FIX_CAPABILITIES

    def __init__(
        self,
        config: SessionConfig,
        *,
        store: FixStore,
        name: str = "fix",
        settings: FixSettings | None = None,
        recorder: SessionRecorder | None = None,
        quotes: QuoteSink | None = None,
        instruments: InstrumentCatalog | None = None,
    ) -> None:
        """An adapter for the session ``config``, keeping its records in ``store``.

        Args:
            config: The initiator session (``session_config_for(settings)``).
            store: Where orders and received reports are kept.
            name: The broker's name in Exodus (reports carry it).
            settings: The ``fix`` settings section (credentials, timeouts, symbol map, account).
            recorder: Records logons and logouts for the risk check (None: not recorded).
            quotes: Where the quotes of the market data subscription go (``settings.market_data``).
            instruments: The catalogue; its symbols are subscribed to when neither ``market_data_symbols``
                nor the symbol map name any.
        """
        self.name = name
        self.config = config
        self._settings = settings or FixSettings()
        self._store = store
        #: Records logons and logouts in Postgres for the risk check (``brokers.sessions``).
        self._recorder = recorder
        self._fix42 = config.begin_string == "FIX.4.2"
        self._timeout = self._settings.request_timeout_seconds
        #: "order" or "none"; "order" falls back to "none" when the venue refuses status requests as unsupported.
        self.status_requests = self._settings.status_requests
        #: Request types the venue refused as unsupported (MsgType -> its reject), for the adapter's lifetime.
        self.unsupported: dict[str, str] = {}
        #: Messages kept in ``fix_unprocessed`` (not interpretable, corrections, refused by QuickFIX).
        self.unprocessed = 0
        self.market_data: FixMarketData | None = None
        market_data = self._settings.market_data
        if market_data is None:
            market_data = self._settings.local_venue
        if market_data:
            symbols = list(self._settings.market_data_symbols) or list(self._settings.symbol_map)
            if not symbols and instruments is not None:
                symbols = instruments.symbols()
            self.market_data = FixMarketData(
                source=name, symbols=symbols, to_venue=self._settings.symbol_map, sink=quotes
            )
        self._md_task: asyncio.Task[None] | None = None
        self._to_venue = dict(self._settings.symbol_map)
        self._from_venue = {v: k for k, v in self._to_venue.items()}
        self._conn: FixConnector | None = None
        self._journal = store.journal
        #: Hands journaled reports to the sink (None until started).
        self.delivery: ReportDelivery | None = None
        self._waiters: dict[tuple[str, str], asyncio.Future[BrokerAck]] = {}
        self._status_waiters: dict[str, list[asyncio.Future[FixMessage | _Refused | None]]] = {}
        #: OrderMassStatusRequests waiting for their answers, by MassStatusReqID.
        self._mass_waiters: dict[str, _MassStatus] = {}
        #: OrderMassStatusRequests sent (diagnostics and tests).
        self.mass_status_requests = 0
        #: Mass status requests in a row left without a complete answer while logged on (``_request_mass_status``).
        self._mass_unanswered = 0
        self._orders: dict[str, FixOrder] = {}
        self._resync_task: asyncio.Task[None] | None = None
        #: Set when the resynchronisation after the latest logon has finished.
        self.resynced = asyncio.Event()
        self.resyncs = 0
        #: Reports made up from status answers (fills or final states whose reports never arrived).
        self.synthesized = 0

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        *,
        pool: Pool,
        name: str = "fix",
        quotes: QuoteSink | None = None,
        instruments: InstrumentCatalog | None = None,
    ) -> FixBroker:
        """Build the adapter from the application settings."""
        config = session_config_for(settings)
        recorder = SessionRecorder(pool, broker=name, session=config.key)
        return cls(
            config,
            store=FixStore(pool, session=config.key, broker=name),
            name=name,
            settings=settings.fix,
            recorder=recorder,
            quotes=quotes,
            instruments=instruments,
        )

    # -- lifecycle ---------------------------------------------------------------------------------------

    async def start(self, sink: ReportSink) -> None:
        """Deliver what a previous run left undelivered, then start the session (it logs on by itself)."""
        if self._recorder is not None:
            await self._recorder.start()
        self.delivery = ReportDelivery(sink, journal=self._journal)
        await self.delivery.start()
        logon: list[tuple[int, str]] = []
        if self._settings.username:
            logon.append((Tag.USERNAME, self._settings.username))
        if self._settings.password is not None:
            logon.append((Tag.PASSWORD, self._settings.password.get_secret_value()))
        self._conn = FixConnector(
            self.config,
            on_message=self._on_message,
            on_logon=self._on_logon,
            on_logout=self._on_logout,
            name=self.name,
            wait_for_handler=_STORE_WAIT_SECONDS,
            suppress_resends=True,
            logon_fields=logon,
            accept_types=("8", "9", "j", "W", "X", "Y"),
            no_wait_types=("W", "X", "Y"),
            on_refused=self._on_refused_by_quickfix,
        )
        if self.market_data is not None:
            self.market_data.start()
        await self._conn.start()

    async def close(self) -> None:
        """Log out, stop the session and the delivery (idempotent)."""
        if self._conn is not None:
            conn, self._conn = self._conn, None
            await conn.stop()
        for task in (self._resync_task, self._md_task):
            if task is not None:
                task.cancel()
        self._resync_task = self._md_task = None
        if self.market_data is not None:
            await self.market_data.stop()
        self._fail_waiters("the FIX broker was closed")
        if self.delivery is not None:
            await self.delivery.stop()
            self.delivery = None
        if self._recorder is not None:
            await self._recorder.stop()

    # -- session state -----------------------------------------------------------------------------------

    @property
    def logged_on(self) -> bool:
        """Whether the FIX session is logged on."""
        return self._conn is not None and self._conn.logged_on

    @property
    def connector(self) -> FixConnector:
        """The running session (tests and diagnostics)."""
        if self._conn is None:
            raise BrokerUnavailable(f"{self.name}: not started")
        return self._conn

    async def wait_logged_on(self, timeout: float = 10.0) -> None:
        """Wait for the session to log on."""
        await self.connector.wait_logged_on(timeout)

    async def sequence_numbers(self) -> tuple[int, int]:
        """(next outgoing, next expected incoming) MsgSeqNum."""
        return await self.connector.sequence_numbers()

    def _require_logged_on(self, what: str) -> FixConnector:
        conn = self._conn
        if conn is None or not conn.logged_on:
            raise BrokerUnavailable(
                f"{self.name}: the FIX session {self.config.key} is not logged on; {what} was not sent"
            )
        return conn

    # -- requests ----------------------------------------------------------------------------------------

    async def submit_order(self, order: SubmitOrder) -> BrokerAck:
        """Send a NewOrderSingle and wait for the venue's first answer.

        An order FIX cannot carry (an expiry with no UTCTimestamp, a number that is not one) is refused at once
        with the reason, and nothing is sent.
        """
        try:
            fields = self._order_fields(order, cl_ord_id=order.cl_ord_id)
        except ValueError as e:
            reason = f"UNENCODABLE: the order cannot be written in FIX: {e}"
            log.warning("%s: %s refused: %s", self.name, order.cl_ord_id, reason)
            return BrokerAck(accepted=False, cl_ord_id=order.cl_ord_id, reason=reason)
        self._require_logged_on(f"order {order.cl_ord_id}")
        now = utcnow()
        record = FixOrder(
            order_id=base_order_id(order.cl_ord_id),
            cl_ord_id=order.cl_ord_id,
            **order.terms(),
            created_at=now,
            updated_at=now,
        )
        record = await self._store.add_order(record)
        self._orders[record.order_id] = record
        return await self._request("D", order.cl_ord_id, fields)

    async def cancel_order(self, request: CancelOrder) -> BrokerAck:
        """Send an OrderCancelRequest under a new ClOrdID and wait for the cancel or its rejection.

        Once the venue has refused OrderCancelRequests as unsupported, the answer is that refusal again,
        without asking: the order works on.
        """
        if "F" in self.unsupported:
            return await self._unsupported_ack("F", request.cl_ord_id, self.unsupported["F"])
        order = await self._load_order(base_order_id(request.cl_ord_id))
        if order is not None and order.status is OrderStatus.CANCELED:
            # Canceled already (an earlier request whose answer was lost, or the venue's own): nothing to send.
            return BrokerAck(
                accepted=True,
                cl_ord_id=order.cl_ord_id,
                broker_order_id=order.broker_order_id,
                reports=await self._journal.reports(order.order_id),
            )
        self._require_logged_on(f"cancel of {request.cl_ord_id}")
        cancel_id = f"{request.cl_ord_id}{CANCEL_ID_MARKER}{uuid.uuid4().hex[:8]}"
        fields: list[tuple[int, FieldValue]] = [
            (Tag.ORIG_CL_ORD_ID, request.cl_ord_id),
            (Tag.CL_ORD_ID, cancel_id),
            (Tag.ORDER_ID, request.broker_order_id or (order.broker_order_id if order else None)),
            (Tag.ACCOUNT, self._account(order.account if order else None)),
            (Tag.SYMBOL, self._venue_symbol(request.symbol)),
            (Tag.SIDE, MAP_SIDE[request.side]),
            (Tag.TRANSACT_TIME, fix_timestamp(utcnow())),
            (Tag.ORDER_QTY, fix_decimal(order.qty if order else request.qty)),
            (Tag.TEXT, request.reason[:100] or None),
        ]
        return await self._request("F", cancel_id, fields)

    async def replace_order(self, request: ReplaceOrder) -> BrokerAck:
        """Send an OrderCancelReplaceRequest (new ClOrdID, OrigClOrdID = the current one) and wait for the answer."""
        if "G" in self.unsupported:
            return await self._unsupported_ack("G", request.orig_cl_ord_id, self.unsupported["G"])
        order = await self._load_order(base_order_id(request.orig_cl_ord_id))
        if order is not None and order.cl_ord_id == request.cl_ord_id:
            # Replaced already (an earlier request whose answer was lost; the venue's report said so): never twice.
            return BrokerAck(
                accepted=True,
                cl_ord_id=request.cl_ord_id,
                broker_order_id=order.broker_order_id,
                reports=await self._journal.reports(order.order_id),
            )
        self._require_logged_on(f"replace of {request.orig_cl_ord_id}")
        # The account, peg and expiry as the order was sent (a replacement changes quantity and prices).
        kept = ("account", "peg_type", "peg_offset", "expire_at")
        terms = request.model_copy(update={name: getattr(order, name) for name in kept}) if order else request
        try:
            fields = self._order_fields(
                terms,
                cl_ord_id=request.cl_ord_id,
                orig_cl_ord_id=request.orig_cl_ord_id,
                broker_order_id=request.broker_order_id or (order.broker_order_id if order else None),
            )
        except ValueError as e:
            reason = f"UNENCODABLE: the new terms cannot be written in FIX: {e}"
            return BrokerAck(accepted=False, cl_ord_id=request.orig_cl_ord_id, reason=reason)
        return await self._request("G", request.cl_ord_id, fields)

    async def get_order_status(self, cl_ord_id: str) -> OrderStatusReport | None:
        """Ask the venue (OrderStatusRequest); None when the venue does not know the order.

        The answer carries the venue's status and quantities, and every report received for the order.
        An order never sent over this session is unknown without asking.
        """
        order = await self._load_order(base_order_id(cl_ord_id))
        if order is None:
            return None
        answer = await self._request_status(order, cl_ord_id)
        if isinstance(answer, _Refused):
            return await self._local_status(order)
        if answer is None:
            return None
        return await self._status_report(order, answer)

    @property
    def mass_status(self) -> bool:
        """Whether ``open_orders`` asks with one OrderMassStatusRequest (35=AF) rather than about each order.

        Not on FIX 4.2 (AF came with 4.3), not with ``status_requests`` "none" (the venue is never asked), and not
        once the venue has refused AF as unsupported.
        """
        return not self._fix42 and self._settings.status_requests != "none" and "AF" not in self.unsupported

    async def open_orders(self) -> list[OrderStatusReport]:
        """Orders the venue still works for us: the answer to one OrderMassStatusRequest where the venue has it.

        The venue lists its working orders (ExecutionReports 150=I, the last with 912=Y); what a listed order shows
        that no report said (fills whose reports were lost) is delivered as for a status answer (``_reconcile``).
        Orders the venue lists that this session never sent are left out, never invented; an order of ours the
        complete answer leaves out is not working at the venue as far as it says (the sweep looks it up). No
        complete answer within ``request_timeout_seconds`` (or the session dropped): ``BrokerUnavailable``, the
        venue's view is unknown. Refused (35=j, 35=3): each order is asked about as without AF.
        """
        if self.mass_status:
            answer = await self._request_mass_status()
            if not isinstance(answer, _Refused):
                return answer
        return await self._open_orders_each()

    async def _request_mass_status(self) -> list[OrderStatusReport] | _Refused:
        conn = self._require_logged_on("the order mass status request")
        req_id = f"M{uuid.uuid4().hex[:12].upper()}"
        collect = _MassStatus([], asyncio.get_running_loop().create_future())
        self._mass_waiters[req_id] = collect
        fields: list[tuple[int, FieldValue]] = [
            (Tag.MASS_STATUS_REQ_ID, req_id),
            (Tag.MASS_STATUS_REQ_TYPE, _MASS_STATUS_ALL),
            (Tag.ACCOUNT, self._settings.account or None),
        ]
        try:
            if not await conn.send("AF", fields):
                raise BrokerUnavailable(f"{self.name}: QuickFIX did not send the mass status request {req_id}")
            self.mass_status_requests += 1
            async with asyncio.timeout(self._timeout):
                refused = await asyncio.shield(collect.done)
        except TimeoutError as e:
            if conn.logged_on:
                # Answered nothing complete while the session stayed up: a venue that takes AF but never completes
                # its answer (no 584 echoed, no 912/911) would leave every sweep unknown. After a few, ask order by
                # order instead (as for a venue that refuses AF) and say so.
                self._mass_unanswered += 1
                if self._mass_unanswered >= _MASS_STATUS_MAX_UNANSWERED:
                    self.unsupported["AF"] = (
                        f"{self._mass_unanswered} mass status requests in a row got no complete answer while the "
                        "session was logged on"
                    )
                    log.warning(
                        "%s: %s; orders are asked about one by one from now on", self.name, self.unsupported["AF"]
                    )
            raise BrokerUnavailable(
                f"{self.name}: no complete answer to the mass status request {req_id} within {self._timeout:g}s "
                f"({len(collect.reports)} report(s) so far); the venue's open orders are unknown"
            ) from e
        finally:
            self._mass_waiters.pop(req_id, None)
        self._mass_unanswered = 0
        if refused is not None:
            return refused
        result = []
        for msg in collect.reports:
            cl_ord_id = msg.get(Tag.CL_ORD_ID) or ""
            if not cl_ord_id or msg.get(Tag.TOT_NUM_REPORTS) == "0":
                continue  # the venue's "no orders" answer
            order = await self._load_order(base_order_id(cl_ord_id))
            if order is None:
                log.info("%s: the venue works %s, which this session never sent; left out", self.name, cl_ord_id)
                continue
            status = await self._status_report(order, msg)
            if not status.status.is_terminal:
                result.append(status)
        return result

    async def _on_mass_status_answer(self, msg: FixMessage) -> None:
        """One ExecutionReport answering an OrderMassStatusRequest (584 set): reconcile it, collect it."""
        cl_ord_id = msg.get(Tag.CL_ORD_ID) or ""
        if cl_ord_id and msg.get(Tag.TOT_NUM_REPORTS) != "0":
            order = await self._load_order(base_order_id(cl_ord_id))
            if order is not None:
                await self._reconcile(order, msg)
        collect = self._mass_waiters.get(msg.get(Tag.MASS_STATUS_REQ_ID) or "")
        if collect is None or collect.done.done():
            return  # a late answer to a request that timed out: reconciled, nobody waits for it
        collect.reports.append(msg)
        # Complete with LastRptRequested 912=Y; liberal with venues that leave 912 out: also once TotNumReports 911
        # have come (911=0: nothing works).
        total = msg.get(Tag.TOT_NUM_REPORTS)
        expected = int(total) if total and total.isdigit() else None
        listed = sum(1 for m in collect.reports if m.get(Tag.TOT_NUM_REPORTS) != "0")
        last = msg.get(Tag.LAST_RPT_REQUESTED) == "Y"
        if last or (expected is not None and listed >= expected):
            if last and expected is not None and expected != listed:
                log.warning("%s: the mass status answer says %d report(s), %d came", self.name, expected, listed)
            collect.done.set_result(None)

    async def _open_orders_each(self) -> list[OrderStatusReport]:
        """Orders the venue still works for us, each one asked about (or as its reports say)."""
        result = []
        for order in await self._store.open_orders():
            try:
                status = await self.get_order_status(order.cl_ord_id)
            except BrokerUnavailable:
                if self.status_requests == "order":
                    raise
                continue  # an unanswered submission whose outcome nobody can tell yet
            if status is not None and not status.status.is_terminal:
                result.append(status)
        return result

    async def _local_status(self, order: FixOrder) -> OrderStatusReport:
        """The order as the venue's reports told it, for venues that do not answer status requests.

        A submission the venue has not reported on at all has an unknown outcome: ``BrokerUnavailable``, so
        that nothing is sent again and the order waits for the venue's reports.
        """
        reports = await self._journal.reports(order.order_id)
        if order.status is OrderStatus.SUBMITTED and not reports:
            raise BrokerUnavailable(
                f"{self.name}: the venue does not answer status requests and has not reported on "
                f"{order.cl_ord_id} yet; the outcome is unknown"
            )
        fills = [r for r in reports if r.kind is ReportKind.FILL]
        cum = sum((f.last_qty for f in fills), _D(0))
        notional = sum((f.last_qty * (f.last_price or 0) for f in fills), _D(0))
        status = order.status
        if not status.is_terminal:
            if order.qty > 0 and cum >= order.qty:
                status = OrderStatus.FILLED
            elif cum > 0 and status in (OrderStatus.SUBMITTED, OrderStatus.ACCEPTED, OrderStatus.TRIGGERED):
                status = OrderStatus.PARTIALLY_FILLED
            elif status is OrderStatus.SUBMITTED:
                status = OrderStatus.ACCEPTED
        return OrderStatusReport(
            broker=self.name,
            cl_ord_id=order.cl_ord_id,
            broker_order_id=order.broker_order_id,
            status=status,
            qty=order.qty,
            cum_qty=cum,
            avg_price=(notional / cum) if cum > 0 else None,
            price=order.price,
            stop_price=order.stop_price,
            reports=reports,
        )

    async def _unsupported_ack(self, msg_type: str, cl_ord_id: str, reject: str) -> BrokerAck:
        """The answer to a cancel or replace the venue does not support: refused, the order works on."""
        word, name = _REFUSAL_WORDS[msg_type]
        order_id = base_order_id(cl_ord_id)
        detail = (
            f"the venue does not support {name}; the order keeps working there as it was, "
            f"{word.lower()} it with the venue by hand"
        )
        try:
            await self._store.add_break(
                order_id=order_id, broker=self.name, kind=f"FIX_{word}_UNSUPPORTED", detail=detail
            )
        except _TRANSIENT:
            log.exception("%s: could not record the break for %s", self.name, order_id)
        return BrokerAck(
            accepted=False,
            cl_ord_id=cl_ord_id,
            reason=f"{word}_UNSUPPORTED: {detail} ({reject})",
        )

    async def fills_since(self, since: datetime) -> list[ExecutionReport]:
        """Fills received after ``since``."""
        return await self._journal.fills(since=since)

    async def positions(self) -> list[PositionReport]:
        """Not asked over FIX (RequestForPositions is not supported); the ledger is the book."""
        return []

    # -- sending -----------------------------------------------------------------------------------------

    def _venue_symbol(self, symbol: str) -> str:
        return self._to_venue.get(symbol, symbol)

    def _domain_symbol(self, msg: FixMessage, order: FixOrder | None) -> str:
        venue_symbol = msg.get(Tag.SYMBOL)
        if venue_symbol is None:
            return order.symbol if order else ""
        return self._from_venue.get(venue_symbol, venue_symbol)

    def _account(self, account: str | None) -> str | None:
        return self._settings.account or account or None

    def _order_fields(
        self,
        terms: OrderTerms,
        *,
        cl_ord_id: str,
        orig_cl_ord_id: str | None = None,
        broker_order_id: str | None = None,
    ) -> list[tuple[int, FieldValue]]:
        """The fields of a D or G for ``terms``; ``ValueError`` when a value cannot be written in FIX."""
        t = terms
        type, tif, price, stop_price, expire_at = t.type, t.time_in_force, t.price, t.stop_price, t.expire_at
        pegged = type is OrderType.PEGGED
        return [
            (Tag.CL_ORD_ID, cl_ord_id),
            (Tag.ORIG_CL_ORD_ID, orig_cl_ord_id),
            (Tag.ORDER_ID, broker_order_id),
            (Tag.ACCOUNT, self._account(t.account)),
            (Tag.HANDL_INST, self._settings.handl_inst),
            (Tag.SYMBOL, self._venue_symbol(t.symbol)),
            (Tag.SIDE, MAP_SIDE[t.side]),
            (Tag.TRANSACT_TIME, fix_timestamp(utcnow())),
            (Tag.ORDER_QTY, fix_decimal(t.qty)),
            (Tag.ORD_TYPE, MAP_ORD_TYPE[type]),
            (Tag.PRICE, fix_decimal(price) if price is not None and type.needs_price else None),
            (Tag.STOP_PX, fix_decimal(stop_price) if stop_price is not None and type.needs_stop_price else None),
            (Tag.TIME_IN_FORCE, MAP_TIF[tif]),
            (Tag.EXPIRE_TIME, fix_timestamp(expire_at) if tif is TimeInForce.GTD and expire_at else None),
            (Tag.EXEC_INST, MAP_PEG_EXEC_INST[t.peg_type or PegType.MARKET] if pegged else None),
            (Tag.PEG_OFFSET_VALUE, fix_decimal(t.peg_offset) if pegged and t.peg_offset is not None else None),
        ]

    async def _request(self, msg_type: str, cl_ord_id: str, fields: list[tuple[int, FieldValue]]) -> BrokerAck:
        conn = self._require_logged_on(f"{msg_type} {cl_ord_id}")
        key = (msg_type, cl_ord_id)
        existing = self._waiters.get(key)
        if existing is not None and not existing.done():
            # The same request is already on its way (a retry that overtook the first attempt): share its answer.
            return await self._await_answer(existing, msg_type, cl_ord_id)
        future: asyncio.Future[BrokerAck] = asyncio.get_running_loop().create_future()
        self._waiters[key] = future
        try:
            if not await conn.send(msg_type, fields):
                raise BrokerUnavailable(f"{self.name}: QuickFIX did not send {msg_type} {cl_ord_id}")
            return await self._await_answer(future, msg_type, cl_ord_id)
        finally:
            if self._waiters.get(key) is future:
                del self._waiters[key]

    async def _await_answer(self, future: asyncio.Future[BrokerAck], msg_type: str, cl_ord_id: str) -> BrokerAck:
        try:
            async with asyncio.timeout(self._timeout):
                return await asyncio.shield(future)
        except TimeoutError as e:
            raise BrokerUnavailable(
                f"{self.name}: no answer to {msg_type} {cl_ord_id} within {self._timeout:g}s; the outcome is unknown"
            ) from e

    async def _request_status(self, order: FixOrder, cl_ord_id: str) -> FixMessage | _Refused | None:
        if self.status_requests == "none":
            return _Refused(self.unsupported.get("H", "status requests are off (fix.status_requests)"), True)
        conn = self._require_logged_on(f"status request for {cl_ord_id}")
        future: asyncio.Future[FixMessage | _Refused | None] = asyncio.get_running_loop().create_future()
        waiters = self._status_waiters.setdefault(order.order_id, [])
        waiters.append(future)
        fields: list[tuple[int, FieldValue]] = [
            (Tag.CL_ORD_ID, cl_ord_id),
            (Tag.ORDER_ID, order.broker_order_id),
            (Tag.ACCOUNT, self._account(order.account)),
            (Tag.SYMBOL, self._venue_symbol(order.symbol)),
            (Tag.SIDE, MAP_SIDE[order.side]),
            (Tag.ORD_STATUS_REQ_ID, None if self._fix42 else f"S{uuid.uuid4().hex[:12]}"),
        ]
        try:
            if not await conn.send("H", fields):
                raise BrokerUnavailable(f"{self.name}: QuickFIX did not send the status request for {cl_ord_id}")
            async with asyncio.timeout(self._timeout):
                return await asyncio.shield(future)
        except TimeoutError as e:
            raise BrokerUnavailable(f"{self.name}: no answer to the status request for {cl_ord_id}") from e
        finally:
            if future in waiters:
                waiters.remove(future)
            if not waiters:
                self._status_waiters.pop(order.order_id, None)

    def _resolve(self, msg_type: str, cl_ord_id: str | None, ack: BrokerAck) -> None:
        if not cl_ord_id:
            return
        future = self._waiters.get((msg_type, cl_ord_id))
        if future is not None and not future.done():
            future.set_result(ack)

    def _fail_waiters(self, reason: str) -> None:
        for (msg_type, cl_ord_id), future in list(self._waiters.items()):
            if not future.done():
                future.set_exception(
                    BrokerUnavailable(
                        f"{self.name}: {reason} before {msg_type} {cl_ord_id} was answered; the outcome is unknown"
                    )
                )
        for order_id, futures in list(self._status_waiters.items()):
            for f in futures:
                if not f.done():
                    f.set_exception(
                        BrokerUnavailable(f"{self.name}: {reason} before the status of {order_id} was answered")
                    )
        for req_id, collect in list(self._mass_waiters.items()):
            if not collect.done.done():
                collect.done.set_exception(
                    BrokerUnavailable(f"{self.name}: {reason} before the mass status request {req_id} was answered")
                )

    # -- session events ----------------------------------------------------------------------------------

    def _on_logon(self) -> None:
        if self._recorder is not None:
            self._recorder.changed(True)
        self.resynced.clear()
        if self._resync_task is not None:
            self._resync_task.cancel()
        self._resync_task = asyncio.create_task(self._resync(), name=f"{self.name}-resync")
        if self.market_data is not None and self._conn is not None:
            if self._md_task is not None:
                self._md_task.cancel()
            run = f"{uuid.uuid4().hex[:6].upper()}"
            self._md_task = asyncio.create_task(
                self.market_data.subscribe(self._conn.send, run=run), name=f"{self.name}-md-subscribe"
            )

    def _on_logout(self) -> None:
        if self._recorder is not None:
            self._recorder.changed(False, "the session dropped")
        self._fail_waiters("the FIX session dropped")

    async def _resync(self) -> None:
        """Ask the venue about every order that may still work; the answers reconcile what was missed."""
        try:
            orders = await self._store.open_orders()
            limit = asyncio.Semaphore(16)
            if self.status_requests == "none" and orders:
                log.info(
                    "%s: %d open order(s) not asked about after logon (status requests off); their reports "
                    "come by the venue's resends",
                    self.name,
                    len(orders),
                )
                orders = []

            async def ask(order: FixOrder) -> None:
                async with limit:
                    for attempt in range(1, _RESYNC_ATTEMPTS + 1):
                        try:
                            answer = await self._request_status(order, order.cl_ord_id)
                            break
                        except BrokerUnavailable as e:
                            # Unanswered is not answered: a request sent just after logon is lost without a trace
                            # when the venue then asks for a resend (this adapter keeps no sent messages, so it
                            # gap-fills over it). Ask again while logged on; a new logon resyncs anyway.
                            if attempt == _RESYNC_ATTEMPTS or not self.logged_on:
                                log.warning("%s: resync of %s failed: %s", self.name, order.cl_ord_id, e)
                                return
                            log.info("%s: resync of %s: %s; asking again", self.name, order.cl_ord_id, e)
                    if isinstance(answer, _Refused):
                        log.warning("%s: resync of %s: %s", self.name, order.cl_ord_id, answer.reason)
                        return
                    if answer is None and order.status is not OrderStatus.SUBMITTED:
                        log.warning("%s: the venue no longer knows %s (%s)", self.name, order.cl_ord_id, order.status)

            await asyncio.gather(*(ask(o) for o in orders))
            self.resyncs += 1
            log.info("%s: resynchronised %d open order(s) after logon", self.name, len(orders))
        except Exception:
            log.exception("%s: resynchronisation failed", self.name)
        finally:
            self.resynced.set()

    # -- receiving ---------------------------------------------------------------------------------------

    async def _on_message(self, msg: FixMessage) -> None:
        """Handle one received message; returns once what it says is stored.

        A storage failure that may pass propagates: the connector leaves the message unprocessed and it comes
        again. Anything else that goes wrong is a message this adapter cannot apply: it is kept in
        ``fix_unprocessed`` with a break, and the message counts as processed.
        """
        if msg.msg_type in ("W", "X", "Y"):
            if self.market_data is not None:
                self.market_data.on_message(msg)
            return
        try:
            if msg.msg_type == "8":
                await self._on_execution_report(msg)
            elif msg.msg_type == "9":
                await self._on_cancel_reject(msg)
            elif msg.msg_type in ("3", "j"):
                await self._on_reject(msg)
        except _TRANSIENT:
            raise
        except Exception as e:
            log.exception("%s: could not apply %s", self.name, msg.text())
            await self._unprocessed(msg, kind="FIX_UNINTERPRETED", reason=f"{type(e).__name__}: {e}")

    async def _unprocessed(self, msg: FixMessage, *, kind: str, reason: str) -> None:
        """Keep a message this adapter does not apply, with a reconciliation break for its order."""
        cl_ord_id = msg.get(Tag.CL_ORD_ID) or None
        if cl_ord_id and is_cancel_id(cl_ord_id) and msg.get(Tag.ORIG_CL_ORD_ID):
            cl_ord_id = msg.get(Tag.ORIG_CL_ORD_ID)
        exec_id = msg.get(Tag.EXEC_ID)
        key = (
            f"17:{exec_id}"
            if exec_id
            else f"34:{msg.seq_num}:{msg.get(Tag.ORIG_SENDING_TIME) or msg.get(Tag.SENDING_TIME)}"
        )
        fresh = await self._store.add_unprocessed(
            key=key,
            msg_type=msg.msg_type,
            cl_ord_id=cl_ord_id,
            kind=kind,
            reason=reason[:500],
            message=msg.text(),
            broker=self.name,
        )
        if fresh:
            self.unprocessed += 1
            log.error("%s: %s kept for an operator (%s): %s", self.name, kind, reason, msg.text())

    async def _on_refused_by_quickfix(self, original: FixMessage | None, reject: FixMessage) -> None:
        """QuickFIX refused an incoming report at the session level itself: keep it, it will not come again."""
        why = reject.get(Tag.TEXT) or f"SessionRejectReason {reject.get(Tag.SESSION_REJECT_REASON, '?')}"
        reason = f"refused by QuickFIX at the session level ({why}), so never applied"
        try:
            if original is not None:
                await self._unprocessed(original, kind="FIX_REFUSED", reason=reason)
            else:
                await self._unprocessed(reject, kind="FIX_REFUSED", reason=f"{reason}; the message is not known")
        except Exception:
            log.exception("%s: could not keep the refused message %s", self.name, (original or reject).text())

    async def _load_order(self, order_id: str) -> FixOrder | None:
        order = self._orders.get(order_id)
        if order is None:
            order = await self._store.order(order_id)
            if order is not None and order.open:
                self._orders[order_id] = order
        return order

    async def _save_order(self, order: FixOrder) -> None:
        await self._store.save_order(order)
        if not order.open:
            self._orders.pop(order.order_id, None)

    async def _record(self, report: ExecutionReport, order: FixOrder | None, status: OrderStatus | None) -> bool:
        """Store a report (once per exec id), update the order's record, queue the report for delivery."""
        fresh = await self._journal.add(report)
        if order is not None:
            changed = False
            if report.broker_order_id and order.broker_order_id != report.broker_order_id:
                order.broker_order_id, changed = report.broker_order_id, True
            if report.kind is ReportKind.REPLACED and fresh:
                order.cl_ord_id = report.cl_ord_id
                order.qty = report.new_qty or order.qty
                order.price = report.new_price if report.new_price is not None else order.price
                order.stop_price = report.new_stop_price if report.new_stop_price is not None else order.stop_price
                changed = True
            if status is not None and status is not order.status and fresh:
                order.status, changed = status, True
            if changed:
                await self._save_order(order)
        if fresh and self.delivery is not None:
            self.delivery.put(report)
        if not fresh:
            log.info("%s: report %s was received before; not delivered again", self.name, report.exec_id)
        return fresh

    async def _on_execution_report(self, msg: FixMessage) -> None:
        exec_type = msg.get(Tag.EXEC_TYPE) or ""
        trans_type = msg.get(Tag.EXEC_TRANS_TYPE)
        if (exec_type == "I" or trans_type == "3") and msg.get(Tag.MASS_STATUS_REQ_ID):
            await self._on_mass_status_answer(msg)
            return
        if exec_type == "I" or trans_type == "3":
            await self._on_status_answer(msg)
            return
        cl_ord_id = msg.get(Tag.CL_ORD_ID) or ""
        text = msg.get(Tag.TEXT)
        if exec_type == "8" and msg.get(Tag.ORD_REJ_REASON) == ORD_REJ_DUPLICATE:
            # Answers the submission that reused the id; the order that owns the id lives on untouched.
            reason = text if text and "DUPLICATE" in text.upper() else f"DUPLICATE_CLIENT_ORDER_ID: {text or cl_ord_id}"
            self._resolve("D", cl_ord_id, BrokerAck(accepted=False, cl_ord_id=cl_ord_id, reason=reason))
            return
        if trans_type in ("1", "2") or exec_type in EXEC_TYPE_CORRECTIONS:
            what = "cancel (bust)" if trans_type == "1" or exec_type == "H" else "correction"
            await self._unprocessed(
                msg, kind="FIX_TRADE_CORRECTION", reason=f"trade {what} by the venue; not applied, check it by hand"
            )
            return
        order_key = msg.get(Tag.ORIG_CL_ORD_ID) if is_cancel_id(cl_ord_id) else cl_ord_id
        order_key = order_key or cl_ord_id
        order = await self._load_order(base_order_id(order_key)) if order_key else None
        exec_id = msg.get(Tag.EXEC_ID)
        prior = await self._journal.reports(order.order_id) if order is not None else []
        prior = [r for r in prior if r.exec_id != exec_id]  # a resend is judged as the first time
        kind, problem = self._classify(msg, order, prior)
        if kind is None:
            if problem is not None:
                await self._unprocessed(msg, kind="FIX_UNINTERPRETED", reason=problem)
            else:
                log.debug("%s: ExecType %s not delivered: %s", self.name, exec_type, msg.text())
            return
        report = self._report_from(msg, kind, order, prior)
        if report is None:
            await self._unprocessed(
                msg, kind="FIX_UNINTERPRETED", reason="a fill without a quantity and price that can be worked out"
            )
            return
        if kind is ReportKind.FILL and order is not None and 0 < report.cum_qty <= order.synthesized_cum:
            # A late report of a fill the status answer already showed (and a synthesized fill delivered).
            log.warning(
                "%s: fill %s (cum %s) is already counted by the synthesized fill up to %s; not delivered",
                self.name,
                report.exec_id,
                report.cum_qty,
                order.synthesized_cum,
            )
            return
        cum = parse_decimal(msg.get(Tag.CUM_QTY)) or _D(0)
        qty = parse_decimal(msg.get(Tag.ORDER_QTY)) or (order.qty if order else None)
        status = order_status_of(msg[Tag.ORD_STATUS], cum_qty=cum, qty=qty) if msg.get(Tag.ORD_STATUS) else None
        if status is None or status is OrderStatus.SUBMITTED:
            status = _STATUS_OF_KIND.get(kind, status)
        await self._record(report, order, status)
        ack = BrokerAck(
            accepted=kind is not ReportKind.REJECTED,
            cl_ord_id=report.cl_ord_id,
            broker_order_id=report.broker_order_id,
            reason=report.reason if kind is ReportKind.REJECTED else None,
            reports=[report],
        )
        self._resolve("D", cl_ord_id, ack)
        if kind is ReportKind.CANCELED:
            self._resolve("F", cl_ord_id, ack)
        if kind is ReportKind.REPLACED:
            self._resolve("G", cl_ord_id, ack)

    def _classify(
        self, msg: FixMessage, order: FixOrder | None, prior: list[ExecutionReport]
    ) -> tuple[ReportKind | None, str | None]:
        """What an ExecutionReport says happened.

        Returns (kind, None); (None, None) for news that changes nothing Exodus tracks; (None, why) when it
        cannot be told.
        """
        exec_type = msg.get(Tag.EXEC_TYPE) or ""
        ord_status = msg.get(Tag.ORD_STATUS) or ""
        kind = MAP_EXEC_TYPE_ANY.get(exec_type)
        if kind is not None:
            return kind, None
        if exec_type in EXEC_TYPE_INFORMATIONAL:
            return None, None
        if exec_type == "3":
            # Done for day: no more fills today. A DAY order has no other day; anything else works on tomorrow.
            day = order is not None and order.time_in_force is TimeInForce.DAY
            return (ReportKind.EXPIRED, None) if day else (None, None)
        if exec_type == "D":
            # Restated by the venue: only a final state matters here (new terms come with 150=5 replaced).
            return _BY_ORD_STATUS.get(ord_status), None
        # An ExecType of no version, or none: judge by what the report says happened.
        last_qty = parse_decimal(msg.get(Tag.LAST_QTY))
        if last_qty is not None and last_qty > 0:
            return ReportKind.FILL, None
        cum = parse_decimal(msg.get(Tag.CUM_QTY))
        known = sum((r.last_qty for r in prior if r.kind is ReportKind.FILL), _D(0))
        if ord_status in ("1", "2") and cum is not None and cum > known:
            return ReportKind.FILL, None
        if ord_status in _BY_ORD_STATUS:
            return _BY_ORD_STATUS[ord_status], None
        if ord_status == "0" and (order is None or order.status is OrderStatus.SUBMITTED):
            return ReportKind.ACCEPTED, None
        return None, f"ExecType {exec_type or '(none)'!r} with OrdStatus {ord_status or '(none)'!r} says nothing usable"

    def _report_from(
        self, msg: FixMessage, kind: ReportKind, order: FixOrder | None, prior: list[ExecutionReport]
    ) -> ExecutionReport | None:
        """The report; None for a fill whose quantity or price cannot be told."""
        cl_ord_id = msg.get(Tag.CL_ORD_ID) or ""
        if is_cancel_id(cl_ord_id) and msg.get(Tag.ORIG_CL_ORD_ID):
            cl_ord_id = msg[Tag.ORIG_CL_ORD_ID]  # the order's id, not the cancel request's
        if not cl_ord_id:
            cl_ord_id = order.cl_ord_id if order else f"UNKNOWN-{msg.get(Tag.ORDER_ID)}"
        cum = parse_decimal(msg.get(Tag.CUM_QTY)) or _D(0)
        avg = parse_decimal(msg.get(Tag.AVG_PX))
        reason = msg.get(Tag.TEXT)
        if kind is ReportKind.REJECTED and not reason:
            reason = f"rejected by the venue (OrdRejReason {msg.get(Tag.ORD_REJ_REASON, '?')})"
        if kind is ReportKind.EXPIRED and not reason and msg.get(Tag.EXEC_TYPE) == "3":
            reason = "done for day"
        fill = kind is ReportKind.FILL
        replaced = kind is ReportKind.REPLACED
        last_qty, last_price = _D(0), None
        if fill:
            filled_qty, last_price = _fill_of(msg, prior)
            if filled_qty is None or last_price is None:
                return None
            last_qty = filled_qty
        return ExecutionReport(
            broker=self.name,
            exec_id=msg.get(Tag.EXEC_ID) or f"{msg.get(Tag.ORDER_ID)}:{msg.seq_num}",
            kind=kind,
            cl_ord_id=cl_ord_id,
            broker_order_id=_order_id(msg),
            symbol=self._domain_symbol(msg, order),
            side=MAP_SIDE_IN.get(msg.get(Tag.SIDE) or "", order.side if order else OrderSide.BUY),
            last_qty=last_qty,
            last_price=last_price,
            cum_qty=cum,
            leaves_qty=parse_decimal(msg.get(Tag.LEAVES_QTY)) or _D(0),
            avg_price=avg if cum > 0 else None,
            reason=reason,
            new_qty=parse_decimal(msg.get(Tag.ORDER_QTY)) if replaced else None,
            new_price=parse_decimal(msg.get(Tag.PRICE)) if replaced else None,
            new_stop_price=parse_decimal(msg.get(Tag.STOP_PX)) if replaced else None,
            transact_at=parse_timestamp(msg.get(Tag.TRANSACT_TIME)) or utcnow(),
        )

    async def _on_cancel_reject(self, msg: FixMessage) -> None:
        request_id = msg.get(Tag.CL_ORD_ID) or ""
        orig = msg.get(Tag.ORIG_CL_ORD_ID)
        replace = msg.get(Tag.CXL_REJ_RESPONSE_TO) == "2"
        code = msg.get(Tag.CXL_REJ_REASON)
        unknown = code == CXL_REJ_UNKNOWN_ORDER
        text = msg.get(Tag.TEXT) or f"CxlRejReason {code}"
        if unknown and "UNKNOWN_ORDER" not in text:
            text = f"UNKNOWN_ORDER: {text}"
        order = await self._load_order(base_order_id(orig or request_id))
        reports: list[ExecutionReport] = []
        if not unknown and order is not None:
            report = ExecutionReport(
                broker=self.name,
                exec_id=f"{request_id}:rejected",
                kind=ReportKind.REPLACE_REJECTED if replace else ReportKind.CANCEL_REJECTED,
                cl_ord_id=orig or order.cl_ord_id,
                broker_order_id=_order_id(msg),
                symbol=order.symbol,
                side=order.side,
                reason=text,
                transact_at=parse_timestamp(msg.get(Tag.TRANSACT_TIME)) or utcnow(),
            )
            status = None
            if Tag.ORD_STATUS in msg:
                status = order_status_of(msg[Tag.ORD_STATUS], cum_qty=_D(0), qty=order.qty)
                # 39 on a cancel reject is the order's status; "working" codes say nothing about its fills.
                if status in (OrderStatus.ACCEPTED, OrderStatus.PARTIALLY_FILLED) and order.status in (
                    OrderStatus.ACCEPTED,
                    OrderStatus.PARTIALLY_FILLED,
                ):
                    status = order.status
            await self._record(report, order, status)
            reports.append(report)
        ack = BrokerAck(
            accepted=False,
            cl_ord_id=orig or request_id,
            broker_order_id=_order_id(msg),
            reason=text,
            not_found=unknown,
            reports=reports,
        )
        self._resolve("G" if replace else "F", request_id, ack)

    async def _on_reject(self, msg: FixMessage) -> None:
        """A session-level Reject (35=3) or BusinessMessageReject (35=j) of one of our requests.

        The venue did not act on that request. For a NewOrderSingle that is a definite refusal of the order;
        for anything else it refuses the request, never the order: a refused status request is answered from
        the reports received, a refused cancel or replace leaves the order working as it was (with a break).
        """
        ref = msg.get(Tag.REF_SEQ_NUM)
        sent = self._conn.sent_message(int(ref)) if self._conn is not None and ref and ref.isdigit() else None
        ref_type, cl_ord_id = sent or (msg.get(Tag.REF_MSG_TYPE) or "", msg.get(Tag.BUSINESS_REJECT_REF_ID) or "")
        session_level = msg.msg_type == "3"
        level = "session" if session_level else "business"
        code = msg.get(Tag.SESSION_REJECT_REASON) if session_level else msg.get(Tag.BUSINESS_REJECT_REASON)
        # 35=j 380=3 "unsupported message type"; 35=3 373=11 "invalid MsgType": the venue does not do these.
        unsupported = code == ("11" if session_level else "3")
        reason = f"{level}-level reject of {ref_type} {cl_ord_id}: {msg.get(Tag.TEXT) or ''} (reason {code})"
        log.warning("%s: %s", self.name, reason)
        if ref_type == "D":
            # The order was refused before it became an order: nothing works at the venue.
            order = await self._load_order(base_order_id(cl_ord_id))
            if order is not None and order.status is OrderStatus.SUBMITTED:
                order.status = OrderStatus.REJECTED
                await self._save_order(order)
            self._resolve("D", cl_ord_id, BrokerAck(accepted=False, cl_ord_id=cl_ord_id, reason=reason))
        elif ref_type in ("F", "G"):
            if unsupported:
                self.unsupported.setdefault(ref_type, reason)
            order_cid = cl_ord_id.split(CANCEL_ID_MARKER)[0] if ref_type == "F" else cl_ord_id
            if ref_type == "G":
                order = await self._load_order(base_order_id(cl_ord_id))
                order_cid = order.cl_ord_id if order is not None else cl_ord_id
            ack = await self._unsupported_ack(ref_type, order_cid, reason)
            self._resolve(ref_type, cl_ord_id, ack)
        elif ref_type == "H":
            if unsupported and self.status_requests != "none":
                self.unsupported.setdefault("H", reason)
                self.status_requests = "none"
                log.warning(
                    "%s: the venue does not support OrderStatusRequest; orders are followed by their reports only",
                    self.name,
                )
            refusal = _Refused(reason, unsupported)
            if unsupported or not cl_ord_id:
                waiters = [f for futures in self._status_waiters.values() for f in futures]
            else:
                waiters = list(self._status_waiters.get(base_order_id(cl_ord_id), []))
            for future in waiters:
                if not future.done():
                    future.set_result(refusal)
        elif ref_type == "AF":
            if unsupported and "AF" not in self.unsupported:
                self.unsupported["AF"] = reason
                log.warning(
                    "%s: the venue does not support OrderMassStatusRequest; its open orders are asked about one by "
                    "one from now on",
                    self.name,
                )
            if cl_ord_id in self._mass_waiters:
                collects = [self._mass_waiters[cl_ord_id]]
            else:
                collects = list(self._mass_waiters.values()) if unsupported else []
            for collect in collects:
                if not collect.done.done():
                    collect.done.set_result(_Refused(reason, unsupported))
        elif ref_type == "V" and self.market_data is not None:
            self.market_data.refused(reason, unsupported=True)

    async def _on_status_answer(self, msg: FixMessage) -> None:
        cl_ord_id = msg.get(Tag.CL_ORD_ID) or ""
        order_id = base_order_id(cl_ord_id)
        unknown = msg.get(Tag.ORD_STATUS) == "8" and msg.get(Tag.ORD_REJ_REASON) == ORD_REJ_UNKNOWN_ORDER
        order = await self._load_order(order_id)
        if not unknown and order is not None:
            await self._reconcile(order, msg)
        for future in self._status_waiters.get(order_id, []):
            if not future.done():
                future.set_result(None if unknown else msg)

    async def _reconcile(self, order: FixOrder, msg: FixMessage) -> None:
        """Deliver what a status answer shows that no received report said (see the module docstring)."""
        venue_cum = parse_decimal(msg.get(Tag.CUM_QTY)) or _D(0)
        qty = parse_decimal(msg.get(Tag.ORDER_QTY)) or order.qty
        status = order_status_of(msg.get(Tag.ORD_STATUS) or "", cum_qty=venue_cum, qty=qty)
        cl_ord_id = msg.get(Tag.CL_ORD_ID) or order.cl_ord_id
        reports = await self._journal.reports(order.order_id)
        fills = [r for r in reports if r.kind is ReportKind.FILL]
        local_cum = sum((f.last_qty for f in fills), _D(0))
        common: dict[str, Any] = dict(
            broker=self.name,
            cl_ord_id=cl_ord_id,
            broker_order_id=_order_id(msg),
            symbol=order.symbol,
            side=order.side,
            cum_qty=venue_cum,
            leaves_qty=parse_decimal(msg.get(Tag.LEAVES_QTY)) or _D(0),
            transact_at=utcnow(),
        )
        if venue_cum > local_cum:
            missing = venue_cum - local_cum
            avg = parse_decimal(msg.get(Tag.AVG_PX))
            notional = sum((f.last_qty * (f.last_price or 0) for f in fills), _D(0))
            price = ((avg * venue_cum - notional) / missing).quantize(_D("1e-8")).normalize() if avg else None
            if price is None or price <= 0:
                price = avg
            if price is None or price <= 0:
                log.error(
                    "%s: %s shows %s filled at the venue, %s here, and no price",
                    self.name,
                    cl_ord_id,
                    venue_cum,
                    local_cum,
                )
            else:
                report = ExecutionReport(
                    exec_id=f"{_order_id(msg) or order.order_id}:cum:{fix_decimal(venue_cum)}",
                    kind=ReportKind.FILL,
                    last_qty=missing,
                    last_price=price,
                    avg_price=avg,
                    reason="synthesized from the venue's order status: its fill reports never arrived",
                    **common,
                )
                order.synthesized_cum = venue_cum
                if await self._record(report, order, status):
                    self.synthesized += 1
                    log.warning(
                        "%s: %s: %s filled at the venue without fill reports; delivered as %s",
                        self.name,
                        cl_ord_id,
                        missing,
                        report.exec_id,
                    )
        elif venue_cum < local_cum:
            log.error(
                "%s: %s: the venue reports %s filled, %s fills were received",
                self.name,
                cl_ord_id,
                venue_cum,
                local_cum,
            )
        kind = _STATUS_KINDS.get(status)
        if kind is not None and not any(r.kind in _TERMINAL_KINDS for r in reports):
            # Same exec id as the order workflow's own status merge, so the two paths deduplicate.
            report = ExecutionReport(
                exec_id=f"{cl_ord_id}:status:{status.value}",
                kind=kind,
                reason=msg.get(Tag.TEXT) or f"broker status {status.value}",
                **common,
            )
            if await self._record(report, order, status):
                self.synthesized += 1
        # Always written: the status, the venue's order id and the synthesized quantity may all have moved.
        order.status = status
        order.broker_order_id = _order_id(msg) or order.broker_order_id
        await self._save_order(order)

    async def _status_report(self, order: FixOrder, msg: FixMessage) -> OrderStatusReport:
        cum = parse_decimal(msg.get(Tag.CUM_QTY)) or _D(0)
        qty = parse_decimal(msg.get(Tag.ORDER_QTY)) or order.qty
        avg = parse_decimal(msg.get(Tag.AVG_PX))
        return OrderStatusReport(
            broker=self.name,
            cl_ord_id=msg.get(Tag.CL_ORD_ID) or order.cl_ord_id,
            broker_order_id=_order_id(msg) or order.broker_order_id,
            status=order_status_of(msg.get(Tag.ORD_STATUS) or "", cum_qty=cum, qty=qty),
            qty=qty,
            cum_qty=cum,
            avg_price=avg if cum > 0 else None,
            price=parse_decimal(msg.get(Tag.PRICE)),
            stop_price=parse_decimal(msg.get(Tag.STOP_PX)),
            reports=await self._journal.reports(order.order_id),
        )


def _order_id(msg: FixMessage) -> str | None:
    value = msg.get(Tag.ORDER_ID)
    return None if not value or value.upper() == "NONE" else value


_STATUS_OF_KIND = {
    ReportKind.ACCEPTED: OrderStatus.ACCEPTED,
    ReportKind.CANCELED: OrderStatus.CANCELED,
    ReportKind.EXPIRED: OrderStatus.EXPIRED,
    ReportKind.REJECTED: OrderStatus.REJECTED,
}


def _fill_of(msg: FixMessage, prior: list[ExecutionReport]) -> tuple[Decimal | None, Decimal | None]:
    """(quantity, price) of a fill: LastQty/LastPx, else what CumQty and AvgPx add to the fills received."""
    last_qty = parse_decimal(msg.get(Tag.LAST_QTY))
    last_px = parse_decimal(msg.get(Tag.LAST_PX))
    fills = [r for r in prior if r.kind is ReportKind.FILL]
    known = sum((f.last_qty for f in fills), _D(0))
    notional = sum((f.last_qty * (f.last_price or 0) for f in fills), _D(0))
    cum = parse_decimal(msg.get(Tag.CUM_QTY))
    avg = parse_decimal(msg.get(Tag.AVG_PX))
    if last_qty is None or last_qty <= 0:
        last_qty = cum - known if cum is not None and cum > known else None
    if (last_px is None or last_px <= 0) and last_qty is not None and avg is not None and avg > 0 and cum:
        derived = (avg * cum - notional) / last_qty
        last_px = derived.quantize(_D("1e-8")).normalize() if derived > 0 else None
    if last_px is not None and last_px <= 0:
        last_px = None
    return last_qty, last_px
