"""``store/auth.py``: API keys (only their hash is kept) and the accounts registry, every change audited."""

from __future__ import annotations

import pytest

from core.auth import ALL, Role, Scope, parse_api_key
from store import Pool
from store.auth import (
    create_api_key,
    find_api_key,
    get_account,
    get_account_and_order,
    list_accounts,
    list_api_keys,
    register_account,
    remove_account,
    revoke_api_key,
    rotate_api_key,
)
from store.orders import recorded
from tests.harness import unique
from tests.store.kit import decided

pytestmark = pytest.mark.asyncio


async def test_a_key_is_created_rotated_and_revoked(db: Pool) -> None:
    scope = Scope(clients=ALL, accounts=["a"], brokers=ALL)
    async with db.connection() as conn:
        name = unique("k")
        text, key = await create_api_key(conn, name=name, roles=[Role.TRADER], scope=scope, tenant="t", actor="x")
        found = await find_api_key(conn, key.key_id)
        rotated = await rotate_api_key(conn, key.key_id, actor="x")
        assert rotated is not None
        new_text, new = rotated
        assert await rotate_api_key(conn, key.key_id, actor="x") is None  # the old one is revoked
        revoked = await revoke_api_key(conn, new.key_id, actor="x")
        active = {k.key_id for k in await list_api_keys(conn)}
        every = {k.key_id for k in await list_api_keys(conn, include_inactive=True)}
        cur = await conn.execute("SELECT secret_hash FROM api_keys WHERE key_id = %s", (key.key_id,))
        stored = await cur.fetchone()
    parts = parse_api_key(text)
    assert found is not None and found.scope == scope and found.roles == [Role.TRADER]
    assert parts is not None and stored is not None and parts.secret not in stored["secret_hash"]
    assert new.rotated_from == key.key_id and new_text != text and revoked is not None and not revoked.active()
    assert not {key.key_id, new.key_id} & active and {key.key_id, new.key_id} <= every


async def test_accounts_are_registered_changed_kept_and_removed(db: Pool) -> None:
    name = unique("acct")
    async with db.connection() as conn:
        first = await register_account(conn, account=name, actor="ops", broker="paper")
        kept = await register_account(conn, account=name, actor="ops", broker="fix", replace=False)
        changed = await register_account(conn, account=name, actor="ops", broker="fix", description="moved")
        listed = [a.account for a in await list_accounts(conn)]
        assert await remove_account(conn, name, actor="ops") is True
        assert await remove_account(conn, name, actor="ops") is False
        gone = await get_account(conn, name)
        cur = await conn.execute("SELECT action FROM audit_log WHERE subject = %s ORDER BY id", (name,))
        actions = [r["action"] for r in await cur.fetchall()]
    assert (first.broker, kept.broker, changed.broker, changed.description) == ("paper", "paper", "fix", "moved")
    assert name in listed and gone is None
    assert actions == ["ACCOUNT_REGISTERED", "ACCOUNT_CHANGED", "ACCOUNT_REMOVED"]


async def test_the_order_route_reads_an_account_and_an_order_row_together(db: Pool) -> None:
    # The order route's one round trip: the same rows as get_account and orders.recorded, or None for either.
    name = unique("acct")
    async with db.connection() as conn:
        await register_account(conn, account=name, actor="ops", broker="paper")
        order = await decided(conn, account=name)
        both = await get_account_and_order(conn, name, order.order_id)
        alone = (await get_account(conn, name), await recorded(conn, order.order_id))
        neither = await get_account_and_order(conn, unique("nobody"), unique("EX"))
        account_only = await get_account_and_order(conn, name, unique("EX"))
    assert both == alone and both[0] is not None and both[1] is not None
    assert both[0].broker == "paper" and both[1]["request_hash"] == order.request_hash
    assert neither == (None, None) and account_only == (alone[0], None)
