"""A simulated MetaTrader 5 terminal logged in to an XM-like account, with the ``MetaTrader5`` module's API.

It is the market behind the EA peer (``peer.py``) and the stand-in for the Windows-only ``MetaTrader5``
package (``FakeTerminal`` has the module's functions and constants, so ``TerminalExecutor(terminal, ...)``
runs against it). Its rules are written from the MQL5 documentation, independently of ``brokers.mt5``:

* XM names: symbols carry account-type suffixes (``EURUSD#``), 1 lot = ``contract_size`` units, volumes in
  steps; market execution; SYMBOL_FILLING_MODE bits decide FOK/IOC; RETURN only for limit/stop-limit
  orders (or anything in exchange execution); a wrong filling answers 10030 INVALID_FILL.
* Market orders fill at the ask (buy) / bid (sell), at most ``liquidity`` lots per deal: FOK refuses what
  it cannot fill whole (10006), IOC fills what it can (10010) and cancels the rest.
* Pending orders rest and fill when the market crosses them, ``liquidity`` lots per match (RETURN keeps
  the remainder working); 10015 for a limit on the wrong side, 10022 for an expiry in the past.
* Margin: volume x contract size x price / leverage against free margin (10019 NO_MONEY); 10018 when the
  market is closed; 10027 with algo trading off; hedging account (each fill opens its own position).
* Times in orders, deals and positions are trade server time (UTC + ``server_offset_s``), as in MT5.

Trade transactions go to ``listeners`` after each request, as MT5 queues OnTradeTransaction events:
``("DEAL_ADD", deal_ticket)`` and ``("HISTORY_ADD", order_ticket)``.
"""

from __future__ import annotations

import itertools
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal
from types import SimpleNamespace
from typing import Any

D = Decimal
_ZERO = D(0)
_BALANCE = D("100000")

Listener = Callable[[str, int], None]


@dataclass
class Sym:
    """One symbol as the terminal has it."""

    name: str
    base: str
    contract_size: Decimal
    bid: Decimal
    ask: Decimal
    volume_min: Decimal = D("0.01")
    volume_step: Decimal = D("0.01")
    volume_max: Decimal = D("100")
    digits: int = 5
    filling_mode: int = 1 | 2
    exemode: int = 2
    trade_mode: int = 4
    #: Most lots one deal can take (None: unlimited).
    liquidity: Decimal | None = None
    market_open: bool = True
    #: Filling modes the trade server refuses although the symbol's flags allow them (10030 anyway).
    refuse_fillings: frozenset[int] = frozenset()
    #: Server time of the last tick (None: a tick every moment, the tick time is now).
    tick_msc: int | None = None

    @property
    def point(self) -> Decimal:
        return D(1).scaleb(-self.digits)


@dataclass
class TOrder:
    ticket: int
    symbol: str
    type: int
    state: int
    volume_initial: Decimal
    volume_current: Decimal
    price_open: Decimal
    price_stoplimit: Decimal
    magic: int
    comment: str
    type_time: int
    type_filling: int
    time_expiration: int
    time_setup_msc: int
    time_done_msc: int = 0
    position_id: int = 0


@dataclass
class TDeal:
    ticket: int
    order: int
    position_id: int
    symbol: str
    type: int
    entry: int
    reason: int
    volume: Decimal
    price: Decimal
    commission: Decimal
    fee: Decimal
    swap: Decimal
    profit: Decimal
    magic: int
    comment: str
    time_msc: int


@dataclass
class TPosition:
    ticket: int
    identifier: int
    symbol: str
    type: int
    volume: Decimal
    price_open: Decimal
    magic: int
    comment: str
    time_msc: int


def xm_symbols(suffix: str = "#") -> list[Sym]:
    """A few XM symbols (Ultra Low account names by default)."""
    return [
        Sym(f"EURUSD{suffix}", "EURUSD", D(100000), D("1.08499"), D("1.08501")),
        Sym(f"GBPUSD{suffix}", "GBPUSD", D(100000), D("1.26999"), D("1.27001")),
        Sym(f"USDJPY{suffix}", "USDJPY", D(100000), D("149.999"), D("150.001"), digits=3),
        Sym(f"GOLD{suffix}", "XAUUSD", D(100), D("2400.00"), D("2400.50"), digits=2),
        # A look-alike that must not be picked for EURUSD on an account that has EURUSD#.
        Sym("EURUSDmicro_old", "EURUSD", D(1000), D("1.08499"), D("1.08501"), trade_mode=0),
    ]


class FakeTerminal:
    """A logged-in terminal with a hedging account; also usable as the ``MetaTrader5`` module."""

    # -- MetaTrader5 module constants (the ones the executor uses) --------------------------------------
    TRADE_ACTION_DEAL = 1
    TRADE_ACTION_PENDING = 5
    TRADE_ACTION_MODIFY = 7
    TRADE_ACTION_REMOVE = 8
    ORDER_TYPE_BUY, ORDER_TYPE_SELL = 0, 1
    ORDER_FILLING_FOK, ORDER_FILLING_IOC, ORDER_FILLING_RETURN = 0, 1, 2
    ORDER_TIME_GTC, ORDER_TIME_DAY, ORDER_TIME_SPECIFIED = 0, 1, 2
    ORDER_STATE_STARTED, ORDER_STATE_PLACED, ORDER_STATE_CANCELED, ORDER_STATE_PARTIAL = 0, 1, 2, 3
    ORDER_STATE_FILLED, ORDER_STATE_REJECTED, ORDER_STATE_EXPIRED = 4, 5, 6
    DEAL_TYPE_BUY, DEAL_TYPE_SELL = 0, 1
    DEAL_ENTRY_IN, DEAL_ENTRY_OUT = 0, 1
    DEAL_REASON_EXPERT = 3
    SYMBOL_FILLING_FOK, SYMBOL_FILLING_IOC = 1, 2
    TRADE_RETCODE_REJECT = 10006
    TRADE_RETCODE_PLACED = 10008
    TRADE_RETCODE_DONE = 10009
    TRADE_RETCODE_DONE_PARTIAL = 10010
    TRADE_RETCODE_INVALID = 10013
    TRADE_RETCODE_INVALID_VOLUME = 10014
    TRADE_RETCODE_INVALID_PRICE = 10015
    TRADE_RETCODE_TRADE_DISABLED = 10017
    TRADE_RETCODE_MARKET_CLOSED = 10018
    TRADE_RETCODE_NO_MONEY = 10019
    TRADE_RETCODE_INVALID_EXPIRATION = 10022
    TRADE_RETCODE_NO_CHANGES = 10025
    TRADE_RETCODE_CLIENT_DISABLES_AT = 10027
    TRADE_RETCODE_INVALID_FILL = 10030
    TRADE_RETCODE_CONNECTION = 10031
    TRADE_RETCODE_INVALID_ORDER = 10035

    def __init__(
        self,
        *,
        login: int = 51234567,
        server: str = "XMGlobal-MT5 7",
        symbols: list[Sym] | None = None,
        balance: Decimal = _BALANCE,
        leverage: int = 500,
        server_offset_s: int = 7200,
        commission_per_lot: Decimal = _ZERO,
    ) -> None:
        self.login = login
        self.server = server
        self.company = "XM Global Limited"
        self.symbols: dict[str, Sym] = {s.name: s for s in (symbols or xm_symbols())}
        self.balance = balance
        self.leverage = leverage
        self.server_offset_s = server_offset_s
        self.commission_per_lot = commission_per_lot
        self.connected = True
        self.trade_allowed = True
        self.trade_expert = True
        self.orders: dict[int, TOrder] = {}
        self.history_orders: dict[int, TOrder] = {}
        self.deals: dict[int, TDeal] = {}
        self.positions: dict[int, TPosition] = {}
        self.listeners: list[Listener] = []
        self.sent: list[dict[str, Any]] = []
        # Tickets are unique per trade server; each simulated terminal starts somewhere else.
        self._tickets = itertools.count(random.randrange(10_000_000, 2_000_000_000, 1_000_000))
        self._last_error = (1, "Success")

    # ================================================================================ test controls

    def sym(self, base_or_name: str) -> Sym:
        if base_or_name in self.symbols:
            return self.symbols[base_or_name]
        return next(s for s in self.symbols.values() if s.base == base_or_name and s.trade_mode != 0)

    async def set_mid(self, symbol: str, mid: Decimal) -> None:
        """Move the quote to ``mid`` (one point either side) and match resting orders."""
        s = self.sym(symbol)
        s.bid, s.ask = mid - s.point, mid + s.point
        s.tick_msc = None
        self._match(s)

    def quiet(self, symbol: str, *, for_seconds: float) -> None:
        """No tick in ``symbol`` for ``for_seconds`` (a closed market): its last tick time stands still."""
        self.sym(symbol).tick_msc = self._server_msc() - int(for_seconds * 1000)

    async def step(self) -> None:
        """Match resting orders again at the current quotes."""
        for s in list(self.symbols.values()):
            self._match(s)

    def expire_orders(self, *, now_server_s: int | None = None) -> None:
        """Expire GTD orders whose time has come (the trade server does this on its own)."""
        now = now_server_s if now_server_s is not None else self._server_s()
        for order in list(self.orders.values()):
            if order.type_time == self.ORDER_TIME_SPECIFIED and order.time_expiration <= now:
                self._close(order, self.ORDER_STATE_EXPIRED)

    def manual_trade(self, symbol: str, side: int, volume: Decimal, *, magic: int = 0) -> int:
        """A trade someone made by hand in the terminal (or a stop-out): not from Exodus."""
        s = self.sym(symbol)
        order = self._new_order(s, side, volume, D(0), D(0), magic, "manual", 0, self.ORDER_FILLING_IOC, 0)
        self._fill(order, s, volume)
        self._close(order, self.ORDER_STATE_FILLED)
        return order.ticket

    # ================================================================================ MetaTrader5 API

    def initialize(self, *args: Any, **kwargs: Any) -> bool:
        return True

    def shutdown(self) -> None:
        return None

    def last_error(self) -> tuple[int, str]:
        return self._last_error

    def version(self) -> tuple[int, int, str]:
        return (500, 4620, "15 Nov 2026")

    def terminal_info(self) -> SimpleNamespace:
        return SimpleNamespace(
            connected=self.connected,
            trade_allowed=self.trade_allowed,
            build=4620,
            name="XM Global MT5",
            company=self.company,
            path="C:/Program Files/XM Global MT5",
        )

    def account_info(self) -> SimpleNamespace:
        margin = self._margin_used()
        equity = self.balance
        return SimpleNamespace(
            login=self.login,
            balance=float(self.balance),
            equity=float(equity),
            margin=float(margin),
            margin_free=float(equity - margin),
            leverage=self.leverage,
            currency="USD",
            margin_mode=2,
            trade_mode=0,
            trade_allowed=True,
            trade_expert=self.trade_expert,
            server=self.server,
            company=self.company,
            name="Exodus Test",
        )

    def symbols_get(self, group: str | None = None) -> tuple[SimpleNamespace, ...]:
        return tuple(self.symbol_info(name) for name in self.symbols)  # type: ignore[misc]

    def symbol_info(self, name: str) -> SimpleNamespace | None:
        s = self.symbols.get(name)
        if s is None:
            self._last_error = (-1, "symbol not found")
            return None
        return SimpleNamespace(
            name=s.name,
            volume_min=float(s.volume_min),
            volume_step=float(s.volume_step),
            volume_max=float(s.volume_max),
            trade_contract_size=float(s.contract_size),
            filling_mode=s.filling_mode,
            digits=s.digits,
            point=float(s.point),
            trade_mode=s.trade_mode,
            trade_exemode=s.exemode,
            visible=True,
            bid=float(s.bid),
            ask=float(s.ask),
        )

    def symbol_select(self, name: str, enable: bool = True) -> bool:
        return name in self.symbols

    def symbol_info_tick(self, name: str) -> SimpleNamespace | None:
        s = self.symbols.get(name)
        if s is None:
            return None
        at = s.tick_msc if s.tick_msc is not None else self._server_msc()
        return SimpleNamespace(bid=float(s.bid), ask=float(s.ask), last=0.0, time_msc=at)

    def orders_get(self, symbol: str | None = None, group: str | None = None, ticket: int | None = None):  # type: ignore[no-untyped-def]
        out = [
            o
            for o in self.orders.values()
            if (ticket is None or o.ticket == ticket) and (symbol is None or o.symbol == symbol)
        ]
        return tuple(self._order_ns(o) for o in out)

    def positions_get(self, symbol: str | None = None, group: str | None = None, ticket: int | None = None):  # type: ignore[no-untyped-def]
        out = [
            p
            for p in self.positions.values()
            if (ticket is None or p.ticket == ticket) and (symbol is None or p.symbol == symbol)
        ]
        return tuple(SimpleNamespace(**{k: _f(v) for k, v in vars(p).items()}) for p in out)

    def history_orders_get(
        self,
        date_from: Any = None,
        date_to: Any = None,
        *,
        ticket: int | None = None,
        position: int | None = None,
        group: str | None = None,
    ):  # type: ignore[no-untyped-def]
        lo, hi = _window(date_from, date_to)
        out = []
        for o in self.history_orders.values():
            if ticket is not None and o.ticket != ticket:
                continue
            if position is not None and o.position_id != position:
                continue
            if ticket is None and position is None and not (lo <= o.time_done_msc // 1000 <= hi):
                continue
            out.append(self._order_ns(o))
        return tuple(out)

    def history_deals_get(
        self,
        date_from: Any = None,
        date_to: Any = None,
        *,
        ticket: int | None = None,
        position: int | None = None,
        group: str | None = None,
    ):  # type: ignore[no-untyped-def]
        lo, hi = _window(date_from, date_to)
        out = []
        for d in self.deals.values():
            if ticket is not None and d.order != ticket:
                continue
            if position is not None and d.position_id != position:
                continue
            if ticket is None and position is None and not (lo <= d.time_msc // 1000 <= hi):
                continue
            out.append(SimpleNamespace(**{k: _f(v) for k, v in vars(d).items()}, time=d.time_msc // 1000))
        return tuple(out)

    def order_send(self, request: dict[str, Any]) -> SimpleNamespace:
        """Carry out a trade request and answer like MqlTradeResult."""
        self.sent.append(dict(request))
        result = self._execute(dict(request))
        return result

    # ================================================================================ the trade server

    def _execute(self, req: dict[str, Any]) -> SimpleNamespace:
        action = req.get("action")
        if not self.connected:
            return self._result(self.TRADE_RETCODE_CONNECTION, "No connection")
        if not self.trade_allowed:
            return self._result(self.TRADE_RETCODE_CLIENT_DISABLES_AT, "AutoTrading disabled by client")
        if action == self.TRADE_ACTION_REMOVE:
            order = self.orders.get(int(req.get("order", 0)))
            if order is None:
                return self._result(self.TRADE_RETCODE_INVALID_ORDER, "Invalid order")
            self._close(order, self.ORDER_STATE_CANCELED)
            return self._result(self.TRADE_RETCODE_DONE, "Request executed", order=order.ticket)
        if action == self.TRADE_ACTION_MODIFY:
            order = self.orders.get(int(req.get("order", 0)))
            if order is None:
                return self._result(self.TRADE_RETCODE_INVALID_ORDER, "Invalid order")
            price, stoplimit = _d(req.get("price")), _d(req.get("stoplimit"))
            if price == order.price_open and stoplimit == order.price_stoplimit:
                return self._result(self.TRADE_RETCODE_NO_CHANGES, "No changes", order=order.ticket)
            order.price_open, order.price_stoplimit = price, stoplimit
            if req.get("expiration"):
                order.time_expiration = int(req["expiration"])
            self._match(self.symbols[order.symbol])
            return self._result(self.TRADE_RETCODE_DONE, "Request executed", order=order.ticket)
        s = self.symbols.get(str(req.get("symbol")))
        if s is None or s.trade_mode == 0:
            return self._result(self.TRADE_RETCODE_INVALID, "Invalid request")
        if not s.market_open:
            return self._result(self.TRADE_RETCODE_MARKET_CLOSED, "Market closed", s=s)
        volume = _d(req.get("volume"))
        if volume < s.volume_min or volume > s.volume_max or (volume / s.volume_step) % 1 != 0:
            return self._result(self.TRADE_RETCODE_INVALID_VOLUME, "Invalid volume", s=s)
        otype = int(req.get("type", 0))
        filling = int(req.get("type_filling", self.ORDER_FILLING_FOK))
        if filling not in self._fillings(s, otype) or filling in s.refuse_fillings:
            return self._result(self.TRADE_RETCODE_INVALID_FILL, "Unsupported filling mode", s=s)
        market = action == self.TRADE_ACTION_DEAL
        price = (s.ask if otype == 0 else s.bid) if market else _d(req.get("price"))
        if volume * s.contract_size * price / self.leverage > self._free_margin():
            return self._result(self.TRADE_RETCODE_NO_MONEY, "No money", s=s)
        magic, comment = int(req.get("magic", 0)), str(req.get("comment", ""))[:31]
        if market:
            fill = volume if s.liquidity is None else min(volume, s.liquidity)
            if filling == self.ORDER_FILLING_FOK and fill < volume:
                return self._result(self.TRADE_RETCODE_REJECT, "Rejected: not enough liquidity for FOK", s=s)
            order = self._new_order(s, otype, volume, D(0), D(0), magic, comment, 0, filling, 0)
            deal = self._fill(order, s, fill)
            if order.volume_current == 0:
                self._close(order, self.ORDER_STATE_FILLED)
                code = self.TRADE_RETCODE_DONE
            elif filling == self.ORDER_FILLING_IOC:
                self._close(order, self.ORDER_STATE_PARTIAL)
                code = self.TRADE_RETCODE_DONE_PARTIAL
            else:  # RETURN (exchange execution): the rest works on
                self.orders[order.ticket] = order
                code = self.TRADE_RETCODE_DONE_PARTIAL
            return self._result(
                code, "Request executed", s=s, order=order.ticket, deal=deal.ticket, volume=fill, price=deal.price
            )
        type_time, expiration = int(req.get("type_time", 0)), int(req.get("expiration", 0) or 0)
        if type_time == self.ORDER_TIME_SPECIFIED and expiration <= self._server_s():
            return self._result(self.TRADE_RETCODE_INVALID_EXPIRATION, "Invalid expiration", s=s)
        stoplimit = _d(req.get("stoplimit"))
        buy = otype % 2 == 0
        limit_like = otype in (2, 3)
        if limit_like and ((buy and price >= s.ask) or (not buy and price <= s.bid)):
            return self._result(self.TRADE_RETCODE_INVALID_PRICE, "Invalid price", s=s)
        if not limit_like and ((buy and price <= s.ask) or (not buy and price >= s.bid)):
            return self._result(self.TRADE_RETCODE_INVALID_PRICE, "Invalid price", s=s)
        order = self._new_order(s, otype, volume, price, stoplimit, magic, comment, type_time, filling, expiration)
        order.state = self.ORDER_STATE_PLACED
        self.orders[order.ticket] = order
        return self._result(
            self.TRADE_RETCODE_PLACED, "Request executed", s=s, order=order.ticket, volume=volume, price=price
        )

    def _fillings(self, s: Sym, otype: int) -> set[int]:
        # "Fill Policy" in the MT5 help: FOK/IOC by the symbol's flags; Return for market orders only in
        # exchange execution, for limit and stop-limit orders in market and exchange execution.
        allowed = set()
        if s.filling_mode & 1:
            allowed.add(self.ORDER_FILLING_FOK)
        if s.filling_mode & 2:
            allowed.add(self.ORDER_FILLING_IOC)
        if s.exemode == 3 or (s.exemode == 2 and otype in (2, 3, 6, 7)):
            allowed.add(self.ORDER_FILLING_RETURN)
        return allowed

    def _match(self, s: Sym) -> None:
        for order in sorted(self.orders.values(), key=lambda o: o.ticket):
            if order.symbol != s.name or order.ticket not in self.orders:
                continue
            buy = order.type % 2 == 0
            if order.type in (0, 1):  # the working rest of a RETURN market order
                hit = True
            elif order.type in (2, 3):
                hit = s.ask <= order.price_open if buy else s.bid >= order.price_open
            elif order.type in (4, 5):
                hit = s.ask >= order.price_open if buy else s.bid <= order.price_open
            else:  # stop-limit: the stop turns it into a limit at price_stoplimit
                if (buy and s.ask >= order.price_open) or (not buy and s.bid <= order.price_open):
                    order.type, order.price_open, order.price_stoplimit = order.type - 4, order.price_stoplimit, D(0)
                hit = False
            if not hit:
                continue
            fill = order.volume_current if s.liquidity is None else min(order.volume_current, s.liquidity)
            self._fill(order, s, fill)
            if order.volume_current == 0:
                self._close(order, self.ORDER_STATE_FILLED)
            else:
                order.state = self.ORDER_STATE_PARTIAL

    def _new_order(
        self,
        s: Sym,
        otype: int,
        volume: Decimal,
        price: Decimal,
        stoplimit: Decimal,
        magic: int,
        comment: str,
        type_time: int,
        filling: int,
        expiration: int,
    ) -> TOrder:
        return TOrder(
            ticket=next(self._tickets),
            symbol=s.name,
            type=otype,
            state=self.ORDER_STATE_STARTED,
            volume_initial=volume,
            volume_current=volume,
            price_open=price,
            price_stoplimit=stoplimit,
            magic=magic,
            comment=comment,
            type_time=type_time,
            type_filling=filling,
            time_expiration=expiration,
            time_setup_msc=self._server_msc(),
        )

    def _fill(self, order: TOrder, s: Sym, volume: Decimal) -> TDeal:
        buy = order.type % 2 == 0
        price = s.ask if buy else s.bid
        if order.type in (2, 3):
            price = min(price, order.price_open) if buy else max(price, order.price_open)
        ticket = next(self._tickets)
        position = TPosition(
            ticket=ticket,
            identifier=ticket,
            symbol=s.name,
            type=0 if buy else 1,
            volume=volume,
            price_open=price,
            magic=order.magic,
            comment=order.comment,
            time_msc=self._server_msc(),
        )
        self.positions[ticket] = position
        deal = TDeal(
            ticket=next(self._tickets),
            order=order.ticket,
            position_id=ticket,
            symbol=s.name,
            type=self.DEAL_TYPE_BUY if buy else self.DEAL_TYPE_SELL,
            entry=self.DEAL_ENTRY_IN,
            reason=self.DEAL_REASON_EXPERT,
            volume=volume,
            price=price,
            commission=-(self.commission_per_lot * volume).quantize(D("0.01"), ROUND_HALF_UP),
            fee=D(0),
            swap=D(0),
            profit=D(0),
            magic=order.magic,
            comment=order.comment,
            time_msc=self._server_msc(),
        )
        self.deals[deal.ticket] = deal
        order.volume_current -= volume
        order.position_id = order.position_id or ticket
        self._tell("DEAL_ADD", deal.ticket)
        return deal

    def _close(self, order: TOrder, state: int) -> None:
        self.orders.pop(order.ticket, None)
        order.state = state
        order.time_done_msc = self._server_msc()
        self.history_orders[order.ticket] = order
        self._tell("HISTORY_ADD", order.ticket)

    def _tell(self, kind: str, ticket: int) -> None:
        for listener in list(self.listeners):
            listener(kind, ticket)

    def _result(
        self,
        retcode: int,
        comment: str,
        *,
        s: Sym | None = None,
        order: int = 0,
        deal: int = 0,
        volume: Decimal = _ZERO,
        price: Decimal = _ZERO,
    ) -> SimpleNamespace:
        return SimpleNamespace(
            retcode=retcode,
            deal=deal,
            order=order,
            volume=float(volume),
            price=float(price),
            bid=float(s.bid) if s else 0.0,
            ask=float(s.ask) if s else 0.0,
            comment=comment,
            request_id=0,
            retcode_external=0,
        )

    def _margin_used(self) -> Decimal:
        total = D(0)
        for p in self.positions.values():
            s = self.symbols[p.symbol]
            total += p.volume * s.contract_size * p.price_open / self.leverage
        return total

    def _free_margin(self) -> Decimal:
        return self.balance - self._margin_used()

    def _server_msc(self) -> int:
        return int(time.time() * 1000) + self.server_offset_s * 1000

    def _server_s(self) -> int:
        return self._server_msc() // 1000

    def _order_ns(self, o: TOrder) -> SimpleNamespace:
        return SimpleNamespace(**{k: _f(v) for k, v in vars(o).items()})

    def clone_order(self, ticket: int) -> TOrder:
        return replace(self.orders.get(ticket) or self.history_orders[ticket])


def _d(value: Any) -> Decimal:
    return D(0) if value in (None, "") else D(str(value))


def _f(value: Any) -> Any:
    return float(value) if isinstance(value, Decimal) else value


def _window(date_from: Any, date_to: Any) -> tuple[int, int]:
    def secs(v: Any, default: int) -> int:
        if v is None:
            return default
        if isinstance(v, datetime):
            return int(v.timestamp())
        return int(v)

    return secs(date_from, 0), secs(date_to, 2**62)


__all__ = ["FakeTerminal", "Sym", "TDeal", "TOrder", "TPosition", "xm_symbols"]
