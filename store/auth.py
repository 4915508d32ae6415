"""``api_keys`` and ``accounts``: API keys (stored hashed) and the accounts registry (``migrations/0007_auth.sql``).

Functions take a connection; the caller owns the transaction. Every change is
written to the audit log in the same transaction, with the actor who made it; no secret is ever written
anywhere but as its hash.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, cast

from psycopg.types.json import Jsonb
from pydantic import BaseModel, ConfigDict, Field

from core.auth import ApiKeyParts, Principal, Role, Scope, generate_api_key, hash_secret
from core.domain import utcnow
from store import Conn
from store.audit import append_audit
from store.orders import RECORDED_SQL, OrderRecord

__all__ = [
    "AccountRecord",
    "ApiKeyRecord",
    "create_api_key",
    "find_api_key",
    "get_account",
    "get_account_and_order",
    "list_accounts",
    "list_api_keys",
    "register_account",
    "remove_account",
    "revoke_api_key",
    "rotate_api_key",
]

_KEY_COLUMNS = (
    "key_id, name, secret_hash, roles, scope, tenant, description, created_by, created_at, expires_at,"
    " revoked_at, revoked_by, rotated_from"
)
_ACCOUNT_COLUMNS = "account, broker, broker_account, description, created_by, created_at"


class ApiKeyRecord(BaseModel):
    """An API key as stored (its secret only as a hash, which is never serialized)."""

    model_config = ConfigDict(frozen=True)

    key_id: str
    name: str
    secret_hash: str = Field(exclude=True, repr=False)
    roles: list[Role]
    scope: Scope
    tenant: str
    description: str = ""
    created_by: str
    created_at: datetime
    expires_at: datetime | None = None
    revoked_at: datetime | None = None
    revoked_by: str | None = None
    rotated_from: str | None = None

    def active(self, now: datetime | None = None) -> bool:
        """Not revoked and not expired."""
        now = now or utcnow()
        return self.revoked_at is None and (self.expires_at is None or self.expires_at > now)

    def principal(self) -> Principal:
        """The principal this key authenticates."""
        return Principal(
            name=self.name,
            roles=frozenset(self.roles),
            scope=self.scope,
            tenant=self.tenant,
            source="api-key",
            key_id=self.key_id,
        )


class AccountRecord(BaseModel):
    """A registered account: the broker it trades through (None: any) and the broker-side account."""

    model_config = ConfigDict(frozen=True)

    account: str
    broker: str | None = None
    broker_account: str | None = None
    description: str = ""
    created_by: str
    created_at: datetime


def _key(row: dict[str, Any]) -> ApiKeyRecord:
    return ApiKeyRecord.model_validate(row)


async def create_api_key(
    conn: Conn,
    *,
    name: str,
    roles: list[Role],
    scope: Scope,
    tenant: str,
    actor: str,
    description: str = "",
    expires_at: datetime | None = None,
    rotated_from: str | None = None,
) -> tuple[str, ApiKeyRecord]:
    """Create a key; return the key text (shown once, never stored) and its record."""
    text, parts = generate_api_key()
    return text, await _insert_key(
        conn,
        parts,
        name=name,
        roles=roles,
        scope=scope,
        tenant=tenant,
        actor=actor,
        description=description,
        expires_at=expires_at,
        rotated_from=rotated_from,
    )


async def _insert_key(
    conn: Conn,
    parts: ApiKeyParts,
    *,
    name: str,
    roles: list[Role],
    scope: Scope,
    tenant: str,
    actor: str,
    description: str,
    expires_at: datetime | None,
    rotated_from: str | None,
) -> ApiKeyRecord:
    cur = await conn.execute(
        "INSERT INTO api_keys (key_id, name, secret_hash, roles, scope, tenant, description, created_by, expires_at,"
        f" rotated_from) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING {_KEY_COLUMNS}",
        (
            parts.key_id,
            name,
            hash_secret(parts.secret),
            sorted({r.value for r in roles}),
            Jsonb(scope.model_dump(mode="json")),
            tenant,
            description,
            actor,
            expires_at,
            rotated_from,
        ),
    )
    row = await cur.fetchone()
    assert row is not None  # INSERT ... RETURNING
    record = _key(row)
    await append_audit(
        conn,
        actor=actor,
        action="API_KEY_CREATED",
        subject=record.key_id,
        detail={
            "name": name,
            "roles": [r.value for r in record.roles],
            "scope": scope.model_dump(mode="json"),
            "tenant": tenant,
            "rotated_from": rotated_from,
            "expires_at": expires_at,
        },
    )
    return record


async def find_api_key(conn: Conn, key_id: str) -> ApiKeyRecord | None:
    """The key with this id (active or not), else None."""
    cur = await conn.execute(f"SELECT {_KEY_COLUMNS} FROM api_keys WHERE key_id = %s", (key_id,))
    row = await cur.fetchone()
    return None if row is None else _key(row)


async def list_api_keys(conn: Conn, *, include_inactive: bool = False) -> list[ApiKeyRecord]:
    """Every key, newest first (revoked and expired ones only when asked)."""
    cur = await conn.execute(f"SELECT {_KEY_COLUMNS} FROM api_keys ORDER BY created_at DESC, key_id")
    keys = [_key(r) for r in await cur.fetchall()]
    now = utcnow()
    return keys if include_inactive else [k for k in keys if k.active(now)]


async def rotate_api_key(
    conn: Conn, key_id: str, *, actor: str, grace_seconds: float = 0
) -> tuple[str, ApiKeyRecord] | None:
    """Replace an active key by a new one with the same name, roles, scope and tenant.

    The old key stops working at once, or after ``grace_seconds`` (so its users can switch). None if there
    is no active key with this id.
    """
    cur = await conn.execute(f"SELECT {_KEY_COLUMNS} FROM api_keys WHERE key_id = %s FOR UPDATE", (key_id,))
    row = await cur.fetchone()
    if row is None or not _key(row).active():
        return None
    old = _key(row)
    text, new = await create_api_key(
        conn,
        name=old.name,
        roles=old.roles,
        scope=old.scope,
        tenant=old.tenant,
        actor=actor,
        description=old.description,
        expires_at=old.expires_at,
        rotated_from=old.key_id,
    )
    if grace_seconds > 0:
        until = utcnow() + timedelta(seconds=grace_seconds)
        if old.expires_at is not None:
            until = min(until, old.expires_at)
        await conn.execute("UPDATE api_keys SET expires_at = %s WHERE key_id = %s", (until, key_id))
    else:
        await conn.execute("UPDATE api_keys SET revoked_at = now(), revoked_by = %s WHERE key_id = %s", (actor, key_id))
    await append_audit(
        conn,
        actor=actor,
        action="API_KEY_ROTATED",
        subject=key_id,
        detail={"name": old.name, "replaced_by": new.key_id, "grace_seconds": grace_seconds},
    )
    return text, new


async def revoke_api_key(conn: Conn, key_id: str, *, actor: str) -> ApiKeyRecord | None:
    """Revoke a key at once; None if there is no key with this id that was not revoked yet."""
    cur = await conn.execute(
        "UPDATE api_keys SET revoked_at = now(), revoked_by = %s WHERE key_id = %s AND revoked_at IS NULL"
        f" RETURNING {_KEY_COLUMNS}",
        (actor, key_id),
    )
    row = await cur.fetchone()
    if row is None:
        return None
    record = _key(row)
    await append_audit(conn, actor=actor, action="API_KEY_REVOKED", subject=key_id, detail={"name": record.name})
    return record


# ------------------------------------------------------------------------------------------------ accounts


async def register_account(
    conn: Conn,
    *,
    account: str,
    actor: str,
    broker: str | None = None,
    broker_account: str | None = None,
    description: str = "",
    replace: bool = True,
) -> AccountRecord:
    """Register an account (or, with ``replace``, change its broker, broker account and description).

    Without ``replace`` an existing registration is kept as it is and returned (start-up registration).
    """
    if replace:
        cur = await conn.execute(
            "INSERT INTO accounts (account, broker, broker_account, description, created_by)"
            " VALUES (%s, %s, %s, %s, %s) ON CONFLICT (account) DO UPDATE SET broker = EXCLUDED.broker,"
            " broker_account = EXCLUDED.broker_account, description = EXCLUDED.description"
            f" RETURNING {_ACCOUNT_COLUMNS}, (xmax = 0) AS inserted",
            (account, broker, broker_account, description, actor),
        )
    else:
        cur = await conn.execute(
            "INSERT INTO accounts (account, broker, broker_account, description, created_by)"
            " VALUES (%s, %s, %s, %s, %s) ON CONFLICT (account) DO NOTHING"
            f" RETURNING {_ACCOUNT_COLUMNS}, true AS inserted",
            (account, broker, broker_account, description, actor),
        )
    row = await cur.fetchone()
    if row is None:  # already registered, kept
        existing = await get_account(conn, account)
        assert existing is not None
        return existing
    record = AccountRecord.model_validate(row)
    await append_audit(
        conn,
        actor=actor,
        action="ACCOUNT_REGISTERED" if row["inserted"] else "ACCOUNT_CHANGED",
        subject=account,
        detail={"broker": broker, "broker_account": broker_account, "description": description},
    )
    return record


async def get_account(conn: Conn, account: str) -> AccountRecord | None:
    """The registration of an account, else None."""
    cur = await conn.execute(f"SELECT {_ACCOUNT_COLUMNS} FROM accounts WHERE account = %s", (account,))
    row = await cur.fetchone()
    return None if row is None else AccountRecord.model_validate(row)


async def get_account_and_order(
    conn: Conn, account: str, order_id: str
) -> tuple[AccountRecord | None, OrderRecord | None]:
    """An account's registration and an order's ``store.orders.recorded`` row, in one round trip (a pipeline).

    The order route asks both before every submission (is the account registered; is the key's order decided).
    """
    async with conn.pipeline():
        accounts = await conn.execute(f"SELECT {_ACCOUNT_COLUMNS} FROM accounts WHERE account = %s", (account,))
        orders = await conn.execute(RECORDED_SQL, (order_id,))
    row = await accounts.fetchone()
    return (None if row is None else AccountRecord.model_validate(row)), cast(
        OrderRecord | None, await orders.fetchone()
    )


async def list_accounts(conn: Conn) -> list[AccountRecord]:
    """Every registered account, by name."""
    cur = await conn.execute(f"SELECT {_ACCOUNT_COLUMNS} FROM accounts ORDER BY account")
    return [AccountRecord.model_validate(r) for r in await cur.fetchall()]


async def remove_account(conn: Conn, account: str, *, actor: str) -> bool:
    """Unregister an account (new orders for it are refused; its history stays). False if unknown."""
    cur = await conn.execute(f"DELETE FROM accounts WHERE account = %s RETURNING {_ACCOUNT_COLUMNS}", (account,))
    row = await cur.fetchone()
    if row is None:
        return False
    await append_audit(conn, actor=actor, action="ACCOUNT_REMOVED", subject=account, detail={"broker": row["broker"]})
    return True
