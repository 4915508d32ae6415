"""The local TWS venue: a TCP server speaking the TWS API socket protocol in front of the paper matching engine.

What it serves (``wire.py`` has the framing and the ids): the ``API`` + NUL handshake and server version negotiation,
``startApi`` (``nextValidId``, ``managedAccounts``), ``placeOrder`` (a new order, or a modification when the id is
one of the client's working orders), ``cancelOrder``, ``reqGlobalCancel``, ``reqOpenOrders``/``reqAllOpenOrders``
(``openOrder`` + ``orderStatus`` ... ``openOrderEnd``), ``reqCompletedOrders``, ``reqExecutions`` (``execDetails`` +
``commissionReport`` ... ``execDetailsEnd``), ``reqPositions``, ``reqAccountUpdates``/``reqAccountUpdatesMulti``,
``reqAccountSummary``, ``reqMktData`` (snapshots and streaming, ``tickPrice``/``tickSize``/``tickSnapshotEnd``),
``reqContractDetails`` (stocks, FX, crypto), ``reqIds``, ``reqCurrentTime``, ``reqManagedAccts``.
Anything else is answered with error 321.

IB's behaviours it reproduces, because an adapter has to survive them:

* order ids belong to a client id and must grow: a new order under an id at or below the client's highest is
  refused with error 103 (duplicate order id); ``placeOrder`` under a *working* id modifies that order;
* a refused new order is error 201 ("Order rejected - reason: ...") followed by ``orderStatus`` **Cancelled**; a
  canceled order is error 202 and ``orderStatus`` Cancelled; only the error tells them apart (and, among
  completed orders, ``completedStatus``);
* messages about an order go to the connection of the client that placed it, when it is connected; what happens
  while it is not (a fill during a disconnect) is only learnt from ``reqExecutions``, ``reqOpenOrders`` and
  ``reqCompletedOrders`` afterwards;
* faults (``IBFaults``): a request's answer lost with the connection, answers held back past the client's timeout,
  a connection dropped before the request is processed, a request refused with an error code, every
  ``orderStatus`` repeated, ``nextValidId`` rolled back at the next connection (a Gateway restart), every
  connection dropped (the nightly reset), connectivity messages 1100/1101/1102, unsolicited reports lost while
  the connection stays up (``silent``: only requests learn what happened).

The book lives in memory (the venue's own order ids, perm ids and order refs are not journaled): restarting the
venue process starts an empty paper account.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import zlib
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation

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
from devstack.venues.ib.wire import (
    IN,
    OUT,
    Handshake,
    ProtocolError,
    frame,
    ib_time,
    negotiate,
    read_frame,
    read_handshake,
)
from sim.matching import US_EQUITY_AUCTIONS
from sim.venue import SimVenue

__all__ = ["IBFaults", "IBVenue", "IBVenueServer", "VenueOrder"]

log = logging.getLogger(__name__)

_D = Decimal
#: IB's "no value" double, as TWS writes it where a double is unset.
UNSET_DOUBLE = "1.7976931348623157E308"
_TYPES = {
    "MKT": OrderType.MARKET,
    "LMT": OrderType.LIMIT,
    "STP": OrderType.STOP,
    "STP LMT": OrderType.STOP_LIMIT,
    "MIT": OrderType.MARKET_IF_TOUCHED,
    "LIT": OrderType.LIMIT_IF_TOUCHED,
    # Market / limit on close: DAY orders that trade in the closing auction (the engine's CLS).
    "MOC": OrderType.MARKET,
    "LOC": OrderType.LIMIT,
}
_ON_CLOSE = frozenset({"MOC", "LOC"})
_TIFS = {
    "DAY": TimeInForce.DAY,
    "GTC": TimeInForce.GTC,
    "IOC": TimeInForce.IOC,
    "FOK": TimeInForce.FOK,
    "GTD": TimeInForce.GTD,
    "OPG": TimeInForce.OPG,
}
_OPEN = {"PreSubmitted", "Submitted", "PendingSubmit", "PendingCancel"}


def con_id_of(symbol: str) -> int:
    """A stable contract id for a symbol (IB's conIds are numbers)."""
    return zlib.crc32(symbol.encode()) % 90_000_000 + 10_000_000


@dataclass
class ContractSpec:
    """The contract fields the venue keeps for an order."""

    symbol: str
    sec_type: str
    exchange: str
    currency: str
    con_id: int
    #: The venue's (Exodus') symbol.
    sim_symbol: str

    def fields(self, *, primary: bool = False) -> list[object]:
        """The contract's fields as messages carry them.

        conId, symbol, secType, lastTradeDate, strike, right, multiplier, exchange, [primaryExchange], currency,
        localSymbol, tradingClass.
        """
        out: list[object] = [self.con_id, self.symbol, self.sec_type, "", "0", "", "", self.exchange]
        if primary:
            out.append("")
        out += [self.currency, self.local_symbol, self.symbol if self.sec_type == "STK" else ""]
        return out

    @property
    def local_symbol(self) -> str:
        return f"{self.symbol}.{self.currency}" if self.sec_type == "CASH" else self.symbol


@dataclass
class VenueOrder:
    """An order as the venue knows it (the TWS side of one ``SimOrder``)."""

    client_id: int
    order_id: int
    perm_id: int
    order_ref: str
    account: str
    contract: ContractSpec
    action: str
    qty: Decimal
    order_type: str
    lmt: Decimal | None
    aux: Decimal | None
    tif: str
    good_till: str
    #: The SimVenue's client order id of it now (``IB<permId>``, ``.n`` after the n-th modification).
    sim_cid: str
    revision: int = 0
    status: str = "PendingSubmit"
    filled: Decimal = _D(0)
    avg: Decimal | None = None
    last_fill: Decimal | None = None
    cancel_requested: bool = False
    completed_status: str = ""
    completed_time: str = ""
    #: The API order id of its parent (0: none); a child works only once its parent is completely filled.
    parent_id: int = 0
    #: Its OCA group (``ocaGroup``; empty: none): a fill of one member cancels the group's other orders.
    oca_group: str = ""
    #: False while it waits for an order placed with ``transmit=True`` (nothing is worked, nothing is reported).
    transmitted: bool = True
    #: Handed to the matching engine (a child held for its parent is not, until the parent fills).
    working: bool = False
    #: What the matching engine is given when the order works.
    request: SubmitOrder | None = None

    @property
    def open(self) -> bool:
        """Whether the order still works."""
        return self.status in _OPEN

    @property
    def remaining(self) -> Decimal:
        """What is left to fill (0 once done)."""
        return self.qty - self.filled if self.open else _D(0)


@dataclass
class Execution:
    """One fill as ``reqExecutions`` reports it."""

    order: VenueOrder
    exec_id: str
    at: datetime
    shares: Decimal
    price: Decimal
    cum_qty: Decimal
    avg_price: Decimal
    commission: Decimal
    order_ref: str


@dataclass
class _Fault:
    kind: str  # drop_after, stall_after, drop_before, error
    op: str  # submit, modify, cancel, status
    times: int = 1
    seconds: float = 0.0
    code: int = 0
    text: str = ""


@dataclass
class IBFaults:
    """Faults the venue injects (tests, demos)."""

    pending: list[_Fault] = field(default_factory=list)
    #: Every orderStatus is sent this many extra times.
    repeat_status: int = 0
    #: The next connection's ``nextValidId`` (a Gateway that forgot its ids); used once.
    next_valid_id: int | None = None
    #: Reports nobody asked for (openOrder, orderStatus, execDetails, the error that says rejected or canceled) are
    #: lost: the orders still change, and answers to requests (open, completed orders, executions) still show them.
    silent: bool = False

    def add(self, kind: str, op: str, *, times: int = 1, seconds: float = 0.0, code: int = 0, text: str = "") -> None:
        """Inject ``kind`` on the next ``times`` requests of ``op``."""
        self.pending.append(_Fault(kind, op, times, seconds, code, text))

    def take(self, op: str) -> _Fault | None:
        """The fault for this ``op`` request, if one is pending (used up)."""
        for fault in self.pending:
            if fault.op == op and fault.times > 0:
                fault.times -= 1
                if fault.times == 0:
                    self.pending.remove(fault)
                return fault
        return None

    def clear(self) -> None:
        """No faults any more."""
        self.pending.clear()
        self.repeat_status = 0
        self.next_valid_id = None
        self.silent = False


class _Dropped(Exception):
    """The venue drops the connection (a fault)."""


class Session:
    """One API client connection."""

    def __init__(self, venue: IBVenue, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.venue = venue
        self.reader = reader
        self.writer = writer
        self.version = 0
        self.client_id: int | None = None
        self.capture: list[bytes] | None = None
        self.closed = False
        #: reqMktData subscriptions (streaming): reqId -> venue symbol.
        self.streams: dict[int, ContractSpec] = {}

    def send(self, *fields: object) -> None:
        if self.closed:
            return
        data = frame(fields)
        if self.capture is not None:
            self.capture.append(data)
        else:
            self.writer.write(data)

    def error(self, req_id: int, code: int, text: str) -> None:
        self.send(OUT.ERR_MSG, 2, req_id, code, text, "")

    def abort(self) -> None:
        """Drop the connection at once (nothing more is sent)."""
        self.closed = True
        with contextlib.suppress(Exception):
            self.writer.transport.abort()


class IBVenue:
    """The TWS side: sessions, orders and executions over a ``SimVenue``."""

    def __init__(
        self,
        sim: SimVenue,
        instruments: Iterable[Instrument],
        *,
        accounts: Iterable[str] = ("DU1234567",),
        initial_cash: Decimal = Decimal(1_000_000),  # noqa: B008
    ) -> None:
        """The venue over ``sim``, trading ``instruments`` for ``accounts`` (the first is the default).

        OPG and MOC/LOC orders trade at US equities' open and close (``US_EQUITY_AUCTIONS``) unless ``sim`` has
        auctions of its own.
        """
        self.sim = sim
        if sim.engine.auctions is None:
            sim.engine.auctions = US_EQUITY_AUCTIONS
        self.instruments = {i.symbol: i for i in instruments}
        self.accounts = list(accounts)
        self.initial_cash = initial_cash
        self.faults = IBFaults()
        self.sessions: dict[int, Session] = {}
        self.all_sessions: set[Session] = set()
        self.orders: dict[tuple[int, int], VenueOrder] = {}
        self.by_perm: dict[int, VenueOrder] = {}
        #: The highest order id each client id used (new ids must be above it).
        self.max_ids: dict[int, int] = {}
        self.executions: list[Execution] = []
        # Perm ids (and the exec ids made from them) of two venues started seconds apart must not meet: an adapter
        # that journaled the first one's would take the second one's fills as seen (milliseconds, not seconds).
        self._perm = 1_000_000 + int(time.time() * 1000) % 1_000_000_000
        #: False: new connections are closed at once (TWS/Gateway down, the nightly reset in progress).
        self.accepting = True
        #: Requests served by kind (tests look at it).
        self.served: dict[int, int] = {}
        #: Follow-ups of a parent's or an OCA member's report (children released, the group's others canceled).
        self._tasks: set[asyncio.Task[None]] = set()
        sim.add_listener(self._on_report)
        sim.add_feed_listener(self._on_feed)

    # -- market control (the contract's MarketControl) -------------------------------------------------------

    async def set_mid(self, symbol: str, mid: Decimal) -> None:
        """Move a symbol's mid price and match resting orders."""
        await self.sim.set_mid(symbol, mid)

    async def step(self) -> None:
        """Match resting orders once more."""
        await self.sim.step()

    # -- faults a test triggers outside requests -------------------------------------------------------------

    def drop_all(self) -> None:
        """Drop every client connection (the nightly reset, a Gateway restart)."""
        for session in list(self.all_sessions):
            session.abort()

    def connectivity(self, code: int) -> None:
        """Send a connectivity message (1100 lost, 1101 restored with data lost, 1102 restored) to every client."""
        texts = {
            1100: "Connectivity between IB and Trader Workstation has been lost.",
            1101: "Connectivity between IB and TWS has been restored- data lost.",
            1102: "Connectivity between IB and TWS has been restored- data maintained.",
        }
        for session in list(self.sessions.values()):
            session.error(-1, code, texts.get(code, "connectivity"))

    # -- contracts -------------------------------------------------------------------------------------------

    def contract(
        self, symbol: str, sec_type: str, exchange: str, currency: str, con_id: str = ""
    ) -> ContractSpec | None:
        """The venue's contract for what the client named (None: no security definition)."""
        sim_symbol = {"STK": symbol, "CASH": f"{symbol}{currency}", "CRYPTO": f"{symbol}-{currency}"}.get(sec_type)
        if not sim_symbol and con_id:
            found = [s for s in self.instruments if str(con_id_of(s)) == con_id]
            sim_symbol = found[0] if found else None
        inst = self.instruments.get(sim_symbol or "")
        if inst is None:
            return None
        expected = {
            InstrumentClass.EQUITY: "STK",
            InstrumentClass.FX: "CASH",
            InstrumentClass.CRYPTO: "CRYPTO",
        }[inst.instrument_class]
        if sec_type and sec_type != expected:
            return None
        if inst.instrument_class is InstrumentClass.EQUITY:
            return ContractSpec(
                inst.symbol, "STK", exchange or "SMART", currency or "USD", con_id_of(inst.symbol), inst.symbol
            )
        return ContractSpec(
            inst.base_currency,
            expected,
            exchange or ("IDEALPRO" if expected == "CASH" else "PAXOS"),
            inst.quote_currency,
            con_id_of(inst.symbol),
            inst.symbol,
        )

    # -- sessions --------------------------------------------------------------------------------------------

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """One client connection, from the handshake to its end."""
        session = Session(self, reader, writer)
        if not self.accepting:
            session.abort()
            return
        self.all_sessions.add(session)
        try:
            offer: Handshake = await read_handshake(reader)
            version = negotiate(offer)
            if version is None:
                log.warning("ib venue: no common server version with a client offering %s", offer)
                return
            session.version = version
            writer.write(frame([version, ib_time(utcnow())]))
            while not session.closed:
                fields = await read_frame(reader)
                if not fields:
                    continue
                await self._dispatch(session, fields)
                if not session.closed:
                    await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, _Dropped):
            pass
        except ProtocolError as e:
            log.warning("ib venue: %s", e)
        except Exception:
            log.exception("ib venue: a session failed")
        finally:
            self.all_sessions.discard(session)
            if session.client_id is not None and self.sessions.get(session.client_id) is session:
                del self.sessions[session.client_id]
            session.abort()

    async def _dispatch(self, session: Session, fields: list[str]) -> None:
        try:
            msg = int(fields[0])
        except ValueError as e:
            raise ProtocolError(f"a message id that is not a number: {fields[0]!r}") from e
        self.served[msg] = self.served.get(msg, 0) + 1
        if session.client_id is None:
            if msg != IN.START_API:
                session.error(-1, 321, "Error validating request: the API is not started (startApi first)")
                return
            self._start_api(session, fields)
            return
        handler = {
            IN.PLACE_ORDER: self._place_order,
            IN.CANCEL_ORDER: self._cancel_order,
            IN.REQ_OPEN_ORDERS: self._open_orders,
            IN.REQ_ALL_OPEN_ORDERS: self._open_orders,
            IN.REQ_COMPLETED_ORDERS: self._completed_orders,
            IN.REQ_EXECUTIONS: self._executions,
            IN.REQ_POSITIONS: self._positions,
            IN.REQ_ACCOUNT_UPDATES: self._account_updates,
            IN.REQ_ACCOUNT_UPDATES_MULTI: self._account_updates_multi,
            IN.REQ_ACCOUNT_SUMMARY: self._account_summary,
            IN.REQ_MKT_DATA: self._mkt_data,
            IN.REQ_CONTRACT_DETAILS: self._contract_details,
            IN.CANCEL_MKT_DATA: self._cancel_mkt_data,
            IN.REQ_IDS: self._req_ids,
            IN.REQ_CURRENT_TIME: self._current_time,
            IN.REQ_MANAGED_ACCTS: self._managed_accounts,
            IN.REQ_GLOBAL_CANCEL: self._global_cancel,
        }.get(msg)
        if handler is not None:
            await handler(session, fields)
        elif msg in (
            IN.REQ_AUTO_OPEN_ORDERS,
            IN.REQ_MARKET_DATA_TYPE,
            IN.CANCEL_POSITIONS,
            IN.CANCEL_ACCOUNT_SUMMARY,
            IN.CANCEL_ACCOUNT_UPDATES_MULTI,
        ):
            pass
        else:
            req_id = int(fields[2]) if len(fields) > 2 and fields[2].lstrip("-").isdigit() else -1
            session.error(req_id, 321, f"Error validating request: message {msg} is not served by the local TWS venue")

    def _start_api(self, session: Session, fields: list[str]) -> None:
        try:
            client_id = int(fields[2])
        except (IndexError, ValueError) as e:
            raise ProtocolError(f"startApi without a client id: {fields}") from e
        other = self.sessions.get(client_id)
        if other is not None and not other.closed:
            session.error(
                -1,
                326,
                f"Unable to connect as the client id {client_id} is already in use. Retry with a unique client id.",
            )
            raise _Dropped
        session.client_id = client_id
        self.sessions[client_id] = session
        next_id = self.max_ids.get(client_id, 0) + 1
        if self.faults.next_valid_id is not None:
            next_id, self.faults.next_valid_id = self.faults.next_valid_id, None
        session.send(OUT.NEXT_VALID_ID, 1, next_id)
        session.send(OUT.MANAGED_ACCTS, 1, ",".join(self.accounts))
        session.error(-1, 2104, "Market data farm connection is OK:usfarm")

    # -- faults around one request ---------------------------------------------------------------------------

    async def _faulted(self, session: Session, op: str, req_id: int, run: Callable[[], Awaitable[None]]) -> None:
        """Run ``run`` (a coroutine function) with the fault injected on ``op``, if any."""
        fault = self.faults.take(op)
        if fault is None:
            await run()
            return
        if fault.kind == "drop_before":
            session.abort()
            raise _Dropped
        if fault.kind == "error":
            session.error(req_id, fault.code, fault.text or f"injected error {fault.code}")
            return
        session.capture = []
        try:
            await run()
        finally:
            held, session.capture = session.capture, None
        if fault.kind == "drop_after":
            session.abort()
            raise _Dropped

        async def later() -> None:
            await asyncio.sleep(fault.seconds)
            if not session.closed:
                for data in held:
                    session.writer.write(data)

        asyncio.get_running_loop().create_task(later())

    # -- orders ----------------------------------------------------------------------------------------------

    async def _place_order(self, session: Session, f: list[str]) -> None:
        assert session.client_id is not None
        order_id = int(f[1])
        key = (session.client_id, order_id)
        existing = self.orders.get(key)
        op = "modify" if existing is not None and existing.open else "submit"

        async def run() -> None:
            await self._place(session, f, order_id, existing)

        await self._faulted(session, op, order_id, run)

    async def _place(self, session: Session, f: list[str], order_id: int, existing: VenueOrder | None) -> None:
        assert session.client_id is not None
        client_id = session.client_id
        try:
            req = _PlaceRequest.parse(f, session.version)
        except (IndexError, ValueError, InvalidOperation) as e:
            session.error(order_id, 321, f"Error validating request: an order message the venue cannot read ({e})")
            return
        if existing is not None:
            if existing.open:
                await self._modify(session, existing, req)
            elif existing.status == "Filled":
                session.error(order_id, 104, "Can't modify a filled order.")
            else:
                session.error(order_id, 103, "Duplicate order id")
            return
        if order_id <= self.max_ids.get(client_id, 0):
            session.error(order_id, 103, "Duplicate order id")
            return
        self.max_ids[client_id] = order_id
        order = self._new_order(session, req, order_id)
        if order is None:
            if req.transmit:  # what this order was to transmit goes with it
                why = "the order transmitting it was refused"
                self._refuse_untransmitted(client_id, req.parent_id or order_id, why)
            return
        self.orders[(client_id, order_id)] = order
        self.by_perm[order.perm_id] = order
        if not req.transmit:
            return  # held in "TWS" until an order placed with transmit=True sends it (nothing is reported yet)
        head = req.parent_id or order_id
        group = sorted(
            (
                o
                for o in self.orders.values()
                if o.client_id == client_id
                and (not o.transmitted or o is order)
                and (o.order_id == head or o.parent_id == head)
            ),
            key=lambda o: o.order_id,
        )
        for o in group:
            o.transmitted = True
        for o in group:
            await self._start(o)

    def _new_order(self, session: Session, req: _PlaceRequest, order_id: int) -> VenueOrder | None:
        """The order a placeOrder asks for, or None when it is refused (with IB's error)."""
        assert session.client_id is not None
        client_id = session.client_id
        if req.sec_type == "BAG":
            session.error(order_id, 321, "Error validating request: combination orders are not served here")
            return None
        contract = self.contract(req.symbol, req.sec_type, req.exchange, req.currency, req.con_id)
        if contract is None:
            session.error(order_id, 200, "No security definition has been found for the request")
            return None
        otype = _TYPES.get(req.order_type)
        if otype is None:
            session.error(
                order_id, 387, f"Unsupported order type for this exchange and security type: {req.order_type}"
            )
            return None
        tif = _TIFS.get(req.tif or "DAY")
        if tif is None:
            session.error(order_id, 111, f"The time in force {req.tif} is not valid for this order type (local venue)")
            return None
        if tif is TimeInForce.OPG and req.order_type not in ("MKT", "LMT"):
            session.error(order_id, 111, f"The time in force OPG is not valid for this order type: {req.order_type}")
            return None
        if req.order_type in _ON_CLOSE:
            if tif is not TimeInForce.DAY:
                session.error(order_id, 111, f"The time in force {req.tif} is not valid for {req.order_type} orders")
                return None
            tif = TimeInForce.CLS
        expire_at = None
        if tif is TimeInForce.GTD:
            expire_at = _parse_ib_time(req.good_till)
            if expire_at is None:
                session.error(order_id, 111, "A GTD order needs a goodTillDate (YYYYMMDD HH:MM:SS UTC)")
                return None
        account = req.account or self.accounts[0]
        if account not in self.accounts:
            session.error(order_id, 321, f"Error validating request: account {account} is not managed by this login")
            return None
        if req.oca_group and req.oca_type != 1:
            text = f"ocaType {req.oca_type} is not served by the local venue (1 only: cancel the others with block)"
            session.error(order_id, 321, f"Error validating request: {text}")
            return None
        if req.parent_id:
            parent = self.orders.get((client_id, req.parent_id))
            if parent is None or (not parent.open and parent.status != "Filled"):
                session.error(order_id, 201, f"Order rejected - reason:the parent order {req.parent_id} is not working")
                return None
        self._perm += 1
        perm = self._perm
        sim_cid = f"IB{perm}"
        request: SubmitOrder | None = None
        refused: ValueError | None = None
        try:
            request = SubmitOrder(
                cl_ord_id=sim_cid,
                account=account,
                symbol=contract.sim_symbol,
                side=OrderSide.BUY if req.action == "BUY" else OrderSide.SELL,
                type=otype,
                time_in_force=tif,
                qty=req.qty,
                price=req.lmt if otype.needs_price else None,
                stop_price=req.aux if otype.needs_stop_price else None,
                expire_at=expire_at,
            )
        except ValueError as e:  # the domain refuses the terms (a price of 0, a negative quantity)
            refused = e
        order = VenueOrder(
            client_id=client_id,
            order_id=order_id,
            perm_id=perm,
            order_ref=req.order_ref,
            account=account,
            contract=contract,
            action=req.action,
            qty=req.qty,
            order_type=req.order_type,
            lmt=req.lmt,
            aux=req.aux,
            tif=req.tif or "DAY",
            good_till=req.good_till,
            sim_cid=sim_cid,
            parent_id=req.parent_id,
            oca_group=req.oca_group,
            transmitted=req.transmit,
            request=request,
        )
        if refused is not None:
            order.status, order.transmitted = "Cancelled", True
            order.completed_status = f"Rejected: {refused}"
            self.orders[(client_id, order_id)] = order
            self.by_perm[perm] = order
            session.error(order_id, 201, f"Order rejected - reason:{refused}")
            self._status(order)
            return None
        return order

    def _refuse_untransmitted(self, client_id: int, head: int, why: str) -> None:
        """Refuse the orders still waiting for a transmit of the group headed by ``head`` (IB error 201)."""
        session = self.sessions.get(client_id)
        for o in list(self.orders.values()):
            if o.client_id == client_id and not o.transmitted and (o.order_id == head or o.parent_id == head):
                o.transmitted = True
                o.status = "Cancelled"
                o.completed_status = f"Rejected: {why}"
                o.completed_time = ib_time(utcnow())
                if session is not None:
                    session.error(o.order_id, 201, f"Order rejected - reason:{why}")
                self._status(o)

    async def _start(self, order: VenueOrder) -> None:
        """A transmitted order: a child of a parent not yet filled is held (PreSubmitted); anything else works."""
        parent = self.orders.get((order.client_id, order.parent_id)) if order.parent_id else None
        if parent is not None and parent.status != "Filled":
            if parent.open:
                order.status = "PreSubmitted"
                self._open_order(order)
                self._status(order)
            else:
                self._end_held(order, f"Cancelled: the parent order {parent.order_id} is {parent.status}")
            return
        await self._work(order)

    async def _work(self, order: VenueOrder) -> None:
        """Hand the order to the matching engine."""
        assert order.request is not None
        order.working = True
        session = self.sessions.get(order.client_id)
        try:
            await self.sim.submit(order.request)
        except BrokerUnavailable:
            order.status = "Cancelled"
            if session is not None:
                session.error(order.order_id, 201, "Order rejected - reason: the venue's book is unavailable")
        except ValueError as e:
            order.status = "Cancelled"
            order.completed_status = f"Rejected: {e}"
            if session is not None:
                session.error(order.order_id, 201, f"Order rejected - reason:{e}")
            self._status(order)

    def _end_held(self, order: VenueOrder, why: str, *, by_trader: bool = False) -> None:
        """End an order the engine never had (a held child, an untransmitted order): Cancelled."""
        order.status = "Cancelled"
        order.completed_status = "Cancelled by Trader" if by_trader else why
        order.completed_time = ib_time(utcnow())
        session = self.sessions.get(order.client_id)
        if by_trader and session is not None:
            session.error(order.order_id, 202, "Order Canceled - reason:")
        self._status(order)

    def _children(self, parent: VenueOrder) -> list[VenueOrder]:
        return [
            o
            for o in self.orders.values()
            if o.client_id == parent.client_id and o.parent_id == parent.order_id and o.transmitted and o.open
        ]

    async def _parent_done(self, parent: VenueOrder) -> None:
        """A parent completely filled (its held children work) or ended (they work for what filled, or end)."""
        for child in self._children(parent):
            if child.working:
                continue
            if parent.filled <= 0:
                self._end_held(child, f"Cancelled: the parent order {parent.order_id} is {parent.status}")
                continue
            if parent.filled < child.qty and child.request is not None:
                child.qty = parent.filled
                child.request = child.request.model_copy(update={"qty": parent.filled})
            await self._work(child)

    async def _oca_fill(self, order: VenueOrder) -> None:
        """An OCA group of ocaType 1: a fill of one member cancels the others (held ones end here)."""
        for other in list(self.orders.values()):
            if other is order or other.oca_group != order.oca_group or other.account != order.account:
                continue
            if not other.open:
                continue
            why = f"OCA group {order.oca_group}: order {order.order_id} filled"
            if not other.working:
                other.transmitted = True
                self._end_held(other, f"Cancelled: {why}")
                continue
            await self.sim.cancel(
                CancelOrder(
                    cl_ord_id=other.sim_cid,
                    symbol=other.contract.sim_symbol,
                    side=OrderSide.BUY if other.action == "BUY" else OrderSide.SELL,
                    qty=other.qty,
                    reason=why,
                )
            )

    def _later(self, coro: Awaitable[None]) -> None:
        run_later(self._tasks, coro, what="ib venue: a parent's or OCA group's step")

    async def _modify(self, session: Session, order: VenueOrder, req: _PlaceRequest) -> None:
        otype = _TYPES.get(req.order_type)
        if otype is None or req.order_type != order.order_type:
            session.error(order.order_id, 329, "Order modify failed. Cannot change to the new order type.")
            return
        if not order.working:  # a held child: its terms change here, the engine has nothing yet
            order.order_ref = req.order_ref or order.order_ref
            order.qty, order.lmt, order.aux = req.qty, req.lmt, req.aux
            if order.request is not None:
                update = {"qty": req.qty, "price": req.lmt if otype.needs_price else None}
                update["stop_price"] = req.aux if otype.needs_stop_price else None
                order.request = order.request.model_copy(update=update)
            self._open_order(order)
            self._status(order)
            return
        order.revision += 1
        new_cid = f"IB{order.perm_id}.{order.revision}"
        previous_ref = order.order_ref
        order.order_ref = req.order_ref or order.order_ref
        stop = req.aux if otype.needs_stop_price else None
        price = req.lmt if otype.needs_price else None
        try:
            ack = await self.sim.replace(
                ReplaceOrder(
                    orig_cl_ord_id=order.sim_cid,
                    cl_ord_id=new_cid,
                    symbol=order.contract.sim_symbol,
                    side=OrderSide.BUY if order.action == "BUY" else OrderSide.SELL,
                    type=otype,
                    time_in_force=_TIFS.get(order.tif, TimeInForce.DAY),
                    qty=req.qty,
                    price=price,
                    stop_price=stop,
                )
            )
        except ValueError as e:
            order.order_ref = previous_ref
            session.error(order.order_id, 201, f"Order rejected - reason:{e}")
            return
        if not ack.accepted:
            order.order_ref = previous_ref

    async def _cancel_order(self, session: Session, f: list[str]) -> None:
        assert session.client_id is not None
        order_id = int(f[2])

        async def run() -> None:
            order = self.orders.get((session.client_id or 0, order_id))
            if order is None:
                session.error(order_id, 10147, f"OrderId {order_id} that needs to be cancelled is not found.")
                return
            if not order.open:
                session.error(
                    order_id,
                    161,
                    f"Cancel attempted when order is not in a cancellable state.  Order permId ={order.perm_id}",
                )
                return
            order.cancel_requested = True
            if not order.working:
                order.transmitted = True
                self._end_held(order, "", by_trader=True)
                return
            await self.sim.cancel(
                CancelOrder(
                    cl_ord_id=order.sim_cid,
                    symbol=order.contract.sim_symbol,
                    side=OrderSide.BUY if order.action == "BUY" else OrderSide.SELL,
                    qty=order.qty,
                    reason="Cancelled by Trader",
                )
            )

        await self._faulted(session, "cancel", order_id, run)

    async def _global_cancel(self, session: Session, f: list[str]) -> None:
        for order in list(self.orders.values()):
            if order.open and not order.working:
                order.cancel_requested, order.transmitted = True, True
                self._end_held(order, "", by_trader=True)
            elif order.open:
                order.cancel_requested = True
                await self.sim.cancel(
                    CancelOrder(
                        cl_ord_id=order.sim_cid,
                        symbol=order.contract.sim_symbol,
                        side=OrderSide.BUY if order.action == "BUY" else OrderSide.SELL,
                        qty=order.qty,
                        reason="global cancel",
                    )
                )

    # -- what the matching engine did, told to the client that placed the order ------------------------------

    def _order_of(self, report: ExecutionReport) -> VenueOrder | None:
        base = report.cl_ord_id.split(".", 1)[0]
        if not base.startswith("IB"):
            return None
        try:
            return self.by_perm.get(int(base[2:]))
        except ValueError:
            return None

    def _on_report(self, report: ExecutionReport) -> None:
        order = self._order_of(report)
        if order is None:
            return
        session = None if self.faults.silent else self.sessions.get(order.client_id)
        kind = report.kind
        if kind is ReportKind.ACCEPTED:
            order.status = "Submitted"
            self._open_order(order)
            self._status(order)
        elif kind is ReportKind.FILL:
            assert report.last_price is not None
            order.filled = report.cum_qty
            order.avg = report.avg_price
            order.last_fill = report.last_price
            if order.filled >= order.qty:
                order.status = "Filled"
                order.completed_status = f"Filled Size: {order.filled.normalize():f}"
                order.completed_time = ib_time(report.transact_at)
            seq = report.exec_id.rsplit("-", 1)[-1]
            execution = Execution(
                order=order,
                exec_id=f"{order.perm_id:08x}.{int(seq) if seq.isdigit() else 0:08x}.01.01",
                at=report.transact_at,
                shares=report.last_qty,
                price=report.last_price,
                cum_qty=report.cum_qty,
                avg_price=report.avg_price or report.last_price,
                commission=_commission(report.last_qty, report.last_price),
                order_ref=order.order_ref,
            )
            self.executions.append(execution)
            if session is not None:
                self._exec_details(session, -1, execution)
            self._status(order)
            if order.oca_group:
                self._later(self._oca_fill(order))
            if order.status == "Filled":
                self._later(self._parent_done(order))
        elif kind in (ReportKind.CANCELED, ReportKind.EXPIRED):
            order.status = "Cancelled"
            order.completed_time = ib_time(report.transact_at)
            if order.cancel_requested:
                order.completed_status = "Cancelled by Trader"
                if session is not None:
                    session.error(order.order_id, 202, "Order Canceled - reason:")
            else:
                order.completed_status = f"Cancelled: {report.reason or kind.value.lower()}"
            self._status(order)
            self._later(self._parent_done(order))
        elif kind is ReportKind.REJECTED:
            order.status = "Cancelled"
            order.completed_status = f"Rejected: {report.reason}"
            order.completed_time = ib_time(report.transact_at)
            if session is not None:
                session.error(order.order_id, 201, f"Order rejected - reason:{report.reason}")
            self._status(order)
            self._later(self._parent_done(order))
        elif kind is ReportKind.REPLACED:
            order.sim_cid = report.cl_ord_id
            sim_order = self.sim.recorded(report.cl_ord_id)
            if sim_order is not None:
                order.qty = sim_order.qty
                order.lmt = sim_order.price
                order.aux = sim_order.stop_price
            self._open_order(order)
            self._status(order)
        elif kind is ReportKind.REPLACE_REJECTED:
            order.revision -= 1
            if session is not None:
                if order.status == "Filled":
                    session.error(order.order_id, 104, "Can't modify a filled order.")
                else:
                    session.error(order.order_id, 201, f"Order rejected - reason:{report.reason}")
        elif kind is ReportKind.CANCEL_REJECTED:
            if session is not None:
                session.error(
                    order.order_id,
                    161,
                    f"Cancel attempted when order is not in a cancellable state.  Order permId ={order.perm_id}",
                )

    def _status(self, order: VenueOrder, session: Session | None = None) -> None:
        if session is None and self.faults.silent:
            return  # an unsolicited report, lost
        session = session or self.sessions.get(order.client_id)
        if session is None:
            return
        for _ in range(1 + self.faults.repeat_status):
            session.send(
                OUT.ORDER_STATUS,
                order.order_id,
                order.status,
                order.filled,
                order.remaining,
                order.avg or 0,
                order.perm_id,
                0,
                order.last_fill or 0,
                order.client_id,
                "",
                0,
            )

    def _open_order(self, order: VenueOrder, session: Session | None = None) -> None:
        if session is None and self.faults.silent:
            return  # an unsolicited report, lost
        session = session or self.sessions.get(order.client_id)
        if session is None:
            return
        v = session.version
        c = order.contract
        fields: list[object] = [OUT.OPEN_ORDER, order.order_id, *c.fields()]
        fields += [order.action, order.qty, order.order_type, order.lmt or 0, order.aux or 0, order.tif]
        fields += [order.oca_group]
        fields += [order.account, "O", 0, order.order_ref, order.client_id, order.perm_id, 0, 0, 0, "", ""]
        fields += ["", "", ""]  # faGroup, faMethod, faPercentage
        if v < 177:
            fields.append("")  # faProfile
        fields += ["", order.good_till, "", "", "", 0, "", "", 0, "", "", "", "", ""]
        fields += [0, 0, 0, 0, "", 0, 0, 0, "", 0, 0, "", 0, "", ""]
        fields += [0, 0, "", "", "", 0, ""]  # continuousUpdate .. basisPointsType, comboLegsDescrip
        fields += [0, 0, 0]  # combo legs, order combo legs, smart combo params
        fields += ["", "", ""]  # scale init/subs level size, price increment
        fields += [""]  # hedgeType
        fields += [0, "", "", 0, 0]  # optOutSmartRouting, clearingAccount, clearingIntent, notHeld, dnc
        fields += [""]  # algoStrategy
        fields += [0, 0, order.status]  # solicited, whatIf, status
        fields += ["", "", "", "", "", "", "", "", ""]  # margins
        fields += ["", "", "", "", ""]  # commission, min, max, currency, warning
        fields += [0, 0, 0]  # randomizeSize, randomizePrice, conditions
        fields += ["", "", "", "", "", "", "", 0, "", "", "", "", 0, 0, "", 0]
        fields += ["", 0, 0]  # duration, postToAts, autoCancelParent
        fields += ["", "", "", "", ""]  # minTradeQty .. midOffsetAtHalf
        session.send(*fields)

    def _exec_details(self, session: Session, req_id: int, e: Execution) -> None:
        o = e.order
        fields: list[object] = [OUT.EXECUTION_DATA, req_id, o.order_id, *o.contract.fields()[:7]]
        fields += [o.contract.exchange, o.contract.currency, o.contract.local_symbol, o.contract.fields()[-1]]
        fields += [e.exec_id, ib_time(e.at), o.account, "PAPERSIM", "BOT" if o.action == "BUY" else "SLD"]
        fields += [e.shares, e.price, o.perm_id, o.client_id, 0, e.cum_qty, e.avg_price, e.order_ref, "", "", "", 1]
        if session.version >= 178:
            fields.append(0)
        session.send(*fields)
        session.send(OUT.COMMISSION_REPORT, 1, e.exec_id, e.commission, "USD", UNSET_DOUBLE, UNSET_DOUBLE, "")

    # -- lookups ---------------------------------------------------------------------------------------------

    async def _open_orders(self, session: Session, f: list[str]) -> None:
        mine_only = int(f[0]) == IN.REQ_OPEN_ORDERS

        async def run() -> None:
            await self.sim.flush()
            for order in list(self.orders.values()):
                if order.open and order.transmitted and (not mine_only or order.client_id == session.client_id):
                    self._open_order(order, session)
                    self._status(order, session)
            session.send(OUT.OPEN_ORDER_END, 1)

        await self._faulted(session, "status", -1, run)

    async def _completed_orders(self, session: Session, f: list[str]) -> None:
        async def run() -> None:
            await self.sim.flush()
            for order in list(self.orders.values()):
                if not order.open:
                    self._completed_order(session, order)
            session.send(OUT.COMPLETED_ORDERS_END)

        await self._faulted(session, "status", -1, run)

    def _completed_order(self, session: Session, order: VenueOrder) -> None:
        v = session.version
        fields: list[object] = [OUT.COMPLETED_ORDER, *order.contract.fields()]
        fields += [order.action, order.qty, order.order_type, order.lmt or 0, order.aux or 0, order.tif, ""]
        fields += [order.account, "O", 0, order.order_ref, order.perm_id, 0, 0, 0, "", "", "", ""]
        if v < 177:
            fields.append("")
        fields += ["", order.good_till, "", "", "", 0, "", ""]  # modelCode .. exemptCode
        fields += ["", "", "", "", ""]  # startingPrice .. stockRangeUpper
        fields += ["", 0, 0, "", 0, 0, "", 0, "", ""]  # displaySize .. deltaNeutralAuxPrice
        fields += [0, 0, "", "", ""]  # continuousUpdate, referencePriceType, trailStopPrice, trailingPercent, legs
        fields += [0, 0, 0]
        fields += ["", "", ""]
        fields += [""]
        fields += ["", "", 0, 0]  # clearingAccount, clearingIntent, notHeld, dnc
        fields += [""]  # algoStrategy
        fields += [0, order.status, 0, 0]  # solicited, status, randomizeSize, randomizePrice
        fields += [0]  # conditions
        fields += ["", "", "", 0, 0, "", order.filled, "", 0, "", 0, 0, "", order.completed_time]
        fields += [order.completed_status]
        fields += ["", "", "", "", ""]
        session.send(*fields)

    async def _executions(self, session: Session, f: list[str]) -> None:
        req_id = int(f[2])
        client_filter = int(f[3] or 0) if len(f) > 3 else 0
        account = f[4] if len(f) > 4 else ""
        since = _parse_ib_time(f[5]) if len(f) > 5 and f[5] else None
        symbol = f[6] if len(f) > 6 else ""
        side = f[9] if len(f) > 9 else ""

        async def run() -> None:
            await self.sim.flush()
            for e in list(self.executions):
                o = e.order
                if client_filter and o.client_id != client_filter:
                    continue
                if account and o.account != account:
                    continue
                if since is not None and e.at < since:
                    continue
                if symbol and o.contract.symbol != symbol:
                    continue
                if side and side != ("BUY" if o.action == "BUY" else "SELL"):
                    continue
                self._exec_details(session, req_id, e)
            session.send(OUT.EXECUTION_DATA_END, 1, req_id)

        await self._faulted(session, "status", req_id, run)

    def _positions_of(self) -> dict[tuple[str, str], tuple[ContractSpec, Decimal, Decimal]]:
        out: dict[tuple[str, str], tuple[ContractSpec, Decimal, Decimal]] = {}
        for e in self.executions:
            o = e.order
            key = (o.account, o.contract.sim_symbol)
            contract, qty, cost = out.get(key, (o.contract, _D(0), _D(0)))
            signed = e.shares if o.action == "BUY" else -e.shares
            if qty == 0 or (qty > 0) == (signed > 0):
                cost += signed * e.price
                qty += signed
            else:
                avg = cost / qty
                qty += signed
                cost = avg * qty if (qty > 0) == (cost / avg > 0 if avg else True) else qty * e.price
            out[key] = (contract, qty, cost)
        return out

    async def _positions(self, session: Session, f: list[str]) -> None:
        for (account, _), (c, qty, cost) in self._positions_of().items():
            avg = cost / qty if qty else _D(0)
            session.send(
                OUT.POSITION_DATA,
                3,
                account,
                *c.fields()[:7],
                c.exchange,
                c.currency,
                c.local_symbol,
                c.fields()[-1],
                qty,
                avg,
            )
        session.send(OUT.POSITION_END, 1)

    def _account_values(self, account: str) -> list[tuple[str, str, str]]:
        cash = self.initial_cash
        value = _D(0)
        for (acct, symbol), (_, qty, cost) in self._positions_of().items():
            if acct != account:
                continue
            cash -= cost
            mid = self.sim.reference_price(symbol) or _D(0)
            value += qty * mid
        net = cash + value
        return [
            ("NetLiquidation", _q(net), "USD"),
            ("TotalCashValue", _q(cash), "USD"),
            ("GrossPositionValue", _q(abs(value)), "USD"),
            ("BuyingPower", _q(net * 4), "USD"),
            ("AvailableFunds", _q(net), "USD"),
            ("AccountType", "INDIVIDUAL", ""),
        ]

    async def _account_updates(self, session: Session, f: list[str]) -> None:
        subscribe = f[2] == "1"
        account = f[3] if len(f) > 3 and f[3] else self.accounts[0]
        if not subscribe:
            return
        for key, value, currency in self._account_values(account):
            session.send(OUT.ACCT_VALUE, 2, key, value, currency, account)
        for (acct, symbol), (c, qty, cost) in self._positions_of().items():
            if acct != account:
                continue
            mid = self.sim.reference_price(symbol) or _D(0)
            avg = cost / qty if qty else _D(0)
            session.send(
                OUT.PORTFOLIO_VALUE, 8, *c.fields()[:7], "", c.currency, c.local_symbol, c.fields()[-1],
                qty, mid, _q(qty * mid), avg, _q(qty * mid - cost), 0, account,
            )  # fmt: skip
        session.send(OUT.ACCT_UPDATE_TIME, 1, utcnow().strftime("%H:%M"))
        session.send(OUT.ACCT_DOWNLOAD_END, 1, account)

    async def _account_updates_multi(self, session: Session, f: list[str]) -> None:
        req_id = int(f[2])
        account = f[3] or self.accounts[0]
        model = f[4] if len(f) > 4 else ""
        for key, value, currency in self._account_values(account):
            session.send(OUT.ACCOUNT_UPDATE_MULTI, 1, req_id, account, model, key, value, currency)
        session.send(OUT.ACCOUNT_UPDATE_MULTI_END, 1, req_id)

    async def _account_summary(self, session: Session, f: list[str]) -> None:
        req_id = int(f[2])
        tags = {t for t in (f[4] if len(f) > 4 else "").split(",") if t}
        for account in self.accounts:
            for key, value, currency in self._account_values(account):
                if not tags or key in tags or "All" in tags:
                    session.send(OUT.ACCOUNT_SUMMARY, 1, req_id, account, key, value, currency)
        session.send(OUT.ACCOUNT_SUMMARY_END, 1, req_id)

    # -- market data -----------------------------------------------------------------------------------------

    async def _mkt_data(self, session: Session, f: list[str]) -> None:
        req_id = int(f[2])
        con_id, symbol, sec_type = f[3], f[4], f[5]
        exchange, currency = f[10], f[12]
        contract = self.contract(symbol, sec_type, exchange, currency, con_id)
        if contract is None:
            session.error(req_id, 200, "No security definition has been found for the request")
            return
        # After the contract: the delta-neutral flag (and its fields), generic ticks, snapshot, regulatory, options.
        rest = f[15:]
        if rest and rest[0] == "1":
            rest = rest[4:]
        else:
            rest = rest[1:]
        snapshot = len(rest) > 1 and rest[1] == "1"
        session.send(OUT.MARKET_DATA_TYPE, 1, req_id, 1)
        self._ticks(session, req_id, contract)
        if snapshot:
            session.send(OUT.TICK_SNAPSHOT_END, 1, req_id)
        else:
            session.streams[req_id] = contract

    async def _contract_details(self, session: Session, f: list[str]) -> None:
        # 9, version, reqId, conId, symbol, secType, lastTradeDate, strike, right, multiplier, exchange,
        # primaryExchange, currency, localSymbol, tradingClass, includeExpired, secIdType, secId, [issuerId]
        req_id = int(f[2])
        contract = self.contract(f[4], f[5], f[10], f[12], f[3] if f[3] not in ("", "0") else "")
        if contract is not None:
            inst = self.instruments[contract.sim_symbol]
            c = contract
            session.send(
                OUT.CONTRACT_DATA, req_id, c.symbol, c.sec_type, "", "0", "", c.exchange, c.currency,
                c.local_symbol, c.symbol, c.fields()[-1], c.con_id, inst.tick_size, "",
                "LMT,MKT,STP,STP LMT", f"{c.exchange},PAPERSIM", 1, 0, inst.symbol, "PAPERSIM", "",
                "", "", "", "UTC", "", "", "", "", 0,
                "", "", "", "", "", "COMMON" if c.sec_type == "STK" else "",
                inst.min_qty, inst.lot_step, inst.lot_step,
            )  # fmt: skip
        session.send(OUT.CONTRACT_DATA_END, 1, req_id)

    async def _cancel_mkt_data(self, session: Session, f: list[str]) -> None:
        session.streams.pop(int(f[2]), None)

    def _ticks(self, session: Session, req_id: int, contract: ContractSpec) -> None:
        quote = self.sim.feed.quote(contract.sim_symbol)
        size = self.instruments[contract.sim_symbol].display_qty
        for tick, price in ((1, quote.bid), (2, quote.ask), (4, quote.mid)):
            session.send(OUT.TICK_PRICE, 6, req_id, tick, price, size, 0)

    async def _on_feed(self, symbols: list[str], by_hand: bool) -> None:
        moved = set(symbols)
        for session in list(self.sessions.values()):
            for req_id, contract in list(session.streams.items()):
                if contract.sim_symbol in moved:
                    self._ticks(session, req_id, contract)

    # -- small requests --------------------------------------------------------------------------------------

    async def _req_ids(self, session: Session, f: list[str]) -> None:
        assert session.client_id is not None
        session.send(OUT.NEXT_VALID_ID, 1, self.max_ids.get(session.client_id, 0) + 1)

    async def _current_time(self, session: Session, f: list[str]) -> None:
        session.send(OUT.CURRENT_TIME, 1, int(time.time()))

    async def _managed_accounts(self, session: Session, f: list[str]) -> None:
        session.send(OUT.MANAGED_ACCTS, 1, ",".join(self.accounts))


@dataclass
class _PlaceRequest:
    """The fields of a placeOrder the venue uses."""

    con_id: str
    symbol: str
    sec_type: str
    exchange: str
    currency: str
    action: str
    qty: Decimal
    order_type: str
    lmt: Decimal | None
    aux: Decimal | None
    tif: str
    account: str
    order_ref: str
    good_till: str
    oca_group: str = ""
    oca_type: int = 0
    transmit: bool = True
    parent_id: int = 0

    @classmethod
    def parse(cls, f: list[str], version: int) -> _PlaceRequest:
        # 0 id, 1 orderId, 2..13 contract (conId, symbol, secType, lastTradeDate, strike, right, multiplier,
        # exchange, primaryExchange, currency, localSymbol, tradingClass), 14 secIdType, 15 secId, 16 action,
        # 17 totalQuantity, 18 orderType, 19 lmtPrice, 20 auxPrice, 21 tif, 22 ocaGroup, 23 account, 24 openClose,
        # 25 origin, 26 orderRef, 27 transmit, ... 34 hidden, 35 sharesAllocation, 36 discretionaryAmt,
        # 37 goodAfterTime, 38 goodTillDate, 39-41 faGroup/faMethod/faPercentage, [faProfile before version 177],
        # then modelCode, shortSaleSlot, designatedLocation, exemptCode, ocaType.
        action = f[16]
        if action not in ("BUY", "SELL"):
            raise ValueError(f"action {action!r}")
        return cls(
            con_id=f[2] if f[2] not in ("", "0") else "",
            symbol=f[3],
            sec_type=f[4],
            exchange=f[9],
            currency=f[11],
            action=action,
            qty=_dec(f[17]) or _D(0),
            order_type=f[18],
            lmt=_dec(f[19]),
            aux=_dec(f[20]),
            tif=f[21],
            account=f[23],
            order_ref=f[26],
            good_till=f[38] if f[4] != "BAG" else "",
            oca_group=f[22],
            oca_type=int(_at(f, 46 if version >= 177 else 47) or 0) if f[4] != "BAG" else 0,
            transmit=f[27] not in ("0", "False", "false"),
            parent_id=int(_at(f, 28) or 0),
        )


def _at(f: list[str], i: int) -> str:
    return f[i] if len(f) > i else ""


def _dec(text: str) -> Decimal | None:
    if text == "" or text.upper().startswith("1.7976931348623157E308"):
        return None
    value = Decimal(text)
    return value.normalize() if value == value.to_integral_value() else value


def _q(value: Decimal) -> str:
    return f"{value.quantize(_D('0.01')):f}"


def _commission(qty: Decimal, price: Decimal) -> Decimal:
    """IB's fixed US stock rate, roughly: USD 0.005 a share, at least 1.00, at most 1% of the trade value."""
    fee = max(qty * _D("0.005"), _D("1.00"))
    return min(fee, qty * price * _D("0.01")).quantize(_D("0.0001"))


def _parse_ib_time(text: str) -> datetime | None:
    text = text.strip()
    if not text:
        return None
    for fmt in ("%Y%m%d %H:%M:%S", "%Y%m%d-%H:%M:%S"):
        try:
            return datetime.strptime(text[:17], fmt).replace(tzinfo=UTC)
        except ValueError:
            continue
    return None


class IBVenueServer:
    """The venue on a TCP port (0: a free one)."""

    def __init__(self, venue: IBVenue, *, host: str = "127.0.0.1", port: int = 0) -> None:
        """Serve ``venue`` on ``host``:``port``."""
        self.venue = venue
        self.host = host
        self.port = port
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        """Start the matching engine and listen."""
        await self.venue.sim.start()
        self._server = await asyncio.start_server(self.venue.serve, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        """Drop every connection, stop listening, stop the matching engine."""
        self.venue.drop_all()
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 5)
            self._server = None
        await self.venue.sim.stop()
