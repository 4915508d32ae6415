"""Starting an order: the one place that builds the order workflow's input and starts it (the "starter").

``order_start`` prepares an order's start: the workflow input (the order and its ``OrderConfig``, the lifecycle
settings from ``Settings.orders`` and the broker's capabilities) and the start operation (the workflow id, the id
policies, the search attributes, the summary the Temporal UI shows). ``OrderStart.decide`` runs it as an
update-with-start whose answer is the risk decision.

The API's ``POST /orders``, the test harness, the fault-injection workers and the benchmarks start orders here,
so they start them alike. Order lists start here too (``list_start``: the coordinator's input carries each leg's
order workflow input, built by ``order_input``). Not workflow code: the workflow never imports it.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from typing import Any

from temporalio.client import Client, WithStartWorkflowOperation
from temporalio.common import (
    SearchAttributePair,
    TypedSearchAttributes,
    WorkflowIDConflictPolicy,
    WorkflowIDReusePolicy,
)

from brokers import BROKERS
from core.domain import OrderRequest, OrderStatus, RiskDecision, workflow_id_for
from core.nativelist import plan
from core.orderlist import ListBook, ListDecision, OrderListRequest, list_workflow_id
from core.settings import Settings
from core.temporal import (
    SA_ACCOUNT,
    SA_BROKER,
    SA_CLIENT_ID,
    SA_CLIENT_ORDER_ID,
    SA_LIST_ID,
    SA_STATUS,
    SA_SYMBOL,
)
from workflows.order import OrderWorkflow
from workflows.order_list import OrderListWorkflow
from workflows.order_models import (
    ListLink,
    ListResult,
    OrderConfig,
    OrderListInput,
    OrderResult,
    OrderWorkflowInput,
)

__all__ = [
    "ListStart",
    "OrderStart",
    "list_input",
    "list_search_attributes",
    "list_start",
    "native_request",
    "order_config",
    "order_input",
    "order_start",
    "search_attributes",
    "summary",
]


def order_config(settings: Settings, broker: str, **overrides: Any) -> OrderConfig:
    """The lifecycle settings an order for ``broker`` starts with (``overrides`` replace fields)."""
    o = settings.orders
    config = OrderConfig(
        broker_task_queue=settings.temporal.broker_task_queue(broker),
        supports_replace=BROKERS[broker].capabilities.supports_replace,
        day_close_utc=o.day_close_utc,
        status_poll_seconds=o.status_poll_seconds,
        immediacy_timeout_seconds=o.immediacy_timeout_seconds,
        broker_call_timeout_seconds=o.broker_call_timeout_seconds,
        continue_as_new_events=o.continue_as_new_events,
        emulates_trailing_stop=not BROKERS[broker].capabilities.native_trailing_stop,
        trail_check_seconds=o.trail_check_seconds,
        swept=BROKERS[broker].capabilities.mass_status and o.sweep_seconds > 0,
    )
    return config.model_copy(update=overrides) if overrides else config


def order_input(order: OrderRequest, settings: Settings, *, config: OrderConfig | None = None) -> OrderWorkflowInput:
    """The order workflow's input: the order and its configuration (by default ``order_config``)."""
    config = config or order_config(settings, order.broker)
    if order.activation_price is not None and not config.emulates_trailing_stop:
        # A broker's native trailing stop starts at once (Alpaca's has no activation price): this one is emulated.
        config = config.model_copy(update={"emulates_trailing_stop": True})
    return OrderWorkflowInput(order=order, config=config)


def search_attributes(order: OrderRequest) -> TypedSearchAttributes:
    """What an operator filters orders by in the Temporal UI (the workflow keeps the status current)."""
    return TypedSearchAttributes(
        [
            SearchAttributePair(SA_STATUS, OrderStatus.RECEIVED.value),
            SearchAttributePair(SA_SYMBOL, order.symbol),
            SearchAttributePair(SA_CLIENT_ID, order.client_id),
            SearchAttributePair(SA_CLIENT_ORDER_ID, order.client_order_id),
            SearchAttributePair(SA_BROKER, order.broker),
            SearchAttributePair(SA_ACCOUNT, order.account),
        ]
    )


def summary(order: OrderRequest) -> str:
    """The order's line in the Temporal UI's workflow list."""
    return f"{order.summary()} · {order.broker} · {order.client_id}/{order.client_order_id}"


@dataclass(frozen=True)
class OrderStart:
    """One order's start, ready to run (once): ``decide`` starts the workflow unless it runs already."""

    order: OrderRequest
    operation: WithStartWorkflowOperation[Any, OrderResult]

    @property
    def workflow_id(self) -> str:
        """The order's workflow id."""
        return workflow_id_for(self.order.order_id)

    async def decide(self, client: Client) -> RiskDecision:
        """Update-with-start: start the order (or find its running workflow) and wait for its risk decision.

        A workflow that already ran under the id and closed raises ``WorkflowAlreadyStartedError``; an answer
        that does not come in time raises what the client raises. Call ``settle`` after a failure.
        """
        decision: RiskDecision = await client.execute_update_with_start_workflow(
            OrderWorkflow.decision, self.order.request_hash, start_workflow_operation=self.operation
        )
        return decision

    async def settle(self) -> None:
        """After a failed ``decide``: consume the start's outcome, so that it is not logged as never retrieved."""
        with contextlib.suppress(Exception, asyncio.CancelledError):
            async with asyncio.timeout(0.1):
                await self.operation.workflow_handle()


def order_start(
    order: OrderRequest, settings: Settings, *, config: OrderConfig | None = None, task_queue: str | None = None
) -> OrderStart:
    """Prepare ``order``'s start on ``task_queue`` (by default the settings' order queue).

    The workflow id comes from the order id; a second start under it finds the running workflow
    (``USE_EXISTING``) and never starts another once one ran (``REJECT_DUPLICATE``): idempotency.
    """
    operation: WithStartWorkflowOperation[Any, OrderResult] = WithStartWorkflowOperation(
        OrderWorkflow.run,
        order_input(order, settings, config=config),
        id=workflow_id_for(order.order_id),
        task_queue=task_queue or settings.temporal.task_queue,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
        search_attributes=search_attributes(order),
        static_summary=summary(order),
    )
    return OrderStart(order, operation)


# ------------------------------------------------------------------------------------------------ order lists


def list_input(request: OrderListRequest, settings: Settings, *, task_queue: str | None = None) -> OrderListInput:
    """The coordinator's input: the list and each leg's order workflow input (``order_input``, linked to the list)."""
    link = list_workflow_id(request.list_id)
    request, native = native_request(request)
    legs = {
        leg.name: order_input(leg.order, settings).model_copy(
            update={"parent": ListLink(workflow_id=link, leg=leg.name)}
        )
        for leg in request.legs
    }
    return OrderListInput(
        request=request, legs=legs, task_queue=task_queue or settings.temporal.task_queue, native=native
    )


def native_request(request: OrderListRequest) -> tuple[OrderListRequest, bool]:
    """The list with its legs marked for the broker's own order class when the broker carries it (else as it is).

    ``core.nativelist.plan`` decides from the broker's ``native_lists`` and the list's shape; the second value says
    whether the list is native (the coordinator then sends the head with its legs attached and follows the rest).
    """
    if not request.legs or ListBook.quote_legs(request, native_trailing=True):
        return request, False  # a leg held on quotes waits in the coordinator: the broker cannot hold it for us
    broker = BROKERS.get(request.legs[0].order.broker)
    if broker is None:
        return request, False
    marks = plan(
        request.contingency,
        request.trigger,
        [(leg.name, leg.role, leg.order) for leg in request.legs],
        broker.capabilities.native_lists,
    )
    if marks is None:
        return request, False
    legs = [
        leg.model_copy(update={"order": leg.order.model_copy(update={"native": marks[leg.name]})})
        for leg in request.legs
    ]
    return request.model_copy(update={"legs": legs}), True


def list_search_attributes(request: OrderListRequest) -> TypedSearchAttributes:
    """What an operator filters lists by in the Temporal UI (the legs carry ``ExodusListId`` too)."""
    first = request.legs[0].order
    return TypedSearchAttributes(
        [
            SearchAttributePair(SA_LIST_ID, request.list_id),
            SearchAttributePair(SA_SYMBOL, first.symbol),
            SearchAttributePair(SA_CLIENT_ID, request.client_id),
            SearchAttributePair(SA_BROKER, first.broker),
            SearchAttributePair(SA_ACCOUNT, first.account),
        ]
    )


@dataclass(frozen=True)
class ListStart:
    """One list's start, ready to run (once): ``decide`` starts the coordinator unless it runs already."""

    request: OrderListRequest
    operation: WithStartWorkflowOperation[Any, ListResult]

    @property
    def workflow_id(self) -> str:
        """The coordinator's workflow id."""
        return list_workflow_id(self.request.list_id)

    async def decide(self, client: Client) -> ListDecision:
        """Update-with-start: start the coordinator (or find it running) and wait for the list's risk decision."""
        decision: ListDecision = await client.execute_update_with_start_workflow(
            OrderListWorkflow.decision, self.request.request_hash, start_workflow_operation=self.operation
        )
        return decision

    async def settle(self) -> None:
        """After a failed ``decide``: consume the start's outcome."""
        with contextlib.suppress(Exception, asyncio.CancelledError):
            async with asyncio.timeout(0.1):
                await self.operation.workflow_handle()


def list_start(request: OrderListRequest, settings: Settings, *, task_queue: str | None = None) -> ListStart:
    """Prepare a list's start: the coordinator's id comes from the list id (idempotent like an order's)."""
    operation: WithStartWorkflowOperation[Any, ListResult] = WithStartWorkflowOperation(
        OrderListWorkflow.run,
        list_input(request, settings, task_queue=task_queue),
        id=list_workflow_id(request.list_id),
        task_queue=task_queue or settings.temporal.task_queue,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
        search_attributes=list_search_attributes(request),
        static_summary=request.summary(),
    )
    return ListStart(request, operation)
