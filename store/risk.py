"""Risk state: the decision's statements, reservations, reject streaks and trading states.

A decision is two statements, SQL functions of migrations 0011, 0014 and 0018 (``activities/risk.py`` says
how they serialize per account): ``gather`` (``risk_gather()``: the account's and the client's locks, then one
snapshot of everything the decision reads, with the quotes that price it) and ``record`` (``risk_record()``:
the serial check, the equity marks, the order row through ``order_write()``, the reservation, the counters
that span accounts through ``risk_take()``, and the audit entry). ``take`` is ``risk_take()`` on its own (the
careful path, which waits for the counters' answer). Policy versions are in ``store/policy.py``.

Rows of ``gather`` and ``account_rows`` (``GatherRow``) are told apart by ``k``: ``risk_gather()``'s kinds
(migration 0011 lists them) and ``Q``, a quote (source in ``broker``, bid, ask and last in ``qty``,
``price``, ``extra``).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime
from decimal import Decimal
from typing import Any, NotRequired, TypedDict, cast

from core.auth import Scope
from store import Conn
from store._where import clause, scope_conditions
from store.text import jsonb

__all__ = [
    "ACCOUNT_LOCK",
    "CLIENT_LOCK",
    "GatherRow",
    "ReservationRow",
    "ReservationTotalRow",
    "TradingStateRow",
    "account_rows",
    "count_rejection",
    "follow_reservation",
    "hold_list_exits",
    "gather",
    "linked_open_qty",
    "lock_trading_state",
    "record",
    "refresh",
    "release_account_reservations",
    "release_reservation",
    "reservation_totals",
    "reservations",
    "reset_reject_streak",
    "set_trading_state",
    "stale_accounts",
    "take",
    "trading_states",
    "try_lock_account",
]

#: Advisory lock namespaces (first key of the two-key form): one lock per account, one per client. The SQL
#: functions take the same ones (``risk_gather``, ``risk_record``).
ACCOUNT_LOCK = 0x52534B41  # "RSKA"
CLIENT_LOCK = 0x52534B43  # "RSKC"


class GatherRow(TypedDict):
    """One row of a decision's reads: a tagged union, told apart by ``k``.

    What each column holds, and whether it can be None, depends on ``k`` (``risk_gather()`` in migration 0011
    lists the kinds), so the columns are typed ``Any`` and each kind is read by the one place that knows it
    (``activities/risk.py``).
    """

    k: str
    symbol: Any
    qty: Any
    price: Any
    extra: Any
    side: Any
    rate: Any
    leverage: Any
    order_id: Any
    broker: Any
    notional: Any
    #: The stored decision (row ``O``); ``account_rows`` has no such column.
    j: NotRequired[Any]
    quoted_at: Any
    received_at: Any


#: One decision's reads: ``risk_gather`` (the locks, then one snapshot of the account, the client and the
#: stored decision) and, in the same statement, the quotes that price it: every source's quote of the order's
#: symbol and of the FX pairs to the policy currency (``quote_symbols``), and of the symbols of the positions
#: ``risk_gather`` read. The quotes are as of the statement's start (they are not serialized by the account's
#: lock; their age is measured when the decision is made, so a wait for the lock only makes them older). The
#: query is the 14-argument ``risk_gather()`` of migration 0042, which plans it once per connection.
_GATHER = """
SELECT * FROM risk_gather(%(account)s, %(client)s, %(order_id)s, %(symbol)s, %(broker)s, %(day)s, %(new_order)s,
                          %(at)s, %(client_from)s, %(dup_from)s, %(side)s, %(qty)s, %(price)s, %(quote_symbols)s)
"""

#: One account's positions and working orders (one statement, one snapshot), in risk_gather's row shape.
_ACCOUNT_ROWS = """
WITH g AS MATERIALIZED (
SELECT 'P' AS k, symbol, qty, avg_price AS price, realized_pnl AS extra, NULL::text AS side, NULL::numeric AS rate,
    NULL::numeric AS leverage, NULL::text AS order_id, NULL::text AS broker, NULL::numeric AS notional
  FROM positions WHERE account = %(account)s
UNION ALL
SELECT 'R', symbol, sum(qty_open), max(price), NULL, side, max(quote_rate), max(leverage), NULL, broker, sum(notional)
  FROM risk_reservations WHERE account = %(account)s AND released_at IS NULL GROUP BY symbol, side, broker
)
SELECT g.*, NULL::timestamptz AS quoted_at, NULL::timestamptz AS received_at FROM g
UNION ALL
SELECT 'Q', q.symbol, q.bid, q.ask, q.last, NULL, NULL, NULL, NULL, q.source, NULL, q.quoted_at, q.received_at
  FROM market_quotes q
 WHERE q.symbol = ANY(%(quote_symbols)s) OR q.symbol IN (SELECT g.symbol FROM g WHERE g.k = 'P')
"""


# ------------------------------------------------------------------------------------------------ deciding


async def gather(
    conn: Conn,
    *,
    account: str,
    client: str,
    order_id: str,
    symbol: str,
    broker: str,
    day: date,
    new_order: bool,
    at: datetime,
    client_from: datetime,
    dup_from: datetime | None,
    side: str,
    qty: Decimal,
    price: Decimal | None,
    quote_symbols: list[str],
) -> list[GatherRow]:
    """Take the account's and the client's locks and read everything one decision needs (one statement)."""
    cur = await conn.execute(
        _GATHER,
        {
            "account": account,
            "client": client,
            "order_id": order_id,
            "symbol": symbol,
            "broker": broker,
            "day": day,
            "new_order": new_order,
            "at": at,
            "client_from": client_from,
            "dup_from": dup_from,
            "side": side,
            "qty": qty,
            "price": price,
            "quote_symbols": quote_symbols,
        },
    )
    return cast(list[GatherRow], await cur.fetchall())


async def account_rows(conn: Conn, *, account: str, quote_symbols: list[str]) -> list[GatherRow]:
    """An account's positions (``P``) and working orders (``R``), and the quotes (``Q``) that value them."""
    cur = await conn.execute(_ACCOUNT_ROWS, {"account": account, "quote_symbols": quote_symbols})
    return cast(list[GatherRow], await cur.fetchall())


async def record(conn: Conn, payload: dict[str, Any]) -> None:
    """``risk_record()``: record one decision (its ``order`` is a ``store.orders.OrderRow``); see the module."""
    await conn.execute("SELECT risk_record(%s)", (jsonb(payload),))


async def take(conn: Conn, payload: dict[str, Any], *, careful: bool) -> list[dict[str, Any]]:
    """``risk_take()``: take the counters that span accounts; the limits they breach (careful: else it raises)."""
    cur = await conn.execute("SELECT risk_take(%s, %s) AS breaches", (jsonb(payload), careful))
    row = await cur.fetchone()
    return list(row["breaches"]) if row and row["breaches"] else []


async def stale_accounts(conn: Conn, *, except_account: str, limit: int) -> list[str]:
    """Accounts whose part of the totals is older than their orders' last change (at most ``limit``)."""
    cur = await conn.execute("SELECT a FROM risk_stale_accounts(%s, %s) AS a", (except_account, limit))
    return [str(r["a"]) for r in await cur.fetchall()]


async def try_lock_account(conn: Conn, account: str) -> bool:
    """Take ``account``'s decision lock for the transaction if it is free."""
    cur = await conn.execute("SELECT pg_try_advisory_xact_lock(%s, hashtext(%s)) AS ok", (ACCOUNT_LOCK, account))
    row = await cur.fetchone()
    return bool(row and row["ok"])


async def refresh(conn: Conn, account: str, parts: list[dict[str, Any]]) -> None:
    """``risk_refresh()``: replace ``account``'s parts of the totals."""
    await conn.execute("SELECT risk_refresh(%s, %s)", (account, jsonb(parts)))


# ------------------------------------------------------------------------------------------------ reservations


class ReservationRow(TypedDict):
    """What one order holds of its account's limits."""

    order_id: str
    account: str
    client_id: str
    symbol: str
    side: str
    qty_open: Decimal
    price: Decimal
    notional: Decimal
    margin: Decimal
    created_at: datetime
    released_at: datetime | None


class ReservationTotalRow(TypedDict):
    """What an account's orders hold together."""

    account: str
    notional: Decimal
    margin: Decimal
    orders: int


async def release_reservation(conn: Conn, order_id: str) -> None:
    """The order is final: it holds nothing any more."""
    await conn.execute(
        "UPDATE risk_reservations SET qty_open = 0, notional = 0, margin = 0, released_at = now(),"
        " updated_at = now() WHERE order_id = %s AND released_at IS NULL",
        (order_id,),
    )


async def follow_reservation(
    conn: Conn, *, order_id: str, open_qty: Decimal, price: Decimal | None, version: int
) -> None:
    """Hold what is still open at the order's current price, as of ``version`` (the booking's).

    Only if the order row is at ``version`` (a stale booking changes nothing) and no amend's hold of that
    version or a newer one stands (``hold_version``: the amend's check left the larger of old and new terms).
    """
    await conn.execute(
        "UPDATE risk_reservations SET qty_open = %(open)s, price = COALESCE(%(price)s, price),"
        " notional = %(open)s * COALESCE(%(price)s, price) * quote_rate + list_notional,"
        " margin = %(open)s * COALESCE(%(price)s, price) * quote_rate / leverage + list_margin, updated_at = now()"
        " WHERE order_id = %(id)s AND released_at IS NULL"
        " AND (hold_version IS NULL OR hold_version < %(version)s)"
        " AND (SELECT version FROM orders WHERE order_id = %(id)s) = %(version)s",
        {"open": open_qty, "price": price, "id": order_id, "version": version},
    )


async def hold_list_exits(conn: Conn, *, order_id: str, notional: Decimal, margin: Decimal) -> None:
    """Add a bracket's larger held exit to its entry's reservation (kept by ``follow_reservation`` until released)."""
    await conn.execute(
        "UPDATE risk_reservations SET list_notional = %(n)s, list_margin = %(m)s,"
        " notional = notional - list_notional + %(n)s, margin = margin - list_margin + %(m)s, updated_at = now()"
        " WHERE order_id = %(id)s AND released_at IS NULL",
        {"n": notional, "m": margin, "id": order_id},
    )


async def release_account_reservations(conn: Conn, account: str) -> None:
    """Release everything an account's orders hold (the risk benchmark's orders "finish")."""
    await conn.execute(
        "UPDATE risk_reservations SET qty_open = 0, notional = 0, margin = 0, released_at = now()"
        " WHERE account = %s AND released_at IS NULL",
        (account,),
    )


def _reservation_where(scope: Scope, account: str | None, include_released: bool) -> tuple[str, list[Any]]:
    where, params = scope_conditions(scope, accounts="account", clients="client_id")
    if account:
        where.append("account = %s")
        params.append(account)
    if not include_released:
        where.append("released_at IS NULL")
    return clause(where), params


async def linked_open_qty(conn: Conn, *, order_ids: Sequence[str], symbol: str, side: str) -> Decimal:
    """What the working reservations of ``order_ids`` (a list's legs linked to an order) hold on ``side``."""
    cur = await conn.execute(
        "SELECT coalesce(sum(qty_open), 0) AS qty FROM risk_reservations"
        " WHERE order_id = ANY(%s) AND released_at IS NULL AND symbol = %s AND side = %s",
        (list(order_ids), symbol, side),
    )
    row = await cur.fetchone()
    return Decimal(row["qty"]) if row else Decimal(0)


async def same_terms_duplicate(
    conn: Conn, *, client: str, order_id: str, since: datetime, terms: dict[str, Any]
) -> str | None:
    """A recent order of ``client`` with all of ``terms`` (column -> value; NULL matches NULL) that risk did not refuse.

    ``risk_gather``'s duplicate row (``D``) compares symbol, side, quantity and limit price only: a candidate is
    confirmed here against the order's other terms (type, stop price, trail, peg), so two stops at different
    levels are not duplicates.
    """
    where = " AND ".join(f"{column} IS NOT DISTINCT FROM %({column})s" for column in terms)
    cur = await conn.execute(
        "SELECT order_id FROM orders WHERE client_id = %(client)s AND order_id <> %(order_id)s"
        f" AND created_at > %(since)s AND {where} AND status <> 'DENIED'"
        " AND (risk_decision->>'approved')::boolean IS NOT FALSE LIMIT 1",
        {**terms, "client": client, "order_id": order_id, "since": since},
    )
    row = await cur.fetchone()
    return str(row["order_id"]) if row else None


async def mark_linked_group(conn: Conn, *, order_id: str, group: str) -> None:
    """Mark an order's reservation as a member of a one-cancels-other group (``linked_overlap`` counts it once)."""
    await conn.execute(
        "UPDATE risk_reservations SET linked_group = %s WHERE order_id = %s AND released_at IS NULL", (group, order_id)
    )


async def linked_overlap(conn: Conn, *, account: str, symbol: str, side: str, except_group: str | None) -> Decimal:
    """What the account's working one-cancels-other groups on ``side`` hold beyond their largest member each.

    A group's members never work together beyond one's size, so that much of the working quantity does not use up
    the position (a bracket's take-profit and stop-loss of 100 each reduce a position of 100 once, not twice).
    ``except_group``: the deciding order's own group, which ``linked_open_qty`` takes out whole.
    """
    cur = await conn.execute(
        "SELECT coalesce(sum(total - largest), 0) AS qty FROM ("
        " SELECT sum(qty_open) AS total, max(qty_open) AS largest FROM risk_reservations"
        " WHERE account = %s AND symbol = %s AND side = %s AND released_at IS NULL AND linked_group IS NOT NULL"
        " AND linked_group IS DISTINCT FROM %s GROUP BY linked_group) AS g",
        (account, symbol, side, except_group),
    )
    row = await cur.fetchone()
    return Decimal(row["qty"]) if row else Decimal(0)


async def reservations(
    conn: Conn, *, scope: Scope, account: str | None = None, include_released: bool = False, limit: int
) -> list[ReservationRow]:
    """Reservations inside ``scope`` (of one account), newest first."""
    where, params = _reservation_where(scope, account, include_released)
    cur = await conn.execute(
        "SELECT order_id, account, client_id, symbol, side, qty_open, price, notional, margin, created_at,"
        f" released_at FROM risk_reservations {where} ORDER BY created_at DESC LIMIT %s",
        [*params, limit],
    )
    return cast(list[ReservationRow], await cur.fetchall())


async def reservation_totals(
    conn: Conn, *, scope: Scope, account: str | None = None, include_released: bool = False
) -> list[ReservationTotalRow]:
    """Per account inside ``scope``: what its reservations hold together."""
    where, params = _reservation_where(scope, account, include_released)
    cur = await conn.execute(
        "SELECT account, sum(notional) AS notional, sum(margin) AS margin, count(*) AS orders"
        f" FROM risk_reservations {where} GROUP BY account ORDER BY account",
        params,
    )
    return cast(list[ReservationTotalRow], await cur.fetchall())


# ------------------------------------------------------------------------------------------------ the circuit breaker


async def reset_reject_streak(conn: Conn, *, scope: str, key: str) -> None:
    """An acceptance (or an operator's ACTIVE): the broker-rejection streak of an account or broker is over.

    Writes only a streak that is running: writing zero over zero would make every acceptance lock the
    broker's one row until its commit.
    """
    await conn.execute(
        "UPDATE risk_reject_streaks SET streak = 0, updated_at = now()"
        " WHERE scope = %s AND scope_key = %s AND streak <> 0",
        (scope, key),
    )


async def count_rejection(conn: Conn, *, scope: str, key: str) -> int:
    """One more broker rejection in a row for an account or broker; the streak's length."""
    cur = await conn.execute(
        "INSERT INTO risk_reject_streaks (scope, scope_key, streak) VALUES (%s, %s, 1)"
        " ON CONFLICT (scope, scope_key) DO UPDATE SET streak = risk_reject_streaks.streak + 1,"
        " updated_at = now() RETURNING streak",
        (scope, key),
    )
    row = await cur.fetchone()
    assert row is not None
    return int(row["streak"])


# ------------------------------------------------------------------------------------------------ trading states


class TradingStateRow(TypedDict):
    """``trading_state``: the state set at one scope (GLOBAL is the kill switch), by whom and why."""

    scope: str
    scope_key: str
    state: str
    reason: str
    updated_by: str
    updated_at: datetime


_STATE_COLUMNS = ", ".join(TradingStateRow.__annotations__)


async def trading_states(conn: Conn) -> list[TradingStateRow]:
    """Every trading state that has been set, by scope and key."""
    cur = await conn.execute(f"SELECT {_STATE_COLUMNS} FROM trading_state ORDER BY scope, scope_key")
    return cast(list[TradingStateRow], await cur.fetchall())


async def lock_trading_state(conn: Conn, *, scope: str, key: str) -> str | None:
    """Lock a scope's state for the transaction and return it (None: never set)."""
    cur = await conn.execute(
        "SELECT state FROM trading_state WHERE scope = %s AND scope_key = %s FOR UPDATE", (scope, key)
    )
    row = await cur.fetchone()
    return None if row is None else str(row["state"])


async def set_trading_state(
    conn: Conn, *, scope: str, key: str, state: str, reason: str, actor: str
) -> TradingStateRow:
    """Set the state of a scope (the one writer of ``trading_state``: operators and the circuit breaker)."""
    cur = await conn.execute(
        "INSERT INTO trading_state (scope, scope_key, state, reason, updated_by, updated_at)"
        " VALUES (%s, %s, %s, %s, %s, now())"
        " ON CONFLICT (scope, scope_key) DO UPDATE SET state = EXCLUDED.state, reason = EXCLUDED.reason,"
        " updated_by = EXCLUDED.updated_by, updated_at = EXCLUDED.updated_at"
        f" RETURNING {_STATE_COLUMNS}",
        (scope, key, state, reason, actor),
    )
    return cast(TradingStateRow, await cur.fetchone())
