"""Test kit: a running Exodus stack on a real Temporal server and a real Postgres, and order builders.

Tests get a ``Stack`` from the session fixtures in ``conftest.py``. The stack's paper venue does not tick by
itself (``tick_interval_ms=0``) and its instruments do not move (zero volatility), so a test decides when
and where the market moves (``await stack.venue.set_mid(...)`` / ``await stack.venue.step()``).

Accounts exist only if registered (the API refuses an order for any other with UNKNOWN_ACCOUNT).
``register_accounts`` registers accounts as an admin would; ``stack.api()`` does it for the account of each
order a test posts (``register_accounts=False`` turns that off, to test the refusal).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, Final

import httpx
from psycopg_pool import AsyncConnectionPool
from temporalio.client import Client, WorkflowHandle
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from api.main import create_app
from brokers.base import Broker
from brokers.paper import PaperBroker
from core.domain import (
    ExecutionReport,
    OrderRequest,
    OrderSide,
    OrderState,
    OrderStatus,
    ReportKind,
    RiskDecision,
    derive_order_id,
)
from core.instruments import DEFAULT_INSTRUMENTS, InstrumentCatalog
from core.marketdata import MarketData
from core.settings import OrderSettings, Settings
from sim.journal import PostgresVenueJournal
from sim.matching import Auctions
from sim.venue import SimVenue
from store.auth import register_account
from store.quotes import QuoteWriter
from tests.waiting import until
from worker.build import build_workers, running_workers
from worker.dispatcher import ReportDispatcher
from worker.sweep import BrokerSweep
from workflows.order import OrderWorkflow
from workflows.order_client import order_config, order_start
from workflows.order_models import OrderConfig

__all__ = [
    "Stack",
    "execution_report",
    "later",
    "make_order",
    "paper_broker",
    "reached",
    "register_accounts",
    "static_instruments",
    "unique",
    "until",
]


def execution_report(
    cid: str, exec_id: str, kind: ReportKind = ReportKind.FILL, qty: str = "10", **kw: object
) -> ExecutionReport:
    """A report of broker ``test`` on a BUY of AAPL (``kw`` overrides any field): a fill of ``qty`` at 100 (its whole
    quantity so far), or a report of ``kind`` with nothing filled."""
    fill = kind is ReportKind.FILL
    fields: dict[str, object] = dict(
        broker="test",
        exec_id=exec_id,
        kind=kind,
        cl_ord_id=cid,
        symbol="AAPL",
        side=OrderSide.BUY,
        last_qty=Decimal(qty) if fill else Decimal(0),
        last_price=Decimal("100") if fill else None,
        cum_qty=Decimal(qty) if fill else Decimal(0),
        leaves_qty=Decimal(0),
        transact_at=datetime(2026, 1, 1, tzinfo=UTC),
    )
    fields.update(kw)
    return ExecutionReport(**fields)  # type: ignore[arg-type]


async def reached(http: httpx.AsyncClient, stack: Stack, order_id: str, status: str) -> None:
    """Step the venue until the order has ``status`` (as long as Temporal takes, up to 30 s)."""

    async def there() -> bool:
        if (await http.get(f"/api/v1/orders/{order_id}")).json()["status"] == status:
            return True
        await stack.venue.step()
        return False

    await until(f"order {order_id} {status}", there, interval=0.01)


def unique(prefix: str = "t") -> str:
    """A short unique id for clients, accounts and client order ids."""
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def static_instruments() -> InstrumentCatalog:
    """The default instruments with their prices frozen (zero volatility)."""
    return InstrumentCatalog([i.model_copy(update={"volatility": Decimal(0)}) for i in DEFAULT_INSTRUMENTS])


def make_order(
    *,
    symbol: str = "AAPL",
    side: str = "BUY",
    qty: str | Decimal = "10",
    type: str = "MARKET",
    price: str | Decimal | None = None,
    stop_price: str | Decimal | None = None,
    time_in_force: str = "GTC",
    expire_at: datetime | None = None,
    client_id: str | None = None,
    account: str | None = None,
    broker: str = "paper",
    **extra: Any,
) -> OrderRequest:
    """Build a valid ``OrderRequest`` with a fresh idempotency key."""
    client_id = client_id or unique("client")
    client_order_id = unique("co")
    key = f"{client_id}/order/{client_order_id}"
    return OrderRequest(
        order_id=derive_order_id(key),
        idempotency_key=key,
        request_hash=uuid.uuid4().hex,
        client_id=client_id,
        client_order_id=client_order_id,
        account=account or client_id,
        symbol=symbol,
        side=side,  # type: ignore[arg-type]
        type=type,  # type: ignore[arg-type]
        time_in_force=time_in_force,  # type: ignore[arg-type]
        qty=Decimal(qty),
        price=None if price is None else Decimal(price),
        stop_price=None if stop_price is None else Decimal(stop_price),
        expire_at=expire_at,
        broker=broker,
        received_at=datetime.now(UTC),
        submission_id=uuid.uuid4().hex,
        **extra,
    )


async def register_accounts(pool: AsyncConnectionPool, *accounts: str, broker: str | None = None) -> None:
    """Register accounts (for ``broker``, or any broker); accounts already registered are left as they are."""
    async with pool.connection() as conn, conn.transaction():
        for account in accounts:
            await register_account(conn, account=account, actor="tests", broker=broker, replace=False)


#: The paper venue's auctions as the worker builds them with the default settings (both at the day close).
PAPER_AUCTIONS: Final = Auctions(open=OrderSettings().day_close_utc, close=OrderSettings().day_close_utc)


def paper_broker(
    instruments: InstrumentCatalog, pool: AsyncConnectionPool, url: str, *, journal_key: str
) -> PaperBroker:
    """A paper broker whose venue is driven by the test (no background ticks), journaled under ``journal_key``."""
    venue = SimVenue(
        instruments,
        name="paper",
        tick_interval=0,
        journal=PostgresVenueJournal(pool, url, venue=journal_key),
        auctions=PAPER_AUCTIONS,
    )
    return PaperBroker(venue)


@dataclass
class Stack:
    """A worker (order workflows + brokers) running against a Temporal server and Postgres."""

    client: Client
    settings: Settings
    pool: AsyncConnectionPool
    instruments: InstrumentCatalog
    brokers: dict[str, Broker]
    workers: list[Worker] = field(default_factory=list)
    #: Set for a stack on the time-skipping server: ``result()`` lets time skip while it waits.
    env: WorkflowEnvironment | None = None
    #: Where the stack's brokers publish their quotes (the worker's quote writer), and what risk reads.
    quotes: QuoteWriter | None = None
    market: MarketData | None = None

    @property
    def venue(self) -> SimVenue:
        """The paper venue."""
        broker = self.brokers["paper"]
        assert isinstance(broker, PaperBroker)
        return broker.venue

    @classmethod
    @contextlib.asynccontextmanager
    async def running(
        cls,
        client: Client,
        settings: Settings,
        pool: AsyncConnectionPool,
        instruments: InstrumentCatalog,
        brokers: dict[str, Broker],
        *,
        env: WorkflowEnvironment | None = None,
        quotes: QuoteWriter | None = None,
    ) -> AsyncIterator[Stack]:
        """Start the brokers and the workers; stop them afterwards.

        Paper brokers publish their feed to ``quotes`` (default: a quote writer of this stack, as the worker
        wires it), so risk prices paper orders from the quote store like everywhere else.
        """
        dispatcher = ReportDispatcher(client, pool)
        writer = quotes or QuoteWriter.from_settings(pool, settings.market_data)
        for broker in brokers.values():
            if isinstance(broker, PaperBroker) and broker.quotes is None:
                broker.publish_quotes(writer)
        market = MarketData(settings.market_data, instruments)
        started: list[Broker] = []
        try:
            for broker in brokers.values():
                await broker.start(dispatcher)
                started.append(broker)
            workers = build_workers(
                client, settings, pool=pool, brokers=brokers, instruments=instruments, market=market
            )
            async with running_workers(workers):
                yield cls(client, settings, pool, instruments, brokers, workers, env, writer, market)
        finally:
            for broker in reversed(started):
                await broker.close()
            if quotes is None:
                await writer.aclose()

    # -- orders straight into Temporal (the workflow tests) ---------------------------------------------

    def config(self, broker: str = "paper", **overrides: Any) -> OrderConfig:
        """The order config an order for ``broker`` starts with (``workflows.order_client``), with overrides."""
        return order_config(self.settings, broker, **overrides)

    async def submit(
        self, order: OrderRequest, *, task_queue: str | None = None, **config: Any
    ) -> tuple[RiskDecision, WorkflowHandle[Any, Any]]:
        """Start an order as the API does (``workflows.order_client``); return the risk decision and the handle."""
        start = order_start(order, self.settings, config=self.config(order.broker, **config), task_queue=task_queue)
        decision = await start.decide(self.client)
        return decision, self.client.get_workflow_handle_for(OrderWorkflow.run, start.workflow_id)

    async def result(self, handle: WorkflowHandle[Any, Any]) -> Any:
        """Wait for the workflow's result (letting time skip on the time-skipping server)."""
        if self.env is not None and self.env.supports_time_skipping:
            async with self.env.time_skipping_unlocked():
                return await handle.result()
        return await handle.result()

    async def state(self, handle: WorkflowHandle[Any, Any]) -> OrderState:
        """Query the order's state."""
        return await handle.query(OrderWorkflow.state)  # type: ignore[no-any-return]

    async def wait_for(
        self,
        handle: WorkflowHandle[Any, Any],
        predicate: Callable[[OrderState], bool] | OrderStatus,
        *,
        timeout: float = 20.0,
    ) -> OrderState:
        """Poll the order's state until ``predicate`` holds (or it reaches the given status)."""
        check = (lambda s: s.status is predicate) if isinstance(predicate, OrderStatus) else predicate
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            state = await self.state(handle)
            if check(state):
                return state
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"timed out; order is {state.status}: {[e.kind for e in state.events]}")
            await asyncio.sleep(0.05)

    @contextlib.asynccontextmanager
    async def sweeping(self, broker: str = "paper", *, interval: float = 1.0) -> AsyncIterator[BrokerSweep]:
        """Sweep ``broker`` every ``interval`` seconds meanwhile, as the worker owning its session does."""
        sweeper = BrokerSweep(self.client, self.pool, self.brokers[broker], interval=interval, grace_seconds=0.2)
        stop = asyncio.Event()
        task = asyncio.create_task(sweeper.run(stop))
        try:
            yield sweeper
        finally:
            stop.set()
            await task

    # -- the REST API in process -------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def api(
        self, settings: Settings | None = None, *, register_accounts: bool = True
    ) -> AsyncIterator[httpx.AsyncClient]:
        """An HTTP client talking to the API app in process (sharing this stack's Temporal client and pool).

        With ``register_accounts`` the account of every order posted (``account``, else ``clientId``) is
        registered first, as an admin would have done.
        """
        app = create_app(settings or self.settings, temporal=self.client, pool=self.pool, instruments=self.instruments)
        transport = httpx.ASGITransport(app=app)
        hooks = {"request": [self._register_order_account]} if register_accounts else {}
        async with httpx.AsyncClient(transport=transport, base_url="http://exodus.test", event_hooks=hooks) as http:
            yield http

    async def _register_order_account(self, request: httpx.Request) -> None:
        if request.method != "POST" or request.url.path != "/api/v1/orders":
            return
        try:
            body = json.loads(request.content)
        except ValueError:
            return
        account = (body.get("account") or body.get("clientId")) if isinstance(body, dict) else None
        if isinstance(account, str) and account.strip():
            await register_accounts(self.pool, account.strip())

    async def fetch(self, sql: str, *params: Any) -> list[dict[str, Any]]:
        """Run a query against the test database."""
        async with self.pool.connection() as conn:
            cur = await conn.execute(sql, params)  # type: ignore[arg-type]
            return await cur.fetchall()  # type: ignore[return-value]


def later(seconds: float) -> datetime:
    """A UTC time ``seconds`` from now."""
    return datetime.now(UTC) + timedelta(seconds=seconds)
