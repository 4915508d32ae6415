"""Mapping between the domain model and MetaTrader 5: order types, lots, fillings, requests, results, ids.

Pure functions, shared by both ways of reaching a terminal: the EA over HTTP (the server prepares each
command's MqlTradeRequest fields here and the EA only adds symbol, filling and magic) and the in-process
executor over the ``MetaTrader5`` package on Windows (which builds the full request with ``mql_request``).
``mql5/Include/ExodusBridge/Trade.mqh`` implements ``filling_sequence``, ``resolve_symbol`` and the
request assembly the same way; keep them in step.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Final

from brokers.mt5.protocol import RETCODES, SUCCESS_RETCODES, Ack, Command, CommandKind, EaError, Mt5, Retcode
from core.domain import InstrumentClass, OrderSide, OrderStatus, OrderType, ReportKind, SubmitOrder, TimeInForce

if TYPE_CHECKING:
    from core.instruments import InstrumentCatalog
    from core.settings import Mt5Settings

__all__ = [
    "MAP_ORDER_TYPE",
    "MAP_TYPE_TIME",
    "MARKET_FILLINGS",
    "ORDER_ID_PATTERN",
    "PENDING_FILLINGS",
    "CommandRefused",
    "LotSpec",
    "ack_accepted",
    "ack_reason",
    "allowed_fillings",
    "exec_id_command",
    "exec_id_deal",
    "exec_id_order",
    "fallback_contract_size",
    "filling_sequence",
    "from_msc",
    "lots_for",
    "mql_request",
    "new_command",
    "order_id_from_comment",
    "order_update_kind",
    "plain",
    "resolve_symbol",
    "side_of_deal",
    "units_for",
]

#: (type, side) -> ORDER_TYPE_*.
MAP_ORDER_TYPE: Final[dict[tuple[OrderType, OrderSide], int]] = {
    (OrderType.MARKET, OrderSide.BUY): Mt5.ORDER_TYPE_BUY,
    (OrderType.MARKET, OrderSide.SELL): Mt5.ORDER_TYPE_SELL,
    (OrderType.LIMIT, OrderSide.BUY): Mt5.ORDER_TYPE_BUY_LIMIT,
    (OrderType.LIMIT, OrderSide.SELL): Mt5.ORDER_TYPE_SELL_LIMIT,
    (OrderType.STOP, OrderSide.BUY): Mt5.ORDER_TYPE_BUY_STOP,
    (OrderType.STOP, OrderSide.SELL): Mt5.ORDER_TYPE_SELL_STOP,
    (OrderType.STOP_LIMIT, OrderSide.BUY): Mt5.ORDER_TYPE_BUY_STOP_LIMIT,
    (OrderType.STOP_LIMIT, OrderSide.SELL): Mt5.ORDER_TYPE_SELL_STOP_LIMIT,
}

#: Time in force of a pending order -> ORDER_TIME_* (market orders are always GTC: they do not rest).
MAP_TYPE_TIME: Final[dict[TimeInForce, int]] = {
    TimeInForce.GTC: Mt5.ORDER_TIME_GTC,
    TimeInForce.DAY: Mt5.ORDER_TIME_DAY,
    TimeInForce.GTD: Mt5.ORDER_TIME_SPECIFIED,
}

_FOK, _IOC, _RETURN = Mt5.ORDER_FILLING_FOK, Mt5.ORDER_FILLING_IOC, Mt5.ORDER_FILLING_RETURN

#: Filling modes to try for a market order, by time in force: FOK -> IOC -> RETURN unless the client asked
#: for one policy (an IOC order must never become FOK or RETURN, and vice versa).
MARKET_FILLINGS: Final[dict[TimeInForce, list[int]]] = {
    TimeInForce.FOK: [_FOK],
    TimeInForce.IOC: [_IOC],
    TimeInForce.GTC: [_FOK, _IOC, _RETURN],
    TimeInForce.DAY: [_FOK, _IOC, _RETURN],
    TimeInForce.GTD: [_FOK, _IOC, _RETURN],
}
#: Pending orders rest, so RETURN (keep the remainder after a partial fill) comes first.
PENDING_FILLINGS: Final[list[int]] = [_RETURN, _FOK, _IOC]

_PENDING_TYPES: Final = frozenset(
    {
        Mt5.ORDER_TYPE_BUY_LIMIT,
        Mt5.ORDER_TYPE_SELL_LIMIT,
        Mt5.ORDER_TYPE_BUY_STOP,
        Mt5.ORDER_TYPE_SELL_STOP,
        Mt5.ORDER_TYPE_BUY_STOP_LIMIT,
        Mt5.ORDER_TYPE_SELL_STOP_LIMIT,
    }
)
_LIMIT_TYPES: Final = frozenset(
    {
        Mt5.ORDER_TYPE_BUY_LIMIT,
        Mt5.ORDER_TYPE_SELL_LIMIT,
        Mt5.ORDER_TYPE_BUY_STOP_LIMIT,
        Mt5.ORDER_TYPE_SELL_STOP_LIMIT,
    }
)

#: An Exodus order id (the MT5 comment of every order the bridge sends).
ORDER_ID_PATTERN: Final = re.compile(r"EX[A-Z2-7]{16}")


class CommandRefused(Exception):
    """An order the bridge cannot express as an MT5 request (a definite refusal, never sent)."""


@dataclass(frozen=True, slots=True)
class LotSpec:
    """How one symbol is traded at the terminal: lots of ``contract_size`` units, in steps."""

    symbol: str
    contract_size: Decimal
    volume_min: Decimal
    volume_step: Decimal
    volume_max: Decimal
    broker_symbol: str = ""
    #: Whether the terminal reported it (else it is the configured fallback).
    reported: bool = False


# ------------------------------------------------------------------------------------------------ lots


def lots_for(qty: Decimal, spec: LotSpec) -> Decimal:
    """Convert units to lots, refusing quantities the symbol cannot trade.

    Raises:
        CommandRefused: ``qty`` is not a whole number of volume steps, or is outside min/max.
    """
    lots = qty / spec.contract_size
    step_units = spec.volume_step * spec.contract_size
    name = spec.broker_symbol or spec.symbol
    if (lots / spec.volume_step) % 1 != 0:
        raise CommandRefused(
            f"qty {qty.normalize():f} is not a whole number of lot steps: {name} trades in steps of "
            f"{spec.volume_step.normalize():f} lots = {step_units.normalize():f} units"
        )
    if lots < spec.volume_min:
        raise CommandRefused(
            f"qty {qty.normalize():f} is {lots.normalize():f} lots, below the minimum "
            f"{spec.volume_min.normalize():f} lots of {name}"
        )
    if lots > spec.volume_max:
        raise CommandRefused(
            f"qty {qty.normalize():f} is {lots.normalize():f} lots, above the maximum "
            f"{spec.volume_max.normalize():f} lots of {name}"
        )
    return plain(lots)


def units_for(lots: Decimal, contract_size: Decimal) -> Decimal:
    """Convert lots back to units."""
    return plain(lots * contract_size)


def fallback_contract_size(symbol: str, settings: Mt5Settings, instruments: InstrumentCatalog | None) -> Decimal:
    """The contract size of a symbol the terminal has not reported: configured, else by instrument class."""
    if symbol in settings.contract_sizes:
        return settings.contract_sizes[symbol]
    inst = instruments.get(symbol) if instruments is not None else None
    if inst is None or inst.instrument_class is InstrumentClass.FX:
        return settings.default_fx_contract_size
    return Decimal(1)


def plain(value: Decimal) -> Decimal:
    """``value`` without trailing zeros and never in exponent form (``0.10`` -> ``0.1``, ``1E+5`` -> ``100000``)."""
    return value.quantize(Decimal(1)) if value == value.to_integral_value() else value.normalize()


# ------------------------------------------------------------------------------------------------ commands


def new_command(order: SubmitOrder, *, spec: LotSpec, order_id: str, deviation: int, at: datetime) -> Command:
    """The NEW command for an order: its MqlTradeRequest fields minus symbol name, filling and magic.

    Raises:
        CommandRefused: MT5 cannot carry the order (pegged, IOC/FOK pending order, bad volume, ...).
    """
    kind = MAP_ORDER_TYPE.get((order.type, order.side))
    if kind is None:
        raise CommandRefused(f"MT5 has no {order.type.value} orders")
    volume = lots_for(order.qty, spec)
    market = order.type is OrderType.MARKET
    if not market and order.time_in_force in (TimeInForce.IOC, TimeInForce.FOK):
        raise CommandRefused(
            f"MT5 pending orders cannot be {order.time_in_force.value}: use a MARKET order, or GTC/DAY/GTD"
        )
    price: Decimal | None = None
    stoplimit: Decimal | None = None
    if order.type is OrderType.LIMIT:
        price = order.price
    elif order.type is OrderType.STOP:
        price = order.stop_price
    elif order.type is OrderType.STOP_LIMIT:
        price, stoplimit = order.stop_price, order.price  # MT5: price triggers, stoplimit is the limit
    expiration = 0
    type_time = Mt5.ORDER_TIME_GTC if market else MAP_TYPE_TIME[order.time_in_force]
    if type_time == Mt5.ORDER_TIME_SPECIFIED:
        if order.expire_at is None:
            raise CommandRefused("a GTD order needs expire_at")
        expiration = int(order.expire_at.timestamp())
    return Command(
        command_id=f"{order_id}:NEW",
        kind=CommandKind.NEW,
        order_id=order_id,
        client_order_id=order.cl_ord_id,
        symbol=order.symbol,
        side=order.side.value,
        action=Mt5.TRADE_ACTION_DEAL if market else Mt5.TRADE_ACTION_PENDING,
        type=kind,
        volume=volume,
        contract_size=spec.contract_size,
        price=price,
        stoplimit=stoplimit,
        type_time=type_time,
        expiration=expiration,
        fillings=list(MARKET_FILLINGS[order.time_in_force] if market else PENDING_FILLINGS),
        deviation=deviation if market else 0,
        created_at=at,
    )


# ------------------------------------------------------------------------------------------------ fillings


def allowed_fillings(order_type: int, *, filling_mask: int, exemode: int) -> set[int]:
    """Filling modes the terminal documents as allowed for this order type on this symbol.

    FOK and IOC follow the symbol's SYMBOL_FILLING_MODE bits. RETURN is allowed for market orders only in
    Exchange execution, and for limit and stop-limit orders in Market and Exchange execution. In Request
    and Instant execution a market order is always FOK. (MetaTrader 5 help, "Fill Policy".)
    """
    market = order_type not in _PENDING_TYPES
    if market and exemode in (Mt5.SYMBOL_TRADE_EXECUTION_REQUEST, Mt5.SYMBOL_TRADE_EXECUTION_INSTANT):
        return {_FOK}
    allowed: set[int] = set()
    if filling_mask & Mt5.SYMBOL_FILLING_FOK:
        allowed.add(_FOK)
    if filling_mask & Mt5.SYMBOL_FILLING_IOC:
        allowed.add(_IOC)
    if exemode == Mt5.SYMBOL_TRADE_EXECUTION_EXCHANGE or (
        exemode == Mt5.SYMBOL_TRADE_EXECUTION_MARKET and order_type in _LIMIT_TYPES
    ):
        allowed.add(_RETURN)
    return allowed


def filling_sequence(preferred: list[int], *, order_type: int, filling_mask: int, exemode: int) -> list[int]:
    """The filling modes to try, in order: the preferred ones the symbol allows.

    When the symbol seems to allow none of them, all preferred modes are tried anyway and the trade server
    decides (it answers 10030 INVALID_FILL to each mode it refuses, and the next one is tried).
    """
    allowed = allowed_fillings(order_type, filling_mask=filling_mask, exemode=exemode)
    return [f for f in preferred if f in allowed] or list(preferred)


# ------------------------------------------------------------------------------------------------ requests


def mql_request(
    command: Command,
    *,
    broker_symbol: str,
    filling: int | None,
    magic: int,
    bid: Decimal | None = None,
    ask: Decimal | None = None,
    server_offset_s: int = 0,
) -> dict[str, Any]:
    """The MqlTradeRequest for a command, as a ``MetaTrader5.order_send`` dict (floats, server times).

    Market orders carry the current ask (buy) or bid (sell) as price: ignored in Market execution, needed
    in Request/Instant execution. ``expiration`` is converted from UTC to trade server time.
    """
    if command.kind is CommandKind.CANCEL:
        return {"action": Mt5.TRADE_ACTION_REMOVE, "order": command.ticket}
    expiration = command.expiration + server_offset_s if command.expiration else 0
    if command.kind is CommandKind.MODIFY:
        req: dict[str, Any] = {
            "action": Mt5.TRADE_ACTION_MODIFY,
            "order": command.ticket,
            "symbol": broker_symbol,
            "price": float(command.price or 0),
            "stoplimit": float(command.stoplimit or 0),
            "type_time": command.type_time,
        }
        if expiration:
            req["expiration"] = expiration
        return req
    req = {
        "action": command.action,
        "magic": magic,
        "symbol": broker_symbol,
        "volume": float(command.volume),
        "type": command.type,
        "comment": command.order_id,
        "type_time": command.type_time,
    }
    if filling is not None:
        req["type_filling"] = filling
    if command.action == Mt5.TRADE_ACTION_DEAL:
        market_price = ask if command.type == Mt5.ORDER_TYPE_BUY else bid
        if market_price:
            req["price"] = float(market_price)
        req["deviation"] = command.deviation
    else:
        req["price"] = float(command.price or 0)
        if command.stoplimit:
            req["stoplimit"] = float(command.stoplimit)
        if expiration:
            req["expiration"] = expiration
    return req


# ------------------------------------------------------------------------------------------------ results


def ack_accepted(ack: Ack) -> bool:
    """Whether the acknowledged request was carried out."""
    return ack.error is EaError.NONE and ack.retcode in SUCCESS_RETCODES


def ack_reason(ack: Ack) -> str:
    """A trader-readable reason for an acknowledgement that was not a success."""
    if ack.error is not EaError.NONE:
        text = f"MT5 EA {ack.error.value}"
        return f"{text}: {ack.message}" if ack.message else text
    try:
        name = Retcode(ack.retcode).name
    except ValueError:
        name = "UNKNOWN"
    text = f"MT5 retcode {ack.retcode} {name}: {RETCODES.get(ack.retcode, 'unknown return code')}"
    detail = ack.comment or ack.message
    return f"{text} ({detail})" if detail else text


def order_update_kind(state: int, volume_current: Decimal) -> ReportKind | None:
    """The report an order that moved to the history produces (None: its deals say it all)."""
    if state == Mt5.ORDER_STATE_EXPIRED:
        return ReportKind.EXPIRED
    if state == Mt5.ORDER_STATE_REJECTED:
        return ReportKind.REJECTED
    if state == Mt5.ORDER_STATE_CANCELED:
        return ReportKind.CANCELED
    if state == Mt5.ORDER_STATE_PARTIAL and volume_current > 0:
        return ReportKind.CANCELED  # partly filled, the rest removed (IOC remainder)
    return None


#: Final statuses an order update stands for (used to name its exec id, shared with the cancel ack).
_STATE_WORD: Final[dict[ReportKind, str]] = {
    ReportKind.CANCELED: OrderStatus.CANCELED.value,
    ReportKind.EXPIRED: OrderStatus.EXPIRED.value,
    ReportKind.REJECTED: OrderStatus.REJECTED.value,
    ReportKind.ACCEPTED: OrderStatus.ACCEPTED.value,
}


def side_of_deal(deal_type: int) -> OrderSide | None:
    """The side of a DEAL_TYPE_BUY/SELL deal (None for balance, credit and other non-trade deals)."""
    if deal_type == Mt5.DEAL_TYPE_BUY:
        return OrderSide.BUY
    if deal_type == Mt5.DEAL_TYPE_SELL:
        return OrderSide.SELL
    return None


def from_msc(msc: int) -> datetime:
    """UTC milliseconds -> aware datetime."""
    return datetime.fromtimestamp(msc / 1000, UTC)


def order_id_from_comment(comment: str) -> str | None:
    """The Exodus order id an MT5 comment starts with (the server may append to comments, never prepend)."""
    match = ORDER_ID_PATTERN.match(comment or "")
    return match.group(0) if match else None


# ------------------------------------------------------------------------------------------------ ids


def exec_id_deal(account: str, deal: int) -> str:
    """Exec id of a fill: the deal ticket is unique per trade server, and one account is on one server."""
    return f"mt5:{account}:deal:{deal}"


def exec_id_order(account: str, ticket: int, kind: ReportKind) -> str:
    """Exec id of an order's status change.

    A cancel's acknowledgement and the order's move to the history both say CANCELED for the same ticket
    and share this id, so the workflow books it once.
    """
    return f"mt5:{account}:order:{ticket}:{_STATE_WORD[kind]}"


def exec_id_command(command_id: str, outcome: str) -> str:
    """Exec id of a report that only a command produces (a refusal, a replacement, a withdrawal)."""
    return f"mt5:{command_id}:{outcome}"


# ------------------------------------------------------------------------------------------------ symbols


def resolve_symbol(base: str, names: list[str], overrides: dict[str, str] | None = None) -> str | None:
    """Find the terminal's name for an Exodus symbol.

    1. An explicit override (``GOLD`` for ``XAUUSD``), if the terminal has it.
    2. The exact name.
    3. Names that start with the base name and carry a suffix (XM: ``EURUSD#``, ``EURUSDmicro``,
       ``GOLD.i#``): the shortest suffix wins, then the alphabetically first.
    """
    available = set(names)
    if overrides and base in overrides:
        wanted = overrides[base]
        return wanted if wanted in available else None
    if base in available:
        return base
    candidates = sorted((n for n in available if n.startswith(base) and len(n) > len(base)), key=lambda n: (len(n), n))
    return candidates[0] if candidates else None
