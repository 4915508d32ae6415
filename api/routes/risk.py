"""The risk policy store: read it, change it (versioned, attributed, audited), see what orders hold."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from api.auth import forbid, requires
from api.deps import ActorDep, InstrumentsDep, PolicyDep, PoolDep
from api.edge import EdgeRoute
from api.schemas import ErrorBody, Identifier, Reason, ReasonText
from core.auth import Permission, Principal
from core.bounds import policy_problems
from core.risk import AccountOverrides, InstrumentOverrides, RiskPolicy
from store import Pool, risk
from store.policy import PolicyStore

__all__ = ["router"]

router = APIRouter(prefix="/risk", tags=["risk"], route_class=EdgeRoute)

ChangeReason = ReasonText
Reader = Annotated[Principal, requires(Permission.RISK_READ)]
Writer = Annotated[Principal, requires(Permission.RISK_WRITE)]


async def _firm_wide(request: Request, principal: Principal, what: str) -> None:
    if not principal.scope.firm_wide:
        await forbid(
            request,
            principal,
            code="OUT_OF_SCOPE",
            field=None,
            message=f"{what} applies firm-wide; it needs a principal whose scope is every client and account",
        )


async def _account_in_scope(request: Request, principal: Principal, account: str) -> None:
    if not principal.scope.allows_account(account):
        await forbid(
            request,
            principal,
            code="OUT_OF_SCOPE",
            field="account",
            message=f"account: {account!r} is outside the scope of {principal.name}",
        )


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


async def _current(pool: Pool, store: PolicyStore, principal: Principal) -> dict[str, Any]:
    async with pool.connection() as conn:
        policy_set = await store.load(conn)
    return {
        "version": policy_set.version,
        "policy": policy_set.policy.model_dump(mode="json"),
        "accounts": {
            k: v.model_dump(mode="json", exclude_none=True)
            for k, v in policy_set.accounts.items()
            if principal.scope.allows_account(k)
        },
        "instruments": {k: v.model_dump(mode="json", exclude_none=True) for k, v in policy_set.instruments.items()},
    }


def _out_of_bounds(document: BaseModel, field: str) -> JSONResponse | None:
    # The policy models bound signs, not sizes: every amount must be one the risk math can carry.
    problems = policy_problems(document, (field,))
    if not problems:
        return None
    reasons = [
        Reason(code="INVALID_FIELD", field=".".join(map(str, path)), message=f"{'.'.join(map(str, path))}: {problem}")
        for path, problem in problems
    ]
    body = ErrorBody(status="rejected", message="; ".join(r.message for r in reasons), reasons=reasons)
    return JSONResponse(status_code=422, content=body.model_dump(mode="json", by_alias=True, exclude_none=True))


async def _put(
    pool: Pool,
    store: PolicyStore,
    actor: str,
    principal: Principal,
    *,
    scope: Any,
    key: str,
    body: dict[str, Any] | None,
    reason: str,
) -> JSONResponse:
    async with pool.connection() as conn, conn.transaction():
        version = await store.put(conn, scope=scope, key=key, body=body, actor=actor, reason=reason)
    current = await _current(pool, store, principal)
    return JSONResponse(content={**current, "changedVersion": version})


@router.get("/policy")
async def get_policy(pool: PoolDep, policy: PolicyDep, principal: Reader) -> JSONResponse:
    """The policy in force: the global document, every override (accounts: inside the scope), the version."""
    return JSONResponse(content=await _current(pool, policy, principal))


@router.put("/policy", responses={422: {"model": ErrorBody}})
async def put_policy(
    change: PolicyChange, pool: PoolDep, policy: PolicyDep, actor: ActorDep, request: Request, principal: Writer
) -> JSONResponse:
    """Replace the global policy (a new version; who, when, old and new values and the reason are kept)."""
    await _firm_wide(request, principal, "the global policy")
    if refused := _out_of_bounds(change.policy, "policy"):
        return refused
    body = change.policy.model_dump(mode="json")
    return await _put(pool, policy, actor, principal, scope="GLOBAL", key="", body=body, reason=change.reason)


@router.put("/policy/accounts/{account}", responses={422: {"model": ErrorBody}})
async def put_account_overrides(
    account: Identifier,
    change: AccountOverrideChange,
    pool: PoolDep,
    policy: PolicyDep,
    actor: ActorDep,
    request: Request,
    principal: Writer,
) -> JSONResponse:
    """Set an account's overrides (replacing any earlier ones)."""
    await _account_in_scope(request, principal, account)
    if refused := _out_of_bounds(change.overrides, "overrides"):
        return refused
    body = change.overrides.model_dump(mode="json", exclude_none=True)
    return await _put(pool, policy, actor, principal, scope="ACCOUNT", key=account, body=body, reason=change.reason)


@router.delete("/policy/accounts/{account}")
async def delete_account_overrides(
    account: Identifier,
    reason: Annotated[ChangeReason, Query()],
    pool: PoolDep,
    policy: PolicyDep,
    actor: ActorDep,
    request: Request,
    principal: Writer,
) -> JSONResponse:
    """Remove an account's overrides (the global values apply again)."""
    await _account_in_scope(request, principal, account)
    return await _put(pool, policy, actor, principal, scope="ACCOUNT", key=account, body=None, reason=reason)


@router.put("/policy/instruments/{symbol}", responses={422: {"model": ErrorBody}})
async def put_instrument_overrides(
    symbol: str,
    change: InstrumentOverrideChange,
    pool: PoolDep,
    policy: PolicyDep,
    actor: ActorDep,
    instruments: InstrumentsDep,
    request: Request,
    principal: Writer,
) -> JSONResponse:
    """Set an instrument's overrides (tradable, price band, per-order notional cap, position limit in units)."""
    await _firm_wide(request, principal, "an instrument's policy")
    symbol = symbol.upper()
    if symbol not in instruments:
        reason = Reason(code="INVALID_FIELD", field="symbol", message=f"symbol: unknown symbol {symbol!r}")
        body = ErrorBody(status="rejected", message=reason.message, reasons=[reason])
        return JSONResponse(status_code=422, content=body.model_dump(mode="json", by_alias=True, exclude_none=True))
    if refused := _out_of_bounds(change.overrides, "overrides"):
        return refused
    body_ = change.overrides.model_dump(mode="json", exclude_none=True)
    return await _put(pool, policy, actor, principal, scope="INSTRUMENT", key=symbol, body=body_, reason=change.reason)


@router.delete("/policy/instruments/{symbol}")
async def delete_instrument_overrides(
    symbol: str,
    reason: Annotated[ChangeReason, Query()],
    pool: PoolDep,
    policy: PolicyDep,
    actor: ActorDep,
    request: Request,
    principal: Writer,
) -> JSONResponse:
    """Remove an instrument's overrides."""
    await _firm_wide(request, principal, "an instrument's policy")
    key = symbol.upper()
    return await _put(pool, policy, actor, principal, scope="INSTRUMENT", key=key, body=None, reason=reason)


@router.get("/policy/history")
async def policy_history(
    pool: PoolDep, policy: PolicyDep, principal: Reader, limit: Annotated[int, Query(ge=1, le=1000)] = 100
) -> JSONResponse:
    """Every change to the policy, newest first: version, scope, who, when, why, old and new documents.

    Changes of accounts outside the caller's scope are left out.
    """
    async with pool.connection() as conn:
        rows = await policy.history(conn, limit=limit)
    rows = [r for r in rows if r["scope"] != "ACCOUNT" or principal.scope.allows_account(r["scope_key"])]
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
    principal: Reader,
    account: str | None = None,
    include_released: Annotated[bool, Query(alias="includeReleased")] = False,
    limit: Annotated[int, Field(ge=1, le=1000), Query()] = 200,
) -> JSONResponse:
    """What working orders hold of their accounts' limits (open quantity, notional and margin), in scope."""
    async with pool.connection() as conn:
        rows = await risk.reservations(
            conn, scope=principal.scope, account=account, include_released=include_released, limit=limit
        )
        totals = await risk.reservation_totals(
            conn, scope=principal.scope, account=account, include_released=include_released
        )

    def ser(row: Mapping[str, Any]) -> dict[str, Any]:
        return {k: (str(v) if v is not None and not isinstance(v, (str, int, bool)) else v) for k, v in row.items()}

    return JSONResponse(content={"data": [ser(r) for r in rows], "totals": [ser(t) for t in totals]})
