"""Operator controls: trading states (the kill switch at every scope) and mass cancel."""

from __future__ import annotations

import asyncio
import logging
from typing import Annotated, Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from temporalio.service import RPCError, RPCStatusCode

from api.audited import audit_after, audit_before
from api.auth import forbid, requires
from api.deps import ActorDep, InstrumentsDep, PoolDep, TemporalDep
from api.edge import EdgeRoute
from api.schemas import CancelAllBody, ErrorBody, Reason, TradingStateBody, TradingStatePublic
from brokers import BROKERS
from core.auth import ALL, Permission, Principal, Scope
from core.domain import ACTIVE_STATUSES, CancelRequest, TradingState, order_id_from_workflow_id, utcnow, workflow_id_for
from core.metrics import TRADING_HALTED
from core.temporal import SA_ACCOUNT, SA_BROKER, SA_CLIENT_ID, SA_STATUS, SA_SYMBOL
from store import orders, risk
from store.audit import append_audit
from store.risk import TradingStateRow
from workflows.order import OrderWorkflow

__all__ = ["router"]

log = logging.getLogger(__name__)

router = APIRouter(prefix="/operator", tags=["operator"], route_class=EdgeRoute)


def _rejected(reasons: list[Reason]) -> JSONResponse:
    body = ErrorBody(status="rejected", message="; ".join(r.message for r in reasons), reasons=reasons)
    return JSONResponse(status_code=422, content=body.model_dump(mode="json", by_alias=True, exclude_none=True))


def _state_visible(scope: Scope, row: TradingStateRow) -> bool:
    if row["scope"] == "ACCOUNT":
        return scope.allows_account(row["scope_key"])
    if row["scope"] == "BROKER":
        return scope.allows_broker(row["scope_key"])
    return True  # GLOBAL and SYMBOL states apply to everyone


@router.get("/trading-state", response_model=list[TradingStatePublic])
async def get_trading_state(
    pool: PoolDep, principal: Annotated[Principal, requires(Permission.TRADING_STATE_READ)]
) -> JSONResponse:
    """Every trading state that has been set (GLOBAL is the kill switch); account and broker states in scope."""
    async with pool.connection() as conn:
        states = await risk.trading_states(conn)
    rows = [TradingStatePublic.model_validate(r) for r in states if _state_visible(principal.scope, r)]
    return JSONResponse(content=[r.model_dump(mode="json", by_alias=True) for r in rows])


@router.post("/trading-state", response_model=TradingStatePublic, responses={422: {"model": ErrorBody}})
async def set_trading_state(
    body: TradingStateBody,
    pool: PoolDep,
    actor: ActorDep,
    instruments: InstrumentsDep,
    request: Request,
    principal: Annotated[Principal, requires(Permission.TRADING_STATE_RESTRICT, Permission.TRADING_STATE_LIFT)],
) -> JSONResponse:
    """Set a trading state at a scope (HALTED, REDUCING, ACTIVE).

    HALTED refuses new orders and amends (cancels pass); REDUCING takes only orders that reduce a position;
    ACTIVE resumes and resets the circuit breaker of an account or broker. Operators may tighten (HALTED,
    REDUCING); loosening (ACTIVE, or HALTED to REDUCING) needs role risk. GLOBAL and SYMBOL states need a
    firm-wide scope; an ACCOUNT or BROKER state, that account or broker in scope.
    """
    problems = body.problems()
    key = body.key or ""
    if body.scope == "SYMBOL":
        key = key.upper()
        if key not in instruments:
            problems.append(Reason(code="INVALID_FIELD", field="key", message=f"key: unknown symbol {key!r}"))
    if body.scope == "BROKER" and key not in BROKERS:
        problems.append(Reason(code="INVALID_FIELD", field="key", message=f"key: unknown broker {key!r}"))
    if problems:
        return _rejected(problems)
    await _check_state_scope(request, principal, body.scope, key)
    async with pool.connection() as conn, conn.transaction():
        old = await risk.lock_trading_state(conn, scope=body.scope, key=key)
        lifting = body.state is TradingState.ACTIVE or (
            old == TradingState.HALTED.value and body.state is TradingState.REDUCING
        )
        if lifting and not principal.can(Permission.TRADING_STATE_LIFT):
            await forbid(
                request,
                principal,
                code="FORBIDDEN_ROLE",
                field="state",
                message=f"state: {principal.name} may not lift a trading state "
                f"({old or 'ACTIVE'} to {body.state.value}); that needs role risk",
            )
        row = await risk.set_trading_state(
            conn, scope=body.scope, key=key, state=body.state.value, reason=body.reason, actor=actor
        )
        if body.state is TradingState.ACTIVE and body.scope in ("ACCOUNT", "BROKER"):
            await risk.reset_reject_streak(conn, scope=body.scope, key=key)
        await append_audit(
            conn,
            actor=actor,
            action="TRADING_STATE_SET",
            subject=f"{body.scope}:{key}" if key else body.scope,
            detail={"from": old, "to": body.state.value, "reason": body.reason},
        )
    if body.scope == "GLOBAL":
        TRADING_HALTED.set(1 if body.state is TradingState.HALTED else 0)
    return JSONResponse(content=TradingStatePublic.model_validate(row).model_dump(mode="json", by_alias=True))


async def _check_state_scope(request: Request, principal: Principal, scope: str, key: str) -> None:
    if scope == "ACCOUNT" and not principal.scope.allows_account(key):
        await forbid(
            request, principal, code="OUT_OF_SCOPE", field="key", message=f"key: account {key!r} is outside the scope"
        )
    if scope == "BROKER" and not principal.scope.allows_broker(key):
        await forbid(
            request, principal, code="OUT_OF_SCOPE", field="key", message=f"key: broker {key!r} is outside the scope"
        )
    if scope in ("GLOBAL", "SYMBOL") and not principal.scope.firm_wide:
        await forbid(
            request,
            principal,
            code="OUT_OF_SCOPE",
            field="scope",
            message=f"scope: a {scope} trading state is firm-wide; it needs a principal whose scope is every client "
            "and account",
        )


_SCOPE_ATTRIBUTES = {"account": SA_ACCOUNT, "client": SA_CLIENT_ID, "symbol": SA_SYMBOL, "broker": SA_BROKER}
_SCOPE_CHECKS = {"account": "allows_account", "client": "allows_client", "broker": "allows_broker"}


def _visibility_scope(scope: Scope) -> str | None:
    # The principal's scope as a visibility filter ("" for everything, None when it holds nothing).
    parts = []
    for attribute, names in ((SA_CLIENT_ID, scope.clients), (SA_ACCOUNT, scope.accounts), (SA_BROKER, scope.brokers)):
        if names == ALL:
            continue
        if not names:
            return None
        parts.append(f"{attribute.name} IN ({', '.join(repr(n) for n in names)})")  # names are validated
    return "".join(f" AND {p}" for p in parts)


@router.post("/cancel-all", responses={422: {"model": ErrorBody}})
async def cancel_all(
    body: CancelAllBody,
    temporal: TemporalDep,
    pool: PoolDep,
    actor: ActorDep,
    request: Request,
    principal: Annotated[Principal, requires(Permission.ORDERS_CANCEL_ALL)],
) -> JSONResponse:
    """Signal a cancel to every working order in a scope (and in the caller's); answers how many were signalled.

    Working orders are found through Temporal visibility (search attributes), and the read model for anything
    visibility has not indexed yet.
    """
    if body.scope != "all" and not body.value:
        return _rejected(
            [Reason(code="INVALID_FIELD", field="value", message=f"value: required for scope {body.scope}")]
        )
    value = (body.value or "").upper() if body.scope == "symbol" else (body.value or "")
    check = _SCOPE_CHECKS.get(body.scope)
    if check is not None and not getattr(principal.scope, check)(value):
        await forbid(
            request, principal, code="OUT_OF_SCOPE", field="value", message=f"value: {value!r} is outside the scope"
        )
    statuses = ", ".join(f"'{s.value}'" for s in sorted(ACTIVE_STATUSES))
    query = f"WorkflowType = 'OrderWorkflow' AND ExecutionStatus = 'Running' AND {SA_STATUS.name} IN ({statuses})"
    if body.scope != "all":
        query += f" AND {_SCOPE_ATTRIBUTES[body.scope].name} = '{value}'"  # value is a validated identifier
    in_scope = _visibility_scope(principal.scope)
    order_ids: set[str] = set()
    if in_scope is not None:
        async for execution in temporal.list_workflows(query + in_scope):
            order_ids.add(order_id_from_workflow_id(execution.id))
    one = {"account": "account", "client": "client_id", "symbol": "symbol", "broker": "broker"}.get(body.scope)
    async with pool.connection() as conn:
        order_ids.update(
            await orders.order_ids(
                conn,
                scope=principal.scope,
                statuses=[s.value for s in ACTIVE_STATUSES],
                **({one: value} if one else {}),
            )
        )

    cancel = CancelRequest(
        requested_by=actor, reason=f"cancel-all ({body.scope}): {body.reason}", requested_at=utcnow()
    )

    async def signal(order_id: str) -> bool:
        try:
            await temporal.get_workflow_handle(workflow_id_for(order_id)).signal(OrderWorkflow.cancel, cancel)
            return True
        except RPCError as e:
            if e.status == RPCStatusCode.NOT_FOUND:
                return False  # closed meanwhile
            raise

    ordered = sorted(order_ids)
    subject = f"{body.scope}:{value}" if value else body.scope
    # Audited before anything is sent: a cancel-all the audit log cannot record sends nothing (503).
    await audit_before(
        pool,
        actor=actor,
        action="CANCEL_ALL_REQUESTED",
        subject=subject,
        detail={"reason": body.reason, "order_ids": ordered},
    )
    # Every signal is tried; one failing does not hide which others were sent.
    results = await asyncio.gather(*(signal(o) for o in ordered), return_exceptions=True)
    signalled = [o for o, ok in zip(ordered, results, strict=True) if ok is True]
    failed = {
        o: f"{type(r).__name__}: {r}"[:200] for o, r in zip(ordered, results, strict=True) if isinstance(r, Exception)
    }
    for r in results:
        if isinstance(r, BaseException) and not isinstance(r, Exception):
            raise r
    warnings: list[str] = []
    await audit_after(
        pool,
        warnings,
        actor=actor,
        action="CANCEL_ALL",
        subject=subject,
        detail={"reason": body.reason, "signalled": len(signalled), "order_ids": signalled, "failed": sorted(failed)},
    )
    content: dict[str, Any] = {
        "scope": body.scope,
        "value": value or None,
        "signalled": len(signalled),
        "alreadyClosed": len(ordered) - len(signalled) - len(failed),
        "orderIds": signalled,
    }
    if failed:
        content["failed"] = failed
        warnings.append(f"{len(failed)} order(s) could not be signalled; retry the cancel-all")
    if warnings:
        content["warnings"] = warnings
    if failed:  # the engine did not take some: 503, and a retry of the whole call is safe (cancels repeat harmlessly)
        return JSONResponse(status_code=503, content=content, headers={"Retry-After": "2"})
    return JSONResponse(content=content)
