"""The command queue: the outbox of commands for the terminals, with leases, and at-most-once execution.

The worker's ``Mt5Broker`` queues commands (``CommandQueue``: a NEW per order, CANCELs, MODIFYs), withdraws a NEW
no terminal has received, and expires what nobody picked up. The EA-facing bridge leases commands to the polling
terminal (``lease``) and settles them with the terminal's acknowledgement (``settle``), inside its own transactions.

Guarantees, each enforced by a key or a row lock rather than by process memory:

* **A command is delivered until it is acknowledged, and executed at most once.** Every poll of the terminal
  holding a command's lease gets it again (the EA deduplicates by command id, remembering acked and in-progress
  ids across restarts, and looks an order up by magic + comment before sending it); another terminal gets it only
  after the lease has run out; nobody gets it once acknowledged. A NEW or MODIFY nobody picked up within
  ``command_ttl_seconds`` is expired (the order is rejected) so that an EA that comes back late never executes
  stale orders; a NEW canceled before delivery is withdrawn.
* **An acknowledgement is recorded once**: a repeat is a duplicate (a different outcome is an ``ACK_CONFLICT``
  event), and an acknowledgement of a command withdrawn or expired before delivery is refused (an execution
  is also a ``EXECUTED_AFTER_WITHDRAWAL`` break).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum
from typing import Any

from psycopg import AsyncConnection

from brokers.mt5 import tables
from brokers.mt5.parsing import (
    CommandRefused,
    LotSpec,
    ack_accepted,
    exec_id_command,
    fallback_contract_size,
    new_command,
    plain,
)
from brokers.mt5.protocol import Ack, Command, CommandKind, Mt5
from brokers.mt5.reports import emit
from brokers.mt5.rows import CommandRow, CommandState
from core.domain import ExecutionReport, OrderType, ReplaceOrder, ReportKind, SubmitOrder, base_order_id, utcnow
from core.instruments import InstrumentCatalog
from core.settings import Mt5Settings
from store import Pool

__all__ = ["CommandQueue", "Settled", "Settlement", "lease", "settle"]


class CommandQueue:
    """The worker's side of the outbox: queue, withdraw and expire commands, and follow them."""

    def __init__(self, pool: Pool, settings: Mt5Settings, *, instruments: InstrumentCatalog | None = None) -> None:
        """Use ``pool``; ``instruments`` tells FX symbols (default contract size) from the others."""
        self._pool = pool
        self._settings = settings
        self._instruments = instruments

    async def lot_spec(self, account: str, symbol: str) -> LotSpec:
        """The symbol's lot rules as the terminal reported them, else the configured fallback."""
        async with self._pool.connection() as conn:
            row = await tables.symbol(conn, account, symbol)
        if row is not None:
            return LotSpec(
                symbol=symbol,
                contract_size=plain(row["contract_size"]),
                volume_min=row["volume_min"],
                volume_step=row["volume_step"],
                volume_max=row["volume_max"],
                broker_symbol=row["broker_symbol"],
                reported=True,
            )
        return LotSpec(
            symbol=symbol,
            contract_size=fallback_contract_size(symbol, self._settings, self._instruments),
            volume_min=Decimal("0.01"),
            volume_step=Decimal("0.01"),
            volume_max=Decimal("1000"),
        )

    async def enqueue_new(self, order: SubmitOrder) -> tuple[str, bool]:
        """Queue the NEW command of an order; return its command id and whether this call created it.

        Raises:
            CommandRefused: the account has no bridge, or MT5 cannot carry the order.
        """
        if order.account not in self._settings.accounts:
            raise CommandRefused(f"account {order.account} is not configured for the MT5 bridge (mt5.accounts)")
        order_id = base_order_id(order.cl_ord_id)
        spec = await self.lot_spec(order.account, order.symbol)
        command = new_command(
            order, spec=spec, order_id=order_id, deviation=self._settings.deviation_points, at=utcnow()
        )
        async with self._pool.connection() as conn, conn.transaction():
            created = await tables.insert_order(
                conn, order_id, order, contract_size=spec.contract_size, volume=command.volume
            )
            if not created:
                return command.command_id, False
            await tables.insert_command(conn, command, order.account)
        return command.command_id, True

    async def withdraw_new(self, order_id: str, *, reason: str) -> ExecutionReport | None:
        """Withdraw an order's NEW command if no terminal has received it yet; the order is then canceled."""
        async with self._pool.connection() as conn, conn.transaction():
            account = await tables.withdraw_pending(conn, f"{order_id}:NEW")
            if account is None:
                return None
            order = await tables.lock_order(conn, order_id)
            assert order is not None
            report = await emit(
                conn,
                order,
                ReportKind.CANCELED,
                exec_id=exec_id_command(f"{order_id}:NEW", "WITHDRAWN"),
                at=utcnow(),
                reason=f"{reason} (withdrawn before the MT5 terminal received it)",
            )
            await tables.notify(conn, f"reports:{account}")
        return report

    async def enqueue_cancel(self, order_id: str) -> str:
        """Queue a CANCEL for the order (reusing one still outstanding); return its command id."""
        async with self._pool.connection() as conn, conn.transaction():
            order = await tables.lock_order(conn, order_id)
            assert order is not None
            previous = await tables.order_cancels(conn, order_id)
            if previous and previous[0][1] in ("PENDING", "LEASED"):
                return previous[0][0]
            command = Command(
                command_id=f"{order_id}:CANCEL:{len(previous) + 1}",
                kind=CommandKind.CANCEL,
                order_id=order_id,
                client_order_id=order["client_order_id"],
                symbol=order["symbol"],
                side=order["side"],
                action=Mt5.TRADE_ACTION_REMOVE,
                type=0,
                volume=order["volume"],
                contract_size=order["contract_size"],
                ticket=order["ticket"] or 0,
                created_at=utcnow(),
            )
            await tables.insert_command(conn, command, order["account"])
        return command.command_id

    async def enqueue_modify(self, request: ReplaceOrder) -> str:
        """Queue the MODIFY that gives a pending order new prices (MT5 cannot change its volume)."""
        order_id = base_order_id(request.cl_ord_id)
        async with self._pool.connection() as conn, conn.transaction():
            order = await tables.lock_order(conn, order_id)
            assert order is not None
            new_cmd = await tables.command(conn, f"{order_id}:NEW")
            assert new_cmd is not None
            base = Command.model_validate(new_cmd["body"])
            price, stoplimit = base.price, base.stoplimit
            otype = OrderType(order["type"])
            if otype is OrderType.LIMIT:
                price = request.price
            elif otype is OrderType.STOP:
                price = request.stop_price
            elif otype is OrderType.STOP_LIMIT:
                price, stoplimit = request.stop_price or price, request.price or stoplimit
            command = base.model_copy(
                update={
                    "command_id": f"{request.cl_ord_id}:MODIFY",
                    "kind": CommandKind.MODIFY,
                    "client_order_id": request.cl_ord_id,
                    "action": Mt5.TRADE_ACTION_MODIFY,
                    "price": price,
                    "stoplimit": stoplimit,
                    "fillings": [],
                    "ticket": order["ticket"] or 0,
                    "created_at": utcnow(),
                }
            )
            await tables.insert_command(conn, command, order["account"])
        return command.command_id

    async def command_state(self, command_id: str) -> CommandState | None:
        """Where a command stands."""
        async with self._pool.connection() as conn:
            row = await tables.command(conn, command_id)
        return None if row is None else CommandState.of(row)

    async def mark_in_progress(self, command_id: str) -> bool:
        """Note that an in-process executor is about to send a command; True if one had started it before.

        The in-process executor's equivalent of the EA's state file: after a crash, a command that was in
        progress is looked up at the terminal (magic + comment) before it is sent again.
        """
        async with self._pool.connection() as conn, conn.transaction():
            return await tables.mark_in_progress(conn, command_id)

    async def expire_stale_commands(self, accounts: list[str]) -> list[str]:
        """Expire NEW and MODIFY commands no terminal picked up within the TTL; reject their orders."""
        expired: list[str] = []
        async with self._pool.connection() as conn, conn.transaction():
            for row in await tables.expire_pending_commands(conn, accounts, self._settings.command_ttl_seconds):
                expired.append(row["command_id"])
                await tables.add_event(conn, row["account"], "COMMAND_EXPIRED", command_id=row["command_id"])
                if row["kind"] == CommandKind.NEW.value:
                    order = await tables.lock_order(conn, row["order_id"])
                    if order is not None:
                        await emit(
                            conn,
                            order,
                            ReportKind.REJECTED,
                            exec_id=exec_id_command(row["command_id"], "EXPIRED"),
                            at=utcnow(),
                            reason=(
                                f"the MT5 terminal of account {row['account']} did not pick the order up within "
                                f"{self._settings.command_ttl_seconds:g} s; it was withdrawn and will not be sent"
                            ),
                        )
                await tables.notify(conn, f"ack:{row['command_id']}")
                await tables.notify(conn, f"reports:{row['account']}")
        return expired


# ------------------------------------------------------------------------------------------ the EA's side


async def lease(
    conn: AsyncConnection[Any], account: str, terminal_id: str, *, limit: int, lease_seconds: float
) -> list[Command]:
    """Lease to ``terminal_id`` the account's commands it may execute, oldest first (at most ``limit``).

    Run in the poll's transaction, after the caller has checked that ``terminal_id`` is the terminal whose
    heartbeat was accepted. A command leased to another terminal is taken over once its lease has run out.
    """
    rows = await tables.leasable_commands(conn, account, terminal_id, limit)
    for row in rows:
        if row["state"] == "LEASED" and row["lease_owner"] != terminal_id:
            await tables.add_event(
                conn,
                account,
                "LEASE_TAKEN_OVER",
                command_id=row["command_id"],
                previous=row["lease_owner"],
                terminal_id=terminal_id,
            )
    if rows:
        await tables.lease_commands(conn, [r["command_id"] for r in rows], terminal_id, lease_seconds)
    return [Command.model_validate(r["body"]) for r in rows]


class Settled(StrEnum):
    """What an acknowledgement did to its command."""

    #: The first acknowledgement: recorded; the order's reports follow from it.
    RECORDED = "RECORDED"
    #: The command was acknowledged before: nothing changes.
    DUPLICATE = "DUPLICATE"
    #: The account has no such command.
    UNKNOWN = "UNKNOWN"
    #: The command was withdrawn or expired before any terminal received it: it must not have run.
    NOT_DELIVERED = "NOT_DELIVERED"


@dataclass(frozen=True, slots=True)
class Settlement:
    """The outcome of ``settle``: what happened, and the command's row (None for UNKNOWN)."""

    outcome: Settled
    row: CommandRow | None = None


async def settle(conn: AsyncConnection[Any], account: str, ack: Ack) -> Settlement:
    """Record the acknowledgement of a command once (the command's row is locked until the caller commits)."""
    row = await tables.lock_command(conn, ack.command_id)
    if row is None or row["account"] != account:
        return Settlement(Settled.UNKNOWN)
    if row["state"] == "ACKED":
        assert row["ack"] is not None
        first = Ack.model_validate(row["ack"])
        if (first.retcode, first.order, first.error) != (ack.retcode, ack.order, ack.error):
            await tables.add_event(
                conn,
                account,
                "ACK_CONFLICT",
                command_id=ack.command_id,
                first=first.model_dump(mode="json"),
                again=ack.model_dump(mode="json"),
            )
        return Settlement(Settled.DUPLICATE, row)
    if row["state"] in ("WITHDRAWN", "EXPIRED"):
        await tables.add_event(
            conn,
            account,
            "ACK_CONFLICT",
            command_id=ack.command_id,
            state=row["state"],
            again=ack.model_dump(mode="json"),
        )
        if ack_accepted(ack):
            await tables.add_break(
                conn,
                "EXECUTED_AFTER_WITHDRAWAL",
                f"EXECUTED_AFTER_WITHDRAWAL: account {account} executed {ack.command_id} "
                f"(order {ack.order}) although it was {row['state'].lower()} before delivery",
                order_id=row["order_id"],
            )
        return Settlement(Settled.NOT_DELIVERED, row)
    await tables.record_ack(conn, ack)
    return Settlement(Settled.RECORDED, row)
