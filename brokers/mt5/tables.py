"""The SQL of the bridge's tables (``mt5_*``, ``migrations/0003_mt5_bridge.sql``), in one place.

Plain statements as functions that take a connection; the caller owns the transaction (and the row locks a
``lock_*`` function takes last until it ends). Every role of the bridge reads and writes its tables through
here. The shared tables' SQL is in ``store/``: ``add_break`` calls ``store.breaks``, and the bridge's execution
reports are in the shared report journal (``broker_reports``, broker ``mt5``, one stream per account;
``store/reports.py``, ``brokers/journal.py``), where ``store.reports.net_fills`` also compares them with the ledger.
"""

from __future__ import annotations

import json
from datetime import datetime
from decimal import Decimal
from typing import Any, cast

from psycopg import AsyncConnection
from psycopg.types.json import Jsonb

from brokers.mt5.protocol import Ack, Command, Deal, Heartbeat, OrderUpdate, SymbolSpec
from brokers.mt5.rows import BRIDGE_CHANNEL, BROKER, AccountRow, CommandRow, OrderRow, SymbolRow
from core.domain import SubmitOrder
from store import breaks

__all__ = [
    "account_link",
    "account_positions",
    "add_break",
    "add_event",
    "add_event_once",
    "assign_deal",
    "assign_order_update",
    "command",
    "db_now",
    "expire_pending_commands",
    "insert_command",
    "insert_deal",
    "insert_order",
    "insert_order_update",
    "leasable_commands",
    "lease_commands",
    "liveness",
    "lock_account",
    "lock_command",
    "lock_order",
    "lock_order_by_ticket",
    "mark_accounts_stale",
    "mark_in_progress",
    "notify",
    "open_orders",
    "order",
    "order_cancels",
    "orphan_deals",
    "orphan_order_updates",
    "record_ack",
    "record_heartbeat",
    "register_account",
    "symbol",
    "symbols",
    "terminals",
    "ticket_known",
    "touch_poll",
    "update_order",
    "upsert_symbol",
    "withdraw_pending",
    "working_pending_orders",
]

Conn = AsyncConnection[Any]


# ------------------------------------------------------------------------------------------ events, breaks


async def notify(conn: Conn, payload: str) -> None:
    """NOTIFY the bridge's channel (delivered when the transaction commits)."""
    await conn.execute("SELECT pg_notify(%s, %s)", (BRIDGE_CHANNEL, payload))


async def add_event(conn: Conn, account: str, kind: str, **detail: Any) -> None:
    """Record what happened to an account's link (``mt5_account_events``)."""
    await conn.execute(
        "INSERT INTO mt5_account_events (account, kind, detail) VALUES (%s, %s, %s)",
        (account, kind, Jsonb(json.loads(json.dumps(detail, default=str)))),
    )


async def add_event_once(conn: Conn, account: str, kind: str, **detail: Any) -> None:
    """Record an event unless it is already the account's latest (a refusal repeated on every heartbeat is one)."""
    body = Jsonb(json.loads(json.dumps(detail, default=str)))
    await conn.execute(
        "INSERT INTO mt5_account_events (account, kind, detail) SELECT %s, %s, %s WHERE NOT EXISTS ("
        " SELECT 1 FROM (SELECT kind, detail FROM mt5_account_events WHERE account = %s ORDER BY id DESC LIMIT 1)"
        " latest WHERE latest.kind = %s AND latest.detail = %s)",
        (account, kind, body, account, kind, body),
    )


async def add_break(conn: Conn, kind: str, detail: str, *, order_id: str | None = None) -> None:
    """Record a reconciliation break of broker ``mt5``, once while an identical one is open."""
    await breaks.add_break_once_open(conn, order_id=order_id, broker=BROKER, kind=kind, detail=detail)


async def db_now(conn: Conn) -> datetime:
    """The database's clock (the transaction's start)."""
    cur = await conn.execute("SELECT now() AS now")
    row: Any = await cur.fetchone()
    return cast(datetime, row["now"])


# ------------------------------------------------------------------------------------------ accounts


async def register_account(conn: Conn, account: str, heartbeat_timeout_s: float) -> None:
    """Create the account's row, or write the heartbeat timeout the session check applies."""
    await conn.execute(
        "INSERT INTO mt5_accounts (account, heartbeat_timeout_s) VALUES (%s, %s)"
        " ON CONFLICT (account) DO UPDATE SET heartbeat_timeout_s = EXCLUDED.heartbeat_timeout_s",
        (account, heartbeat_timeout_s),
    )


async def lock_account(conn: Conn, account: str, heartbeat_timeout_s: float) -> AccountRow:
    """The account's row (created if missing), locked, with ``age``: seconds since its last heartbeat (0: none)."""
    await conn.execute(
        "INSERT INTO mt5_accounts (account, heartbeat_timeout_s) VALUES (%s, %s) ON CONFLICT DO NOTHING",
        (account, heartbeat_timeout_s),
    )
    cur = await conn.execute(
        "SELECT *, coalesce(extract(epoch FROM now() - last_heartbeat_at), 0) AS age"
        " FROM mt5_accounts WHERE account = %s FOR UPDATE",
        (account,),
    )
    row = await cur.fetchone()
    assert row is not None
    return cast(AccountRow, row)


async def record_heartbeat(conn: Conn, account: str, hb: Heartbeat, heartbeat_timeout_s: float) -> None:
    """Write what a heartbeat says: the terminal is connected now, and its state, positions and orders."""
    await conn.execute(
        """
        UPDATE mt5_accounts SET terminal_id = %s, session_id = %s, ea_version = %s, login = %s,
            server = %s, connected = true, last_heartbeat_at = now(), disconnected_at = NULL,
            heartbeat_timeout_s = %s, terminal = %s, account_state = %s, positions = %s,
            open_orders = %s, updated_at = now()
        WHERE account = %s
        """,
        (
            hb.terminal_id,
            hb.session_id,
            hb.ea_version,
            hb.account.login,
            hb.terminal.server,
            heartbeat_timeout_s,
            Jsonb(hb.terminal.model_dump(mode="json")),
            Jsonb(hb.account.model_dump(mode="json")),
            Jsonb([p.model_dump(mode="json") for p in hb.positions]),
            Jsonb([o.model_dump(mode="json") for o in hb.orders]),
            account,
        ),
    )


async def touch_poll(conn: Conn, account: str) -> None:
    """Note that the account's EA polled."""
    await conn.execute("UPDATE mt5_accounts SET last_poll_at = now() WHERE account = %s", (account,))


async def account_link(conn: Conn, account: str) -> tuple[str | None, str | None] | None:
    """``(session_id, terminal_id)`` of the EA whose heartbeat was last accepted (None: no account row)."""
    cur = await conn.execute("SELECT terminal_id, session_id FROM mt5_accounts WHERE account = %s", (account,))
    row: Any = await cur.fetchone()
    return None if row is None else (row["session_id"], row["terminal_id"])


async def account_positions(conn: Conn, account: str) -> list[dict[str, Any]] | None:
    """The positions of the account's last heartbeat (None: no account row)."""
    cur = await conn.execute("SELECT positions FROM mt5_accounts WHERE account = %s", (account,))
    row: Any = await cur.fetchone()
    return None if row is None else list(row["positions"] or [])


async def liveness(conn: Conn, account: str) -> dict[str, Any] | None:
    """What the session check needs: last heartbeat, its timeout and age, terminal and account state."""
    cur = await conn.execute(
        "SELECT last_heartbeat_at, heartbeat_timeout_s, terminal, account_state,"
        " extract(epoch FROM now() - last_heartbeat_at) AS age FROM mt5_accounts WHERE account = %s",
        (account,),
    )
    row: Any = await cur.fetchone()
    return cast(dict[str, Any] | None, row)


async def terminals(conn: Conn) -> list[dict[str, Any]]:
    """Every bridge account's terminal for the broker health page, with the heartbeat's age (the database's clock)."""
    cur = await conn.execute(
        "SELECT account, terminal_id, ea_version, login, server, connected, last_heartbeat_at, last_poll_at,"
        " disconnected_at, heartbeat_timeout_s, extract(epoch FROM now() - last_heartbeat_at)::float8 AS age"
        " FROM mt5_accounts ORDER BY account"
    )
    return cast(list[dict[str, Any]], await cur.fetchall())


async def mark_accounts_stale(conn: Conn, accounts: list[str]) -> list[dict[str, Any]]:
    """Mark connected accounts silent for longer than their heartbeat timeout disconnected.

    Returns ``account`` and ``last_heartbeat_at`` of each account marked.
    """
    cur = await conn.execute(
        """
        UPDATE mt5_accounts SET connected = false, disconnected_at = now(), updated_at = now()
        WHERE account = ANY(%s) AND connected
          AND last_heartbeat_at < now() - make_interval(secs => heartbeat_timeout_s)
        RETURNING account, last_heartbeat_at
        """,
        (accounts,),
    )
    return cast(list[dict[str, Any]], await cur.fetchall())


# ------------------------------------------------------------------------------------------ symbols


async def upsert_symbol(conn: Conn, account: str, spec: SymbolSpec) -> None:
    """Write a symbol's specification as the terminal reported it."""
    await conn.execute(
        """
        INSERT INTO mt5_symbols (account, symbol, broker_symbol, contract_size, volume_min,
            volume_step, volume_max, digits, filling_mode, trade_mode, exemode)
        VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s)
        ON CONFLICT (account, symbol) DO UPDATE SET broker_symbol = EXCLUDED.broker_symbol,
            contract_size = EXCLUDED.contract_size, volume_min = EXCLUDED.volume_min,
            volume_step = EXCLUDED.volume_step, volume_max = EXCLUDED.volume_max,
            digits = EXCLUDED.digits, filling_mode = EXCLUDED.filling_mode,
            trade_mode = EXCLUDED.trade_mode, exemode = EXCLUDED.exemode, updated_at = now()
        """,
        (
            account,
            spec.symbol,
            spec.broker_symbol,
            spec.contract_size,
            spec.volume_min,
            spec.volume_step,
            spec.volume_max,
            spec.digits,
            spec.filling_mode,
            spec.trade_mode,
            spec.exemode,
        ),
    )


async def symbol(conn: Conn, account: str, symbol: str) -> SymbolRow | None:
    """One symbol's specification as the account's terminal reported it."""
    cur = await conn.execute("SELECT * FROM mt5_symbols WHERE account = %s AND symbol = %s", (account, symbol))
    return cast(SymbolRow | None, await cur.fetchone())


async def symbols(conn: Conn, account: str) -> list[SymbolRow]:
    """Every symbol the account's terminal reported."""
    cur = await conn.execute("SELECT * FROM mt5_symbols WHERE account = %s", (account,))
    return cast(list[SymbolRow], await cur.fetchall())


# ------------------------------------------------------------------------------------------ commands


async def insert_command(conn: Conn, command: Command, account: str) -> None:
    """Queue a command (a command id already queued is left as it is)."""
    await conn.execute(
        "INSERT INTO mt5_commands (command_id, account, order_id, kind, body) VALUES (%s,%s,%s,%s,%s)"
        " ON CONFLICT (command_id) DO NOTHING",
        (command.command_id, account, command.order_id, command.kind.value, Jsonb(command.model_dump(mode="json"))),
    )


async def command(conn: Conn, command_id: str) -> CommandRow | None:
    """A command's row."""
    cur = await conn.execute("SELECT * FROM mt5_commands WHERE command_id = %s", (command_id,))
    return cast(CommandRow | None, await cur.fetchone())


async def lock_command(conn: Conn, command_id: str) -> CommandRow | None:
    """A command's row, locked."""
    cur = await conn.execute("SELECT * FROM mt5_commands WHERE command_id = %s FOR UPDATE", (command_id,))
    return cast(CommandRow | None, await cur.fetchone())


async def leasable_commands(conn: Conn, account: str, terminal_id: str, limit: int) -> list[CommandRow]:
    """The account's commands ``terminal_id`` may lease, oldest first, locked.

    That is: never delivered, leased to it, or leased to another terminal whose lease has run out.
    """
    cur = await conn.execute(
        """
        SELECT * FROM mt5_commands
        WHERE account = %s AND (state = 'PENDING'
            OR (state = 'LEASED' AND (lease_owner = %s OR lease_until < now())))
        ORDER BY seq LIMIT %s FOR UPDATE
        """,
        (account, terminal_id, limit),
    )
    return cast(list[CommandRow], await cur.fetchall())


async def lease_commands(conn: Conn, command_ids: list[str], terminal_id: str, lease_seconds: float) -> None:
    """Lease commands to ``terminal_id`` for ``lease_seconds`` (counting a delivery)."""
    await conn.execute(
        """
        UPDATE mt5_commands SET state = 'LEASED', lease_owner = %s,
            lease_until = now() + make_interval(secs => %s), deliveries = deliveries + 1,
            first_delivered_at = coalesce(first_delivered_at, now())
        WHERE command_id = ANY(%s)
        """,
        (terminal_id, lease_seconds, command_ids),
    )


async def record_ack(conn: Conn, ack: Ack) -> None:
    """Mark a command acknowledged with ``ack``."""
    await conn.execute(
        "UPDATE mt5_commands SET state = 'ACKED', ack = %s, acked_at = now(), ack_terminal_id = %s"
        " WHERE command_id = %s",
        (Jsonb(ack.model_dump(mode="json")), ack.terminal_id, ack.command_id),
    )


async def order_cancels(conn: Conn, order_id: str) -> list[tuple[str, str]]:
    """``(command_id, state)`` of the order's CANCEL commands, newest first."""
    cur = await conn.execute(
        "SELECT command_id, state FROM mt5_commands WHERE order_id = %s AND kind = 'CANCEL' ORDER BY seq DESC",
        (order_id,),
    )
    return [(r["command_id"], r["state"]) for r in await cur.fetchall()]


async def withdraw_pending(conn: Conn, command_id: str) -> str | None:
    """Withdraw a command no terminal has received yet; its account, or None if it was not pending."""
    cur = await conn.execute(
        "UPDATE mt5_commands SET state = 'WITHDRAWN' WHERE command_id = %s AND state = 'PENDING' RETURNING account",
        (command_id,),
    )
    row: Any = await cur.fetchone()
    return None if row is None else cast(str, row["account"])


async def mark_in_progress(conn: Conn, command_id: str) -> bool:
    """Note that a command is about to be sent; True if it had been noted before."""
    cur = await conn.execute("SELECT in_progress_at FROM mt5_commands WHERE command_id = %s FOR UPDATE", (command_id,))
    row: Any = await cur.fetchone()
    await conn.execute("UPDATE mt5_commands SET in_progress_at = now() WHERE command_id = %s", (command_id,))
    return row is not None and row["in_progress_at"] is not None


async def expire_pending_commands(conn: Conn, accounts: list[str], ttl_seconds: float) -> list[dict[str, Any]]:
    """Expire the NEW and MODIFY commands of ``accounts`` nobody picked up within ``ttl_seconds``.

    Returns ``command_id``, ``account``, ``order_id`` and ``kind`` of each command expired.
    """
    cur = await conn.execute(
        """
        UPDATE mt5_commands SET state = 'EXPIRED'
        WHERE account = ANY(%s) AND state = 'PENDING' AND kind IN ('NEW', 'MODIFY')
          AND created_at < now() - make_interval(secs => %s)
        RETURNING command_id, account, order_id, kind
        """,
        (accounts, ttl_seconds),
    )
    return cast(list[dict[str, Any]], await cur.fetchall())


# ------------------------------------------------------------------------------------------ orders


async def insert_order(
    conn: Conn, order_id: str, order: SubmitOrder, *, contract_size: Decimal, volume: Decimal
) -> bool:
    """Record a new order (status SUBMITTED); False if the order id was already there."""
    cur = await conn.execute(
        """
        INSERT INTO mt5_orders (order_id, account, client_order_id, symbol, side, type, time_in_force,
            qty, price, stop_price, contract_size, volume, status)
        VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,'SUBMITTED')
        ON CONFLICT (order_id) DO NOTHING RETURNING order_id
        """,
        (
            order_id,
            order.account,
            order.cl_ord_id,
            order.symbol,
            order.side.value,
            order.type.value,
            order.time_in_force.value,
            order.qty,
            order.price,
            order.stop_price,
            contract_size,
            volume,
        ),
    )
    return await cur.fetchone() is not None


async def order(conn: Conn, order_id: str) -> OrderRow | None:
    """An order's row."""
    cur = await conn.execute("SELECT * FROM mt5_orders WHERE order_id = %s", (order_id,))
    return cast(OrderRow | None, await cur.fetchone())


async def lock_order(conn: Conn, order_id: str) -> OrderRow | None:
    """An order's row, locked."""
    cur = await conn.execute("SELECT * FROM mt5_orders WHERE order_id = %s FOR UPDATE", (order_id,))
    return cast(OrderRow | None, await cur.fetchone())


async def lock_order_by_ticket(conn: Conn, account: str, ticket: int) -> OrderRow | None:
    """The row of the account's order with MT5 ticket ``ticket``, locked."""
    cur = await conn.execute(
        "SELECT * FROM mt5_orders WHERE account = %s AND ticket = %s FOR UPDATE", (account, ticket)
    )
    return cast(OrderRow | None, await cur.fetchone())


async def update_order(conn: Conn, order: OrderRow) -> None:
    """Write an order row's state back (status, quantities, prices, ids, reason)."""
    await conn.execute(
        "UPDATE mt5_orders SET status = %s, cum_qty = %s, avg_price = %s, client_order_id = %s, price = %s,"
        " stop_price = %s, reason = %s, ticket = %s, broker_symbol = %s, updated_at = now() WHERE order_id = %s",
        (
            order["status"],
            order["cum_qty"],
            order["avg_price"],
            order["client_order_id"],
            order["price"],
            order["stop_price"],
            order["reason"],
            order["ticket"],
            order["broker_symbol"],
            order["order_id"],
        ),
    )


async def open_orders(conn: Conn, accounts: list[str], statuses: list[str]) -> list[OrderRow]:
    """The orders of ``accounts`` in one of ``statuses``, oldest first (one statement, however many)."""
    cur = await conn.execute(
        "SELECT * FROM mt5_orders WHERE account = ANY(%s) AND status = ANY(%s) ORDER BY created_at",
        (accounts, statuses),
    )
    return cast(list[OrderRow], await cur.fetchall())


async def working_pending_orders(conn: Conn, account: str, statuses: list[str]) -> list[dict[str, Any]]:
    """The account's pending (not market) orders with a ticket in one of ``statuses``.

    Returns ``order_id``, ``ticket`` and ``status`` of each.
    """
    cur = await conn.execute(
        "SELECT order_id, ticket, status FROM mt5_orders WHERE account = %s AND type <> 'MARKET'"
        " AND ticket IS NOT NULL AND status = ANY(%s)",
        (account, statuses),
    )
    return cast(list[dict[str, Any]], await cur.fetchall())


async def ticket_known(conn: Conn, account: str, ticket: int) -> bool:
    """Whether the bridge has an order of the account with this MT5 ticket."""
    cur = await conn.execute("SELECT 1 FROM mt5_orders WHERE account = %s AND ticket = %s", (account, ticket))
    return await cur.fetchone() is not None


# ------------------------------------------------------------------------------------------ deals, order updates


async def insert_deal(conn: Conn, account: str, deal: Deal) -> bool:
    """Record a deal the EA reported; False if its ticket was recorded before."""
    cur = await conn.execute(
        "INSERT INTO mt5_deals (account, deal, order_ticket, body) VALUES (%s,%s,%s,%s)"
        " ON CONFLICT DO NOTHING RETURNING deal",
        (account, deal.deal, deal.order, Jsonb(deal.model_dump(mode="json"))),
    )
    return await cur.fetchone() is not None


async def assign_deal(conn: Conn, account: str, deal: int, order_id: str) -> None:
    """Note which order a deal belongs to."""
    await conn.execute(
        "UPDATE mt5_deals SET order_id = %s WHERE account = %s AND deal = %s",
        (order_id, account, deal),
    )


async def orphan_deals(conn: Conn, account: str, ticket: int) -> list[Deal]:
    """Deals of an order ticket that matched no order when they arrived, in ticket order."""
    cur = await conn.execute(
        "SELECT body FROM mt5_deals WHERE account = %s AND order_ticket = %s AND order_id IS NULL ORDER BY deal",
        (account, ticket),
    )
    return [Deal.model_validate(r["body"]) for r in await cur.fetchall()]


async def insert_order_update(conn: Conn, account: str, upd: OrderUpdate) -> bool:
    """Record a final order state the EA reported; False if it was recorded before."""
    cur = await conn.execute(
        "INSERT INTO mt5_order_updates (account, order_ticket, state, body) VALUES (%s,%s,%s,%s)"
        " ON CONFLICT DO NOTHING RETURNING state",
        (account, upd.order, upd.state, Jsonb(upd.model_dump(mode="json"))),
    )
    return await cur.fetchone() is not None


async def assign_order_update(conn: Conn, account: str, upd: OrderUpdate, order_id: str) -> None:
    """Note which order a final order state belongs to."""
    await conn.execute(
        "UPDATE mt5_order_updates SET order_id = %s WHERE account = %s AND order_ticket = %s AND state = %s",
        (order_id, account, upd.order, upd.state),
    )


async def orphan_order_updates(conn: Conn, account: str, ticket: int) -> list[OrderUpdate]:
    """Final states of an order ticket that matched no order when they arrived."""
    cur = await conn.execute(
        "SELECT body FROM mt5_order_updates WHERE account = %s AND order_ticket = %s AND order_id IS NULL",
        (account, ticket),
    )
    return [OrderUpdate.model_validate(r["body"]) for r in await cur.fetchall()]
