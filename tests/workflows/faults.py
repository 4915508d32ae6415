"""Fault injection for the order workflow tests: an order worker of one's own, with activities replaced or
wrapped, a broker in front of the paper venue that refuses what it is told to, and a Postgres pool that
fails while told to.

Each faulty worker polls its own task queues, so the session's stack (and every other test) is untouched;
the paper venue, Postgres and the Temporal server are the stack's.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

import psycopg
from psycopg_pool import AsyncConnectionPool
from temporalio.client import WorkflowHandle
from temporalio.worker import Interceptor, Worker

from activities.broker import BrokerActivities
from activities.persistence import OrderStoreActivities
from activities.risk import RiskActivities
from brokers import BROKERS, capabilities
from brokers.base import Broker
from core.domain import BrokerAck, CancelOrder, OrderRequest, RiskDecision
from store.policy import PolicyStore
from tests.harness import Stack
from workflows.order import OrderWorkflow

__all__ = ["CancelRefusingBroker", "FlakyPool", "OrderWorker", "order_worker"]


class FlakyPool:
    """A pool whose connections fail (``OperationalError``) while ``failing`` is set."""

    def __init__(self, pool: AsyncConnectionPool) -> None:
        self._pool = pool
        self.failing = False
        self.refused = 0

    @contextlib.asynccontextmanager
    async def connection(self) -> AsyncIterator[Any]:
        if self.failing:
            self.refused += 1
            raise psycopg.OperationalError("injected: Postgres is unreachable")
        async with self._pool.connection() as conn:
            yield conn


class CancelRefusingBroker:
    """The paper broker, except that the next ``refuse`` cancels are answered with a refusal."""

    def __init__(self, inner: Broker) -> None:
        self._inner = inner
        self.refuse = 0
        self.cancels: list[CancelOrder] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    async def cancel_order(self, request: CancelOrder) -> BrokerAck:
        self.cancels.append(request)
        if self.refuse > 0:
            self.refuse -= 1
            return BrokerAck(accepted=False, cl_ord_id=request.cl_ord_id, reason="VENUE_BUSY: try again")
        return await self._inner.cancel_order(request)


class OrderWorker:
    """An order worker (workflows + local activities) on its own task queue, and optionally a broker worker."""

    def __init__(self, stack: Stack, risk: RiskActivities, store: OrderStoreActivities) -> None:
        self.stack = stack
        self.risk = risk
        self.store = store
        self.task_queue = f"faults-{uuid.uuid4().hex[:8]}"
        self.broker_task_queue: str | None = None

    async def submit(self, order: OrderRequest, **config: Any) -> tuple[RiskDecision, WorkflowHandle[Any, Any]]:
        """Start an order on this worker's task queue, the way the API does."""
        if self.broker_task_queue is not None:
            config.setdefault("broker_task_queue", self.broker_task_queue)
        return await self.stack.submit(order, task_queue=self.task_queue, **config)


@contextlib.asynccontextmanager
async def order_worker(
    stack: Stack,
    *,
    pool: Any = None,
    activities: Callable[[OrderWorker], Sequence[Callable[..., Any]]] | None = None,
    interceptors: Sequence[Interceptor] = (),
    broker: Broker | None = None,
) -> AsyncIterator[OrderWorker]:
    """Run an order worker built like ``worker.build`` (``pool`` for the bookings), with ``activities(parts)``
    replacing the local activities of the same names, and ``broker`` (if given) serving broker calls."""
    settings = stack.settings
    policy = PolicyStore(settings.risk)
    risk = RiskActivities(
        pool=stack.pool,
        settings=settings,
        instruments=stack.instruments,
        capabilities=capabilities(),
        session_checks={name: spec.session_check for name, spec in BROKERS.items() if spec.session_check},
        policy=policy,
    )
    store = OrderStoreActivities(pool=pool or stack.pool, instruments=stack.instruments, policy=policy)
    parts = OrderWorker(stack, risk, store)
    chosen: dict[str, Callable[..., Any]] = {
        "check_order": risk.check_order,
        "check_amend": risk.check_amend,
        "persist_order": store.persist_order,
    }
    for fn in activities(parts) if activities else ():
        chosen[getattr(fn, "__temporal_activity_definition").name] = fn
    workers = [
        Worker(
            stack.client,
            task_queue=parts.task_queue,
            workflows=[OrderWorkflow],
            activities=list(chosen.values()),
            interceptors=interceptors,
        )
    ]
    if broker is not None:
        parts.broker_task_queue = f"{parts.task_queue}-broker"
        acts = BrokerActivities({"paper": broker})
        workers.append(
            Worker(
                stack.client,
                task_queue=parts.broker_task_queue,
                activities=[acts.submit_order, acts.cancel_order, acts.replace_order, acts.get_order_status],
            )
        )
    async with contextlib.AsyncExitStack() as exits:
        for w in workers:
            await exits.enter_async_context(w)
        yield parts
