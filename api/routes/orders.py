"""Orders: submit (update-with-start), read, list, cancel (signal), amend (update)."""

from __future__ import annotations

import asyncio
import logging
import re
import time
import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Body, HTTPException, Query, Request
from fastapi.responses import JSONResponse
from temporalio.client import (
    Client,
    WorkflowUpdateFailedError,
    WorkflowUpdateRPCTimeoutOrCancelledError,
)
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from api.answers import CREATE_ANSWERS, query_state
from api.answers import json_answer as _json
from api.answers import rejected as _reject
from api.audited import audit_after, audit_before
from api.auth import check_order_scope, hidden, requires
from api.deps import ActorDep, IdempotencyKeyHeader, PoolDep, SettingsDep, TemporalDep
from api.edge import EdgeRoute
from api.registry import broker_of
from api.schemas import (
    AmendBody,
    CancelBody,
    ErrorBody,
    FillPublic,
    OrderAccepted,
    OrderCreate,
    OrderEventPublic,
    OrderPublic,
    OrdersPublic,
    Reason,
    RiskDecisionPublic,
)
from brokers import BROKERS
from core.auth import Permission, Principal, namespaced_key
from core.bounds import MAX_OFFSET
from core.domain import (
    TERMS,
    AmendRequest,
    CancelRequest,
    OrderRequest,
    OrderState,
    OrderStatus,
    RiskDecision,
    derive_order_id,
    utcnow,
    workflow_id_for,
)
from core.instruments import InstrumentCatalog
from core.metrics import ORDER_LATENCY, ORDERS, ORDERS_REJECTED
from core.settings import Settings
from store import Pool, orders
from store.auth import get_account_and_order
from store.ledger import FillRow, fills_of
from store.orders import OrderRecord, OrderView
from store.timeline import EventRow, events_of
from workflows.order import OrderWorkflow
from workflows.order_client import order_start

__all__ = ["router"]

log = logging.getLogger(__name__)

router = APIRouter(prefix="/orders", tags=["orders"], route_class=EdgeRoute)

_ORDER_ID = re.compile(r"^EX[A-Z2-7]{16}$")


def _links(settings: Settings, order_id: str) -> dict[str, str]:
    wf = workflow_id_for(order_id)
    return {
        "self": f"/api/v1/orders/{order_id}",
        "cancel": f"/api/v1/orders/{order_id}/cancel",
        "temporalUi": f"{settings.temporal.ui_url}/namespaces/{settings.temporal.namespace}/workflows/{wf}",
    }


def _answer(
    decision: RiskDecision,
    order: OrderRequest,
    settings: Settings,
    *,
    duplicate: bool,
    status: OrderStatus | None = None,
) -> JSONResponse:
    reasons = [Reason.of(r) for r in decision.reasons]
    body = OrderAccepted(
        status="accepted" if decision.approved else "rejected",
        internal_order_id=order.order_id,
        client_order_id=order.client_order_id,
        client_id=order.client_id,
        order_status=status or (OrderStatus.SUBMITTED if decision.approved else OrderStatus.DENIED),
        reasons=reasons,
        duplicate=duplicate,
        workflow_id=workflow_id_for(order.order_id),
        links=_links(settings, order.order_id),
    )
    if duplicate:
        return _json(200, body)
    if decision.approved:
        return _json(201, body, {"Location": f"/api/v1/orders/{order.order_id}"})
    return _json(422, body)


def _conflict(order_id: str, key: str) -> JSONResponse:
    return _json(
        409,
        ErrorBody(
            status="conflict",
            message=f"idempotency key {key!r} was already used for a different order; use a new key "
            "(or a new clientOrderId) for a new order",
            internal_order_id=order_id,
        ),
    )


@router.post(
    "",
    status_code=201,
    response_model=OrderAccepted,
    responses=CREATE_ANSWERS,
)
async def create_order(
    body: OrderCreate,
    request: Request,
    principal: Annotated[Principal, requires(Permission.ORDERS_SUBMIT)],
    idempotency_key: IdempotencyKeyHeader = None,
) -> JSONResponse:
    """Submit an order; answers with the risk decision (the order then runs in the background)."""
    started = time.perf_counter()
    # The app's settings, clients and catalog straight from its state, not as dependencies: FastAPI resolves each
    # dependency per request (its cache key, scopes, call kind): in a profile the eight of this route cost more than
    # its own checks.
    # The audited actor is the authenticated principal's name (what ``ActorDep`` gives the other routes).
    state = request.app.state
    settings: Settings = state.settings
    temporal: Client = state.temporal
    pool: Pool = state.pool
    instruments: InstrumentCatalog = state.instruments
    actor = principal.name
    instrument = instruments.get(body.symbol)
    body, tick_problem = body.with_trail_in_ticks(instrument.tick_size if instrument is not None else None)
    problems = body.problems() + ([tick_problem] if tick_problem is not None else [])
    account = body.account or body.client_id
    await check_order_scope(request, principal, client_id=body.client_id, account=account, broker=body.broker)
    key_header = (idempotency_key or "").strip()
    key = f"{body.client_id}/key/{key_header}" if key_header else f"{body.client_id}/order/{body.client_order_id}"
    order_id = derive_order_id(namespaced_key(principal.tenant, key))
    # The account's registration and the key's order row in one round trip (the row is used below, if valid).
    async with pool.connection() as conn:
        account_record, recorded = await get_account_and_order(conn, account, order_id)
    broker, account_problems = broker_of(account_record, settings, account=account, broker=body.broker)
    await check_order_scope(request, principal, broker=broker)
    problems.extend(account_problems)
    if broker not in BROKERS:
        problems.append(
            Reason(
                code="UNKNOWN_BROKER",
                field="broker",
                message=f"broker: unknown broker {broker!r}; known: {', '.join(sorted(BROKERS))}",
            )
        )
    if body.symbol not in instruments:
        problems.append(
            Reason(
                code="UNKNOWN_INSTRUMENT",
                field="symbol",
                message=f"symbol: unknown symbol {body.symbol!r}; known: {', '.join(instruments.symbols())}",
            )
        )
    if problems:
        for reason in problems:
            ORDERS_REJECTED.labels(reason=reason.code).inc()
        ORDERS.labels(broker=broker, outcome="invalid").inc()
        return _reject(422, problems)

    order = body.to_request(
        order_id=order_id,
        idempotency_key=namespaced_key(principal.tenant, key),
        broker=broker,
        received_at=utcnow(),
        submitted_by=actor,
        submission_id=uuid.uuid4().hex,
    )
    # The orders table is the authority on a key once its order is decided: it outlives Temporal's retention,
    # so a repeat (or a conflicting reuse) is answered from the row and never starts a new run.
    if recorded is not None and recorded["risk_decision"] is not None:
        return _repeat(recorded, order, key, settings)
    start = order_start(order, settings)
    try:
        async with asyncio.timeout(settings.api.decision_timeout_seconds):
            decision = await start.decide(temporal)
    except WorkflowAlreadyStartedError:
        await start.settle()
        return await _closed_order(pool, order, key, settings)
    except (TimeoutError, WorkflowUpdateRPCTimeoutOrCancelledError):
        await start.settle()
        return await _pending(temporal, order, settings)
    except RPCError:
        await start.settle()
        raise
    ORDER_LATENCY.labels(stage="decision").observe(time.perf_counter() - started)
    if decision.request_hash != order.request_hash:
        return _conflict(order_id, key_header or body.client_order_id)
    duplicate = decision.submission_id != order.submission_id
    if not duplicate:
        ORDERS.labels(broker=broker, outcome="accepted" if decision.approved else "rejected").inc()
        for refusal in decision.reasons:
            ORDERS_REJECTED.labels(reason=refusal.code).inc()
    return _answer(decision, order, settings, duplicate=duplicate)


async def _recorded(pool: Pool, order_id: str) -> OrderRecord | None:
    async with pool.connection() as conn:
        return await orders.recorded(conn, order_id)


def _repeat(row: OrderRecord, order: OrderRequest, key: str, settings: Settings) -> JSONResponse:
    # A key whose order is recorded: the same terms get the original answer, other terms a 409.
    if row["request_hash"] != order.request_hash:
        return _conflict(order.order_id, key.split("/", 2)[-1])
    decision = RiskDecision.model_validate(row["risk_decision"])
    return _answer(decision, order, settings, duplicate=True, status=OrderStatus(row["status"]))


async def _closed_order(pool: Pool, order: OrderRequest, key: str, settings: Settings) -> JSONResponse:
    # The key's workflow already finished: answer from the read model.
    row = await _recorded(pool, order.order_id)
    if row is None or row["risk_decision"] is None:
        raise HTTPException(
            409, detail=f"order {order.order_id} exists but its record is not readable yet; retry shortly"
        )
    return _repeat(row, order, key, settings)


async def _pending(temporal: Any, order: OrderRequest, settings: Settings) -> JSONResponse:
    # The start went through but no worker answered in time: the order is durable and will be decided.
    try:
        await temporal.get_workflow_handle(workflow_id_for(order.order_id)).describe()
    except RPCError as e:
        raise HTTPException(503, detail="the order engine did not answer; retry with the same idempotency key") from e
    body = OrderAccepted(
        status="pending",
        internal_order_id=order.order_id,
        client_order_id=order.client_order_id,
        client_id=order.client_id,
        order_status=OrderStatus.RECEIVED,
        workflow_id=workflow_id_for(order.order_id),
        links=_links(settings, order.order_id),
    )
    return _json(202, body, {"Location": f"/api/v1/orders/{order.order_id}"})


# ------------------------------------------------------------------------------------------------ reads


def _terms(row: OrderView) -> dict[str, Any]:
    # The row's terms by their names (a column a term, store.orders.TermsColumns).
    columns: dict[str, Any] = dict(row)
    return {name: columns[name] for name in TERMS}


def _from_row(
    row: OrderView, *, fills: list[FillRow] | None = None, events: list[EventRow] | None = None
) -> OrderPublic:
    status = OrderStatus(row["status"])
    return OrderPublic(
        **_terms(row),
        internal_order_id=row["order_id"],
        client_order_id=row["client_order_id"],
        client_id=row["client_id"],
        broker=row["broker"],
        broker_order_id=row["broker_order_id"],
        status=status,
        filled_qty=row["filled_qty"],
        leaves_qty=0 if status.is_terminal else row["qty"] - row["filled_qty"],
        avg_price=row["avg_price"],
        reason=row["reason"],
        flags=list(row["flags"] or []),
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        workflow_id=row["workflow_id"],
        fills=None if fills is None else [FillPublic(**f) for f in fills],
        events=None if events is None else [OrderEventPublic(**e) for e in events],
        source="store",
    )


async def _stored(pool: Pool, order_id: str) -> OrderPublic | None:
    async with pool.connection() as conn:
        row = await orders.get_order(conn, order_id)
        if row is None:
            return None
        fills = await fills_of(conn, order_id)
        events = await events_of(conn, order_id)
    public = _from_row(row, fills=fills, events=events)
    if row["risk_decision"] is not None:
        public.risk = RiskDecisionPublic.model_validate(row["risk_decision"])
    return public


async def _live_state(temporal: Any, order_id: str) -> OrderState | None:
    state: OrderState | None = await query_state(
        temporal, workflow_id_for(order_id), OrderWorkflow.state, what=f"order {order_id}"
    )
    return state


async def _in_scope(request: Request, principal: Principal, order: OrderPublic) -> JSONResponse:
    # Another desk's order is answered exactly as an unknown one (404), so ids cannot be probed.
    if not principal.scope.sees_order(client_id=order.client_id, account=order.account, broker=order.broker):
        await hidden(request, principal, f"order {order.internal_order_id}")
        raise HTTPException(404, detail=f"no order {order.internal_order_id}")
    return _json(200, order)


@router.get("/{order_id}", response_model=OrderPublic, responses={404: {"model": ErrorBody}})
async def get_order(
    order_id: str,
    temporal: TemporalDep,
    pool: PoolDep,
    request: Request,
    principal: Annotated[Principal, requires(Permission.ORDERS_READ)],
) -> JSONResponse:
    """One order: terms, status, fills and its event timeline (404 outside the caller's scope)."""
    if not _ORDER_ID.match(order_id):
        raise HTTPException(404, detail=f"no order {order_id!r} (order ids look like EX + 16 characters)")
    # The row is written with the risk decision and kept current by the workflow's bookings (a status the
    # workflow reports is booked first), so it answers whenever it exists, worker or no worker. Only an order
    # still waiting for its decision is asked for through Temporal.
    stored = await _stored(pool, order_id)
    if stored is not None:
        return await _in_scope(request, principal, stored)
    state = await _live_state(temporal, order_id)
    if state is not None:
        return await _in_scope(request, principal, OrderPublic.of_state(state, workflow_id=workflow_id_for(order_id)))
    raise HTTPException(404, detail=f"no order {order_id}")


@router.get("", response_model=OrdersPublic)
async def list_orders(
    pool: PoolDep,
    settings: SettingsDep,
    principal: Annotated[Principal, requires(Permission.ORDERS_READ)],
    status: Annotated[list[OrderStatus] | None, Query(description="one or more statuses")] = None,
    symbol: str | None = None,
    client_id: Annotated[str | None, Query(alias="clientId")] = None,
    client_order_id: Annotated[str | None, Query(alias="clientOrderId")] = None,
    account: str | None = None,
    broker: str | None = None,
    limit: Annotated[int, Query(ge=1)] = 50,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
) -> JSONResponse:
    """Orders from the read model inside the caller's scope, newest first, filtered and paginated."""
    if limit > settings.api.max_page_size:
        message = f"limit: at most {settings.api.max_page_size}"
        return _reject(422, [Reason(code="INVALID_FIELD", field="limit", message=message)])
    async with pool.connection() as conn:
        total, rows = await orders.list_orders(
            conn,
            scope=principal.scope,
            statuses=[s.value for s in status or []],
            symbol=symbol.upper() if symbol else None,
            client_id=client_id,
            client_order_id=client_order_id,
            account=account,
            broker=broker,
            limit=limit,
            offset=offset,
        )
    page = OrdersPublic(data=[_from_row(r) for r in rows], count=total, limit=limit, offset=offset)
    return _json(200, page)


# ------------------------------------------------------------------------------------------------ changes


async def _require_open(
    temporal: Any, pool: Pool, order_id: str, verb: str, request: Request, principal: Principal
) -> OrderStatus:
    # The row when there is one (it answers with the worker down), else the workflow (order not decided yet).
    if not _ORDER_ID.match(order_id):
        raise HTTPException(404, detail=f"no order {order_id!r}")
    row = await _recorded(pool, order_id)
    if row is not None:
        status = OrderStatus(row["status"])
        client_id, account, broker = row["client_id"], row["account"], row["broker"]
    else:
        state = await _live_state(temporal, order_id)
        if state is None:
            raise HTTPException(404, detail=f"no order {order_id}")
        status, order = state.status, state.request
        client_id, account, broker = order.client_id, order.account, order.broker
    if not principal.scope.sees_order(client_id=client_id, account=account, broker=broker):
        await hidden(request, principal, f"order {order_id}")
        raise HTTPException(404, detail=f"no order {order_id}")
    if status.is_terminal:
        raise HTTPException(409, detail=f"order {order_id} is already {status.value}; it cannot be {verb}")
    return status


async def _no_workflow(temporal: Any, order_id: str, status: OrderStatus, verb: str) -> HTTPException:
    # The signal or update found no running workflow although the order is not closed: say what happened.
    try:
        description = await temporal.get_workflow_handle(workflow_id_for(order_id)).describe()
        what = f"its workflow was {description.status.name.lower().replace('_', ' ')}"
    except RPCError:
        what = "its workflow no longer exists"
    return HTTPException(
        409,
        detail=f"order {order_id} cannot be {verb}: {what} while the order was {status.value} (nothing was sent; "
        "the order may still be live at the broker, resolve it there)",
    )


@router.post("/{order_id}/cancel", status_code=202, responses={404: {"model": ErrorBody}, 409: {"model": ErrorBody}})
async def cancel_order(
    order_id: str,
    temporal: TemporalDep,
    pool: PoolDep,
    actor: ActorDep,
    request: Request,
    principal: Annotated[Principal, requires(Permission.ORDERS_CANCEL)],
    body: Annotated[CancelBody | None, Body()] = None,
) -> JSONResponse:
    """Ask for an order to be canceled (202: the request is on its way; the order tells the outcome)."""
    status = await _require_open(temporal, pool, order_id, "canceled", request, principal)
    reason = (body or CancelBody()).reason
    # Audited before it is sent: a cancel the audit log cannot record is not sent (503).
    await audit_before(pool, actor=actor, action="CANCEL_REQUESTED", subject=order_id, detail={"reason": reason})
    warnings: list[str] = []
    try:
        await temporal.get_workflow_handle(workflow_id_for(order_id)).signal(
            OrderWorkflow.cancel, CancelRequest(requested_by=actor, reason=reason, requested_at=utcnow())
        )
    except Exception as e:
        outcome = {"reason": reason, "error": f"{type(e).__name__}: {e}"[:300]}
        await audit_after(pool, warnings, actor=actor, action="CANCEL_NOT_SENT", subject=order_id, detail=outcome)
        if not isinstance(e, RPCError) or e.status != RPCStatusCode.NOT_FOUND:
            raise
        raise await _no_workflow(temporal, order_id, status, "canceled") from e
    # The cancel is on its way from here on: nothing below may turn the answer into "nothing was changed".
    await audit_after(pool, warnings, actor=actor, action="CANCEL_SENT", subject=order_id, detail={"reason": reason})
    content: dict[str, Any] = {
        "status": "cancel_requested",
        "internalOrderId": order_id,
        "orderStatus": status.value,
        "links": {"self": f"/api/v1/orders/{order_id}"},
    }
    if warnings:
        content["warnings"] = warnings
    return JSONResponse(status_code=202, content=content)


@router.patch(
    "/{order_id}", responses={404: {"model": ErrorBody}, 409: {"model": ErrorBody}, 422: {"model": ErrorBody}}
)
async def amend_order(
    order_id: str,
    body: AmendBody,
    settings: SettingsDep,
    temporal: TemporalDep,
    pool: PoolDep,
    actor: ActorDep,
    request: Request,
    principal: Annotated[Principal, requires(Permission.ORDERS_AMEND)],
) -> JSONResponse:
    """Change quantity and/or prices of a working order (cancel/replace at the broker)."""
    if body.qty is None and body.price is None and body.stop_price is None:
        return _reject(422, [Reason(code="INVALID_FIELD", field="body", message="body: give qty, price or stopPrice")])
    status = await _require_open(temporal, pool, order_id, "amended", request, principal)
    handle = temporal.get_workflow_handle(workflow_id_for(order_id))
    amend = AmendRequest(qty=body.qty, price=body.price, stop_price=body.stop_price, requested_by=actor)
    requested = body.model_dump(mode="json", exclude_none=True)
    # Audited before it is sent: an amend the audit log cannot record is not sent (503).
    await audit_before(pool, actor=actor, action="AMEND_REQUESTED", subject=order_id, detail={"request": requested})
    warnings: list[str] = []
    try:
        async with asyncio.timeout(settings.api.decision_timeout_seconds):
            result = await handle.execute_update(OrderWorkflow.amend, amend)
    except Exception as e:
        outcome = {"request": requested, "error": f"{type(e).__name__}: {e}"[:300]}
        unknown = isinstance(e, TimeoutError | WorkflowUpdateRPCTimeoutOrCancelledError)
        action = "AMEND_OUTCOME_UNKNOWN" if unknown else "AMEND_NOT_DONE"
        await audit_after(pool, warnings, actor=actor, action=action, subject=order_id, detail=outcome)
        if isinstance(e, RPCError):
            if e.status != RPCStatusCode.NOT_FOUND:
                raise
            raise await _no_workflow(temporal, order_id, status, "amended") from e
        if isinstance(e, WorkflowUpdateFailedError):
            message = str(getattr(e.cause, "message", None) or e.cause or e)
            raise HTTPException(409, detail=message) from e
        if isinstance(e, TimeoutError | WorkflowUpdateRPCTimeoutOrCancelledError):
            raise HTTPException(
                504, detail="the broker has not answered the amend yet; GET the order to follow it"
            ) from None
        raise
    await audit_after(
        pool,
        warnings,
        actor=actor,
        action="AMEND_ACCEPTED" if result.accepted else "AMEND_REFUSED",
        subject=order_id,
        detail={"request": requested, "accepted": result.accepted, "reason": result.reason},
    )
    content: dict[str, Any] = {
        "status": "amended" if result.accepted else "rejected",
        "internalOrderId": order_id,
        "orderStatus": result.status.value,
        "qty": str(result.qty),
        "price": None if result.price is None else str(result.price),
        "stopPrice": None if result.stop_price is None else str(result.stop_price),
    }
    if not result.accepted:
        content["reasons"] = [{"code": "AMEND_REFUSED", "message": result.reason or "refused"}]
    if warnings:
        content["warnings"] = warnings
    return JSONResponse(status_code=200 if result.accepted else 422, content=content)
