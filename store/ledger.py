"""The ledger: ``fills`` (unique per broker execution id), ``positions`` and ``cash``.

A fill is booked once (``(broker, exec_id)``); positions and cash move only for a fill this booking
inserted, so a retried booking never counts one twice. The position arithmetic is ``core.ledger``'s.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from typing import TypedDict, cast

from psycopg import AsyncCursor
from psycopg.rows import DictRow

from core.auth import Scope
from core.domain import Fill
from core.ledger import PositionState, apply_fill, cash_delta
from store import Conn
from store._where import clause, scope_conditions
from store.text import pg_text

__all__ = [
    "CashRow",
    "FillRow",
    "PendingFills",
    "PositionRow",
    "book_fill",
    "cash",
    "fill_booked",
    "fills_of",
    "positions",
    "send_fills",
]


class FillRow(TypedDict):
    """One fill of an order as the API shows it."""

    exec_id: str
    qty: Decimal
    price: Decimal
    fee: Decimal
    filled_at: datetime


class PositionRow(TypedDict):
    """``positions``: an account's position in a symbol, with its realized P&L."""

    account: str
    symbol: str
    qty: Decimal
    avg_price: Decimal | None
    realized_pnl: Decimal
    updated_at: datetime


class CashRow(TypedDict):
    """``cash``: an account's balance in one currency."""

    account: str
    currency: str
    balance: Decimal
    updated_at: datetime


async def book_fill(conn: Conn, fill: Fill, *, currency: str) -> bool:
    """Book a fill and move its position and its ``currency`` cash; False if it was booked before."""
    return (await (await send_fills(conn, [(fill, currency)])).settle())[0]


#: Insert the fill; only if it is new, the position row it moves (so a retried booking creates nothing).
_FILL = (
    "WITH f AS (INSERT INTO fills (broker, exec_id, order_id, account, symbol, side, qty, price, fee, filled_at)"
    " VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s) ON CONFLICT DO NOTHING RETURNING exec_id),"
    " p AS (INSERT INTO positions (account, symbol) SELECT %s, %s FROM f ON CONFLICT DO NOTHING)"
    " SELECT exec_id FROM f"
)

_POSITION = "SELECT qty, avg_price, realized_pnl FROM positions WHERE account = %s AND symbol = %s FOR UPDATE"


class PendingFills:
    """Fills sent to Postgres (``send_fills``), their positions locked; ``settle`` books what they move."""

    def __init__(self, conn: Conn) -> None:
        """Fills sent on ``conn`` (pipeline mode, inside the caller's transaction)."""
        self._conn = conn
        self._fills: list[tuple[Fill, str, AsyncCursor[DictRow]]] = []
        self._positions: dict[tuple[str, str], AsyncCursor[DictRow]] = {}

    async def send(self, fill: Fill, currency: str) -> None:
        """Insert the fill, and lock its position (once per account and symbol)."""
        exec_id = pg_text(fill.exec_id)
        cur = await self._conn.execute(
            _FILL,
            (
                fill.broker,
                exec_id,
                fill.order_id,
                fill.account,
                fill.symbol,
                fill.side.value,
                fill.qty,
                fill.price,
                fill.fee,
                fill.filled_at,
                fill.account,
                fill.symbol,
            ),
        )
        self._fills.append((fill, currency, cur))
        key = (fill.account, fill.symbol)
        if key not in self._positions:
            self._positions[key] = await self._conn.execute(_POSITION, key)

    async def settle(self) -> list[bool]:
        """Move the positions and cash of the fills that were new; per fill, whether it was (False: booked before).

        Reads the answers (one round trip for everything sent so far in pipeline mode), then sends the updates.
        """
        new = [await cur.fetchone() is not None for _, _, cur in self._fills]
        moved: dict[tuple[str, str], PositionState] = {}
        for (fill, currency, _), is_new in zip(self._fills, new, strict=True):
            if not is_new:
                continue  # booked by an earlier attempt
            key = (fill.account, fill.symbol)
            pos = moved.get(key)
            if pos is None:
                row = await self._positions[key].fetchone()
                if row is None:
                    # Locked before this fill's insert made the row: an earlier fill of the key was booked
                    # before and had no position row (none is ever deleted, so this should not happen). Lock it now.
                    cur = await self._conn.execute(_POSITION, key)
                    row = await cur.fetchone()
                    assert row is not None  # inserted with the fill
                pos = PositionState(row["qty"], row["avg_price"], row["realized_pnl"])
            moved[key] = apply_fill(pos, fill.side, fill.qty, fill.price)
            await self._conn.execute(
                "INSERT INTO cash (account, currency, balance) VALUES (%s, %s, %s)"
                " ON CONFLICT (account, currency) DO UPDATE SET balance = cash.balance + EXCLUDED.balance,"
                " updated_at = now()",
                (fill.account, currency, cash_delta(fill.side, fill.qty, fill.price, fill.fee)),
            )
        for (account, symbol), pos in moved.items():
            await self._conn.execute(
                "UPDATE positions SET qty = %s, avg_price = %s, realized_pnl = %s, updated_at = now()"
                " WHERE account = %s AND symbol = %s",
                (pos.qty, pos.avg_price, pos.realized_pnl, account, symbol),
            )
        return new


async def send_fills(conn: Conn, fills: Sequence[tuple[Fill, str]]) -> PendingFills:
    """Send fills (each with the currency its cash moves in) to be booked; ``settle()`` the answer.

    A fill is inserted once (``(broker, exec_id)``) and its position row locked; ``settle`` then moves the
    position and cash of each fill that was new. In pipeline mode nothing here waits for the server until
    ``settle`` reads the answers, so what the caller sends before and after rides the same round trip.
    """
    pending = PendingFills(conn)
    for fill, currency in fills:
        await pending.send(fill, currency)
    return pending


async def fill_booked(conn: Conn, *, broker: str, exec_id: str, order_id: str) -> bool:
    """Whether the ledger has this execution of this order."""
    cur = await conn.execute(
        "SELECT 1 FROM fills WHERE broker = %s AND exec_id = %s AND order_id = %s",
        (broker, pg_text(exec_id), order_id),
    )
    return await cur.fetchone() is not None


async def fills_of(conn: Conn, order_id: str) -> list[FillRow]:
    """An order's fills in the order they happened."""
    cur = await conn.execute(
        "SELECT exec_id, qty, price, fee, filled_at FROM fills WHERE order_id = %s ORDER BY filled_at, exec_id",
        (order_id,),
    )
    return cast(list[FillRow], await cur.fetchall())


async def positions(
    conn: Conn, *, scope: Scope, account: str | None = None, symbol: str | None = None
) -> list[PositionRow]:
    """Positions of the accounts in ``scope`` (of one account and/or symbol), by account and symbol."""
    where, params = scope_conditions(scope, accounts="account")
    if account:
        where.append("account = %s")
        params.append(account)
    if symbol:
        where.append("symbol = %s")
        params.append(symbol)
    cur = await conn.execute(
        "SELECT account, symbol, qty, avg_price, realized_pnl, updated_at FROM positions"
        f" {clause(where)} ORDER BY account, symbol",
        params,
    )
    return cast(list[PositionRow], await cur.fetchall())


async def cash(conn: Conn, *, scope: Scope, account: str | None = None) -> list[CashRow]:
    """Cash balances of the accounts in ``scope`` (of one account), by account and currency."""
    where, params = scope_conditions(scope, accounts="account")
    if account:
        where.append("account = %s")
        params.append(account)
    cur = await conn.execute(
        f"SELECT account, currency, balance, updated_at FROM cash {clause(where)} ORDER BY account, currency", params
    )
    return cast(list[CashRow], await cur.fetchall())
