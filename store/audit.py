"""``audit_log``: append-only, each row chained to the previous row's hash (``core/audit.py``).

An append is one statement, ``audit_append()`` (migration 0011): it takes the chain's lock and reads the
previous hash inside Postgres, so in pipeline mode (``queue_audit``) nothing waits for a round trip while the
lock is held. The caller owns the transaction: an entry commits with the change it records.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, TypedDict, cast

from psycopg import AsyncCursor
from psycopg.rows import DictRow
from psycopg.types.json import Jsonb

from core.audit import GENESIS_HASH, audit_entry, digest
from store import Conn

__all__ = [
    "AuditRow",
    "ChainHead",
    "ChainRow",
    "append_audit",
    "chain_head",
    "chain_rows",
    "entries",
    "queue_audit",
    "verify_chain",
]


class AuditRow(TypedDict):
    """One entry as ``GET /api/v1/audit`` shows it."""

    id: int
    at: datetime
    actor: str
    action: str
    subject: str
    detail: dict[str, Any]
    hash: str


class ChainRow(TypedDict):
    """One entry with what its hash covers (the chain's check)."""

    id: int
    at: datetime
    actor: str
    action: str
    subject: str
    detail: dict[str, Any]
    prev_hash: str
    hash: str


class ChainHead(TypedDict):
    """The newest entry's id and hash, and how many entries there are up to it (one snapshot)."""

    last_id: int
    head: str
    count: int


async def queue_audit(
    conn: Conn,
    *,
    actor: str,
    action: str,
    subject: str = "",
    detail: dict[str, Any] | None = None,
    at: datetime | None = None,
) -> AsyncCursor[DictRow]:
    """Append one entry inside the caller's transaction without waiting for it (returns the cursor)."""
    e = audit_entry(actor=actor, action=action, subject=subject, detail=detail, at=at)
    return await conn.execute(
        "SELECT audit_append(%s, %s, %s, %s, %s, %s) AS hash",
        (e["at"], e["actor"], e["action"], e["subject"], Jsonb(e["detail"]), e["rest"]),
    )


async def append_audit(
    conn: Conn,
    *,
    actor: str,
    action: str,
    subject: str = "",
    detail: dict[str, Any] | None = None,
    at: datetime | None = None,
) -> str:
    """Append one entry inside the caller's transaction and return its hash."""
    cur = await queue_audit(conn, actor=actor, action=action, subject=subject, detail=detail, at=at)
    row = await cur.fetchone()
    assert row is not None
    return str(row["hash"])


async def chain_rows(conn: Conn, *, after_id: int = 0, limit: int = 5000) -> list[ChainRow]:
    """Up to ``limit`` entries after ``after_id``, oldest first (the chain is walked a page at a time)."""
    cur = await conn.execute(
        "SELECT id, at, actor, action, subject, detail, prev_hash, hash FROM audit_log WHERE id > %s"
        " ORDER BY id LIMIT %s",
        (after_id, limit),
    )
    return cast(list[ChainRow], await cur.fetchall())


async def chain_head(conn: Conn) -> ChainHead:
    """The chain's head and its row count, read in one statement (an empty log: id 0, the genesis hash)."""
    cur = await conn.execute(
        "WITH h AS (SELECT id, hash FROM audit_log ORDER BY id DESC LIMIT 1)"
        " SELECT h.id AS last_id, h.hash AS head, (SELECT count(*) FROM audit_log a WHERE a.id <= h.id) AS count"
        " FROM h"
    )
    row = await cur.fetchone()
    if row is None:
        return {"last_id": 0, "head": GENESIS_HASH, "count": 0}
    return {"last_id": int(row["last_id"]), "head": str(row["head"]), "count": int(row["count"])}


async def verify_chain(conn: Conn) -> tuple[bool, int]:
    """Recompute the chain a page at a time; return (intact, rows checked before the first break)."""
    prev = GENESIS_HASH
    count = 0
    last = 0
    while page := await chain_rows(conn, after_id=last):
        for row in page:
            if row["prev_hash"] != prev or row["hash"] != digest(
                row["prev_hash"], row["at"], row["actor"], row["action"], row["subject"], row["detail"]
            ):
                return False, count
            prev = row["hash"]
            count += 1
        last = page[-1]["id"]
    return True, count


async def entries(
    conn: Conn,
    *,
    action: str | None = None,
    actor: str | None = None,
    subject: str | None = None,
    before_id: int | None = None,
    limit: int = 100,
) -> list[AuditRow]:
    """Entries newest first (older than ``before_id``), optionally of one action, actor or subject."""
    where: list[str] = []
    params: list[Any] = []
    for column, value in (("action", action), ("actor", actor), ("subject", subject)):
        if value:
            where.append(f"{column} = %s")
            params.append(value)
    if before_id is not None:
        where.append("id < %s")
        params.append(before_id)
    clause = ("WHERE " + " AND ".join(where)) if where else ""
    cur = await conn.execute(
        f"SELECT id, at, actor, action, subject, detail, hash FROM audit_log {clause} ORDER BY id DESC LIMIT %s",
        [*params, limit],
    )
    return cast(list[AuditRow], await cur.fetchall())
