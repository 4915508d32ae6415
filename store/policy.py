"""``risk_policy``: versioned policy documents, every change attributed and audited (``PolicyStore``).

The global policy, per-account overrides and per-instrument overrides are JSON documents in ``risk_policy``.
Each change appends a row (the new and the old document, who, when, why) and an audit-log entry; the current
document of a scope is its newest row. Until an operator stores a global policy, the defaults from settings
(``EXODUS_RISK__*``) apply. Readers cache the assembled ``PolicySet`` per version.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal, TypedDict, cast

from psycopg.types.json import Jsonb

from core.risk import AccountOverrides, InstrumentOverrides, PolicySet, RiskPolicy
from store import Conn
from store.audit import append_audit

__all__ = ["PolicyChangeRow", "PolicyScope", "PolicyStore"]

PolicyScope = Literal["GLOBAL", "ACCOUNT", "INSTRUMENT"]
_WRITE_LOCK = 0x504F4C59  # "POLY"


class PolicyChangeRow(TypedDict):
    """One change of the policy: the new and the old document of a scope, who, when and why."""

    version: int
    scope: str
    scope_key: str
    body: dict[str, Any] | None
    old_body: dict[str, Any] | None
    changed_by: str
    changed_at: datetime
    reason: str


class PolicyStore:
    """Reads (cached by version) and writes the policy."""

    def __init__(self, defaults: RiskPolicy) -> None:
        """Use ``defaults`` until a global policy is stored."""
        self._defaults = defaults
        self._cached = PolicySet(version=-1, policy=defaults)

    @property
    def cached(self) -> PolicySet:
        """The policy set as last loaded (the defaults before the first load)."""
        return self._cached

    async def load(self, conn: Conn) -> PolicySet:
        """The current policy set (one cheap query when nothing changed)."""
        cur = await conn.execute("SELECT coalesce(max(version), 0) AS v FROM risk_policy")
        row = await cur.fetchone()
        version = int(row["v"]) if row else 0
        if version == self._cached.version:
            return self._cached
        cur = await conn.execute(
            "SELECT DISTINCT ON (scope, scope_key) scope, scope_key, body FROM risk_policy"
            " ORDER BY scope, scope_key, version DESC"
        )
        policy = self._defaults
        accounts: dict[str, AccountOverrides] = {}
        instruments: dict[str, InstrumentOverrides] = {}
        for row in await cur.fetchall():
            scope, key, body = row["scope"], row["scope_key"], row["body"]
            if body is None:
                continue
            if scope == "GLOBAL":
                policy = RiskPolicy.model_validate(body)
            elif scope == "ACCOUNT":
                accounts[key] = AccountOverrides.model_validate(body)
            else:
                instruments[key] = InstrumentOverrides.model_validate(body)
        self._cached = PolicySet(version=version, policy=policy, accounts=accounts, instruments=instruments)
        return self._cached

    async def put(
        self, conn: Conn, *, scope: PolicyScope, key: str = "", body: dict[str, Any] | None, actor: str, reason: str
    ) -> int:
        """Store a new document for a scope (None removes an override); returns the new version.

        Call inside a transaction. The body must already be validated.
        """
        await conn.execute("SELECT pg_advisory_xact_lock(%s)", (_WRITE_LOCK,))
        cur = await conn.execute(
            "SELECT body FROM risk_policy WHERE scope = %s AND scope_key = %s ORDER BY version DESC LIMIT 1",
            (scope, key),
        )
        row = await cur.fetchone()
        old = row["body"] if row else None
        if old is None and scope == "GLOBAL":
            old = self._defaults.model_dump(mode="json")
        cur = await conn.execute(
            "INSERT INTO risk_policy (scope, scope_key, body, old_body, changed_by, reason) VALUES (%s,%s,%s,%s,%s,%s)"
            " RETURNING version",
            (scope, key, None if body is None else Jsonb(body), None if old is None else Jsonb(old), actor, reason),
        )
        inserted = await cur.fetchone()
        assert inserted is not None
        version = int(inserted["version"])
        await append_audit(
            conn,
            actor=actor,
            action="RISK_POLICY_CHANGED" if body is not None else "RISK_POLICY_OVERRIDE_REMOVED",
            subject=f"{scope}:{key}" if key else scope,
            detail={"version": version, "old": old, "new": body, "reason": reason},
        )
        return version

    async def history(self, conn: Conn, *, limit: int = 100) -> list[PolicyChangeRow]:
        """The newest changes first."""
        cur = await conn.execute(
            "SELECT version, scope, scope_key, body, old_body, changed_by, changed_at, reason FROM risk_policy"
            " ORDER BY version DESC LIMIT %s",
            (limit,),
        )
        return cast(list[PolicyChangeRow], await cur.fetchall())
