"""``store/policy.py``: policy documents are versioned, attributed, audited, and read through a cache."""

from __future__ import annotations

from decimal import Decimal

import pytest

from core.risk import AccountOverrides, RiskPolicy
from store import Pool
from store.policy import PolicyStore
from tests.harness import unique

pytestmark = pytest.mark.asyncio


async def test_changes_are_versioned_with_the_old_document_and_read_back(db: Pool) -> None:
    store = PolicyStore(RiskPolicy())
    account = unique("acct")
    async with db.connection() as conn:
        before = await store.load(conn)
        async with conn.transaction():
            overrides = AccountOverrides(account_capital=Decimal(5000)).model_dump(mode="json", exclude_none=True)
            version = await store.put(conn, scope="ACCOUNT", key=account, body=overrides, actor="risk", reason="why")
        after = await store.load(conn)
        async with conn.transaction():
            removed = await store.put(conn, scope="ACCOUNT", key=account, body=None, actor="risk", reason="undo")
        history = await store.history(conn, limit=2)
        final = await store.load(conn)
        cur = await conn.execute("SELECT action FROM audit_log WHERE subject = %s ORDER BY id", (f"ACCOUNT:{account}",))
        actions = [r["action"] for r in await cur.fetchall()]
    assert version > before.version and after.version == version
    assert after.accounts[account].account_capital == Decimal(5000) and account not in final.accounts
    assert [(h["version"], h["reason"], h["old_body"] is not None) for h in history] == [
        (removed, "undo", True),
        (version, "why", False),
    ]
    assert actions == ["RISK_POLICY_CHANGED", "RISK_POLICY_OVERRIDE_REMOVED"]
