"""What the brokers' end-to-end tests share (``tests/brokers/<broker>/test_<broker>_workflow.py``): orders through
the REST API, order workflows on a real Temporal server, one broker's adapter against its local venue.

Each test module's stack is a :class:`BrokerStack` (the broker's name, venue and adapter classes, the terms of a
default order), started in its module-scoped fixture with :func:`running_stack`, or, for a REST broker (Alpaca,
OANDA, Kraken), with :func:`running_rest_stack`, which also builds its adapter as the worker does.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, ClassVar, Generic, Protocol, TypeVar

import httpx
from psycopg_pool import AsyncConnectionPool
from temporalio.testing import WorkflowEnvironment

from brokers.base import Broker
from brokers.sessions import SessionRecorder
from core.instruments import InstrumentCatalog
from core.settings import Settings
from store.quotes import QuoteWriter
from tests.conftest import make_settings, temporal_address
from tests.harness import Stack, unique

__all__ = ["BrokerStack", "running_rest_stack", "running_stack"]

V = TypeVar("V")
B = TypeVar("B", bound=Broker)
S = TypeVar("S", bound="BrokerStack[Any, Any]")


@dataclass
class BrokerStack(Generic[V, B]):
    """A stack (API, worker, Temporal, Postgres) with one broker, ``name``, over the local venue ``server`` serves."""

    #: The broker's name in the stack (what an order's ``broker`` says).
    name: ClassVar[str]
    #: The adapter's class.
    broker_class: ClassVar[type[Broker]]
    #: ``clientOrderId`` prefix and the terms of :meth:`post`'s order where the test says nothing else.
    id_prefix: ClassVar[str]
    order: ClassVar[dict[str, Any]]
    #: The columns of :meth:`fills`.
    fill_columns: ClassVar[str] = "exec_id, qty, price"
    #: A REST broker's records (:func:`running_rest_stack`).
    store_class: ClassVar[type[Any]]

    stack: Stack
    server: Any

    @property
    def venue(self) -> V:
        return self.server.venue  # type: ignore[no-any-return]

    @property
    def broker(self) -> B:
        broker = self.stack.brokers[self.name]
        assert isinstance(broker, self.broker_class)
        return broker  # type: ignore[return-value]

    async def fills(self, order_id: str) -> list[dict[str, Any]]:
        return await self.stack.fetch(
            f"SELECT {self.fill_columns} FROM fills WHERE order_id = %s ORDER BY filled_at, exec_id", order_id
        )

    async def post(self, http: httpx.AsyncClient, **terms: Any) -> str:
        """POST a BUY order of a new desk to the broker (``order`` and ``terms``); its id (accepted, asserted)."""
        body = {"clientId": unique("desk"), "clientOrderId": unique(self.id_prefix), **self.order, **terms}
        body["broker"] = self.name
        r = await http.post("/api/v1/orders", json=body)
        assert r.status_code == 201, r.text
        assert r.json()["status"] == "accepted", r.text
        return str(r.json()["internalOrderId"])

    async def wait(self, http: httpx.AsyncClient, order_id: str, status: str, timeout: float = 30) -> dict[str, Any]:
        async with asyncio.timeout(timeout):
            while True:
                r = await http.get(f"/api/v1/orders/{order_id}")
                if r.status_code == 200 and r.json()["status"] == status:
                    return dict(r.json())
                await asyncio.sleep(0.1)

    async def cancel(self, http: httpx.AsyncClient, order_id: str) -> dict[str, Any]:
        """A desk's cancel (202 asserted), waited for until the order is CANCELED; the order then."""
        r = await http.post(f"/api/v1/orders/{order_id}/cancel", json={"reason": "desk request"})
        assert r.status_code == 202, r.text
        return await self.wait(http, order_id, "CANCELED")

    async def amend(self, http: httpx.AsyncClient, order_id: str, qty: Any, price: str) -> None:
        """A desk's amend of the quantity and price (200, amended to ``qty``, asserted)."""
        r = await http.patch(f"/api/v1/orders/{order_id}", json={"qty": qty, "price": price})
        assert r.status_code == 200, r.text
        assert r.json()["status"] == "amended" and Decimal(r.json()["qty"]) == Decimal(qty), r.text

    async def unavailable(self, http: httpx.AsyncClient, qty: Any) -> bool:
        """Whether a new order of ``qty`` is refused BROKER_UNAVAILABLE (the session's state reached the risk
        check: new orders wait for it)."""
        body = {"clientId": unique("desk"), "clientOrderId": unique(self.id_prefix), "symbol": self.order["symbol"]}
        r = await http.post("/api/v1/orders", json={**body, "side": "BUY", "qty": qty, "broker": self.name})
        return r.status_code == 422 and [x["code"] for x in r.json()["reasons"]] == ["BROKER_UNAVAILABLE"]


class _Server(Protocol):
    async def stop(self) -> None: ...


class _Checker(Protocol):
    problems: list[str]


class _HttpChecker(_Checker, Protocol):
    def hooks(self) -> dict[str, list[Any]]: ...


@contextlib.asynccontextmanager
async def running_stack(
    temporal_env: WorkflowEnvironment,
    settings: Settings,
    pool: AsyncConnectionPool,
    instruments: InstrumentCatalog,
    name: str,
    broker: Any,
    *,
    server: _Server,
    quotes: QuoteWriter,
    ready: Callable[[], Awaitable[Any]],
    checker: _Checker | None = None,
) -> AsyncIterator[Stack]:
    """A stack whose one broker ``name`` is ``broker`` (against the started ``server``), once the adapter has caught
    up and is ``ready`` (its first quotes published, flushed: risk prices with them); then the adapter is closed, the
    server stopped, and every answer ``checker`` saw must have matched the broker's document."""
    try:
        async with Stack.running(
            temporal_env.client, settings, pool, instruments, {name: broker}, quotes=quotes
        ) as stack:
            await asyncio.wait_for(broker.caught_up.wait(), 15)
            await ready()
            await quotes.flush()
            yield stack
            await stack.brokers[name].close()
    finally:
        await server.stop()
        await quotes.aclose()
    if checker is not None:
        assert not checker.problems, checker.problems


@contextlib.asynccontextmanager
async def running_rest_stack(
    cls: type[S],
    temporal_env: WorkflowEnvironment,
    database_url: str,
    pool: AsyncConnectionPool,
    instruments: InstrumentCatalog,
    *,
    server: Any,
    settings: Callable[[str], Any],
    checker: _HttpChecker,
    ready: Callable[[Any], Awaitable[Any]],
) -> AsyncIterator[S]:
    """Start ``server`` (the broker's local venue) and a stack (:func:`running_stack`) whose one broker is an adapter
    of ``cls.broker_class`` with ``settings(server.base_url)``, its records a ``cls.store_class``, its sessions
    recorded, its quotes the stack's, every answer it gets checked by ``checker``; ``ready(adapter)`` says when its
    first quotes are out."""
    name = cls.name
    await server.start()
    app = make_settings(database_url, temporal_address(temporal_env), **{name: settings(server.base_url)})
    quotes = QuoteWriter.from_settings(pool, app.market_data)
    broker = cls.broker_class(
        getattr(app, name),
        store=cls.store_class(pool, broker=name),
        name=name,
        recorder=SessionRecorder(pool, broker=name, session=server.base_url),
        quotes=quotes,
        instruments=instruments,
        http_hooks=checker.hooks(),
    )
    async with running_stack(
        temporal_env,
        app,
        pool,
        instruments,
        name,
        broker,
        server=server,
        quotes=quotes,
        ready=lambda: ready(broker),
        checker=checker,
    ) as stack:
        yield cls(stack, server, checker)  # type: ignore[call-arg]
