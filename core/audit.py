"""The audit log's chain: each entry hashed with the previous entry's hash.

``hash = sha256(prev_hash | at | actor | action | subject | canonical JSON of detail)``. Appends take a
transaction-level advisory lock so the chain has exactly one successor per row; ``store.audit.verify_chain``
recomputes every hash with ``digest``, so an edited or deleted row is detected. An append is one call of the
SQL function ``audit_append()`` (migration 0011), which takes the lock, reads the previous hash and hashes in
Postgres; ``audit_entry`` prepares its arguments. The SQL is in ``store/audit.py``.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from typing import Any, TypedDict

from core.domain import utcnow

__all__ = ["GENESIS_HASH", "AuditEntry", "audit_entry", "digest"]

GENESIS_HASH = "0" * 64


class AuditEntry(TypedDict):
    """The arguments of ``audit_append()`` for one entry (``rest``: what the hash covers after ``prev_hash``)."""

    at: datetime
    actor: str
    action: str
    subject: str
    detail: dict[str, Any]
    rest: str


def _canonical(detail: dict[str, Any]) -> str:
    return json.dumps(detail, sort_keys=True, separators=(",", ":"), default=str)


def digest(prev_hash: str, at: datetime, actor: str, action: str, subject: str, detail: dict[str, Any]) -> str:
    """The hash of one entry chained to ``prev_hash``."""
    text = "|".join([prev_hash, at.astimezone(UTC).isoformat(), actor, action, subject, _canonical(detail)])
    return hashlib.sha256(text.encode()).hexdigest()


def audit_entry(
    *, actor: str, action: str, subject: str = "", detail: dict[str, Any] | None = None, at: datetime | None = None
) -> AuditEntry:
    """The arguments of ``audit_append()`` (the SQL function that appends to the chain) for one entry.

    ``rest`` is everything the hash covers after the previous hash; Postgres prepends the chain's head.
    """
    at = at or utcnow()
    plain: dict[str, Any] = json.loads(json.dumps(detail or {}, default=str))
    rest = "|".join([at.astimezone(UTC).isoformat(), actor, action, subject, _canonical(plain)])
    return {"at": at, "actor": actor, "action": action, "subject": subject, "detail": plain, "rest": rest}
