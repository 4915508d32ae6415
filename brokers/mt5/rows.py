"""What the bridge's roles share: its broker name and NOTIFY channel, and the rows of its tables.

The tables are created by ``migrations/0003_mt5_bridge.sql``; their statements are in ``tables.py``, which returns
these rows. Nothing here does I/O, so every role (the EA-facing bridge, the command queue, reconciliation, the
session check) can import it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, Final, TypedDict

from brokers.mt5.protocol import Ack, Command, CommandKind

__all__ = ["BRIDGE_CHANNEL", "BROKER", "AccountRow", "CommandRow", "CommandState", "OrderRow", "SymbolRow"]

#: NOTIFY channel: payload ``ack:<command_id>`` or ``reports:<account>``.
BRIDGE_CHANNEL: Final = "exodus_mt5"
BROKER: Final = "mt5"


class AccountRow(TypedDict):
    """``mt5_accounts``: one bridge account's link, as its last heartbeat left it (``age``: seconds since it)."""

    account: str
    terminal_id: str | None
    session_id: str | None
    ea_version: str | None
    login: int | None
    server: str | None
    connected: bool
    last_heartbeat_at: datetime | None
    last_poll_at: datetime | None
    disconnected_at: datetime | None
    heartbeat_timeout_s: float
    terminal: dict[str, Any]
    account_state: dict[str, Any]
    positions: list[dict[str, Any]]
    open_orders: list[dict[str, Any]]
    updated_at: datetime
    age: Decimal


class SymbolRow(TypedDict):
    """``mt5_symbols``: a symbol's specification as the terminal reported it."""

    account: str
    symbol: str
    broker_symbol: str
    contract_size: Decimal
    volume_min: Decimal
    volume_step: Decimal
    volume_max: Decimal
    digits: int
    filling_mode: int
    trade_mode: int
    exemode: int
    updated_at: datetime


class OrderRow(TypedDict):
    """``mt5_orders``: the bridge's record of an order it carries (keyed by the Exodus order id)."""

    order_id: str
    account: str
    #: The order's ``cl_ord_id`` (the column keeps its earlier name).
    client_order_id: str
    symbol: str
    side: str
    type: str
    time_in_force: str
    qty: Decimal
    price: Decimal | None
    stop_price: Decimal | None
    contract_size: Decimal
    volume: Decimal
    ticket: int | None
    broker_symbol: str | None
    status: str
    cum_qty: Decimal
    avg_price: Decimal | None
    reason: str | None
    created_at: datetime
    updated_at: datetime


class CommandRow(TypedDict):
    """``mt5_commands``: one command of the outbox (``body`` is the ``Command``, ``ack`` the ``Ack``)."""

    seq: int
    command_id: str
    account: str
    order_id: str
    kind: str
    body: dict[str, Any]
    state: str
    lease_owner: str | None
    lease_until: datetime | None
    deliveries: int
    first_delivered_at: datetime | None
    in_progress_at: datetime | None
    created_at: datetime
    acked_at: datetime | None
    ack: dict[str, Any] | None
    ack_terminal_id: str | None


@dataclass(frozen=True, slots=True)
class CommandState:
    """Where a command stands."""

    command_id: str
    account: str
    order_id: str
    kind: CommandKind
    state: str
    command: Command
    ack: Ack | None

    @property
    def done(self) -> bool:
        """Acknowledged, withdrawn or expired: nothing more will happen to it."""
        return self.state in ("ACKED", "WITHDRAWN", "EXPIRED")

    @classmethod
    def of(cls, row: CommandRow) -> CommandState:
        """The state of the command in ``row``."""
        return cls(
            command_id=row["command_id"],
            account=row["account"],
            order_id=row["order_id"],
            kind=CommandKind(row["kind"]),
            state=row["state"],
            command=Command.model_validate(row["body"]),
            ack=None if row["ack"] is None else Ack.model_validate(row["ack"]),
        )
