"""Administration: API keys (create, list, rotate, revoke) and the accounts registry.

The same operations as ``python -m api.keys``. An admin grants only the scope it holds itself, and sees
only keys and accounts inside it. A new or rotated key is in the answer once; only its hash is kept.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, StringConstraints
from pydantic.alias_generators import to_camel

from api.auth import forbid, requires
from api.deps import ActorDep, PoolDep
from api.edge import EdgeRoute
from api.schemas import ErrorBody, Identifier, Reason
from brokers import BROKERS
from core.auth import Name, Permission, Principal, Role, Scope, Tenant
from store.auth import (
    AccountRecord,
    ApiKeyRecord,
    create_api_key,
    find_api_key,
    get_account,
    list_accounts,
    list_api_keys,
    register_account,
    remove_account,
    revoke_api_key,
    rotate_api_key,
)

__all__ = ["router"]

router = APIRouter(prefix="/admin", tags=["admin"], route_class=EdgeRoute)

Text = Annotated[str, StringConstraints(strip_whitespace=True, max_length=200)]


class _Body(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")


class KeyCreate(_Body):
    """A new API key: who it is, its roles, its scope and tenant (default: the name)."""

    name: Name
    roles: Annotated[list[Role], Field(min_length=1)]
    scope: Scope
    tenant: Tenant | None = None
    description: Text = ""
    expires_at: datetime | None = None


class KeyRotate(_Body):
    """Rotation: how long the old key keeps working (0: it stops at once)."""

    grace_seconds: Annotated[float, Field(ge=0, le=7 * 24 * 3600)] = 0


class AccountChange(_Body):
    """A registered account: the broker it trades through (none: any) and the broker-side account."""

    broker: Identifier | None = None
    broker_account: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64)] | None = None
    description: Text = ""


def _camel(data: dict[str, Any]) -> dict[str, Any]:
    return {to_camel(k): v for k, v in data.items()}


def _key_json(record: ApiKeyRecord, *, text: str | None = None) -> dict[str, Any]:
    body = _camel(record.model_dump(mode="json"))
    body["active"] = record.active()
    if text is not None:
        body["key"] = text
    return body


def _account_json(record: AccountRecord) -> dict[str, Any]:
    return _camel(record.model_dump(mode="json"))


def _no_key(key_id: str) -> HTTPException:
    return HTTPException(404, detail=f"no API key {key_id!r}")


KeyReader = Annotated[Principal, requires(Permission.KEYS_READ)]
KeyManager = Annotated[Principal, requires(Permission.KEYS_MANAGE)]
AccountReader = Annotated[Principal, requires(Permission.ACCOUNTS_READ)]
AccountManager = Annotated[Principal, requires(Permission.ACCOUNTS_MANAGE)]


@router.get("/keys")
async def keys(
    pool: PoolDep,
    principal: KeyReader,
    include_inactive: Annotated[bool, Query(alias="includeInactive")] = False,
) -> JSONResponse:
    """API keys (never their secrets) whose scope lies inside the caller's; revoked and expired ones on request."""
    async with pool.connection() as conn:
        records = await list_api_keys(conn, include_inactive=include_inactive)
    data = [_key_json(r) for r in records if principal.scope.covers(r.scope)]
    return JSONResponse(content={"data": data, "count": len(data)})


@router.post("/keys", status_code=201, responses={403: {"model": ErrorBody}})
async def create_key(
    body: KeyCreate, pool: PoolDep, actor: ActorDep, request: Request, principal: KeyManager
) -> JSONResponse:
    """Create a key; the answer holds the key (``key``) once, it cannot be shown again."""
    if not principal.scope.covers(body.scope):
        await forbid(
            request,
            principal,
            code="OUT_OF_SCOPE",
            field="scope",
            message=f"scope: {principal.name} may grant only inside its own scope ({principal.scope.describe()})",
        )
    async with pool.connection() as conn, conn.transaction():
        text, record = await create_api_key(
            conn,
            name=body.name,
            roles=body.roles,
            scope=body.scope,
            tenant=body.tenant or body.name,
            actor=actor,
            description=body.description,
            expires_at=body.expires_at,
        )
    return JSONResponse(status_code=201, content=_key_json(record, text=text))


async def _managed_key(pool: Any, principal: Principal, key_id: str) -> ApiKeyRecord:
    async with pool.connection() as conn:
        record = await find_api_key(conn, key_id)
    if record is None or not principal.scope.covers(record.scope):
        raise _no_key(key_id)
    return record


@router.post("/keys/{key_id}/rotate", responses={404: {"model": ErrorBody}})
async def rotate_key(
    key_id: str, pool: PoolDep, actor: ActorDep, principal: KeyManager, body: KeyRotate | None = None
) -> JSONResponse:
    """Replace a key by a new one (same name, roles, scope, tenant); the new key is in the answer once."""
    await _managed_key(pool, principal, key_id)
    async with pool.connection() as conn, conn.transaction():
        rotated = await rotate_api_key(conn, key_id, actor=actor, grace_seconds=(body or KeyRotate()).grace_seconds)
    if rotated is None:
        raise HTTPException(409, detail=f"API key {key_id!r} is revoked or expired; create a new one")
    text, record = rotated
    return JSONResponse(content=_key_json(record, text=text))


@router.delete("/keys/{key_id}", responses={404: {"model": ErrorBody}})
async def revoke_key(key_id: str, pool: PoolDep, actor: ActorDep, principal: KeyManager) -> JSONResponse:
    """Revoke a key at once."""
    await _managed_key(pool, principal, key_id)
    async with pool.connection() as conn, conn.transaction():
        record = await revoke_api_key(conn, key_id, actor=actor)
    if record is None:
        raise HTTPException(409, detail=f"API key {key_id!r} is already revoked")
    return JSONResponse(content=_key_json(record))


@router.get("/accounts")
async def accounts(pool: PoolDep, principal: AccountReader) -> JSONResponse:
    """Registered accounts inside the caller's scope."""
    async with pool.connection() as conn:
        records = await list_accounts(conn)
    data = [_account_json(r) for r in records if principal.scope.allows_account(r.account)]
    return JSONResponse(content={"data": data, "count": len(data)})


async def _account_in_scope(request: Request, principal: Principal, account: str) -> None:
    if not principal.scope.allows_account(account):
        await forbid(
            request,
            principal,
            code="OUT_OF_SCOPE",
            field="account",
            message=f"account: {account!r} is outside the scope of {principal.name}",
        )


@router.put("/accounts/{account}", responses={403: {"model": ErrorBody}, 422: {"model": ErrorBody}})
async def put_account(
    account: Identifier,
    body: AccountChange,
    pool: PoolDep,
    actor: ActorDep,
    request: Request,
    principal: AccountManager,
) -> JSONResponse:
    """Register an account, or change its broker, broker account and description."""
    await _account_in_scope(request, principal, account)
    if body.broker is not None and body.broker not in BROKERS:
        message = f"broker: unknown broker {body.broker!r}; known: {', '.join(sorted(BROKERS))}"
        reason = Reason(code="UNKNOWN_BROKER", field="broker", message=message)
        error = ErrorBody(status="rejected", message=message, reasons=[reason])
        return JSONResponse(status_code=422, content=error.model_dump(mode="json", exclude_none=True))
    async with pool.connection() as conn, conn.transaction():
        record = await register_account(
            conn,
            account=account,
            actor=actor,
            broker=body.broker,
            broker_account=body.broker_account,
            description=body.description,
        )
    return JSONResponse(content=_account_json(record))


@router.delete("/accounts/{account}", responses={404: {"model": ErrorBody}})
async def delete_account(
    account: Identifier, pool: PoolDep, actor: ActorDep, request: Request, principal: AccountManager
) -> JSONResponse:
    """Unregister an account: new orders for it are refused (UNKNOWN_ACCOUNT); its history stays."""
    await _account_in_scope(request, principal, account)
    async with pool.connection() as conn, conn.transaction():
        if await get_account(conn, account) is None or not await remove_account(conn, account, actor=actor):
            raise HTTPException(404, detail=f"no registered account {account!r}")
    return JSONResponse(content={"account": account, "removed": True})
