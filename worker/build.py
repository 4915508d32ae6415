"""Build the worker: its brokers and its Temporal workers. ``python -m worker`` and the tests both use this."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass

from psycopg_pool import AsyncConnectionPool
from temporalio.client import Client
from temporalio.worker import Worker

from activities.broker import BrokerActivities
from activities.persistence import OrderStoreActivities
from activities.risk import MarketData, RiskActivities
from brokers import BROKERS, Broker, BrokerContext, capabilities
from core.errors import ConfigError
from core.instruments import InstrumentCatalog
from core.policy import PolicyStore
from core.risk import RiskCheck, basic_check
from core.settings import Settings
from sim.feed import PriceFeed
from workflows.order import OrderWorkflow

__all__ = ["WorkerParts", "build_brokers", "build_workers", "market_data_for", "running_workers"]


async def build_brokers(
    settings: Settings, *, instruments: InstrumentCatalog, pool: AsyncConnectionPool | None
) -> dict[str, Broker]:
    """Create (but do not start) the brokers this worker owns (``settings.worker.brokers``)."""
    ctx = BrokerContext(settings=settings, instruments=instruments, pool=pool)
    brokers: dict[str, Broker] = {}
    for name in settings.worker.brokers:
        spec = BROKERS.get(name)
        if spec is None:
            raise ConfigError(f"unknown broker {name!r} in worker.brokers; known: {', '.join(sorted(BROKERS))}")
        brokers[name] = await spec.factory(ctx)
    return brokers


def market_data_for(brokers: Mapping[str, Broker], settings: Settings, instruments: InstrumentCatalog) -> MarketData:
    """The reference price source: the paper venue's live feed when this worker runs it, else a static feed."""
    paper = brokers.get("paper")
    venue = getattr(paper, "venue", None)
    if venue is not None:
        return venue  # type: ignore[no-any-return]
    return PriceFeed(instruments, seed=settings.paper.seed)


@dataclass
class WorkerParts:
    """Everything a running worker consists of."""

    workers: list[Worker]
    brokers: Mapping[str, Broker]


def build_workers(
    client: Client,
    settings: Settings,
    *,
    pool: AsyncConnectionPool,
    brokers: Mapping[str, Broker],
    instruments: InstrumentCatalog,
    market: MarketData | None,
    check: RiskCheck = basic_check,
) -> list[Worker]:
    """One Temporal worker for the order workflows (with their local activities), one per owned broker."""
    market = market or market_data_for(brokers, settings, instruments)
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
    wcfg = settings.worker
    workers = [
        Worker(
            client,
            task_queue=settings.temporal.task_queue,
            workflows=[OrderWorkflow],
            activities=[risk.check_order, risk.check_amend, store.persist_order],
            max_concurrent_workflow_tasks=wcfg.max_concurrent_workflow_tasks,
            max_concurrent_local_activities=wcfg.max_concurrent_activities,
        )
    ]
    broker_activities = BrokerActivities(brokers)
    for name in brokers:
        workers.append(
            Worker(
                client,
                task_queue=settings.temporal.broker_task_queue(name),
                activities=[
                    broker_activities.submit_order,
                    broker_activities.cancel_order,
                    broker_activities.replace_order,
                    broker_activities.get_order_status,
                ],
                max_concurrent_activities=wcfg.max_concurrent_activities,
            )
        )
    return workers


@contextlib.asynccontextmanager
async def running_workers(workers: list[Worker]) -> AsyncIterator[list[Worker]]:
    """Run ``workers`` for the duration of the block; shut them down gracefully after."""
    async with contextlib.AsyncExitStack() as stack:
        for w in workers:
            await stack.enter_async_context(w)
        yield workers
