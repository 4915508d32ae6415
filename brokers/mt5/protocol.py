"""The wire protocol between Exodus and the ExodusBridge EA, version 1 (documented in ``mql5/PROTOCOL.md``).

WARNING: must match ``mql5/Include/ExodusBridge/Protocol.mqh``. ``tests/brokers/mt5/test_protocol.py``
checks both against the golden messages in ``tests/brokers/mt5/golden/``: change all three together, and
bump ``PROTOCOL_VERSION`` for any change an EA already in the field would not understand.

The EA speaks first, always (MQL5 can only make outgoing requests)::

    EA                                             Exodus  (/api/v1/bridge/mt5/accounts/{account})
    ── POST /heartbeat      Heartbeat        ──▶   liveness, account state, positions, symbol specs
    ◀─                      HeartbeatReply   ──    (a reconnect triggers reconciliation)
    ── POST /commands/poll  PollRequest      ──▶   lease the commands not yet acknowledged
    ◀─                      PollReply        ──    commands: NEW / CANCEL / MODIFY
    ── POST /acks           Ack              ──▶   one per command: the MqlTradeResult (or why not sent)
    ── POST /trades         TradeReport      ──▶   deals (DEAL_ADD) and orders moved to history
    ── POST /ticks          Ticks            ──▶   the last tick of each symbol (bid/ask/time): quotes "mt5"
    ◀─                      TicksReply       ──    (optional for an EA: one without ticks is still protocol 1)

Every body is JSON with snake_case keys (the MQL5 and ``MetaTrader5`` names), decimals as strings, tickets
and MQL5 enum values as integers, times as UTC milliseconds (``*_msc``) or UTC Unix seconds. Every request
carries ``Authorization: Bearer <bridge token>`` and ``protocol``.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from enum import IntEnum, StrEnum
from typing import Annotated, Final

from pydantic import BaseModel, ConfigDict, Field

from core.bounds import MAX_TIME, Amount

__all__ = [
    "API_PREFIX",
    "PATHS",
    "PROTOCOL_VERSION",
    "RETCODES",
    "SUCCESS_RETCODES",
    "Ack",
    "AckReply",
    "AckStatus",
    "AccountInfo",
    "Command",
    "CommandKind",
    "Deal",
    "EaError",
    "Heartbeat",
    "HeartbeatReply",
    "LinkStatus",
    "Mt5",
    "OrderUpdate",
    "PendingOrder",
    "PollReply",
    "PollRequest",
    "Position",
    "Retcode",
    "SymbolSpec",
    "TerminalInfo",
    "Tick",
    "Ticks",
    "TicksReply",
    "TradeReply",
    "TradeReport",
]

PROTOCOL_VERSION: Final = 1

#: Prefix of the bridge endpoints; ``{account}`` is the Exodus account id (the EA's ``InpAccount``).
API_PREFIX: Final = "/api/v1/bridge/mt5/accounts/{account}"
#: Endpoint paths below ``API_PREFIX``.
PATHS: Final = {
    "heartbeat": "/heartbeat",
    "poll": "/commands/poll",
    "ack": "/acks",
    "trades": "/trades",
    "ticks": "/ticks",
}


class Mt5:
    """MQL5 enum values the protocol carries (copied from the MetaTrader5 package; the EA re-checks them).

    A namespace of ints rather than an enum: several MQL5 enums share values, and an ``IntEnum`` would turn
    them into aliases of one another.
    """

    TRADE_ACTION_DEAL: Final = 1
    TRADE_ACTION_PENDING: Final = 5
    TRADE_ACTION_SLTP: Final = 6
    TRADE_ACTION_MODIFY: Final = 7
    TRADE_ACTION_REMOVE: Final = 8

    ORDER_TYPE_BUY: Final = 0
    ORDER_TYPE_SELL: Final = 1
    ORDER_TYPE_BUY_LIMIT: Final = 2
    ORDER_TYPE_SELL_LIMIT: Final = 3
    ORDER_TYPE_BUY_STOP: Final = 4
    ORDER_TYPE_SELL_STOP: Final = 5
    ORDER_TYPE_BUY_STOP_LIMIT: Final = 6
    ORDER_TYPE_SELL_STOP_LIMIT: Final = 7

    ORDER_FILLING_FOK: Final = 0
    ORDER_FILLING_IOC: Final = 1
    ORDER_FILLING_RETURN: Final = 2

    ORDER_TIME_GTC: Final = 0
    ORDER_TIME_DAY: Final = 1
    ORDER_TIME_SPECIFIED: Final = 2

    ORDER_STATE_STARTED: Final = 0
    ORDER_STATE_PLACED: Final = 1
    ORDER_STATE_CANCELED: Final = 2
    ORDER_STATE_PARTIAL: Final = 3
    ORDER_STATE_FILLED: Final = 4
    ORDER_STATE_REJECTED: Final = 5
    ORDER_STATE_EXPIRED: Final = 6

    DEAL_TYPE_BUY: Final = 0
    DEAL_TYPE_SELL: Final = 1

    POSITION_TYPE_BUY: Final = 0
    POSITION_TYPE_SELL: Final = 1

    #: SYMBOL_FILLING_MODE bits.
    SYMBOL_FILLING_FOK: Final = 1
    SYMBOL_FILLING_IOC: Final = 2

    SYMBOL_TRADE_EXECUTION_REQUEST: Final = 0
    SYMBOL_TRADE_EXECUTION_INSTANT: Final = 1
    SYMBOL_TRADE_EXECUTION_MARKET: Final = 2
    SYMBOL_TRADE_EXECUTION_EXCHANGE: Final = 3

    SYMBOL_TRADE_MODE_DISABLED: Final = 0
    SYMBOL_TRADE_MODE_FULL: Final = 4


class Retcode(IntEnum):
    """TRADE_RETCODE_* values of MqlTradeResult.retcode."""

    REQUOTE = 10004
    REJECT = 10006
    CANCEL = 10007
    PLACED = 10008
    DONE = 10009
    DONE_PARTIAL = 10010
    ERROR = 10011
    TIMEOUT = 10012
    INVALID = 10013
    INVALID_VOLUME = 10014
    INVALID_PRICE = 10015
    INVALID_STOPS = 10016
    TRADE_DISABLED = 10017
    MARKET_CLOSED = 10018
    NO_MONEY = 10019
    PRICE_CHANGED = 10020
    PRICE_OFF = 10021
    INVALID_EXPIRATION = 10022
    ORDER_CHANGED = 10023
    TOO_MANY_REQUESTS = 10024
    NO_CHANGES = 10025
    SERVER_DISABLES_AT = 10026
    CLIENT_DISABLES_AT = 10027
    LOCKED = 10028
    FROZEN = 10029
    INVALID_FILL = 10030
    CONNECTION = 10031
    ONLY_REAL = 10032
    LIMIT_ORDERS = 10033
    LIMIT_VOLUME = 10034
    INVALID_ORDER = 10035
    POSITION_CLOSED = 10036
    INVALID_CLOSE_VOLUME = 10038
    CLOSE_ORDER_EXIST = 10039
    LIMIT_POSITIONS = 10040
    REJECT_CANCEL = 10041
    LONG_ONLY = 10042
    SHORT_ONLY = 10043
    CLOSE_ONLY = 10044
    FIFO_CLOSE = 10045
    HEDGE_PROHIBITED = 10046


#: What a trader reads for each retcode (the reason of a rejected order names code, name and this text).
RETCODES: Final[dict[int, str]] = {
    Retcode.REQUOTE: "requote",
    Retcode.REJECT: "request rejected",
    Retcode.CANCEL: "request canceled by the trader",
    Retcode.PLACED: "order placed",
    Retcode.DONE: "request completed",
    Retcode.DONE_PARTIAL: "only part of the request was completed",
    Retcode.ERROR: "request processing error",
    Retcode.TIMEOUT: "request canceled by timeout",
    Retcode.INVALID: "invalid request",
    Retcode.INVALID_VOLUME: "invalid volume in the request",
    Retcode.INVALID_PRICE: "invalid price in the request",
    Retcode.INVALID_STOPS: "invalid stops in the request",
    Retcode.TRADE_DISABLED: "trading is disabled",
    Retcode.MARKET_CLOSED: "market is closed",
    Retcode.NO_MONEY: "not enough money to complete the request",
    Retcode.PRICE_CHANGED: "prices changed",
    Retcode.PRICE_OFF: "no quotes to process the request",
    Retcode.INVALID_EXPIRATION: "invalid order expiration date",
    Retcode.ORDER_CHANGED: "order state changed",
    Retcode.TOO_MANY_REQUESTS: "too frequent requests",
    Retcode.NO_CHANGES: "no changes in request",
    Retcode.SERVER_DISABLES_AT: "autotrading disabled by server",
    Retcode.CLIENT_DISABLES_AT: "autotrading disabled by the client terminal (Algo Trading button)",
    Retcode.LOCKED: "request locked for processing",
    Retcode.FROZEN: "order or position frozen",
    Retcode.INVALID_FILL: "invalid order filling type",
    Retcode.CONNECTION: "no connection with the trade server",
    Retcode.ONLY_REAL: "operation allowed only for live accounts",
    Retcode.LIMIT_ORDERS: "the number of pending orders has reached the limit",
    Retcode.LIMIT_VOLUME: "the volume of orders and positions for the symbol has reached the limit",
    Retcode.INVALID_ORDER: "incorrect or prohibited order type",
    Retcode.POSITION_CLOSED: "position with the specified identifier has already been closed",
    Retcode.INVALID_CLOSE_VOLUME: "close volume exceeds the current position volume",
    Retcode.CLOSE_ORDER_EXIST: "a close order already exists for the position",
    Retcode.LIMIT_POSITIONS: "the number of open positions has reached the limit",
    Retcode.REJECT_CANCEL: "pending order activation request rejected, the order is canceled",
    Retcode.LONG_ONLY: "only long positions are allowed for the symbol",
    Retcode.SHORT_ONLY: "only short positions are allowed for the symbol",
    Retcode.CLOSE_ONLY: "only position closing is allowed for the symbol",
    Retcode.FIFO_CLOSE: "position closing is allowed only by FIFO rule",
    Retcode.HEDGE_PROHIBITED: "opposite positions on a symbol are prohibited",
}

#: Retcodes that mean the request was carried out (NO_CHANGES counts as success for a modify).
SUCCESS_RETCODES: Final = frozenset({Retcode.PLACED, Retcode.DONE, Retcode.DONE_PARTIAL, Retcode.NO_CHANGES})


class CommandKind(StrEnum):
    """What a command asks the EA to do."""

    NEW = "NEW"
    CANCEL = "CANCEL"
    MODIFY = "MODIFY"


class EaError(StrEnum):
    """Why the EA did not (or could not usefully) call OrderSend; ``Ack.error``. Empty when it did."""

    NONE = ""
    SYMBOL_NOT_FOUND = "SYMBOL_NOT_FOUND"
    CONTRACT_SIZE_MISMATCH = "CONTRACT_SIZE_MISMATCH"
    VOLUME_INVALID = "VOLUME_INVALID"
    ORDER_NOT_FOUND = "ORDER_NOT_FOUND"
    ORDER_SEND_FAILED = "ORDER_SEND_FAILED"
    UNSUPPORTED_COMMAND = "UNSUPPORTED_COMMAND"


class AckStatus(StrEnum):
    """How the server took an acknowledgement."""

    RECORDED = "RECORDED"
    DUPLICATE = "DUPLICATE"


class LinkStatus(StrEnum):
    """What a heartbeat did to the account's link."""

    CONNECTED = "CONNECTED"
    RECONNECTED = "RECONNECTED"
    ALIVE = "ALIVE"


class _Msg(BaseModel):
    # Unknown keys are refused (422 naming the key): with no compiler here, this is how a typo in the EA
    # shows up on the first request instead of as a silently missing value.
    model_config = ConfigDict(extra="forbid", frozen=True)


#: Decimals are bounded like every amount the API takes (core.bounds), so the bridge's math cannot overflow.
Dec = Amount
#: UTC milliseconds, 1970-2200 (``from_msc`` turns them into datetimes).
Msc = Annotated[int, Field(ge=0, lt=int(MAX_TIME.timestamp() * 1000))]
Ticket = Annotated[int, Field(ge=0)]
Ident = Annotated[str, Field(min_length=1, max_length=64)]


class _FromEa(_Msg):
    protocol: int
    #: Persistent id of the terminal installation (generated once, kept in the EA's state file).
    terminal_id: Ident
    #: New on every EA start (OnInit); a change tells the server the EA restarted.
    session_id: Ident


# ---------------------------------------------------------------------------------------------- heartbeat


class TerminalInfo(_Msg):
    """TerminalInfo*/the trade server as the EA sees them."""

    build: int
    name: str
    company: str
    server: str
    #: TERMINAL_CONNECTED: the terminal is connected to its trade server.
    connected: bool
    #: TERMINAL_TRADE_ALLOWED and MQL_TRADE_ALLOWED: the Algo Trading button is on and the EA may trade.
    trade_allowed: bool
    #: Trade server time minus UTC, in seconds (the EA converts every time it reports to UTC).
    server_offset_s: Annotated[int, Field(ge=-86400, le=86400)]


class AccountInfo(_Msg):
    """AccountInfo* figures."""

    login: int
    currency: str
    balance: Dec
    equity: Dec
    margin: Dec
    margin_free: Dec
    leverage: int
    #: ACCOUNT_MARGIN_MODE: 0 retail netting, 1 exchange, 2 retail hedging.
    margin_mode: int
    #: ACCOUNT_TRADE_MODE: 0 demo, 1 contest, 2 real.
    trade_mode: int
    #: ACCOUNT_TRADE_EXPERT: the broker lets Expert Advisors trade this account.
    trade_expert: bool


class Position(_Msg):
    """An open position carrying the EA's magic number."""

    ticket: Ticket
    symbol: str
    #: The Exodus symbol the EA resolved ``symbol`` from ("" if it cannot tell).
    base_symbol: str
    type: int
    volume: Dec
    price_open: Dec
    magic: int
    comment: str
    identifier: Ticket
    time_msc: Msc


class PendingOrder(_Msg):
    """A working order carrying the EA's magic number."""

    ticket: Ticket
    symbol: str
    base_symbol: str
    type: int
    state: int
    volume_initial: Dec
    volume_current: Dec
    price_open: Dec
    price_stoplimit: Dec
    magic: int
    comment: str


class SymbolSpec(_Msg):
    """How the terminal trades one Exodus symbol (resolved at run time: XM names carry suffixes)."""

    symbol: str
    broker_symbol: str
    contract_size: Dec
    volume_min: Dec
    volume_step: Dec
    volume_max: Dec
    digits: int
    #: SYMBOL_FILLING_MODE bitmask (1 FOK, 2 IOC).
    filling_mode: int
    #: SYMBOL_TRADE_MODE (0 disabled ... 4 full).
    trade_mode: int
    #: SYMBOL_TRADE_EXEMODE (0 request, 1 instant, 2 market, 3 exchange).
    exemode: int


class Heartbeat(_FromEa):
    """Sent every few seconds, and first after every (re)start, right after the catch-up trade report."""

    ea_version: str
    sent_at_msc: Msc
    terminal: TerminalInfo
    account: AccountInfo
    positions: list[Position] = []
    orders: list[PendingOrder] = []
    symbols: list[SymbolSpec] = []


class HeartbeatReply(_Msg):
    """The server's answer to a heartbeat."""

    protocol: int = PROTOCOL_VERSION
    server_time: datetime
    status: LinkStatus
    #: The EA is considered gone after this many seconds without a heartbeat.
    heartbeat_timeout_s: float
    #: Differences found when the account (re)connected (positions vs the ledger).
    breaks: list[str] = []


# ---------------------------------------------------------------------------------------------- commands


class PollRequest(_FromEa):
    """Ask for work."""

    max_commands: Annotated[int, Field(ge=1, le=200)] = 20


class Command(_Msg):
    """One unit of work for the EA: the MqlTradeRequest is prepared here; the EA adds symbol, filling, magic."""

    command_id: str
    kind: CommandKind
    #: The Exodus order id: the MT5 comment, and the key for finding the order after a restart.
    order_id: str
    #: The order's ``cl_ord_id``: the id the order workflow knows the order by at the broker (``order_id``, or
    #: ``order_id.n`` after the n-th modify). The EA's wire name, like every field here.
    client_order_id: str
    #: The Exodus symbol; the EA resolves the broker's name (``EURUSD#``, ``EURUSDmicro``).
    symbol: str
    side: str
    action: int
    type: int
    #: Lots, computed with ``contract_size``; the EA refuses the command if the symbol's differs.
    volume: Dec
    contract_size: Dec
    price: Dec | None = None
    stoplimit: Dec | None = None
    type_time: int = 0
    #: UTC Unix seconds (0: none); the EA converts to trade server time.
    expiration: int = 0
    #: Filling modes to try, in order, among those the symbol allows (FOK -> IOC -> RETURN on 10030).
    fillings: list[int] = []
    deviation: int = 0
    #: The MT5 order ticket for CANCEL / MODIFY (0: not known yet; the EA looks the order up by comment).
    ticket: Ticket = 0
    created_at: datetime


class PollReply(_Msg):
    """Commands leased to the polling terminal, oldest first."""

    protocol: int = PROTOCOL_VERSION
    server_time: datetime
    lease_seconds: float
    commands: list[Command] = []


# ---------------------------------------------------------------------------------------------- acks


class Ack(_FromEa):
    """The outcome of one command: the MqlTradeResult of the last OrderSend, or why none was sent."""

    command_id: str
    retcode: int
    retcode_external: int = 0
    order: Ticket = 0
    deal: Ticket = 0
    volume: Dec = Decimal(0)
    price: Dec = Decimal(0)
    bid: Dec = Decimal(0)
    ask: Dec = Decimal(0)
    comment: str = ""
    request_id: int = 0
    error: EaError = EaError.NONE
    message: str = ""
    broker_symbol: str = ""
    #: The ORDER_FILLING_* the last OrderSend used (-1: none sent).
    filling: int = -1
    #: The order was found by magic + comment after a restart instead of being sent again.
    recovered: bool = False
    executed_at_msc: Msc


class AckReply(_Msg):
    """The server has the acknowledgement; the EA may forget it."""

    protocol: int = PROTOCOL_VERSION
    command_id: str
    status: AckStatus


# ---------------------------------------------------------------------------------------------- trades


class Deal(_Msg):
    """A deal of an order carrying the EA's magic (from OnTradeTransaction DEAL_ADD, or the history)."""

    deal: Ticket
    order: Ticket
    position: Ticket
    symbol: str
    type: int
    entry: int
    reason: int
    volume: Dec
    price: Dec
    commission: Dec = Decimal(0)
    fee: Dec = Decimal(0)
    swap: Dec = Decimal(0)
    profit: Dec = Decimal(0)
    magic: int
    comment: str
    #: UTC milliseconds.
    time_msc: Msc


class OrderUpdate(_Msg):
    """An order of the EA's magic that moved to the history (filled, canceled, expired, rejected)."""

    order: Ticket
    state: int
    type: int
    symbol: str
    volume_initial: Dec
    volume_current: Dec
    price_open: Dec
    magic: int
    comment: str
    time_done_msc: Msc


class TradeReport(_FromEa):
    """Deals and final order states, in the order the terminal produced them."""

    deals: list[Deal] = []
    orders: list[OrderUpdate] = []


class TradeReply(_Msg):
    """What the server did with a trade report (the EA advances its history cursor on any 200)."""

    protocol: int = PROTOCOL_VERSION
    deals_new: int
    deals_duplicate: int
    orders_new: int
    orders_duplicate: int
    #: Deal tickets that belong to no order the bridge knows (recorded as reconciliation breaks).
    unmatched: list[int] = []


# ---------------------------------------------------------------------------------------------- ticks

Price = Annotated[Amount, Field(ge=0)]


class Tick(_Msg):
    """The terminal's last tick of one symbol (``SymbolInfoTick``)."""

    #: The terminal's name of the symbol (XM names carry suffixes: ``EURUSD#``); Exodus maps it to its own
    #: symbol with the names the last heartbeat's ``symbols`` resolved.
    broker_symbol: Ident
    #: MqlTick bid/ask/last; "0" when the terminal has none (``last`` on FX symbols).
    bid: Price
    ask: Price
    last: Price
    #: MqlTick.time_msc (trade server time) converted to UTC milliseconds.
    time_msc: Msc


class Ticks(_FromEa):
    """The last tick of every symbol whose tick changed since the previous report (every ``InpTicksMs``).

    Sent only by an EA whose heartbeat was accepted (as polls); the quotes become source ``mt5`` of the
    quote store, which prices MT5 orders.
    """

    sent_at_msc: Msc
    ticks: Annotated[list[Tick], Field(max_length=500)] = []


class TicksReply(_Msg):
    """What the server did with a ticks report."""

    protocol: int = PROTOCOL_VERSION
    server_time: datetime
    #: Quotes stored (one per Exodus symbol; an empty tick, all prices 0, is not a quote).
    accepted: int
    #: Broker symbols the server could not map to an Exodus symbol (the EA logs them).
    unknown: list[str] = []
