"""Audit entries around a request that acts outside the database (a signal or update to an order's workflow).

The request's entry is written, and committed, **before** the action: if the audit log cannot take it, nothing
is sent (503, retry). The outcome is appended after the action; if that fails the answer says so in a warning
(the request's entry is there, and the action happened).
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import HTTPException

from store import Pool
from store.audit import append_audit

__all__ = ["audit_after", "audit_before"]

log = logging.getLogger(__name__)


async def audit_before(pool: Pool, **entry: Any) -> None:
    """Write the audit entry of a request before acting on it: if it cannot be written, nothing is done (503)."""
    try:
        async with pool.connection() as conn, conn.transaction():
            await append_audit(conn, **entry)
    except Exception as e:
        log.exception(
            "audit entry %s for %s not written; the request is refused", entry.get("action"), entry.get("subject")
        )
        raise HTTPException(
            503,
            detail="the audit log could not be written, so nothing was sent; retry",
            headers={"Retry-After": "2"},
        ) from e


async def audit_after(pool: Pool, warnings: list[str], **entry: Any) -> None:
    """Append the outcome of a request whose own entry is written: a failure is reported, not raised."""
    try:
        async with pool.connection() as conn, conn.transaction():
            await append_audit(conn, **entry)
    except Exception as e:  # the step happened and its request is audited; the answer must say so
        log.exception("audit entry %s for %s not written", entry.get("action"), entry.get("subject"))
        warnings.append(
            f"the outcome's audit entry could not be written ({type(e).__name__}); the request is audited and took "
            "effect"
        )
