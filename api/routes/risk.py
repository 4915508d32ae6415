"""The risk policy store: read it, change it (versioned, attributed, audited), see what orders hold."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from api.deps import ActorDep, InstrumentsDep, PolicyDep, PoolDep
from api.schemas import ErrorBody, Identifier, Reason
from core.policy import PolicyStore
from core.risk import AccountOverrides, InstrumentOverrides, RiskPolicy

__all__ = ["router"]

router = APIRouter(prefix="/risk", tags=["risk"])

ChangeReason = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=500)]


class PolicyChange(BaseModel):
    """A new global policy (the whole document) and why."""

    model_config = ConfigDict(extra="forbid")

    policy: RiskPolicy
    reason: ChangeReason


class AccountOverrideChange(BaseModel):
    """New overrides for one account (the whole override document) and why."""

    model_config = ConfigDict(extra="forbid")

    overrides: AccountOverrides
    reason: ChangeReason


class InstrumentOverrideChange(BaseModel):
    """New overrides for one instrument and why."""

    model_config = ConfigDict(extra="forbid")

    overrides: InstrumentOverrides
    reason: ChangeReason


async def _current(pool: Any, store: PolicyStore) -> dict[str, Any]:
    async with pool.connection() as conn:
        policy_set = await store.load(conn)
    return {
        "version": policy_set.version,
        "policy": policy_set.policy.model_dump(mode="json"),
        "accounts": {k: v.model_dump(mode="json", exclude_none=True) for k, v in policy_set.accounts.items()},
        "instruments": {k: v.model_dump(mode="json", exclude_none=True) for k, v in policy_set.instruments.items()},
    }


async def _put(
    pool: Any, store: PolicyStore, actor: str, *, scope: Any, key: str, body: dict[str, Any] | None, reason: str
) -> JSONResponse:
    async with pool.connection() as conn, conn.transaction():
        version = await store.put(conn, scope=scope, key=key, body=body, actor=actor, reason=reason)
    current = await _current(pool, store)
    return JSONResponse(content={**current, "changedVersion": version})


@router.get("/policy")
async def get_policy(pool: PoolDep, policy: PolicyDep) -> JSONResponse:
    """The policy in force: the global document, every override, and the store's version."""
    return JSONResponse(content=await _current(pool, policy))


@router.put("/policy", responses={422: {"model": ErrorBody}})
async def put_policy(change: PolicyChange, pool: PoolDep, policy: PolicyDep, actor: ActorDep) -> JSONResponse:
    """Replace the global policy (a new version; who, when, old and new values and the reason are kept)."""
    return await _put(
        pool, policy, actor, scope="GLOBAL", key="", body=change.policy.model_dump(mode="json"), reason=change.reason
    )


@router.put("/policy/accounts/{account}", responses={422: {"model": ErrorBody}})
async def put_account_overrides(
    account: Identifier, change: AccountOverrideChange, pool: PoolDep, policy: PolicyDep, actor: ActorDep
) -> JSONResponse:
    """Set an account's overrides (replacing any earlier ones)."""
    body = change.overrides.model_dump(mode="json", exclude_none=True)
    return await _put(pool, policy, actor, scope="ACCOUNT", key=account, body=body, reason=change.reason)


@router.delete("/policy/accounts/{account}")
async def delete_account_overrides(
    account: Identifier, reason: Annotated[ChangeReason, Query()], pool: PoolDep, policy: PolicyDep, actor: ActorDep
) -> JSONResponse:
    """Remove an account's overrides (the global values apply again)."""
    return await _put(pool, policy, actor, scope="ACCOUNT", key=account, body=None, reason=reason)


@router.put("/policy/instruments/{symbol}", responses={422: {"model": ErrorBody}})
async def put_instrument_overrides(
    symbol: str,
    change: InstrumentOverrideChange,
    pool: PoolDep,
    policy: PolicyDep,
    actor: ActorDep,
    instruments: InstrumentsDep,
) -> JSONResponse:
    """Set an instrument's overrides (tradable, price band, per-order notional cap, position limit in units)."""
    symbol = symbol.upper()
    if symbol not in instruments:
        reason = Reason(code="INVALID_FIELD", field="symbol", message=f"symbol: unknown symbol {symbol!r}")
        body = ErrorBody(status="rejected", message=reason.message, reasons=[reason])
        return JSONResponse(status_code=422, content=body.model_dump(mode="json", by_alias=True, exclude_none=True))
    body_ = change.overrides.model_dump(mode="json", exclude_none=True)
    return await _put(pool, policy, actor, scope="INSTRUMENT", key=symbol, body=body_, reason=change.reason)


@router.delete("/policy/instruments/{symbol}")
async def delete_instrument_overrides(
    symbol: str, reason: Annotated[ChangeReason, Query()], pool: PoolDep, policy: PolicyDep, actor: ActorDep
) -> JSONResponse:
    """Remove an instrument's overrides."""
    return await _put(pool, policy, actor, scope="INSTRUMENT", key=symbol.upper(), body=None, reason=reason)


@router.get("/policy/history")
async def policy_history(
    pool: PoolDep, policy: PolicyDep, limit: Annotated[int, Query(ge=1, le=1000)] = 100
) -> JSONResponse:
    """Every change to the policy, newest first: version, scope, who, when, why, old and new documents."""
    async with pool.connection() as conn:
        rows = await policy.history(conn, limit=limit)
    content = [
        {
            "version": r["version"],
            "scope": r["scope"],
            "key": r["scope_key"] or None,
            "changedBy": r["changed_by"],
            "changedAt": r["changed_at"].isoformat(),
            "reason": r["reason"],
            "old": r["old_body"],
            "new": r["body"],
        }
        for r in rows
    ]
    return JSONResponse(content=content)


@router.get("/reservations")
async def reservations(
    pool: PoolDep,
    account: str | None = None,
    include_released: Annotated[bool, Query(alias="includeReleased")] = False,
    limit: Annotated[int, Field(ge=1, le=1000), Query()] = 200,
) -> JSONResponse:
    """What working orders hold of their accounts' limits (open quantity, notional and margin)."""
    where, params = [], []
    if account:
        where.append("account = %s")
        params.append(account)
    if not include_released:
        where.append("released_at IS NULL")
    clause = ("WHERE " + " AND ".join(where)) if where else ""
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT order_id, account, client_id, symbol, side, qty_open, price, notional, margin, created_at,"
            f" released_at FROM risk_reservations {clause} ORDER BY created_at DESC LIMIT %s",
            [*params, limit],
        )
        rows = await cur.fetchall()
        cur = await conn.execute(
            "SELECT account, sum(notional) AS notional, sum(margin) AS margin, count(*) AS orders"
            " FROM risk_reservations"
            f" {clause} GROUP BY account ORDER BY account",
            params,
        )
        totals = await cur.fetchall()

    def ser(row: dict[str, Any]) -> dict[str, Any]:
        return {k: (str(v) if v is not None and not isinstance(v, (str, int, bool)) else v) for k, v in row.items()}

    return JSONResponse(content={"data": [ser(r) for r in rows], "totals": [ser(t) for t in totals]})
