"""Order lists (bracket, OCO, OUO, OTO): submit (update-with-start of the coordinator), read, cancel, amend a leg.

A list is read from its row in ``order_lists`` (written by its coordinator at every change: it outlives Temporal's
retention and answers with the worker down), else from its coordinator workflow (a query). Scope is enforced from
the row (or the book). Cancel and amend go to the live coordinator. Its legs are ordinary orders:
``GET /orders/{id}`` shows each, with its fills and timeline.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Body, HTTPException, Request
from fastapi.responses import JSONResponse
from temporalio.client import (
    WorkflowUpdateFailedError,
    WorkflowUpdateRPCTimeoutOrCancelledError,
)
from temporalio.exceptions import WorkflowAlreadyStartedError

from api.answers import CREATE_ANSWERS, query_state
from api.answers import json_answer as _json
from api.answers import rejected as _reject
from api.auth import hidden, requires
from api.deps import ActorDep, IdempotencyKeyHeader, InstrumentsDep, PoolDep, SettingsDep, TemporalDep
from api.edge import EdgeRoute
from api.registry import scoped_broker
from api.schemas import (
    AmendBody,
    CancelBody,
    ErrorBody,
    LegPublic,
    ListAccepted,
    ListPublic,
    OrderListCreate,
    Reason,
)
from brokers import BROKERS
from core.auth import Permission, Principal, namespaced_key
from core.contingency import Contingency, LegRole
from core.domain import (
    AmendRequest,
    AmendResult,
    CancelRequest,
    OrderTerms,
    utcnow,
    workflow_id_for,
)
from core.orderlist import (
    LegAmend,
    LegSpec,
    ListBook,
    ListDecision,
    OrderListRequest,
    derive_list_id,
    leg_order_id,
    list_problems,
    list_workflow_id,
)
from core.settings import Settings
from store import Pool
from store.order_lists import list_row
from workflows.order import OrderWorkflow
from workflows.order_client import list_start
from workflows.order_list import OrderListWorkflow

__all__ = ["router"]

router = APIRouter(prefix="/order-lists", tags=["order lists"], route_class=EdgeRoute)


def _links(settings: Settings, list_id: str) -> dict[str, str]:
    wf = list_workflow_id(list_id)
    return {
        "self": f"/api/v1/order-lists/{list_id}",
        "cancel": f"/api/v1/order-lists/{list_id}/cancel",
        "temporalUi": f"{settings.temporal.ui_url}/namespaces/{settings.temporal.namespace}/workflows/{wf}",
    }


def _answer(decision: ListDecision, request: OrderListRequest, settings: Settings, *, duplicate: bool) -> JSONResponse:
    body = ListAccepted(
        status="accepted" if decision.approved else "rejected",
        list_id=request.list_id,
        client_list_id=request.client_list_id,
        client_id=request.client_id,
        list_status="WORKING" if decision.approved else "DENIED",
        reasons=[Reason.of(r) for r in decision.reasons],
        duplicate=duplicate,
        workflow_id=list_workflow_id(request.list_id),
        legs={leg.name: leg.order.order_id for leg in request.legs},
        links=_links(settings, request.list_id),
    )
    if duplicate:
        return _json(200, body)
    if decision.approved:
        return _json(201, body, {"Location": f"/api/v1/order-lists/{request.list_id}"})
    return _json(422, body)


@router.post(
    "",
    status_code=201,
    response_model=ListAccepted,
    responses=CREATE_ANSWERS,
)
async def create_list(
    body: OrderListCreate,
    settings: SettingsDep,
    temporal: TemporalDep,
    pool: PoolDep,
    instruments: InstrumentsDep,
    actor: ActorDep,
    request: Request,
    principal: Annotated[Principal, requires(Permission.ORDERS_SUBMIT)],
    idempotency_key: IdempotencyKeyHeader = None,
) -> JSONResponse:
    """Submit an order list; answers with the list's risk decision (the list then runs in the background)."""
    problems: list[Reason] = []
    first = body.legs[0]
    account = first.account or body.client_id
    broker, account_problems = await scoped_broker(
        request, principal, pool, settings, client_id=body.client_id, account=account, broker=first.broker
    )
    problems.extend(account_problems)
    if broker not in BROKERS:
        problems.append(Reason(code="UNKNOWN_BROKER", field="legs[0].broker", message=f"unknown broker {broker!r}"))
    legs = []
    for i, leg in enumerate(body.legs):
        leg = leg.model_copy(
            update={
                "client_id": body.client_id,
                "client_order_id": f"{body.client_list_id}.{leg.name}",
                "account": leg.account or account,
                "broker": leg.broker or broker,
            }
        )
        instrument = instruments.get(leg.symbol)
        leg, tick_problem = leg.with_trail_in_ticks(
            instrument.tick_size if instrument is not None else None, prefix=f"legs[{i}]."
        )
        if tick_problem is not None:
            problems.append(tick_problem)
        for p in leg.problems():
            problems.append(p.model_copy(update={"field": f"legs[{i}].{p.field}", "message": f"legs[{i}].{p.message}"}))
        if instrument is None:
            problems.append(
                Reason(code="UNKNOWN_INSTRUMENT", field=f"legs[{i}].symbol", message=f"unknown symbol {leg.symbol!r}")
            )
        legs.append(leg)
    if problems:
        return _reject(422, problems)

    key_header = (idempotency_key or "").strip()
    key = f"{body.client_id}/key/{key_header}" if key_header else f"{body.client_id}/list/{body.client_list_id}"
    full_key = namespaced_key(principal.tenant, key)
    received_at, submission_id, request_hash = utcnow(), uuid.uuid4().hex, body.request_hash()
    specs = [
        LegSpec(
            name=leg.name,
            role=leg.role,
            emulation_trigger=leg.emulation_trigger,
            order=leg.to_request(
                order_id=leg_order_id(full_key, leg.name),
                idempotency_key=f"{full_key}#{leg.name}",
                broker=leg.broker or broker,
                received_at=received_at,
                submitted_by=actor,
                submission_id=submission_id,
            ),
        )
        for leg in legs
    ]
    linked = [s.order.order_id for s in specs if s.role in (LegRole.EXIT, LegRole.MEMBER)]
    specs = [
        s.model_copy(
            update={
                "order": s.order.model_copy(update={"linked_orders": tuple(i for i in linked if i != s.order.order_id)})
            }
        )
        if s.order.order_id in linked
        else s
        for s in specs
    ]
    if body.contingency is Contingency.BRACKET:
        # The entry's risk check reserves it with the larger of the exits the list holds (core.risk).
        exits = tuple(
            OrderTerms.model_validate({k: getattr(s.order, k) for k in OrderTerms.model_fields})
            for s in specs
            if s.role is LegRole.EXIT
        )
        specs = [
            s.model_copy(update={"order": s.order.model_copy(update={"list_exits": exits})})
            if s.role is LegRole.PARENT
            else s
            for s in specs
        ]
    list_request = OrderListRequest(
        list_id=derive_list_id(full_key),
        idempotency_key=full_key,
        request_hash=request_hash,
        client_id=body.client_id,
        client_list_id=body.client_list_id,
        received_at=received_at,
        submitted_by=actor,
        submission_id=submission_id,
        contingency=body.contingency,
        trigger=body.trigger,
        exits=body.exits,
        flatten_on_unprotected=body.flatten_on_unprotected,
        emulation_trigger=body.emulation_trigger,
        legs=specs,
    )
    structural = list_problems(list_request)
    if structural:
        return _reject(422, [Reason.of(r) for r in structural])
    start = list_start(list_request, settings)
    try:
        async with asyncio.timeout(settings.api.decision_timeout_seconds):
            decision = await start.decide(temporal)
    except WorkflowAlreadyStartedError:
        await start.settle()
        book = await _book(temporal, list_request.list_id)
        if book is None or book.decision is None:
            raise HTTPException(
                409, detail=f"list {list_request.list_id} exists but is not readable; retry shortly"
            ) from None
        decision = book.decision
    except (TimeoutError, WorkflowUpdateRPCTimeoutOrCancelledError):
        await start.settle()
        pending = ListAccepted(
            status="pending",
            list_id=list_request.list_id,
            client_list_id=body.client_list_id,
            client_id=body.client_id,
            list_status="RECEIVED",
            workflow_id=start.workflow_id,
            legs={s.name: s.order.order_id for s in specs},
            links=_links(settings, list_request.list_id),
        )
        return _json(202, pending, {"Location": f"/api/v1/order-lists/{list_request.list_id}"})
    if decision.request_hash != request_hash:
        return _json(
            409,
            ErrorBody(
                status="conflict",
                message=f"idempotency key {key_header or body.client_list_id!r} was already used for a different "
                "list; use a new key (or a new clientListId)",
            ),
        )
    return _answer(decision, list_request, settings, duplicate=decision.submission_id != submission_id)


async def _book(temporal: Any, list_id: str) -> ListBook | None:
    book: ListBook | None = await query_state(
        temporal, list_workflow_id(list_id), OrderListWorkflow.state, what=f"list {list_id}"
    )
    return book


async def _stored(pool: Pool, list_id: str) -> ListBook | None:
    async with pool.connection() as conn:
        row = await list_row(conn, list_id)
    return None if row is None else ListBook.model_validate(row["book"])


def _well_formed(list_id: str) -> bool:
    return list_id.startswith("LS") and len(list_id) == 18


async def _visible(
    temporal: Any, pool: Pool, list_id: str, request: Request, principal: Principal, *, live: bool
) -> tuple[ListBook, bool]:
    """The list (404 when absent or out of scope) and whether it came from its running coordinator.

    A read (``live=False``) answers from the row when there is one; a change (``live=True``) asks the coordinator
    first and falls back on the row (a list Temporal no longer holds, which no change can reach).
    """
    book, from_workflow = None, False
    if _well_formed(list_id):
        if not live:
            book = await _stored(pool, list_id)
        if book is None:
            book = await _book(temporal, list_id)
            from_workflow = book is not None
        if book is None and live:
            book = await _stored(pool, list_id)
    if book is None:
        raise HTTPException(404, detail=f"no order list {list_id!r}")
    first = book.request.legs[0].order
    if not principal.scope.sees_order(client_id=book.request.client_id, account=first.account, broker=first.broker):
        await hidden(request, principal, f"order list {list_id}")
        raise HTTPException(404, detail=f"no order list {list_id!r}")
    return book, from_workflow


def _public(book: ListBook) -> ListPublic:
    r = book.request
    return ListPublic(
        list_id=r.list_id,
        client_list_id=r.client_list_id,
        client_id=r.client_id,
        contingency=r.contingency,
        trigger=r.trigger,
        status=book.status.value,
        flags=list(book.flags),
        legs=[
            LegPublic(
                name=leg.name,
                role=leg.role,
                internal_order_id=leg.order_id,
                # A native list's leg not released yet is held by the broker with the list's order, not here.
                status="HELD" if leg.shown_status == "EMULATED" and leg.order.native is not None else leg.shown_status,
                side=leg.order.side,
                type=leg.order.type,
                qty=leg.qty,
                filled_qty=leg.filled_qty,
                avg_price=leg.avg_price,
                price=leg.order.price,
                stop_price=leg.order.stop_price,
                reason=leg.reason,
                rules=list(leg.rules),
                emulation_trigger=leg.trigger,
                emulated_type=leg.emulated_terms.type if leg.emulated_terms is not None else None,
                trail_trigger=leg.trail.trigger if leg.trail is not None else None,
                links={"order": f"/api/v1/orders/{leg.order_id}"} if leg.released else {},
            )
            for leg in book.legs
        ],
        events=[e.model_dump(mode="json") for e in book.events],
        workflow_id=list_workflow_id(r.list_id),
        native=any(leg.order.native is not None for leg in r.legs),
    )


@router.get("/{list_id}", response_model=ListPublic, responses={404: {"model": ErrorBody}})
async def get_list(
    list_id: str,
    temporal: TemporalDep,
    pool: PoolDep,
    request: Request,
    principal: Annotated[Principal, requires(Permission.ORDERS_READ)],
) -> JSONResponse:
    """One order list: its legs with their states and the rules that fired, its flags and timeline."""
    book, _ = await _visible(temporal, pool, list_id, request, principal, live=False)
    return _json(200, _public(book))


@router.post("/{list_id}/cancel", status_code=202, responses={404: {"model": ErrorBody}, 409: {"model": ErrorBody}})
async def cancel_list(
    list_id: str,
    temporal: TemporalDep,
    pool: PoolDep,
    actor: ActorDep,
    request: Request,
    principal: Annotated[Principal, requires(Permission.ORDERS_CANCEL)],
    body: Annotated[CancelBody | None, Body()] = None,
) -> JSONResponse:
    """Cancel a list: legs still held are dropped, working legs canceled (202: on its way)."""
    book, live = await _visible(temporal, pool, list_id, request, principal, live=True)
    if book.done or not live:
        raise HTTPException(409, detail=f"order list {list_id} is already {book.status.value}")
    reason = (body or CancelBody()).reason
    await temporal.get_workflow_handle(list_workflow_id(list_id)).signal(
        OrderListWorkflow.cancel, CancelRequest(requested_by=actor, reason=reason, requested_at=utcnow())
    )
    return JSONResponse(status_code=202, content={"status": "accepted", "listId": list_id})


@router.patch("/{list_id}/legs/{leg}", responses={404: {"model": ErrorBody}, 409: {"model": ErrorBody}})
async def amend_leg(
    list_id: str,
    leg: str,
    body: AmendBody,
    temporal: TemporalDep,
    pool: PoolDep,
    actor: ActorDep,
    request: Request,
    principal: Annotated[Principal, requires(Permission.ORDERS_AMEND)],
) -> JSONResponse:
    """Amend a leg: one the coordinator still holds changes there; a released one is amended as its order."""
    book, live = await _visible(temporal, pool, list_id, request, principal, live=True)
    if not live:
        raise HTTPException(409, detail=f"order list {list_id} is {book.status.value} and closed: nothing to amend")
    try:
        state = book.leg(leg)
    except KeyError:
        raise HTTPException(404, detail=f"order list {list_id} has no leg {leg!r}") from None
    try:
        if state.released:
            result: AmendResult = await temporal.get_workflow_handle(workflow_id_for(state.order_id)).execute_update(
                OrderWorkflow.amend,
                AmendRequest(qty=body.qty, price=body.price, stop_price=body.stop_price, requested_by=actor),
            )
        else:
            result = await temporal.get_workflow_handle(list_workflow_id(list_id)).execute_update(
                OrderListWorkflow.amend_leg,
                LegAmend(leg=leg, qty=body.qty, price=body.price, stop_price=body.stop_price, requested_by=actor),
            )
    except WorkflowUpdateFailedError as e:
        raise HTTPException(409, detail=str(e.cause or e)) from e
    return JSONResponse(status_code=200 if result.accepted else 409, content=result.model_dump(mode="json"))
