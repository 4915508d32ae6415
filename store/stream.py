"""``stream_events``: what the stream (``GET /api/v1/stream``) serves, numbered in commit order.

Rows are written by the triggers of migration 0021 when an order event, a trading state, a break or an unmatched
report is booked; nothing here writes them. The numbers (``seq``) are gapless and become visible in order (the
migration says how), so "everything after N" read now, then again later, misses nothing and repeats nothing.

Rows older than the retention are pruned from the start (``prune``); ``stream_floor`` holds the number up to
which rows may be gone, so a reader can tell a pruned position (``floor``, ``read_page``) instead of silently
skipping what it can no longer get.

``Selection`` is what a client asked for (account, symbol, client, kinds) inside what its principal may see
(``Scope``). It is applied twice, in SQL when a client catches up from the table and in Python when a process
fans the rows it read once out to its clients; ``tests/store/test_stream.py`` checks that the two agree.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypedDict, cast

from core.auth import ALL, Scope
from store import Conn

__all__ = [
    "CHANNEL",
    "Selection",
    "StreamRow",
    "floor",
    "head",
    "last_seq",
    "listen",
    "prune",
    "read_after",
    "read_page",
]

#: The NOTIFY channel the triggers signal at commit (payload: the row's number).
CHANNEL = "exodus_stream"

_COLUMNS = "seq, booked_at, topic, kind, order_id, client_id, account, symbol, broker, data"


class StreamRow(TypedDict):
    """One row of the stream."""

    seq: int
    booked_at: datetime
    #: order | trading_state | break | unmatched
    topic: str
    kind: str
    order_id: str | None
    client_id: str | None
    account: str | None
    symbol: str | None
    broker: str | None
    data: dict[str, Any]


#: The principal's scope dimensions and the columns they restrict.
_SCOPED = (("clients", "client_id"), ("accounts", "account"), ("brokers", "broker"))
#: The client's filters and the columns they match.
_FILTERED = (("accounts", "account"), ("symbols", "symbol"), ("clients", "client_id"), ("kinds", "kind"))


@dataclass(frozen=True)
class Selection:
    """The rows a client gets: inside ``scope``, and matching every filter that is set (None: any).

    Scope: a row is visible when each of its client, account and broker is in the scope. A trading state that
    is not about one of them (GLOBAL, SYMBOL, or an account's state for a broker-scoped principal) has no
    value there and is visible to every scope: whoever may see orders may see that trading stopped. Other rows
    without a value (a break or an unmatched report of no known order) are for firm-wide scopes only.

    Filters: the same way, a trading state passes the account, symbol and client filters it is not about (a
    GLOBAL halt concerns every account); the kinds filter is exact.
    """

    scope: Scope
    accounts: frozenset[str] | None = None
    symbols: frozenset[str] | None = None
    clients: frozenset[str] | None = None
    kinds: frozenset[str] | None = None

    def _scoped(self) -> Iterator[tuple[str, frozenset[str]]]:
        for dimension, column in _SCOPED:
            value = getattr(self.scope, dimension)
            if value != ALL:
                yield column, frozenset(value)

    def _filters(self) -> Iterator[tuple[str, frozenset[str]]]:
        for name, column in _FILTERED:
            value = getattr(self, name)
            if value is not None:
                yield column, value

    def matches(self, row: StreamRow) -> bool:
        """Whether ``row`` is for this client (the same rule as ``where``)."""
        for column, allowed in self._scoped():
            value = row[column]  # type: ignore[literal-required]
            if value is None:
                if row["topic"] != "trading_state":
                    return False
            elif value not in allowed:
                return False
        for column, wanted in self._filters():
            value = row[column]  # type: ignore[literal-required]
            if value is None and column != "kind" and row["topic"] == "trading_state":
                continue
            if value not in wanted:
                return False
        return True

    def where(self) -> tuple[list[str], list[Any]]:
        """SQL conditions (and parameters) selecting the rows ``matches`` accepts."""
        conditions: list[str] = []
        params: list[Any] = []
        for column, allowed in self._scoped():
            conditions.append(f"({column} = ANY(%s) OR ({column} IS NULL AND topic = 'trading_state'))")
            params.append(sorted(allowed))
        for column, wanted in self._filters():
            if column == "kind":
                conditions.append("kind = ANY(%s)")
            else:
                conditions.append(f"({column} = ANY(%s) OR ({column} IS NULL AND topic = 'trading_state'))")
            params.append(sorted(wanted))
        return conditions, params


async def read_after(
    conn: Conn, after: int, *, limit: int, upto: int | None = None, selection: Selection | None = None
) -> list[StreamRow]:
    """The rows numbered after ``after`` (and up to ``upto``), in order, at most ``limit``, of ``selection``."""
    conditions, params = ["seq > %s"], [after]
    if upto is not None:
        conditions.append("seq <= %s")
        params.append(upto)
    if selection is not None:
        more, more_params = selection.where()
        conditions += more
        params += more_params
    cur = await conn.execute(
        f"SELECT {_COLUMNS} FROM stream_events WHERE {' AND '.join(conditions)} ORDER BY seq LIMIT %s",
        (*params, limit),
    )
    return cast(list[StreamRow], await cur.fetchall())


async def last_seq(conn: Conn) -> int:
    """The highest number committed (every row up to it is visible now), 0 for an empty stream."""
    cur = await conn.execute("SELECT coalesce(max(seq), 0) AS seq FROM stream_events")
    row = await cur.fetchone()
    return int(row["seq"]) if row else 0


async def head(conn: Conn) -> int:
    """The counter: the highest number any committed transaction took (a client cannot have seen more)."""
    cur = await conn.execute("SELECT seq FROM stream_head")
    row = await cur.fetchone()
    return int(row["seq"]) if row else 0


async def listen(conn: Conn) -> None:
    """Subscribe ``conn`` (autocommit, held for the purpose) to the stream's notifications."""
    await conn.execute(f"LISTEN {CHANNEL}")


async def floor(conn: Conn) -> int:
    """The number up to which rows may have been pruned (0: none ever were); a reader after it misses nothing."""
    cur = await conn.execute("SELECT seq FROM stream_floor")
    row = await cur.fetchone()
    return int(row["seq"]) if row else 0


async def read_page(
    conn: Conn, after: int, *, limit: int, upto: int | None = None, selection: Selection | None = None
) -> tuple[int, list[StreamRow]]:
    """``read_after`` and the floor in one snapshot (its own repeatable-read transaction): (floor, rows).

    When the floor is above ``after`` the rows after ``after`` are (partly) gone, and none are returned.
    """
    async with conn.transaction():
        await conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        pruned = await floor(conn)
        if pruned > after:
            return pruned, []
        return pruned, await read_after(conn, after, limit=limit, upto=upto, selection=selection)


async def prune(conn: Conn, *, older_than: timedelta, batch: int = 5000) -> int | None:
    """Delete up to ``batch`` of the oldest rows booked more than ``older_than`` ago, and raise the floor past them.

    Only a run of rows from the start is deleted (up to the first one that is younger), so the floor stays the one
    number below which rows may be missing. Runs in the caller's transaction; None when another prune holds the
    floor (nothing done), else how many rows were deleted (fewer than ``batch``: nothing older is left).
    """
    cur = await conn.execute("SELECT seq FROM stream_floor FOR UPDATE SKIP LOCKED")
    row = await cur.fetchone()
    if row is None:
        return None
    start = int(row["seq"])
    cur = await conn.execute(
        "SELECT seq, booked_at < clock_timestamp() - %s AS old FROM stream_events WHERE seq > %s ORDER BY seq LIMIT %s",
        (older_than, start, batch),
    )
    upto = start
    for r in await cur.fetchall():
        if not r["old"]:
            break
        upto = int(r["seq"])
    if upto == start:
        return 0
    await conn.execute("DELETE FROM stream_events WHERE seq > %s AND seq <= %s", (start, upto))
    await conn.execute("UPDATE stream_floor SET seq = %s", (upto,))
    return upto - start
