"""The EA-facing bridge: what the API's bridge routes call for the ExodusBridge EA (and the Windows executor).

``Bridge`` serves the EA's five requests, each in one transaction: ``heartbeat`` (liveness and terminal state; a
(re)connect or EA restart runs reconciliation), ``poll`` (lease the queued commands), ``ack`` (settle a command and
derive the order's reports from its outcome), ``trades`` (deals and final order states) and ``ticks`` (quotes of
source ``mt5``). It runs in the API process; the worker's side of the bridge is ``Mt5Broker`` (``execution.py``).

* **Fills are deduplicated by deal ticket** (``mt5_deals`` primary key), and every report has an exec id
  derived from MT5 tickets, so the order workflow books each once whichever path delivers it first.
* **Reports are journaled** (``reports.emit``) in the transaction that learns of them, and a NOTIFY on
  ``exodus_mt5`` wakes the worker's delivery at once.
* Only the EA whose heartbeat was accepted may poll or report prices (``HEARTBEAT_FIRST``); a terminal logged in
  to another login than the account's is refused (``LOGIN_MISMATCH``).
"""

from __future__ import annotations

from typing import Any

from psycopg import AsyncConnection

from brokers.mt5 import tables
from brokers.mt5.commands import CommandQueue, Settled, lease, settle
from brokers.mt5.parsing import (
    ack_accepted,
    ack_reason,
    exec_id_command,
    exec_id_deal,
    exec_id_order,
    from_msc,
    order_id_from_comment,
    order_update_kind,
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
    OrderUpdate,
    PollReply,
    PollRequest,
    Ticks,
    TicksReply,
    TradeReply,
    TradeReport,
)
from brokers.mt5.reconcile import reconcile
from brokers.mt5.reports import emit
from brokers.mt5.rows import BROKER, OrderRow
from core.domain import OrderStatus, OrderType, ReportKind, utcnow
from core.errors import ExodusError
from core.instruments import InstrumentCatalog
from core.marketdata import Quote, StoredQuote
from core.settings import Mt5Settings
from store import Pool
from store.audit import append_audit
from store.quotes import upsert_quotes

__all__ = ["Bridge", "BridgeRefused"]


class BridgeRefused(ExodusError):
    """A bridge request the server refuses (the API answers it with ``status`` and names ``field``)."""

    def __init__(self, message: str, *, status: int, code: str, field: str | None = None) -> None:
        """Build the refusal."""
        super().__init__(message)
        self.status = status
        self.code = code
        self.field = field


class Bridge:
    """The EA's requests, for one settings' bridge accounts."""

    def __init__(self, pool: Pool, settings: Mt5Settings, *, instruments: InstrumentCatalog | None = None) -> None:
        """Use ``pool``; ``instruments`` maps broker symbols back and tells FX symbols from the others."""
        self._pool = pool
        self._settings = settings
        self._instruments = instruments
        self._queue = CommandQueue(pool, settings, instruments=instruments)

    async def heartbeat(self, account: str, hb: Heartbeat) -> HeartbeatReply:
        """Record liveness and terminal state; on a (re)connect, reconcile positions with the ledger."""
        cfg = self._settings.accounts.get(account)
        timeout = self._settings.heartbeat_timeout_seconds
        if cfg is not None and cfg.login is not None and cfg.login != hb.account.login:
            # Committed before refusing (the EA repeats the heartbeat: one event while the mismatch lasts).
            async with self._pool.connection() as conn, conn.transaction():
                await tables.add_event_once(conn, account, "LOGIN_MISMATCH", expected=cfg.login, got=hb.account.login)
            raise BridgeRefused(
                f"account.login: the terminal is logged in to {hb.account.login}, but account {account} "
                f"is MT5 login {cfg.login}; log the terminal in to {cfg.login} or fix mt5.accounts",
                status=409,
                code="LOGIN_MISMATCH",
                field="account.login",
            )
        async with self._pool.connection() as conn, conn.transaction():
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
                breaks = await reconcile(conn, account, hb, settings=self._settings, instruments=self._instruments)
                await tables.add_event(conn, account, "RECONCILED", breaks=breaks)
            now = await tables.db_now(conn)
        return HeartbeatReply(server_time=now, status=status, heartbeat_timeout_s=timeout, breaks=breaks)

    async def poll(self, account: str, req: PollRequest) -> PollReply:
        """Lease the commands the polling terminal may execute, oldest first."""
        lease_seconds = self._settings.lease_seconds
        await self._queue.expire_stale_commands([account])
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
            commands = await lease(
                conn,
                account,
                req.terminal_id,
                limit=min(req.max_commands, self._settings.max_commands_per_poll),
                lease_seconds=lease_seconds,
            )
            await tables.touch_poll(conn, account)
            now = await tables.db_now(conn)
        return PollReply(server_time=now, lease_seconds=lease_seconds, commands=commands)

    async def ack(self, account: str, ack: Ack) -> AckReply:
        """Record a command's outcome once; derive the order's reports from it."""
        async with self._pool.connection() as conn, conn.transaction():
            settled = await settle(conn, account, ack)
            if settled.outcome is Settled.RECORDED:
                assert settled.row is not None
                command = Command.model_validate(settled.row["body"])
                order = await tables.lock_order(conn, settled.row["order_id"])
                if order is not None:
                    await self._apply_ack(conn, account, order, command, ack)
                await tables.notify(conn, f"ack:{ack.command_id}")
        # Refused only once committed: what the settlement recorded (a conflict, a break) is kept.
        if settled.outcome is Settled.UNKNOWN:
            raise BridgeRefused(
                f"command_id: account {account} has no command {ack.command_id!r}",
                status=404,
                code="UNKNOWN_COMMAND",
                field="command_id",
            )
        if settled.outcome is Settled.NOT_DELIVERED:
            assert settled.row is not None
            raise BridgeRefused(
                f"command_id: {ack.command_id} was {settled.row['state'].lower()} before any terminal received it",
                status=409,
                code="COMMAND_NOT_DELIVERED",
                field="command_id",
            )
        status = AckStatus.DUPLICATE if settled.outcome is Settled.DUPLICATE else AckStatus.RECORDED
        return AckReply(command_id=ack.command_id, status=status)

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

    async def ticks(self, account: str, report: Ticks) -> TicksReply:
        """Store the terminal's ticks as quotes of source ``mt5``, mapped from broker to Exodus symbols.

        Only the EA whose heartbeat was accepted may report (as for polls): a terminal logged in to the
        wrong login never prices anything. Broker names map through the symbols the EA resolved in its
        heartbeat (``mt5_symbols``), else by the EA's own rule (exact name, or the name plus a suffix).
        """
        received = utcnow()
        async with self._pool.connection() as conn, conn.transaction():
            link = await tables.account_link(conn, account)
            if link != (report.session_id, report.terminal_id):
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

    # ------------------------------------------------------------------------------------------ internals

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

    async def _apply_ack(
        self, conn: AsyncConnection[Any], account: str, order: OrderRow, command: Command, ack: Ack
    ) -> None:
        at = from_msc(ack.executed_at_msc)
        ok = ack_accepted(ack)
        if command.kind is CommandKind.NEW:
            if not ok:
                await emit(
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
            await emit(
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
            await emit(
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
            await emit(
                conn,
                order,
                ReportKind.REPLACED,
                exec_id=exec_id_command(command.command_id, "REPLACED"),
                at=at,
                cl_ord_id=command.client_order_id,
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
        await emit(
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
        await emit(
            conn,
            order,
            kind,
            exec_id=exec_id_order(account, upd.order, kind),
            at=from_msc(upd.time_done_msc),
            reason=f"{words[kind]} at MT5 with {upd.volume_current} of {upd.volume_initial} lots unfilled",
        )
