"""The MT5 session check: is an account's terminal connected, so that the bridge can take a new order for it?

``session_check`` is the ``mt5`` broker's ``SessionCheck`` (imported lazily by the registry): the risk activity
asks it on the risk decision's own connection, inside its transaction, so it runs one statement and never takes
another connection. The rest writes what it reads: the heartbeat timeout of each configured account (the worker
at start) and the disconnection of accounts whose EA went silent (the worker's housekeeping). The EA's heartbeats
(the EA-facing bridge) mark an account connected.
"""

from __future__ import annotations

import logging
from typing import Any

from psycopg import AsyncConnection

from brokers.mt5 import tables
from core.settings import Mt5Settings
from store import Pool
from store.audit import append_audit

__all__ = ["link_problem", "mark_stale_accounts", "register_accounts", "session_check"]

log = logging.getLogger(__name__)


async def session_check(conn: AsyncConnection[Any], account: str) -> str | None:
    """Why the bridge cannot take a new order for ``account`` right now (None: it can).

    Registered as the MT5 broker's ``session_check``: the risk activity refuses new orders with this
    reason, asking on its own connection. Orders already working are not affected; they wait for the EA.
    """
    row = await tables.liveness(conn, account)
    if row is None or row["last_heartbeat_at"] is None:
        return (
            f"no MT5 terminal has connected for account {account}: start the ExodusBridge EA for it "
            "(and check the account is configured under mt5.accounts)"
        )
    age, limit = float(row["age"]), float(row["heartbeat_timeout_s"])
    if age > limit:
        return (
            f"the MT5 terminal of account {account} has not sent a heartbeat for {age:.0f} s "
            f"(limit {limit:g} s): account disconnected"
        )
    terminal, state = row["terminal"] or {}, row["account_state"] or {}
    if terminal.get("connected") is False:
        return f"the MT5 terminal of account {account} has lost its connection to the trade server"
    if terminal.get("trade_allowed") is False:
        return f"algo trading is switched off in the MT5 terminal of account {account} (Algo Trading button)"
    if state.get("trade_expert") is False:
        return f"the broker does not let Expert Advisors trade MT5 account {account}"
    return None


async def link_problem(pool: Pool, account: str) -> str | None:
    """Why the account's EA cannot be reached right now (None: it heartbeats).

    ``session_check`` on a pooled connection, for callers outside a risk decision (the adapter waiting for an
    acknowledgement).
    """
    async with pool.connection() as conn:
        return await session_check(conn, account)


async def register_accounts(pool: Pool, settings: Mt5Settings) -> None:
    """Create the account rows and write the heartbeat timeout the risk check applies."""
    async with pool.connection() as conn, conn.transaction():
        for account in settings.accounts:
            await tables.register_account(conn, account, settings.heartbeat_timeout_seconds)


async def mark_stale_accounts(pool: Pool, accounts: list[str]) -> list[str]:
    """Mark accounts whose EA went silent as disconnected (event + audit entry); return them."""
    async with pool.connection() as conn, conn.transaction():
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
