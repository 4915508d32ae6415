"""The audit log: append-only, each row chained to the previous row's hash.

``hash = sha256(prev_hash | at | actor | action | subject | canonical JSON of detail)``. Appends take a
transaction-level advisory lock so the chain has exactly one successor per row; ``verify_chain`` recomputes
every hash, so an edited or deleted row is detected.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from typing import Any

from psycopg import AsyncConnection
from psycopg.types.json import Jsonb

from core.domain import utcnow

__all__ = ["GENESIS_HASH", "append_audit", "verify_chain"]

GENESIS_HASH = "0" * 64
_AUDIT_LOCK = 0x41554454  # "AUDT"


def _digest(prev_hash: str, at: datetime, actor: str, action: str, subject: str, detail: dict[str, Any]) -> str:
    canonical = json.dumps(detail, sort_keys=True, separators=(",", ":"), default=str)
    text = "|".join([prev_hash, at.astimezone(UTC).isoformat(), actor, action, subject, canonical])
    return hashlib.sha256(text.encode()).hexdigest()


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
    at = at or utcnow()
    detail = json.loads(json.dumps(detail or {}, default=str))
    await conn.execute("SELECT pg_advisory_xact_lock(%s)", (_AUDIT_LOCK,))
    cur = await conn.execute("SELECT hash FROM audit_log ORDER BY id DESC LIMIT 1")
    row = await cur.fetchone()
    prev = _row_value(row, "hash") if row else GENESIS_HASH
    digest = _digest(prev, at, actor, action, subject, detail)
    await conn.execute(
        "INSERT INTO audit_log (at, actor, action, subject, detail, prev_hash, hash) VALUES (%s,%s,%s,%s,%s,%s,%s)",
        (at, actor, action, subject, Jsonb(detail), prev, digest),
    )
    return digest


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
