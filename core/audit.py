"""The audit log: append-only, each row chained to the previous row's hash.

``hash = sha256(prev_hash | at | actor | action | subject | canonical JSON of detail)``. Appends take a
transaction-level advisory lock so the chain has exactly one successor per row; ``verify_chain`` recomputes
every hash, so an edited or deleted row is detected. An append is one call of the SQL function
``audit_append()`` (migration 0011), which takes the lock, reads the previous hash and hashes in Postgres: in
pipeline mode (``queue_audit``) the lock is never held across a round trip to the client.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from typing import Any

from psycopg import AsyncConnection
from psycopg.types.json import Jsonb

from core.domain import utcnow

__all__ = ["GENESIS_HASH", "append_audit", "audit_entry", "queue_audit", "verify_chain"]

GENESIS_HASH = "0" * 64
_AUDIT_LOCK = 0x41554454  # "AUDT": taken by audit_append() (migration 0011)


def _digest(prev_hash: str, at: datetime, actor: str, action: str, subject: str, detail: dict[str, Any]) -> str:
    canonical = json.dumps(detail, sort_keys=True, separators=(",", ":"), default=str)
    text = "|".join([prev_hash, at.astimezone(UTC).isoformat(), actor, action, subject, canonical])
    return hashlib.sha256(text.encode()).hexdigest()


def audit_entry(
    *, actor: str, action: str, subject: str = "", detail: dict[str, Any] | None = None, at: datetime | None = None
) -> dict[str, Any]:
    """The arguments of ``audit_append()`` (the SQL function that appends to the chain) for one entry.

    ``rest`` is everything the hash covers after the previous hash; Postgres prepends the chain's head.
    """
    at = at or utcnow()
    detail = json.loads(json.dumps(detail or {}, default=str))
    canonical = json.dumps(detail, sort_keys=True, separators=(",", ":"), default=str)
    rest = "|".join([at.astimezone(UTC).isoformat(), actor, action, subject, canonical])
    return {"at": at, "actor": actor, "action": action, "subject": subject, "detail": detail, "rest": rest}


async def queue_audit(
    conn: AsyncConnection[Any],
    *,
    actor: str,
    action: str,
    subject: str = "",
    detail: dict[str, Any] | None = None,
    at: datetime | None = None,
) -> Any:
    """Append one entry inside the caller's transaction without waiting for it (returns the cursor).

    One statement: ``audit_append()`` takes the chain's lock and reads the previous hash inside Postgres, so
    in pipeline mode nothing here waits for a round trip while the lock is held.
    """
    e = audit_entry(actor=actor, action=action, subject=subject, detail=detail, at=at)
    return await conn.execute(
        "SELECT audit_append(%s, %s, %s, %s, %s, %s) AS hash",
        (e["at"], e["actor"], e["action"], e["subject"], Jsonb(e["detail"]), e["rest"]),
    )


async def append_audit(
    conn: AsyncConnection[Any],
    *,
    actor: str,
    action: str,
    subject: str = "",
    detail: dict[str, Any] | None = None,
    at: datetime | None = None,
) -> str:
    """Append one entry inside the caller's transaction and return its hash."""
    cur = await queue_audit(conn, actor=actor, action=action, subject=subject, detail=detail, at=at)
    return str(_row_value(await cur.fetchone(), "hash"))


async def verify_chain(conn: AsyncConnection[Any]) -> tuple[bool, int]:
    """Recompute the chain; return (intact, rows checked)."""
    cur = await conn.execute("SELECT at, actor, action, subject, detail, prev_hash, hash FROM audit_log ORDER BY id")
    prev = GENESIS_HASH
    count = 0
    for row in await cur.fetchall():
        values = row if isinstance(row, tuple) else tuple(row.values())
        at, actor, action, subject, detail, prev_hash, digest = values
        if prev_hash != prev or _digest(prev_hash, at, actor, action, subject, detail) != digest:
            return False, count
        prev = digest
        count += 1
    return True, count


def _row_value(row: Any, key: str) -> Any:
    return row[key] if isinstance(row, dict) else row[0]
