"""Build the worker: its brokers and its Temporal workers. ``python -m worker`` and the tests both use this."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterable, Mapping
from dataclasses import dataclass

from temporalio.client import Client
from temporalio.worker import Worker

from activities.broker import BrokerActivities
from activities.lists import ListActivities
from activities.persistence import OrderStoreActivities
from activities.reconciliation import ReconciliationActivities
from activities.risk import RiskActivities
from brokers import BROKERS, Broker, BrokerContext, capabilities
from core.errors import ConfigError
from core.instruments import InstrumentCatalog
from core.marketdata import MarketData, QuoteSink
from core.risk import RiskCheck, basic_check
from core.settings import Settings
from core.temporal import missing_worker_interceptors
from store import Pool
from store.policy import PolicyStore
from worker.sandbox import cache_workflow_code, workflow_runner
from workflows.order import OrderWorkflow
from workflows.order_list import OrderListWorkflow
from workflows.reconciliation import ReconciliationWorkflow

__all__ = [
    "WorkerParts",
    "broker_worker",
    "build_brokers",
    "build_workers",
    "market_data_for",
    "running_workers",
]


async def build_brokers(
    settings: Settings,
    *,
    instruments: InstrumentCatalog,
    pool: Pool | None,
    quotes: QuoteSink | None = None,
    names: Iterable[str] | None = None,
) -> dict[str, Broker]:
    """Create (but do not start) the brokers this worker owns (``names``, default ``settings.worker.brokers``).

    ``quotes`` is where they publish the prices they see (the worker's ``QuoteWriter``: into the quote store).
    """
    ctx = BrokerContext(settings=settings, instruments=instruments, pool=pool, quotes=quotes)
    brokers: dict[str, Broker] = {}
    for name in settings.worker.brokers if names is None else names:
        spec = BROKERS.get(name)
        if spec is None:
            raise ConfigError(f"unknown broker {name!r} in worker.brokers; known: {', '.join(sorted(BROKERS))}")
        spec.require_libraries()
        brokers[name] = await spec.factory(ctx)
    return brokers


def market_data_for(settings: Settings, instruments: InstrumentCatalog) -> MarketData:
    """The market data service risk prices orders with: the quote store, the same in every worker.

    Whether or not this worker owns the paper venue (or any broker), it reads the same quotes.
    """
    return MarketData(settings.market_data, instruments)


@dataclass
class WorkerParts:
    """Everything a running worker consists of."""

    workers: list[Worker]
    brokers: Mapping[str, Broker]


def build_workers(
    client: Client,
    settings: Settings,
    *,
    pool: Pool,
    brokers: Mapping[str, Broker],
    instruments: InstrumentCatalog,
    market: MarketData | None = None,
    check: RiskCheck = basic_check,
) -> list[Worker]:
    """One Temporal worker for the order and reconciliation workflows (and their activities), one per owned broker."""
    market = market or market_data_for(settings, instruments)
    policy = PolicyStore(settings.risk)
    risk = RiskActivities(
        pool=pool,
        settings=settings,
        instruments=instruments,
        market=market,
        capabilities=capabilities(),
        session_checks={name: spec.session_check for name, spec in BROKERS.items() if spec.session_check},
        check=check,
        policy=policy,
    )
    store = OrderStoreActivities(pool=pool, instruments=instruments, policy=policy)
    reconciliation = ReconciliationActivities(pool=pool, grace_seconds=settings.reconciliation.grace_seconds)
    lists = ListActivities(client=client, pool=pool)
    cache_workflow_code([OrderWorkflow, OrderListWorkflow, ReconciliationWorkflow])
    wcfg = settings.worker
    extra = missing_worker_interceptors(client)  # the log context's ids and traces, if the client lacks them
    workers = [
        Worker(
            client,
            task_queue=settings.temporal.task_queue,
            workflows=[OrderWorkflow, OrderListWorkflow, ReconciliationWorkflow],
            workflow_runner=workflow_runner(),
            activities=[
                risk.check_order,
                risk.check_amend,
                risk.trail_quote,
                risk.leg_quote,
                store.persist_order,
                lists.resize_leg,
                lists.alert,
                lists.save,
                reconciliation.reconcile_statement,
            ],
            max_concurrent_workflow_tasks=wcfg.max_concurrent_workflow_tasks,
            max_concurrent_local_activities=wcfg.max_concurrent_activities,
            interceptors=extra,
        )
    ]
    broker_activities = BrokerActivities(brokers)
    workers.extend(broker_worker(client, settings, name, broker_activities) for name in brokers)
    return workers


def broker_worker(client: Client, settings: Settings, name: str, activities: BrokerActivities) -> Worker:
    """The Temporal worker of one owned broker session: its task queue, polled only by the session's owner."""
    return Worker(
        client,
        task_queue=settings.temporal.broker_task_queue(name),
        activities=[
            activities.submit_order,
            activities.cancel_order,
            activities.replace_order,
            activities.get_order_status,
            activities.broker_statement,
        ],
        max_concurrent_activities=settings.worker.max_concurrent_activities,
        interceptors=missing_worker_interceptors(client),  # the log context's ids and traces, if the client lacks them
    )


@contextlib.asynccontextmanager
async def running_workers(workers: list[Worker]) -> AsyncIterator[list[Worker]]:
    """Run ``workers`` for the duration of the block; shut them down gracefully after."""
    async with contextlib.AsyncExitStack() as stack:
        for w in workers:
            await stack.enter_async_context(w)
        yield workers
