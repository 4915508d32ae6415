"""The MT5 session check: can the bridge take a new order for an account right now?

Registered (lazily imported) as the ``mt5`` broker's ``SessionCheck``: the risk activity asks it on the risk
decision's own connection, inside its transaction, so it runs one statement and never takes another connection.
"""

from __future__ import annotations

from typing import Any

from psycopg import AsyncConnection

from brokers.mt5 import tables

__all__ = ["session_check"]


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
