"""The bridge's state in Postgres: the command outbox with leases, acknowledgements, deals, liveness.

Both sides of the bridge use this one class. The API's bridge routes (and the Windows in-process executor)
call the EA side: ``heartbeat``, ``poll``, ``ack``, ``trades``. The worker's ``Mt5Broker`` calls the adapter
side: ``enqueue_*``, ``command_state``, ``status_report``, ``undelivered``/``mark_delivered`` and the
housekeeping (``expire_stale_commands``, ``mark_stale_accounts``).

Guarantees, each enforced by a key or a row lock rather than by process memory:

* **A command is delivered until it is acknowledged, and executed at most once.** Every poll of the
  terminal holding a command's lease gets it again (the EA deduplicates by command id, remembering acked
  and in-progress ids across restarts, and looks an order up by magic + comment before sending it); another
  terminal gets it only after the lease has run out; nobody gets it once acknowledged. A NEW or MODIFY
  nobody picked up within ``command_ttl_seconds`` is expired (the order is rejected) so that an EA that
  comes back late never executes stale orders; a NEW canceled before delivery is withdrawn.
* **Fills are deduplicated by deal ticket** (``mt5_deals`` primary key), and every report has an exec id
  derived from MT5 tickets, so the order workflow books each once whichever path delivers it first.
* **Reports are journaled** (``mt5_reports``) in the transaction that learns of them, and the worker
  delivers them until marked delivered; a NOTIFY on ``exodus_mt5`` wakes it at once.
"""

from __future__ import annotations

import logging
from datetime import datetime
from decimal import Decimal
from typing import Any, Final

from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from brokers.mt5 import tables
from brokers.mt5.parsing import (
    CommandRefused,
    LotSpec,
    ack_accepted,
    ack_reason,
    exec_id_command,
    exec_id_deal,
    exec_id_order,
    from_msc,
    new_command,
    order_id_from_comment,
    order_update_kind,
    plain,
    resolve_symbol,
    side_of_deal,
    units_for,
)
from brokers.mt5.protocol import (
    Ack,
    AckReply,
    AckStatus,
    Command,
    CommandKind,
    Deal,
    Heartbeat,
    HeartbeatReply,
    LinkStatus,
    Mt5,
    OrderUpdate,
    PollReply,
    PollRequest,
    Ticks,
    TicksReply,
    TradeReply,
    TradeReport,
)
from brokers.mt5.rows import BRIDGE_CHANNEL, BROKER, CommandState, OrderRow
from brokers.mt5.session import session_check
from core.audit import append_audit
from core.domain import (
    ExecutionReport,
    InstrumentClass,
    OrderSide,
    OrderStatus,
    OrderStatusReport,
    OrderType,
    PositionReport,
    ReplaceOrder,
    ReportKind,
    SubmitOrder,
    base_order_id,
    utcnow,
)
from core.errors import ExodusError
from core.instruments import InstrumentCatalog
from core.marketdata import Quote, StoredQuote, upsert_quotes
from core.settings import Mt5Settings

__all__ = ["BRIDGE_CHANNEL", "BridgeRefused", "BridgeStore", "CommandState", "session_check"]

log = logging.getLogger(__name__)

_OPEN = tuple(s.value for s in (OrderStatus.SUBMITTED, OrderStatus.ACCEPTED, OrderStatus.PARTIALLY_FILLED))
_FINAL_KINDS: Final = {
    ReportKind.CANCELED: OrderStatus.CANCELED,
    ReportKind.EXPIRED: OrderStatus.EXPIRED,
    ReportKind.REJECTED: OrderStatus.REJECTED,
}


class BridgeRefused(ExodusError):
    """A bridge request the server refuses (the API answers it with ``status`` and names ``field``)."""

    def __init__(self, message: str, *, status: int, code: str, field: str | None = None) -> None:
        """Build the refusal."""
        super().__init__(message)
        self.status = status
        self.code = code
        self.field = field


class BridgeStore:
    """The bridge's tables, for the EA side (API) and the adapter side (worker)."""

    def __init__(
        self, pool: AsyncConnectionPool, settings: Mt5Settings, *, instruments: InstrumentCatalog | None = None
    ) -> None:
        """Use ``pool``; ``instruments`` tells FX symbols (default contract size) from the others."""
        self._pool = pool
        self._settings = settings
        self._instruments = instruments

    # ================================================================================ EA side

    async def heartbeat(self, account: str, hb: Heartbeat) -> HeartbeatReply:
        """Record liveness and terminal state; on a (re)connect, reconcile positions with the ledger."""
        cfg = self._settings.accounts.get(account)
        timeout = self._settings.heartbeat_timeout_seconds
        async with self._pool.connection() as conn, conn.transaction():
            if cfg is not None and cfg.login is not None and cfg.login != hb.account.login:
                await tables.add_event(conn, account, "LOGIN_MISMATCH", expected=cfg.login, got=hb.account.login)
                raise BridgeRefused(
                    f"account.login: the terminal is logged in to {hb.account.login}, but account {account} "
                    f"is MT5 login {cfg.login}; log the terminal in to {cfg.login} or fix mt5.accounts",
                    status=409,
                    code="LOGIN_MISMATCH",
                    field="account.login",
                )
            prev = await tables.lock_account(conn, account, self._settings.heartbeat_timeout_seconds)
            first = prev["last_heartbeat_at"] is None
            stale = not first and (float(prev["age"]) > timeout or not prev["connected"])
            restarted = not first and prev["session_id"] != hb.session_id
            await tables.record_heartbeat(conn, account, hb, timeout)
            for spec in hb.symbols:
                await tables.upsert_symbol(conn, account, spec)
            status = LinkStatus.CONNECTED if first else LinkStatus.RECONNECTED if stale else LinkStatus.ALIVE
            if status is not LinkStatus.ALIVE:
                await tables.add_event(
                    conn, account, status.value, terminal_id=hb.terminal_id, session_id=hb.session_id
                )
                await append_audit(
                    conn,
                    actor="mt5-bridge",
                    action=f"MT5_{status.value}",
                    subject=account,
                    detail={"login": hb.account.login, "server": hb.terminal.server, "ea": hb.ea_version},
                )
            if restarted:
                await tables.add_event(
                    conn, account, "EA_RESTARTED", previous=prev["session_id"], session_id=hb.session_id
                )
            breaks: list[str] = []
            if status is not LinkStatus.ALIVE or restarted:
                breaks = await self._reconcile(conn, account, hb)
                await tables.add_event(conn, account, "RECONCILED", breaks=breaks)
            now = await tables.db_now(conn)
        return HeartbeatReply(server_time=now, status=status, heartbeat_timeout_s=timeout, breaks=breaks)

    async def poll(self, account: str, req: PollRequest) -> PollReply:
        """Lease the commands the polling terminal may execute, oldest first."""
        lease = self._settings.lease_seconds
        await self.expire_stale_commands([account])
        async with self._pool.connection() as conn, conn.transaction():
            link = await tables.lock_account(conn, account, self._settings.heartbeat_timeout_seconds)
            if (link["session_id"], link["terminal_id"]) != (req.session_id, req.terminal_id):
                # Heartbeat first: a terminal logged in to the wrong MT5 login (its heartbeat is refused), or an
                # EA that another one has replaced, never receives commands.
                raise BridgeRefused(
                    f"session_id: EA session {req.session_id} of terminal {req.terminal_id} has no accepted "
                    "heartbeat; send a heartbeat first (commands go only to the EA that heartbeats)",
                    status=409,
                    code="HEARTBEAT_FIRST",
                    field="session_id",
                )
            rows = await tables.leasable_commands(
                conn, account, req.terminal_id, min(req.max_commands, self._settings.max_commands_per_poll)
            )
            for row in rows:
                if row["state"] == "LEASED" and row["lease_owner"] != req.terminal_id:
                    await tables.add_event(
                        conn,
                        account,
                        "LEASE_TAKEN_OVER",
                        command_id=row["command_id"],
                        previous=row["lease_owner"],
                        terminal_id=req.terminal_id,
                    )
            if rows:
                await tables.lease_commands(conn, [r["command_id"] for r in rows], req.terminal_id, lease)
            await tables.touch_poll(conn, account)
            now = await tables.db_now(conn)
        return PollReply(
            server_time=now, lease_seconds=lease, commands=[Command.model_validate(r["body"]) for r in rows]
        )

    async def ack(self, account: str, ack: Ack) -> AckReply:
        """Record a command's outcome once; derive the order's reports from it."""
        async with self._pool.connection() as conn, conn.transaction():
            row = await tables.lock_command(conn, ack.command_id)
            if row is None or row["account"] != account:
                raise BridgeRefused(
                    f"command_id: account {account} has no command {ack.command_id!r}",
                    status=404,
                    code="UNKNOWN_COMMAND",
                    field="command_id",
                )
            if row["state"] == "ACKED":
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
                return AckReply(command_id=ack.command_id, status=AckStatus.DUPLICATE)
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
                raise BridgeRefused(
                    f"command_id: {ack.command_id} was {row['state'].lower()} before any terminal received it",
                    status=409,
                    code="COMMAND_NOT_DELIVERED",
                    field="command_id",
                )
            await tables.record_ack(conn, ack)
            command = Command.model_validate(row["body"])
            order = await tables.lock_order(conn, row["order_id"])
            if order is not None:
                await self._apply_ack(conn, account, order, command, ack)
            await tables.notify(conn, f"ack:{ack.command_id}")
        return AckReply(command_id=ack.command_id, status=AckStatus.RECORDED)

    async def trades(self, account: str, report: TradeReport) -> TradeReply:
        """Record deals (deduplicated by ticket) and final order states; derive fills and closes."""
        new_deals = dup_deals = new_orders = dup_orders = 0
        unmatched: list[int] = []
        async with self._pool.connection() as conn, conn.transaction():
            for deal in report.deals:
                if not await tables.insert_deal(conn, account, deal):
                    dup_deals += 1
                    continue
                new_deals += 1
                order = await self._match_order(conn, account, deal.order, deal.comment)
                if order is None:
                    unmatched.append(deal.deal)
                    await tables.add_event(conn, account, "UNMATCHED_DEAL", deal=deal.model_dump(mode="json"))
                    await tables.add_break(
                        conn,
                        "UNMATCHED_DEAL",
                        f"UNMATCHED_DEAL: account {account} deal {deal.deal} (order {deal.order}, {deal.symbol} "
                        f"{deal.volume} lots @ {deal.price}, magic {deal.magic}, comment {deal.comment!r}) "
                        "belongs to no order the bridge sent",
                    )
                    continue
                await self._book_deal(conn, account, order, deal)
            for upd in report.orders:
                if not await tables.insert_order_update(conn, account, upd):
                    dup_orders += 1
                    continue
                new_orders += 1
                order = await self._match_order(conn, account, upd.order, upd.comment)
                if order is not None:
                    await self._book_order_update(conn, account, order, upd)
            if new_deals or new_orders:
                await tables.notify(conn, f"reports:{account}")
        return TradeReply(
            deals_new=new_deals,
            deals_duplicate=dup_deals,
            orders_new=new_orders,
            orders_duplicate=dup_orders,
            unmatched=unmatched,
        )

    # ================================================================================ adapter side

    async def ticks(self, account: str, report: Ticks) -> TicksReply:
        """Store the terminal's ticks as quotes of source ``mt5``, mapped from broker to Exodus symbols.

        Only the EA whose heartbeat was accepted may report (as for polls): a terminal logged in to the
        wrong login never prices anything. Broker names map through the symbols the EA resolved in its
        heartbeat (``mt5_symbols``), else by the EA's own rule (exact name, or the name plus a suffix).
        """
        received = utcnow()
        async with self._pool.connection() as conn, conn.transaction():
            link = await tables.account_link(conn, account)
            if link is None or link != (report.session_id, report.terminal_id):
                raise BridgeRefused(
                    f"session_id: EA session {report.session_id} of terminal {report.terminal_id} has no accepted "
                    "heartbeat; send a heartbeat first (only the EA that heartbeats may report prices)",
                    status=409,
                    code="HEARTBEAT_FIRST",
                    field="session_id",
                )
            names = {r["broker_symbol"]: r["symbol"] for r in await tables.symbols(conn, account)}
            quotes: list[StoredQuote] = []
            unknown: set[str] = set()
            for tick in report.ticks:
                symbol = names.get(tick.broker_symbol) or self._exodus_symbol(tick.broker_symbol)
                if symbol is None:
                    unknown.add(tick.broker_symbol)
                    continue
                quote = Quote(
                    symbol=symbol,
                    source=BROKER,
                    bid=tick.bid or None,
                    ask=tick.ask or None,
                    last=tick.last or None,
                    at=from_msc(tick.time_msc),
                )
                if quote.mid is not None:
                    quotes.append(StoredQuote(quote, received))
            accepted = await upsert_quotes(conn, quotes)
        return TicksReply(server_time=received, accepted=accepted, unknown=sorted(unknown))

    def _exodus_symbol(self, broker_symbol: str) -> str | None:
        # The EA's resolution rule run backwards: the catalogue symbol this broker name would resolve from
        # (the longest, so that a longer base is not mistaken for a suffix of a shorter one).
        if self._instruments is None:
            return None
        bases = [i.symbol for i in self._instruments if resolve_symbol(i.symbol, [broker_symbol]) == broker_symbol]
        return max(bases, key=len) if bases else None

    async def register_accounts(self) -> None:
        """Create the account rows and write the heartbeat timeout the risk check applies."""
        async with self._pool.connection() as conn, conn.transaction():
            for account in self._settings.accounts:
                await tables.register_account(conn, account, self._settings.heartbeat_timeout_seconds)

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
            contract_size=self._fallback_contract_size(symbol),
            volume_min=Decimal("0.01"),
            volume_step=Decimal("0.01"),
            volume_max=Decimal("1000"),
        )

    def _fallback_contract_size(self, symbol: str) -> Decimal:
        if symbol in self._settings.contract_sizes:
            return self._settings.contract_sizes[symbol]
        inst = self._instruments.get(symbol) if self._instruments is not None else None
        if inst is None or inst.instrument_class is InstrumentClass.FX:
            return self._settings.default_fx_contract_size
        return Decimal(1)

    async def enqueue_new(self, order: SubmitOrder) -> tuple[str, bool]:
        """Queue the NEW command of an order; return its command id and whether this call created it.

        Raises:
            CommandRefused: the account has no bridge, or MT5 cannot carry the order.
        """
        if order.account not in self._settings.accounts:
            raise CommandRefused(f"account {order.account} is not configured for the MT5 bridge (mt5.accounts)")
        order_id = base_order_id(order.client_order_id)
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
            report = await self._emit(
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
        order_id = base_order_id(request.client_order_id)
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
                    "command_id": f"{request.client_order_id}:MODIFY",
                    "kind": CommandKind.MODIFY,
                    "client_order_id": request.client_order_id,
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

    async def order(self, order_id: str) -> OrderRow | None:
        """The bridge's row of an order."""
        async with self._pool.connection() as conn:
            return await tables.order(conn, order_id)

    async def reports_of(self, order_id: str) -> list[ExecutionReport]:
        """Every report of an order, in the order they were produced."""
        async with self._pool.connection() as conn:
            return await tables.reports_of(conn, order_id)

    async def status_report(self, order_id: str) -> OrderStatusReport | None:
        """The bridge's view of an order and every report it produced."""
        order = await self.order(order_id)
        if order is None:
            return None
        return OrderStatusReport(
            broker=BROKER,
            client_order_id=order["client_order_id"],
            broker_order_id=str(order["ticket"]) if order["ticket"] else None,
            status=OrderStatus(order["status"]),
            qty=order["qty"],
            cum_qty=order["cum_qty"],
            avg_price=order["avg_price"],
            price=order["price"],
            stop_price=order["stop_price"],
            reports=await self.reports_of(order_id),
        )

    async def open_order_ids(self, accounts: list[str]) -> list[str]:
        """Orders still working at the terminals of ``accounts``."""
        async with self._pool.connection() as conn:
            return await tables.open_order_ids(conn, accounts, list(_OPEN))

    async def fills_since(self, accounts: list[str], since: datetime) -> list[ExecutionReport]:
        """Fills of ``accounts`` that happened after ``since``."""
        async with self._pool.connection() as conn:
            reports = await tables.fill_reports(conn, accounts)
        return [r for r in reports if r.transact_at > since]

    async def positions(self, accounts: list[str]) -> list[PositionReport]:
        """Net positions (units) per account and symbol, from each terminal's last heartbeat."""
        out: list[PositionReport] = []
        async with self._pool.connection() as conn:
            for account in accounts:
                positions = await tables.account_positions(conn, account)
                if positions is None:
                    continue
                net = await self._terminal_net(conn, account, positions)
                out.extend(
                    PositionReport(broker=BROKER, account=account, symbol=s, qty=q) for s, q in sorted(net.items())
                )
        return out

    async def undelivered(self, accounts: list[str], *, exclude: set[str], limit: int = 500) -> list[ExecutionReport]:
        """Journaled reports not yet delivered to the order workflows, oldest first."""
        async with self._pool.connection() as conn:
            rows = await tables.undelivered_reports(conn, accounts, limit)
        return [report for exec_id, report in rows if exec_id not in exclude]

    async def mark_delivered(self, exec_ids: list[str]) -> None:
        """Note reports as delivered."""
        async with self._pool.connection() as conn:
            await tables.mark_reports_delivered(conn, exec_ids)

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
                        await self._emit(
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

    async def mark_stale_accounts(self, accounts: list[str]) -> list[str]:
        """Mark accounts whose EA went silent as disconnected (event + audit entry); return them."""
        async with self._pool.connection() as conn, conn.transaction():
            gone = await tables.mark_accounts_stale(conn, accounts)
            for row in gone:
                await tables.add_event(conn, row["account"], "DISCONNECTED", last_heartbeat_at=row["last_heartbeat_at"])
                await append_audit(
                    conn,
                    actor="mt5-bridge",
                    action="MT5_DISCONNECTED",
                    subject=row["account"],
                    detail={"last_heartbeat_at": row["last_heartbeat_at"]},
                )
        for row in gone:
            log.warning(
                "MT5 account %s: no heartbeat since %s; marked disconnected", row["account"], row["last_heartbeat_at"]
            )
        return [r["account"] for r in gone]

    async def link_problem(self, account: str) -> str | None:
        """Why the account's EA cannot be reached right now (None: it heartbeats)."""
        async with self._pool.connection() as conn:
            return await session_check(conn, account)

    # ================================================================================ internals

    async def _match_order(
        self, conn: AsyncConnection[Any], account: str, ticket: int, comment: str
    ) -> OrderRow | None:
        # By ticket first; the comment (our order id) covers what the ticket cannot: a deal reported before
        # the acknowledgement, and the limit order MT5 creates when a stop-limit triggers.
        row = await tables.lock_order_by_ticket(conn, account, ticket)
        if row is not None:
            return row
        order_id = order_id_from_comment(comment)
        if order_id is None:
            return None
        row = await tables.lock_order(conn, order_id)
        if row is None or row["account"] != account:
            return None
        return row

    async def _emit(
        self,
        conn: AsyncConnection[Any],
        order: OrderRow,
        kind: ReportKind,
        *,
        exec_id: str,
        at: datetime,
        last_qty: Decimal = Decimal(0),
        last_price: Decimal | None = None,
        fee: Decimal = Decimal(0),
        reason: str | None = None,
        client_order_id: str | None = None,
        new_price: Decimal | None = None,
        new_stop_price: Decimal | None = None,
    ) -> ExecutionReport | None:
        """Journal one report of ``order`` and move the bridge's order row with it (in place)."""
        status = OrderStatus(order["status"])
        cum, avg = order["cum_qty"], order["avg_price"]
        cid = client_order_id or order["client_order_id"]
        if kind is ReportKind.FILL:
            assert last_price is not None
            avg = ((avg or Decimal(0)) * cum + last_qty * last_price) / (cum + last_qty)
            cum = cum + last_qty
            if cum >= order["qty"]:
                status = OrderStatus.FILLED
            elif not status.is_terminal:
                status = OrderStatus.PARTIALLY_FILLED
        elif kind is ReportKind.ACCEPTED:
            if status is OrderStatus.SUBMITTED:
                status = OrderStatus.ACCEPTED
        elif kind in _FINAL_KINDS:
            if status is not OrderStatus.FILLED:
                status = _FINAL_KINDS[kind]
        terminal = status.is_terminal
        report = ExecutionReport(
            broker=BROKER,
            exec_id=exec_id,
            kind=kind,
            client_order_id=cid,
            broker_order_id=str(order["ticket"]) if order["ticket"] else None,
            symbol=order["symbol"],
            side=OrderSide(order["side"]),
            last_qty=last_qty,
            last_price=last_price,
            cum_qty=cum,
            leaves_qty=Decimal(0) if terminal else max(order["qty"] - cum, Decimal(0)),
            avg_price=avg,
            fee=fee,
            reason=reason,
            new_qty=order["qty"] if kind is ReportKind.REPLACED else None,
            new_price=new_price,
            new_stop_price=new_stop_price,
            transact_at=at,
        )
        if not await tables.insert_report(conn, report, account=order["account"], order_id=order["order_id"]):
            return None
        price, stop = order["price"], order["stop_price"]
        if kind is ReportKind.REPLACED:
            price = new_price if new_price is not None else price
            stop = new_stop_price if new_stop_price is not None else stop
        order.update(status=status.value, cum_qty=cum, avg_price=avg, client_order_id=cid, price=price, stop_price=stop)
        if kind in _FINAL_KINDS and reason:
            order["reason"] = reason
        await tables.update_order(conn, order)
        return report

    async def _apply_ack(
        self, conn: AsyncConnection[Any], account: str, order: OrderRow, command: Command, ack: Ack
    ) -> None:
        at = from_msc(ack.executed_at_msc)
        ok = ack_accepted(ack)
        if command.kind is CommandKind.NEW:
            if not ok:
                await self._emit(
                    conn,
                    order,
                    ReportKind.REJECTED,
                    exec_id=exec_id_command(command.command_id, "REJECTED"),
                    at=at,
                    reason=ack_reason(ack),
                )
                return
            if ack.order and not order["ticket"]:
                order["ticket"] = ack.order
            if ack.broker_symbol:
                order["broker_symbol"] = ack.broker_symbol
            ticket = order["ticket"] or 0
            await self._emit(
                conn,
                order,
                ReportKind.ACCEPTED,
                exec_id=exec_id_order(account, ticket, ReportKind.ACCEPTED)
                if ticket
                else exec_id_command(command.command_id, "ACCEPTED"),
                at=at,
                reason="recovered after an EA restart" if ack.recovered else None,
            )
            await self._adopt_orphans(conn, account, order, ticket)
        elif command.kind is CommandKind.CANCEL and ok:
            ticket = ack.order or order["ticket"] or 0
            await self._emit(
                conn,
                order,
                ReportKind.CANCELED,
                exec_id=exec_id_order(account, ticket, ReportKind.CANCELED)
                if ticket
                else exec_id_command(command.command_id, "CANCELED"),
                at=at,
                reason="canceled at MT5",
            )
        elif command.kind is CommandKind.MODIFY and ok:
            otype = OrderType(order["type"])
            new_price = command.stoplimit if otype is OrderType.STOP_LIMIT else command.price
            new_stop = command.price if otype in (OrderType.STOP, OrderType.STOP_LIMIT) else None
            await self._emit(
                conn,
                order,
                ReportKind.REPLACED,
                exec_id=exec_id_command(command.command_id, "REPLACED"),
                at=at,
                client_order_id=command.client_order_id,
                new_price=new_price if otype in (OrderType.LIMIT, OrderType.STOP_LIMIT) else None,
                new_stop_price=new_stop,
            )

    async def _adopt_orphans(self, conn: AsyncConnection[Any], account: str, order: OrderRow, ticket: int) -> None:
        # Deals and order updates that arrived before the acknowledgement and matched nothing then.
        for deal in await tables.orphan_deals(conn, account, ticket):
            await self._book_deal(conn, account, order, deal)
        for upd in await tables.orphan_order_updates(conn, account, ticket):
            await self._book_order_update(conn, account, order, upd)

    async def _book_deal(self, conn: AsyncConnection[Any], account: str, order: OrderRow, deal: Deal) -> None:
        await tables.assign_deal(conn, account, deal.deal, order["order_id"])
        side = side_of_deal(deal.type)
        if side is None or deal.volume <= 0:
            return
        if side.value != order["side"]:
            await tables.add_break(
                conn,
                "DEAL_SIDE_MISMATCH",
                f"DEAL_SIDE_MISMATCH: account {account} deal {deal.deal} is a {side.value} "
                f"but order {order['order_id']} is a {order['side']}",
                order_id=order["order_id"],
            )
            return
        if not order["ticket"]:
            order["ticket"] = deal.order
        await self._emit(
            conn,
            order,
            ReportKind.FILL,
            exec_id=exec_id_deal(account, deal.deal),
            at=from_msc(deal.time_msc),
            last_qty=units_for(deal.volume, order["contract_size"]),
            last_price=deal.price,
            # MT5 books charges as negative commission/fee; the ledger's fee is what was paid.
            fee=-(deal.commission + deal.fee),
        )

    async def _book_order_update(
        self, conn: AsyncConnection[Any], account: str, order: OrderRow, upd: OrderUpdate
    ) -> None:
        await tables.assign_order_update(conn, account, upd, order["order_id"])
        kind = order_update_kind(upd.state, upd.volume_current)
        if kind is None or OrderStatus(order["status"]).is_terminal:
            return
        words = {ReportKind.CANCELED: "canceled", ReportKind.EXPIRED: "expired", ReportKind.REJECTED: "rejected"}
        await self._emit(
            conn,
            order,
            kind,
            exec_id=exec_id_order(account, upd.order, kind),
            at=from_msc(upd.time_done_msc),
            reason=f"{words[kind]} at MT5 with {upd.volume_current} of {upd.volume_initial} lots unfilled",
        )

    async def _terminal_net(
        self, conn: AsyncConnection[Any], account: str, positions: list[dict[str, Any]]
    ) -> dict[str, Decimal]:
        specs = await tables.symbols(conn, account)
        by_broker = {r["broker_symbol"]: (r["symbol"], r["contract_size"]) for r in specs}
        by_base = {r["symbol"]: r["contract_size"] for r in specs}
        net: dict[str, Decimal] = {}
        for p in positions:
            base = p.get("base_symbol") or by_broker.get(p["symbol"], (p["symbol"], None))[0]
            size = by_base.get(base) or self._fallback_contract_size(base)
            sign = 1 if int(p["type"]) == Mt5.POSITION_TYPE_BUY else -1
            net[base] = net.get(base, Decimal(0)) + sign * Decimal(str(p["volume"])) * size
        return {k: plain(v) for k, v in net.items()}

    async def _reconcile(self, conn: AsyncConnection[Any], account: str, hb: Heartbeat) -> list[str]:
        """Compare the terminal's positions and working orders with the ledger; record the differences."""
        breaks: list[tuple[str, str, str | None]] = []
        terminal = await self._terminal_net(conn, account, [p.model_dump(mode="json") for p in hb.positions])
        # One statement, so one snapshot: fills the order workflows have booked, plus fills the bridge knows
        # that are still on their way to the ledger (counting them keeps a reconnect from reporting a break
        # that heals a second later). Two queries could miss a fill booked between them.
        ledger: dict[str, Decimal] = {}
        in_flight = 0
        for row in await tables.ledger_net_fills(conn, account):
            sign = 1 if row["side"] == OrderSide.BUY.value else -1
            ledger[row["symbol"]] = ledger.get(row["symbol"], Decimal(0)) + sign * row["qty"]
            in_flight += bool(row["in_flight"])
        for symbol in sorted(set(terminal) | set(ledger)):
            t, led = terminal.get(symbol, Decimal(0)), plain(ledger.get(symbol, Decimal(0)))
            if t != led:
                breaks.append(
                    (
                        "POSITION_MISMATCH",
                        f"POSITION_MISMATCH: account {account} {symbol}: terminal {t:f}, ledger {led:f}"
                        + (f" ({in_flight} fill(s) in flight)" if in_flight else ""),
                        None,
                    )
                )
        working = {o.ticket for o in hb.orders}
        known = set()
        in_ledger = await tables.working_pending_orders(
            conn, account, [OrderStatus.ACCEPTED.value, OrderStatus.PARTIALLY_FILLED.value]
        )
        for row in in_ledger:
            known.add(row["ticket"])
            if row["ticket"] not in working:
                breaks.append(
                    (
                        "ORDER_NOT_AT_TERMINAL",
                        f"ORDER_NOT_AT_TERMINAL: account {account} order {row['order_id']} (ticket {row['ticket']}) "
                        f"is {row['status']} in the ledger but not working at the terminal",
                        row["order_id"],
                    )
                )
        for o in hb.orders:
            if o.ticket not in known:
                if not await tables.ticket_known(conn, account, o.ticket):
                    breaks.append(
                        (
                            "UNKNOWN_ORDER_AT_TERMINAL",
                            f"UNKNOWN_ORDER_AT_TERMINAL: account {account} ticket {o.ticket} ({o.symbol}, "
                            f"comment {o.comment!r}) works at the terminal but the bridge never sent it",
                            None,
                        )
                    )
        for kind, detail, order_id in breaks:
            await tables.add_break(conn, kind, detail, order_id=order_id)
        return [detail for _, detail, _ in breaks]
