"""The local FIX venue: a QuickFIX acceptor in front of the simulated venue's matching model.

``python -m devstack.venues.fix`` runs it on its own (``--help`` for the options; defaults come from the ``fix``
settings so it pairs with the adapter's session). ``EXODUS_FIX__LOCAL_VENUE=true make run`` starts it next to
the worker. Tests run ``FixVenue`` in process.

What it speaks (FIX 4.2, 4.4, or 5.0 SP2 over FIXT 1.1, checked against QuickFIX's data dictionaries):

* NewOrderSingle (D): market, limit, stop, stop-limit, pegged (OrdType P, ExecInst P/R/M, PegOffsetValue 211);
  Day/GTC/IOC/FOK/GTD (ExpireTime 126). Refusals are ExecutionReports 150=8 with OrdRejReason 103: 1 unknown
  symbol, 13 incorrect quantity (0 in 4.2), 6 duplicate ClOrdID, 11 unsupported (0 in 4.2).
* OrderCancelRequest (F) and OrderCancelReplaceRequest (G): 150=4 / 150=5, or OrderCancelReject (9) with
  CxlRejReason 0 too late, 1 unknown order, 6 duplicate ClOrdID.
* OrderStatusRequest (H): 150=I (4.2: ExecTransType 20=3) with the order's state, or 39=8 + 103=5 when it does
  not know the order.
* OrderMassStatusRequest (AF, FIX 4.4 and 5.0; added in 4.3, so not on a 4.2 session): MassStatusReqType 585=7
  (every order of the session) or 1 (the orders for a security: Symbol 55), optionally narrowed by Account (1) and
  Side (54). Answered, like real venues do, with the orders still working only: one ExecutionReport 150=I per order
  (MassStatusReqID 584 echoed, TotNumReports 911, LastRptRequested 912=Y on the last). See ``_mass_status`` for
  the answer when nothing works. Another 585 is refused with a BusinessMessageReject (35=j, 380=0 other; 380=5
  when 585=1 names no symbol). ``mass_status=False`` makes the venue one without AF: QuickFIX refuses it with
  35=j 380=3 (unsupported message type), as a venue whose rules of engagement leave AF out does.
* Every execution of the model (fills, partial fills by display size, IOC/FOK cancels, GTD expiry, stop
  triggers as 150=L in 5.0) goes out as an ExecutionReport (4.4+: 150=F; 4.2: 150=1/2 with 20=0).
* MarketDataRequest (V, all three versions): the top of the simulated book. A snapshot (35=W: bid 269=0 and
  offer 269=1 with MDEntryDate/MDEntryTime 272/273; 5.0 adds LastUpdateTime 779), and with
  SubscriptionRequestType 1 an incremental refresh (35=X, MDUpdateAction 279=1) whenever a price moves (the
  feed's steps); 263=2 ends a subscription. An unknown symbol is refused with a MarketDataRequestReject (35=Y,
  MDReqRejReason 281=0). Subscriptions end with the session.

While the session is down, reports are still sent into QuickFIX's store under their sequence numbers, so the
initiator gets them by resend after it logs on again.

The simulated venue's journal is the record of truth here too: orders are looked up through its journaled API
(``SimVenue.order``/``recorded``), never in its engine, so no answer (an unknown order, a duplicate id, a
status) can differ from the journal. A request the venue cannot journal (``BrokerUnavailable``: the journal
is down) is not acknowledged: QuickFIX's thread waits for the handler, and a handler that fails leaves the
message unprocessed (the connection drops and the message's sequence number is asked for again), so the
counterparty never holds an answer the venue's records lack, and learns the outcome by asking again.

``faults`` simulates what tests need: refused logons, orders that vanish, a connection dropped between
receiving an order and answering it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import contextvars
import itertools
import logging
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

from pydantic import ValidationError

from brokers.fix.config import SessionConfig
from brokers.fix.parsing import (
    MAP_CXL_REJ_REASON,
    MAP_ORD_REJ_REASON,
    MAP_ORD_TYPE,
    MAP_ORDER_STATUS,
    MAP_PEG_EXEC_INST,
    MAP_SIDE,
    MAP_SIDE_IN,
    MAP_TIF,
    Tag,
    fix_decimal,
    fix_timestamp,
    parse_decimal,
    parse_timestamp,
    reverse,
)
from brokers.fix.session import FieldValue, FixConnector, FixMessage
from core.domain import (
    CancelOrder,
    ExecutionReport,
    OrderStatus,
    OrderType,
    ReplaceOrder,
    ReportKind,
    SubmitOrder,
    utcnow,
)
from core.errors import BrokerUnavailable
from sim.matching import RejectReason, SimOrder
from sim.venue import SimVenue

__all__ = ["FixVenue", "FixVenueFaults"]

log = logging.getLogger(__name__)

_ORD_TYPES = reverse(MAP_ORD_TYPE)
_TIFS = reverse(MAP_TIF)
_PEGS = reverse(MAP_PEG_EXEC_INST)


@dataclass
class FixVenueFaults:
    """Failures the venue simulates (tests set them)."""

    #: Refuse every Logon (the initiator keeps retrying).
    refuse_logons: bool = False
    #: Swallow the next N NewOrderSingles without a trace (an order lost inside the venue).
    lose_orders: int = 0
    #: For the next N NewOrderSingles: drop the connection first, then execute the order (its reports are sent
    #: into the store and reach the initiator by resend after it reconnects).
    drop_before_answer: int = 0
    #: The same three for any request, by MsgType (D, F, G, H), each a count of the next such requests:
    #: swallowed without a trace (nothing done, no answer) ...
    swallow: dict[str, int] = field(default_factory=dict)
    #: ... the connection dropped first, then carried out (the answers reach the initiator by resend) ...
    drop_first: dict[str, int] = field(default_factory=dict)
    #: ... carried out at once, and every message the venue sends from then on held back for these seconds
    #: (an answer that comes after the initiator stopped waiting for it).
    hold_answers: dict[str, float] = field(default_factory=dict)

    def take(self, faults: dict[str, int], msg_type: str) -> bool:
        """Whether the next ``msg_type`` request meets the fault (and count it)."""
        if faults.get(msg_type, 0) <= 0:
            return False
        faults[msg_type] -= 1
        return True


@dataclass
class _Request:
    """The FIX request being processed, so the reports it produces carry its ClOrdIDs."""

    msg_type: str
    cl_ord_id: str
    orig_cl_ord_id: str


_current: contextvars.ContextVar[_Request | None] = contextvars.ContextVar("fix_venue_request", default=None)


@dataclass
class _Stats:
    """Message counts by MsgType, and refused logons."""

    received: dict[str, int] = field(default_factory=dict)
    sent: dict[str, int] = field(default_factory=dict)
    refused_logons: int = 0
    #: Requests left unprocessed because the venue could not journal them.
    unjournaled: int = 0


class FixVenue:
    """A FIX acceptor that executes orders with a ``SimVenue``."""

    def __init__(
        self,
        venue: SimVenue,
        *,
        port: int,
        directory: Path,
        begin_string: str = "FIX.4.4",
        sender_comp_id: str = "EXVENUE",
        target_comp_id: str = "EXODUS",
        default_appl_ver_id: str = "FIX.5.0SP2",
        username: str | None = None,
        password: str | None = None,
        allowed_remote_addresses: list[str] | None = None,
        persist_messages: bool = True,
        handler_timeout: float = 30.0,
        mass_status: bool = True,
    ) -> None:
        """Serve one session for the initiator ``target_comp_id`` on ``port``.

        Args:
            venue: The simulated venue that executes the orders (started and stopped with this one).
            port: TCP port to accept on (QuickFIX listens on every interface; see ``allowed_remote_addresses``).
            directory: QuickFIX store and logs.
            begin_string: FIX.4.2, FIX.4.4 or FIXT.1.1.
            sender_comp_id: The venue's CompID.
            target_comp_id: The initiator's CompID.
            default_appl_ver_id: Application version over FIXT.1.1.
            username: When set, a Logon must carry this Username (553) ...
            password: ... and this Password (554).
            allowed_remote_addresses: Peers allowed to connect (default 127.0.0.1).
            persist_messages: False makes QuickFIX answer resend requests with gap fills only (a counterparty
                that does not keep messages; reports sent while the session was down are then lost).
            handler_timeout: How long QuickFIX's thread waits for a request to be journaled and answered before
                leaving the message unprocessed (the connection drops; the counterparty sends it again).
            mass_status: Answer OrderMassStatusRequests (35=AF); False refuses them as an unsupported message type.
        """
        self.venue = venue
        allowed = allowed_remote_addresses if allowed_remote_addresses is not None else ["127.0.0.1"]
        self.config = SessionConfig(
            connection_type="acceptor",
            begin_string=begin_string,
            sender_comp_id=sender_comp_id,
            target_comp_id=target_comp_id,
            port=port,
            directory=directory,
            default_appl_ver_id=default_appl_ver_id,
            allowed_remote_addresses=allowed,
            extra={} if persist_messages else {"PersistMessages": "N"},
        )
        self.begin_string = begin_string
        self._fix42 = begin_string == "FIX.4.2"
        self._fix50 = begin_string == "FIXT.1.1"
        self._username = username
        self._password = password
        self.mass_status = mass_status
        self.faults = FixVenueFaults()
        self.stats = _Stats()
        #: Cancel requests' ClOrdIDs -> the order's ClOrdID at the time (they are ids of the order too).
        self._aliases: dict[str, str] = {}
        self._exec_ids = itertools.count(1)
        self._marking: set[asyncio.Future[None]] = set()
        self._run_id = uuid.uuid4().hex[:6].upper()
        #: Market data subscriptions: MDReqID -> symbols, and the top of book last sent per symbol.
        self._md_subscriptions: dict[str, list[str]] = {}
        self._md_sent: dict[tuple[str, str], tuple[Decimal, Decimal]] = {}
        #: Messages held back by the ``hold_answers`` fault, in order, and the task that sends them.
        self._held: list[tuple[str, list[tuple[int, FieldValue]], str | None]] | None = None
        self._release: asyncio.Task[None] | None = None
        self._conn = FixConnector(
            self.config,
            on_message=self._on_message,
            on_logout=self._on_logout,
            name=f"fix-venue:{sender_comp_id}",
            logon_check=self._check_logon,
            accept_types=("D", "F", "G", "H", "V", *(("AF",) if mass_status else ())),
            forward_admin=(),
            # A request counts as received only once the venue has journaled (and answered) it.
            wait_for_handler=handler_timeout,
            no_wait_types=("V",),
        )
        venue.add_listener(self._on_report)
        venue.add_feed_listener(self._on_feed_moved)

    # -- lifecycle ---------------------------------------------------------------------------------------

    async def start(self) -> None:
        """Start the simulated venue (re-sending what it never delivered) and accept connections."""
        pending = await self.venue.start()
        await self._conn.start()
        for report in pending:
            self._on_report(report)

    async def stop(self) -> None:
        """Log the session out, stop accepting, stop the simulated venue."""
        if self._release is not None:
            self._release.cancel()
        await self._conn.stop()
        await self.venue.stop()

    async def __aenter__(self) -> FixVenue:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def port(self) -> int:
        """The TCP port the venue accepts on."""
        return self.config.port

    @property
    def logged_on(self) -> bool:
        """Whether the initiator is logged on."""
        return self._conn.logged_on

    @property
    def connector(self) -> FixConnector:
        """The acceptor's session."""
        return self._conn

    async def drop(self) -> None:
        """Drop the connection without a Logout (what a network failure looks like)."""
        await self._conn.disconnect()

    async def sequence_numbers(self) -> tuple[int, int]:
        """(next outgoing, next expected incoming) MsgSeqNum of the venue's side."""
        return await self._conn.sequence_numbers()

    # -- market control (tests and demos) ----------------------------------------------------------------

    async def set_mid(self, symbol: str, mid: Decimal) -> None:
        """Move a symbol's mid price and match resting orders."""
        await self.venue.set_mid(symbol, mid)

    async def step(self) -> None:
        """Match resting orders once more."""
        await self.venue.step()

    # -- session -----------------------------------------------------------------------------------------

    def _check_logon(self, msg: FixMessage) -> str | None:
        # Runs on QuickFIX's thread; a returned reason refuses the Logon.
        reason = None
        if self.faults.refuse_logons:
            reason = "logons are refused (simulated outage)"
        elif self._username is not None and msg.get(Tag.USERNAME) != self._username:
            reason = "unknown user"
        elif self._password is not None and msg.get(Tag.PASSWORD) != self._password:
            reason = "wrong password"
        if reason is not None:
            self.stats.refused_logons += 1
        return reason

    def _hold(self, seconds: float) -> None:
        """Hold back every message sent from now on for ``seconds`` (the ``hold_answers`` fault)."""
        if self._held is None:
            self._held = []

        async def release() -> None:
            await asyncio.sleep(seconds)
            held, self._held = self._held or [], None
            for msg_type, fields, exec_id in held:
                self._send(msg_type, fields, exec_id=exec_id)

        self._release = asyncio.create_task(release(), name="fix-venue-held-answers")

    def _send(self, msg_type: str, fields: Iterable[tuple[int, FieldValue]], *, exec_id: str | None = None) -> None:
        # Queued in order on the connector's one sending thread; not awaited, so the venue's reports leave in
        # exactly the order the matching model produced them. Once QuickFIX has a report (it keeps it in its
        # store for resends), the journal marks it delivered.
        if self._held is not None:
            self._held.append((msg_type, list(fields), exec_id))
            return
        self.stats.sent[msg_type] = self.stats.sent.get(msg_type, 0) + 1
        future = self._conn.send_nowait(msg_type, fields)
        loop = asyncio.get_running_loop()

        def done(f: concurrent.futures.Future[bool]) -> None:
            exc = f.exception()
            if exc is not None:
                log.error("fix venue: sending %s failed: %r", msg_type, exc)
            elif exec_id is not None:
                with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                    loop.call_soon_threadsafe(self._delivered, exec_id)

        future.add_done_callback(done)

    def _delivered(self, exec_id: str) -> None:
        task = asyncio.ensure_future(self.venue.mark_delivered([exec_id]))
        self._marking.add(task)
        task.add_done_callback(self._marking.discard)

    def _exec_id(self) -> str:
        return f"{self._run_id}-X{next(self._exec_ids)}"

    async def _on_message(self, msg: FixMessage) -> None:
        self.stats.received[msg.msg_type] = self.stats.received.get(msg.msg_type, 0) + 1
        try:
            await self._handle(msg)
        except BrokerUnavailable as e:
            # Not acknowledged: the connector leaves the message unprocessed (the counterparty sends it again).
            self.stats.unjournaled += 1
            log.warning("fix venue: %s not processed, the journal cannot take it: %s", msg.text(), e)
            raise

    async def _handle(self, msg: FixMessage) -> None:
        faults = self.faults
        if faults.take(faults.swallow, msg.msg_type):
            log.info("fix venue: swallowing %s (fault)", msg.text())
            return
        if faults.take(faults.drop_first, msg.msg_type):
            log.info("fix venue: dropping the connection before carrying out %s (fault)", msg.text())
            await self.drop()
        hold = faults.hold_answers.pop(msg.msg_type, None)
        if hold:
            log.info("fix venue: holding back the answers to %s for %.1f s (fault)", msg.text(), hold)
            self._hold(hold)
        if msg.msg_type == "D":
            await self._new_order(msg)
        elif msg.msg_type == "F":
            await self._cancel(msg)
        elif msg.msg_type == "G":
            await self._replace(msg)
        elif msg.msg_type == "H":
            await self._status(msg)
        elif msg.msg_type == "AF":
            await self._mass_status(msg)
        elif msg.msg_type == "V":
            self._market_data_request(msg)

    # -- requests ----------------------------------------------------------------------------------------

    async def _find(self, cl_ord_id: str) -> SimOrder | None:
        # The journaled record (saves what is unsaved first; BrokerUnavailable if it cannot).
        return await self.venue.order(self._aliases.get(cl_ord_id, cl_ord_id))

    async def _known_id(self, cl_ord_id: str) -> bool:
        return cl_ord_id in self._aliases or await self.venue.order(cl_ord_id) is not None

    async def _new_order(self, msg: FixMessage) -> None:
        cl_ord_id = msg.get(Tag.CL_ORD_ID) or ""
        if self.faults.lose_orders > 0:
            self.faults.lose_orders -= 1
            log.info("fix venue: losing order %s (fault)", cl_ord_id)
            return
        if self.faults.drop_before_answer > 0:
            self.faults.drop_before_answer -= 1
            log.info("fix venue: dropping the connection before answering %s (fault)", cl_ord_id)
            await self.drop()
        if cl_ord_id in self._aliases:
            self._reject(msg, f"{RejectReason.DUPLICATE_ORDER}: {cl_ord_id} is already in use")
            return
        order_or_reason = self._parse_order(msg)
        if isinstance(order_or_reason, str):
            self._reject(msg, order_or_reason)
            return
        token = _current.set(_Request("D", cl_ord_id, ""))
        try:
            ack = await self.venue.submit(order_or_reason)
        finally:
            _current.reset(token)
        if not ack.accepted and not ack.reports:
            # The model refused without an order of its own (the id is taken): a reject that names no order.
            self._reject(msg, ack.reason or f"{RejectReason.DUPLICATE_ORDER}: {cl_ord_id}")

    def _parse_order(self, msg: FixMessage) -> SubmitOrder | str:
        ord_type = _ORD_TYPES.get(msg.get(Tag.ORD_TYPE) or "")
        tif = _TIFS.get(msg.get(Tag.TIME_IN_FORCE) or "0")
        side = MAP_SIDE_IN.get(msg.get(Tag.SIDE) or "")
        if ord_type is None or tif is None or side is None:
            return (
                f"{RejectReason.UNSUPPORTED}: OrdType {msg.get(Tag.ORD_TYPE)} TimeInForce "
                f"{msg.get(Tag.TIME_IN_FORCE)} Side {msg.get(Tag.SIDE)}"
            )
        peg = None
        if ord_type is OrderType.PEGGED:
            inst = (msg.get(Tag.EXEC_INST) or "").split()
            pegs = [_PEGS[v] for v in inst if v in _PEGS]
            if not pegs:
                return f"{RejectReason.UNSUPPORTED}: pegged order without ExecInst P, R or M"
            peg = pegs[0]
        qty = parse_decimal(msg.get(Tag.ORDER_QTY))
        if qty is None or qty <= 0:
            return f"{RejectReason.INCORRECT_QUANTITY}: OrderQty {msg.get(Tag.ORDER_QTY)}"
        limit = ord_type in (OrderType.LIMIT, OrderType.STOP_LIMIT)
        stop = ord_type in (OrderType.STOP, OrderType.STOP_LIMIT)
        try:
            return SubmitOrder(
                cl_ord_id=msg.get(Tag.CL_ORD_ID) or "",
                account=msg.get(Tag.ACCOUNT) or "",
                symbol=msg.get(Tag.SYMBOL) or "",
                side=side,
                type=ord_type,
                time_in_force=tif,
                qty=qty,
                price=parse_decimal(msg.get(Tag.PRICE)) if limit else None,
                stop_price=parse_decimal(msg.get(Tag.STOP_PX)) if stop else None,
                peg_type=peg,
                peg_offset=parse_decimal(msg.get(Tag.PEG_OFFSET_VALUE)) if peg else None,
                expire_at=parse_timestamp(msg.get(Tag.EXPIRE_TIME)),
            )
        except ValidationError as e:
            return f"{RejectReason.INVALID_PRICE}: {e.errors()[0]['msg']}"

    async def _cancel(self, msg: FixMessage) -> None:
        cancel_id = msg.get(Tag.CL_ORD_ID) or ""
        orig = msg.get(Tag.ORIG_CL_ORD_ID) or ""
        order = await self._find(orig)
        if await self._known_id(cancel_id):
            self._cancel_reject(msg, order, f"{RejectReason.DUPLICATE_ORDER}: {cancel_id} is already in use", "1")
            return
        if order is None:
            self._cancel_reject(msg, None, f"{RejectReason.UNKNOWN_ORDER}: no order {orig}", "1")
            return
        side = MAP_SIDE_IN.get(msg.get(Tag.SIDE) or "", order.side)
        request = CancelOrder(
            cl_ord_id=order.cl_ord_id,
            broker_order_id=order.venue_order_id,
            symbol=order.symbol,
            side=side,
            qty=order.qty,
            reason=msg.get(Tag.TEXT) or "canceled on request",
        )
        token = _current.set(_Request("F", cancel_id, orig))
        try:
            ack = await self.venue.cancel(request)
        finally:
            _current.reset(token)
        # The cancel's id names the order from now on (only once the venue has taken the request: a request it
        # could not journal is sent again under the same id).
        self._aliases[cancel_id] = order.cl_ord_id
        if not ack.accepted and not ack.reports:
            self._cancel_reject(msg, order, ack.reason or RejectReason.UNKNOWN_ORDER, "1")

    async def _replace(self, msg: FixMessage) -> None:
        new_id = msg.get(Tag.CL_ORD_ID) or ""
        orig = msg.get(Tag.ORIG_CL_ORD_ID) or ""
        order = await self._find(orig)
        if order is None:
            self._cancel_reject(msg, None, f"{RejectReason.UNKNOWN_ORDER}: no order {orig}", "2")
            return
        if new_id in self._aliases:
            self._cancel_reject(msg, order, f"{RejectReason.DUPLICATE_ORDER}: {new_id} is already in use", "2")
            return
        qty = parse_decimal(msg.get(Tag.ORDER_QTY))
        try:
            request = ReplaceOrder(
                orig_cl_ord_id=order.cl_ord_id,
                cl_ord_id=new_id,
                broker_order_id=order.venue_order_id,
                **order.terms(
                    qty=qty if qty is not None else order.qty,
                    price=parse_decimal(msg.get(Tag.PRICE)) if order.type.needs_price else None,
                    stop_price=parse_decimal(msg.get(Tag.STOP_PX)) if order.type.needs_stop_price else None,
                ),
            )
        except ValidationError:
            reason = f"{RejectReason.INCORRECT_QUANTITY}: OrderQty {msg.get(Tag.ORDER_QTY)}"
            self._cancel_reject(msg, order, reason, "2")
            return
        token = _current.set(_Request("G", new_id, orig))
        try:
            ack = await self.venue.replace(request)
        finally:
            _current.reset(token)
        if not ack.accepted and not ack.reports:
            self._cancel_reject(msg, order, ack.reason or RejectReason.UNKNOWN_ORDER, "2")

    async def _status(self, msg: FixMessage) -> None:
        cl_ord_id = msg.get(Tag.CL_ORD_ID) or ""
        # The venue answers under its lock once everything is journaled, so no step is half-way (changed but not
        # yet reported); the journaled record is read right after, before anything else can run. The answer
        # therefore follows every report of the state it shows.
        key = self._aliases.get(cl_ord_id, cl_ord_id)
        await self.venue.status(key)
        self._send("8", self._status_fields(msg, self.venue.recorded(key)))

    async def _mass_status(self, msg: FixMessage) -> None:
        """An OrderMassStatusRequest: one 150=I report per working order that matches, the last with 912=Y."""
        req_id = msg.get(Tag.MASS_STATUS_REQ_ID) or ""
        req_type = msg.get(Tag.MASS_STATUS_REQ_TYPE) or ""
        symbol = msg.get(Tag.SYMBOL)
        if req_type not in ("1", "7"):
            reason = f"MassStatusReqType {req_type or '(none)'} is not supported (7 all orders, 1 for a security)"
            self._business_reject(msg, req_id, "0", reason)
            return
        if req_type == "1" and not symbol:
            self._business_reject(msg, req_id, "5", "MassStatusReqType 1 needs the security (Symbol 55)")
            return
        # As for a single status: the journaled book under the venue's lock, read right after (no await between),
        # so the answers follow every report of the states they show.
        working = await self.venue.open_orders()
        orders = [o for o in (self.venue.recorded(r.cl_ord_id) for r in working) if o is not None]
        account, side = msg.get(Tag.ACCOUNT), MAP_SIDE_IN.get(msg.get(Tag.SIDE) or "")
        orders = [
            o
            for o in orders
            if (req_type == "7" or o.symbol == symbol)
            and (not account or o.account == account)
            and (side is None or o.side is side)
        ]
        exec_trans = "3" if self._fix42 else None
        if not orders:
            # FIX 4.4 has no message for "nothing matches"; venues that support AF answer with a single
            # ExecutionReport 150=I that names no order (OrderID NONE, no ClOrdID), TotNumReports 0 and
            # LastRptRequested Y, so the requester knows the answer is complete. OrdStatus (required) is 8, as in
            # the answer to a status request for an order the venue does not know.
            self._send(
                "8",
                [
                    (Tag.ORDER_ID, "NONE"),
                    (Tag.EXEC_ID, self._exec_id()),
                    (Tag.EXEC_TRANS_TYPE, exec_trans),
                    (Tag.EXEC_TYPE, "I"),
                    (Tag.ORD_STATUS, "8"),
                    (Tag.MASS_STATUS_REQ_ID, req_id),
                    (Tag.TOT_NUM_REPORTS, "0"),
                    (Tag.LAST_RPT_REQUESTED, "Y"),
                    (Tag.SYMBOL, symbol or "NA"),
                    (Tag.SIDE, msg.get(Tag.SIDE) or "1"),
                    (Tag.LEAVES_QTY, "0"),
                    (Tag.CUM_QTY, "0"),
                    (Tag.AVG_PX, "0"),
                    (Tag.TRANSACT_TIME, fix_timestamp(utcnow())),
                    (Tag.TEXT, "no orders match the mass status request"),
                ],
            )
            return
        for n, order in enumerate(orders, 1):
            ord_status = self._ord_status(order)
            fields = self._order_fields(order)
            fields += [
                (Tag.EXEC_ID, self._exec_id()),
                (Tag.EXEC_TRANS_TYPE, exec_trans),
                (Tag.EXEC_TYPE, "I"),
                (Tag.ORD_STATUS, ord_status),
                (Tag.CL_ORD_ID, order.cl_ord_id),
                (Tag.MASS_STATUS_REQ_ID, req_id),
                (Tag.TOT_NUM_REPORTS, str(len(orders))),
                (Tag.LAST_RPT_REQUESTED, "Y" if n == len(orders) else "N"),
                (Tag.TRANSACT_TIME, fix_timestamp(order.updated_at)),
            ]
            self._send("8", fields)

    def _business_reject(self, msg: FixMessage, ref_id: str, code: str, reason: str) -> None:
        """A BusinessMessageReject (35=j) of ``msg``: BusinessRejectReason 380 ``code``, the reason in Text."""
        self._send(
            "j",
            [
                (Tag.REF_SEQ_NUM, str(msg.seq_num) if msg.seq_num else None),
                (Tag.REF_MSG_TYPE, msg.msg_type),
                (Tag.BUSINESS_REJECT_REF_ID, ref_id or None),
                (Tag.BUSINESS_REJECT_REASON, code),
                (Tag.TEXT, reason[:200]),
            ],
        )

    # -- market data -------------------------------------------------------------------------------------

    def _on_logout(self) -> None:
        self._md_subscriptions.clear()
        self._md_sent.clear()

    def _market_data_request(self, msg: FixMessage) -> None:
        req_id = msg.get(Tag.MD_REQ_ID) or ""
        kind = msg.get(Tag.SUBSCRIPTION_REQUEST_TYPE) or "0"
        if kind == "2":  # unsubscribe
            self._md_subscriptions.pop(req_id, None)
            return
        symbols = [e[Tag.SYMBOL] for e in msg.groups(Tag.NO_RELATED_SYM) if e.get(Tag.SYMBOL)]
        known = set(self.venue.feed.symbols())
        unknown = [s for s in symbols if s not in known]
        if not symbols or unknown or req_id in self._md_subscriptions:
            reason, code = (
                ("duplicate MDReqID", "1") if req_id in self._md_subscriptions else (f"unknown symbol {unknown}", "0")
            )
            self._send("Y", [(Tag.MD_REQ_ID, req_id), (Tag.MD_REQ_REJ_REASON, code), (Tag.TEXT, reason)])
            return
        for symbol in symbols:
            self._send("W", self._snapshot_fields(req_id, symbol))
        if kind == "1":
            self._md_subscriptions[req_id] = symbols

    def _top(self, symbol: str) -> tuple[Decimal, Decimal]:
        quote = self.venue.feed.quote(symbol)
        return quote.bid, quote.ask

    def _entry_time(self) -> list[tuple[int, str | None]]:
        stamp = fix_timestamp(utcnow())  # YYYYMMDD-HH:MM:SS.sss
        return [(Tag.MD_ENTRY_DATE, stamp[:8]), (Tag.MD_ENTRY_TIME, stamp[9:])]

    def _snapshot_fields(self, req_id: str, symbol: str) -> list[tuple[int, FieldValue]]:
        bid, ask = self._top(symbol)
        self._md_sent[(req_id, symbol)] = (bid, ask)
        when = self._entry_time()
        entries = [
            [(Tag.MD_ENTRY_TYPE, "0"), (Tag.MD_ENTRY_PX, fix_decimal(bid)), *when],
            [(Tag.MD_ENTRY_TYPE, "1"), (Tag.MD_ENTRY_PX, fix_decimal(ask)), *when],
        ]
        return [
            (Tag.MD_REQ_ID, req_id),
            (Tag.SYMBOL, symbol),
            (Tag.LAST_UPDATE_TIME, fix_timestamp(utcnow()) if self._fix50 else None),
            (Tag.NO_MD_ENTRIES, entries),
        ]

    async def _on_feed_moved(self, symbols: list[str], by_hand: bool) -> None:
        """Feed listener of the simulated venue: an incremental refresh for each subscribed price that moved.

        A move made by hand (``set_mid``/``step``) is sent even when the price stayed, as a fresh quote.
        """
        if not self._md_subscriptions or not self._conn.logged_on:
            return
        moved = set(symbols)
        for req_id, subscribed in list(self._md_subscriptions.items()):
            for symbol in subscribed:
                if symbol not in moved:
                    continue
                bid, ask = self._top(symbol)
                last = self._md_sent.get((req_id, symbol))
                if last == (bid, ask) and not by_hand:
                    continue  # the ticker moved nothing here; a step by hand is news even at the same price
                if last == (bid, ask):
                    last = None  # say both sides again
                self._md_sent[(req_id, symbol)] = (bid, ask)
                when = self._entry_time()
                entries = [
                    [
                        (Tag.MD_UPDATE_ACTION, "1"),
                        (Tag.MD_ENTRY_TYPE, side),
                        (Tag.SYMBOL, symbol),
                        (Tag.MD_ENTRY_PX, fix_decimal(price)),
                        *when,
                    ]
                    for side, price, before in (
                        ("0", bid, last[0] if last else None),
                        ("1", ask, last[1] if last else None),
                    )
                    if price != before
                ]
                self._send("X", [(Tag.MD_REQ_ID, req_id), (Tag.NO_MD_ENTRIES, entries)])

    # -- answers -----------------------------------------------------------------------------------------

    def _code(self, table: dict[str, dict[str, str]], reason: str, fallback: str) -> str:
        codes = table.get(reason.split(":", 1)[0])
        if codes is None:
            return fallback
        return codes.get(self.begin_string, codes["default"])

    def _reject(self, msg: FixMessage, reason: str) -> None:
        """An ExecutionReport rejecting a NewOrderSingle that never became an order of the model."""
        code = self._code(MAP_ORD_REJ_REASON, reason, "0" if self._fix42 else "99")
        self._send(
            "8",
            [
                (Tag.ORDER_ID, "NONE"),
                (Tag.CL_ORD_ID, msg.get(Tag.CL_ORD_ID)),
                (Tag.EXEC_ID, self._exec_id()),
                (Tag.EXEC_TRANS_TYPE, "0" if self._fix42 else None),
                (Tag.EXEC_TYPE, "8"),
                (Tag.ORD_STATUS, "8"),
                (Tag.ORD_REJ_REASON, code),
                (Tag.ACCOUNT, msg.get(Tag.ACCOUNT) or None),
                (Tag.SYMBOL, msg.get(Tag.SYMBOL) or "?"),
                (Tag.SIDE, msg.get(Tag.SIDE) or "1"),
                (Tag.ORDER_QTY, msg.get(Tag.ORDER_QTY)),
                (Tag.ORD_TYPE, msg.get(Tag.ORD_TYPE)),
                (Tag.LEAVES_QTY, "0"),
                (Tag.CUM_QTY, "0"),
                (Tag.AVG_PX, "0"),
                (Tag.TRANSACT_TIME, fix_timestamp(utcnow())),
                (Tag.TEXT, reason[:200]),
            ],
        )

    def _cancel_reject(self, msg: FixMessage, order: SimOrder | None, reason: str, response_to: str) -> None:
        code = self._code(MAP_CXL_REJ_REASON, reason, "2" if self._fix42 else "99")
        self._send(
            "9",
            [
                (Tag.ORDER_ID, order.venue_order_id if order else "NONE"),
                (Tag.CL_ORD_ID, msg.get(Tag.CL_ORD_ID)),
                (Tag.ORIG_CL_ORD_ID, msg.get(Tag.ORIG_CL_ORD_ID) or "NONE"),
                (Tag.ORD_STATUS, MAP_ORDER_STATUS[order.status] if order else "8"),
                (Tag.CXL_REJ_RESPONSE_TO, response_to),
                (Tag.CXL_REJ_REASON, code),
                (Tag.TRANSACT_TIME, fix_timestamp(utcnow())),
                (Tag.TEXT, reason[:200]),
            ],
        )

    def _status_fields(self, msg: FixMessage, order: SimOrder | None) -> list[tuple[int, str | None]]:
        req_id = None if self._fix42 else msg.get(Tag.ORD_STATUS_REQ_ID)
        exec_trans = "3" if self._fix42 else None
        if order is None:
            return [
                (Tag.ORDER_ID, "NONE"),
                (Tag.CL_ORD_ID, msg.get(Tag.CL_ORD_ID)),
                (Tag.EXEC_ID, self._exec_id()),
                (Tag.EXEC_TRANS_TYPE, exec_trans),
                (Tag.EXEC_TYPE, "8" if self._fix42 else "I"),
                (Tag.ORD_STATUS, "8"),
                (Tag.ORD_REJ_REASON, "5"),
                (Tag.ORD_STATUS_REQ_ID, req_id),
                (Tag.SYMBOL, msg.get(Tag.SYMBOL) or "?"),
                (Tag.SIDE, msg.get(Tag.SIDE) or "1"),
                (Tag.LEAVES_QTY, "0"),
                (Tag.CUM_QTY, "0"),
                (Tag.AVG_PX, "0"),
                (Tag.TRANSACT_TIME, fix_timestamp(utcnow())),
                (Tag.TEXT, f"{RejectReason.UNKNOWN_ORDER}: no order {msg.get(Tag.CL_ORD_ID)}"),
            ]
        ord_status = self._ord_status(order)
        fields = self._order_fields(order)
        fields += [
            (Tag.EXEC_ID, self._exec_id()),
            (Tag.EXEC_TRANS_TYPE, exec_trans),
            (Tag.EXEC_TYPE, ord_status if self._fix42 else "I"),
            (Tag.ORD_STATUS, ord_status),
            (Tag.ORD_STATUS_REQ_ID, req_id),
            (Tag.CL_ORD_ID, order.cl_ord_id),
            (Tag.TRANSACT_TIME, fix_timestamp(order.updated_at)),
        ]
        return fields

    def _ord_status(self, order: SimOrder) -> str:
        if order.status is OrderStatus.REJECTED:
            return "8"
        return MAP_ORDER_STATUS[order.status]

    def _order_fields(self, order: SimOrder) -> list[tuple[int, str | None]]:
        pegged = order.type is OrderType.PEGGED
        return [
            (Tag.ORDER_ID, order.venue_order_id),
            (Tag.ACCOUNT, order.account or None),
            (Tag.SYMBOL, order.symbol),
            (Tag.SIDE, MAP_SIDE[order.side]),
            (Tag.ORDER_QTY, fix_decimal(order.qty)),
            (Tag.ORD_TYPE, MAP_ORD_TYPE[order.type]),
            (Tag.PRICE, fix_decimal(order.price) if order.price is not None else None),
            (Tag.STOP_PX, fix_decimal(order.stop_price) if order.stop_price is not None else None),
            (Tag.TIME_IN_FORCE, MAP_TIF[order.time_in_force]),
            (Tag.EXPIRE_TIME, fix_timestamp(order.expire_at) if order.expire_at else None),
            (Tag.EXEC_INST, MAP_PEG_EXEC_INST[order.peg_type] if pegged and order.peg_type else None),
            (Tag.PEG_OFFSET_VALUE, fix_decimal(order.peg_offset) if pegged and order.peg_offset is not None else None),
            (Tag.CUM_QTY, fix_decimal(order.filled_qty)),
            (Tag.LEAVES_QTY, fix_decimal(order.leaves_qty)),
            (Tag.AVG_PX, fix_decimal(order.avg_price) if order.avg_price is not None else "0"),
        ]

    # -- reports of the matching model -> ExecutionReports -----------------------------------------------

    def _on_report(self, report: ExecutionReport) -> None:
        """Listener of the simulated venue: one model report becomes one FIX message, sent in order."""
        try:
            self._send_report(report)
        except Exception:
            log.exception("fix venue: could not send report %s", report.exec_id)

    def _send_report(self, report: ExecutionReport) -> None:
        order = self.venue.recorded(report.cl_ord_id)  # the listener runs right after the journal took it
        if order is None:
            log.error("fix venue: report %s names no order", report.exec_id)
            return
        request = _current.get()
        kind = report.kind
        if kind is ReportKind.TRIGGERED and not self._fix50:
            self._delivered(report.exec_id)  # FIX 4.x has no ExecType for a triggered stop; its fills say it all
            return
        if kind in (ReportKind.CANCEL_REJECTED, ReportKind.REPLACE_REJECTED):
            reason = report.reason or RejectReason.TOO_LATE
            code = self._code(MAP_CXL_REJ_REASON, reason, "2" if self._fix42 else "99")
            replace = kind is ReportKind.REPLACE_REJECTED
            self._send(
                "9",
                exec_id=report.exec_id,
                fields=[
                    (Tag.ORDER_ID, order.venue_order_id),
                    (Tag.CL_ORD_ID, request.cl_ord_id if request else report.cl_ord_id),
                    (Tag.ORIG_CL_ORD_ID, request.orig_cl_ord_id if request else report.cl_ord_id),
                    (Tag.ORD_STATUS, self._ord_status(order)),
                    (Tag.CXL_REJ_RESPONSE_TO, "2" if replace else "1"),
                    (Tag.CXL_REJ_REASON, code),
                    (Tag.TRANSACT_TIME, fix_timestamp(report.transact_at)),
                    (Tag.TEXT, reason[:200]),
                ],
            )
            return
        cl_ord_id, orig = report.cl_ord_id, None
        if kind is ReportKind.CANCELED and request is not None and request.msg_type == "F":
            cl_ord_id, orig = request.cl_ord_id, request.orig_cl_ord_id
        elif kind is ReportKind.REPLACED and len(order.cl_ord_ids) > 1:
            orig = order.cl_ord_ids[-2]
        exec_type, ord_status = self._exec_codes(report, order)
        fields = self._order_fields(order)
        fields += [
            (Tag.CL_ORD_ID, cl_ord_id),
            (Tag.ORIG_CL_ORD_ID, orig),
            (Tag.EXEC_ID, report.exec_id),
            (Tag.EXEC_TRANS_TYPE, "0" if self._fix42 else None),
            (Tag.EXEC_TYPE, exec_type),
            (Tag.ORD_STATUS, ord_status),
            # The report's cumulative view, which may be older than the order's (the order moved on since).
            (Tag.CUM_QTY, fix_decimal(report.cum_qty)),
            (Tag.LEAVES_QTY, fix_decimal(report.leaves_qty)),
            (Tag.AVG_PX, fix_decimal(report.avg_price) if report.avg_price is not None else "0"),
            (Tag.LAST_QTY, fix_decimal(report.last_qty) if kind is ReportKind.FILL else None),
            (Tag.LAST_PX, fix_decimal(report.last_price) if kind is ReportKind.FILL and report.last_price else None),
            (Tag.TRANSACT_TIME, fix_timestamp(report.transact_at)),
            (Tag.TEXT, report.reason[:200] if report.reason else None),
        ]
        if kind is ReportKind.REPLACED:
            fields += [
                (Tag.ORDER_QTY, fix_decimal(report.new_qty or order.qty)),
                (Tag.PRICE, fix_decimal(report.new_price) if report.new_price is not None else None),
                (Tag.STOP_PX, fix_decimal(report.new_stop_price) if report.new_stop_price is not None else None),
            ]
        if kind is ReportKind.REJECTED:
            fields.append((Tag.ORD_REJ_REASON, self._code(MAP_ORD_REJ_REASON, report.reason or "", "0")))
        # A tag given twice keeps its last value (the report's own view), so drop the earlier duplicates.
        self._send("8", _last_wins(fields), exec_id=report.exec_id)

    def _exec_codes(self, report: ExecutionReport, order: SimOrder) -> tuple[str, str]:
        kind = report.kind
        if kind is ReportKind.FILL:
            filled = report.leaves_qty == 0 and report.cum_qty > 0
            ord_status = "2" if filled else "1"
            return (ord_status if self._fix42 else "F"), ord_status
        working = "1" if report.cum_qty > 0 else "0"
        return {
            ReportKind.ACCEPTED: ("0", "0"),
            ReportKind.CANCELED: ("4", "4"),
            ReportKind.EXPIRED: ("C", "C"),
            ReportKind.REJECTED: ("8", "8"),
            ReportKind.REPLACED: ("5", working),
            ReportKind.TRIGGERED: ("L", working),
        }[kind]


def _last_wins(fields: list[tuple[int, str | None]]) -> list[tuple[int, str | None]]:
    last: dict[int, str | None] = {}
    for tag, value in fields:
        last.pop(tag, None)
        last[tag] = value
    return list(last.items())
