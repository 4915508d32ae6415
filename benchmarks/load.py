"""Load generators: closed loops of orders through Exodus (REST or straight to Temporal) and the ceiling.

A *system* submits one order and returns once the synchronous answer (the risk decision) is back, with a
handle to wait for the order's end. ``closed_loop`` runs ``concurrency`` callers, each submitting an order,
waiting for it to finish (workflow closed, so booked), and submitting the next, for a warm-up and then a
measured window; it records per order the decision latency and the submit-to-done latency.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Protocol

import httpx
from temporalio.client import Client, WithStartWorkflowOperation, WorkflowHandle
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy

from benchmarks.ceiling import broker_task_queue
from benchmarks.ceiling_workflow import CeilingInput, CeilingWorkflow
from core.domain import OrderRequest, OrderSide, OrderType, TimeInForce, derive_order_id
from core.settings import Settings, TemporalSettings
from workflows.order_client import order_start, search_attributes, summary

__all__ = [
    "CeilingOrders",
    "Connections",
    "DirectOrders",
    "LoopResult",
    "RestOrders",
    "System",
    "closed_loop",
    "order_body",
]

SYMBOLS = ("AAPL", "MSFT", "NVDA", "SPY")
DESKS = 8


def order_body(run_id: str, n: int) -> dict[str, Any]:
    """The n-th benchmark order: a small market order (fills at once on the paper venue), 8 desks, 4 symbols.

    Quantities vary (1 to 97), so the same desk never sends the same order twice within the risk check's
    duplicate window; sides alternate, so positions stay small.
    """
    return {
        "clientId": f"bench-{run_id}-d{n % DESKS}",
        "clientOrderId": f"o{n}",
        "symbol": SYMBOLS[n % len(SYMBOLS)],
        # Each desk's orders alternate (a desk's n step by DESKS; its symbol stays n % 4).
        "side": "BUY" if (n // DESKS) % 2 == 0 else "SELL",
        "qty": 1 + n % 97,
    }


class System(Protocol):
    """Something that takes orders."""

    name: str

    async def submit(self, n: int) -> tuple[float, WorkflowHandle[Any, Any]]:
        """Submit order ``n``; return the seconds until the decision and the order's workflow handle."""
        ...


class SubmitError(Exception):
    """An order was refused or failed."""


class Pending(Exception):
    """The order was taken but its decision did not come in time (HTTP 202); it still runs."""

    def __init__(self, elapsed: float, handle: WorkflowHandle[Any, Any]) -> None:
        super().__init__(f"no decision after {elapsed:.1f}s")
        self.elapsed = elapsed
        self.handle = handle


class Connections:
    """HTTP/1.1 connections to the API, one per caller at a time, each kept alive across that caller's orders.

    One ``httpx.AsyncClient`` per concurrent caller (a *lane*, its pool a single connection), taken for a call and
    given back after it. One shared client with a pool of N connections does not scale: httpcore scans every
    connection of its pool (each one's state and socket) for every request and every answer, so at 200 callers the
    load generator spent more CPU per order than the API it measured. Connections stay open between a caller's
    orders (``keepalive_expiry``; the benchmark's API keeps them as long, ``EXODUS_API__KEEP_ALIVE_SECONDS``): an
    order at concurrency 200 waits seconds for its end, longer than httpx's and uvicorn's default 5 s.
    """

    def __init__(self, *, timeout: float = 60, keepalive_expiry: float = 300) -> None:
        """Lanes with ``timeout`` per request, idle connections kept ``keepalive_expiry`` seconds."""
        self._timeout = timeout
        self._limits = httpx.Limits(max_connections=1, max_keepalive_connections=1, keepalive_expiry=keepalive_expiry)
        # One TLS context for every lane (each client would load the CA bundle again: time and megabytes per lane).
        self._tls = httpx.create_ssl_context()
        self._free: list[httpx.AsyncClient] = []
        self._all: list[httpx.AsyncClient] = []

    @property
    def lanes(self) -> int:
        """How many lanes (clients, at most one connection each) exist: the peak number of concurrent calls."""
        return len(self._all)

    @contextlib.asynccontextmanager
    async def lane(self) -> AsyncIterator[httpx.AsyncClient]:
        """A client no other caller uses until this one is done (the most recently used first: warm)."""
        if self._free:
            http = self._free.pop()
        else:
            http = httpx.AsyncClient(limits=self._limits, timeout=self._timeout, verify=self._tls)
            self._all.append(http)
        try:
            yield http
        finally:
            self._free.append(http)

    async def aclose(self) -> None:
        """Close every lane."""
        for http in self._all:
            await http.aclose()
        self._all.clear()
        self._free.clear()

    async def __aenter__(self) -> Connections:
        """Use as ``async with Connections() as connections``."""
        return self

    async def __aexit__(self, *exc: object) -> None:
        """Close every lane."""
        await self.aclose()


class RestOrders:
    """Orders through the REST API (what a desk does)."""

    name = "exodus"

    def __init__(self, http: Connections, api_url: str, client: Client, run_id: str) -> None:
        """POST to ``api_url`` on ``http``'s connections; follow the workflows through ``client``."""
        self._http = http
        self._url = f"{api_url}/api/v1/orders"
        self._client = client
        self._run_id = run_id

    async def register_accounts(self) -> None:
        """Register the run's desk accounts (accounts exist only if registered) through the admin API.

        The API must let the caller in as an admin: a development stack (no identity source) does.
        """
        base = self._url.removesuffix("/orders")
        for desk in range(DESKS):
            account = order_body(self._run_id, desk)["clientId"]
            async with self._http.lane() as http:
                r = await http.put(f"{base}/admin/accounts/{account}", json={"description": "benchmark desk"})
            if r.status_code != 200:
                raise SubmitError(f"cannot register benchmark account {account}: HTTP {r.status_code}: {r.text[:300]}")

    async def submit(self, n: int) -> tuple[float, WorkflowHandle[Any, Any]]:
        """POST one order."""
        started = time.perf_counter()
        body = order_body(self._run_id, n)
        async with self._http.lane() as http:
            for attempt in range(3):
                try:
                    r = await http.post(self._url, json=body)
                    break
                except (httpx.ReadError, httpx.RemoteProtocolError):
                    # A keep-alive connection the server closed while idle; the same body under the same
                    # idempotency key is safe to send again (a repeat is answered 200 with the original order).
                    if attempt == 2:
                        raise
        elapsed = time.perf_counter() - started
        if r.status_code == 202:
            raise Pending(elapsed, self._client.get_workflow_handle(r.json()["workflowId"]))
        if r.status_code not in (200, 201):
            raise SubmitError(f"HTTP {r.status_code}: {r.text[:300]}")
        return elapsed, self._client.get_workflow_handle(r.json()["workflowId"])


def _order_request(run_id: str, n: int, prefix: str) -> OrderRequest:
    body = order_body(run_id, n)
    key = f"{body['clientId']}/order/{prefix}{body['clientOrderId']}"
    return OrderRequest(
        order_id=derive_order_id(key),
        idempotency_key=key,
        request_hash=uuid.uuid4().hex * 2,
        client_id=body["clientId"],
        client_order_id=f"{prefix}{body['clientOrderId']}",
        account=body["clientId"],
        symbol=body["symbol"],
        side=OrderSide(body["side"]),
        type=OrderType.MARKET,
        time_in_force=TimeInForce.DAY,
        qty=Decimal(body["qty"]),
        broker="paper",
        received_at=datetime.now(UTC),
        submitted_by="anonymous",
        submission_id=uuid.uuid4().hex,
    )


class DirectOrders:
    """Exodus orders started straight on Temporal, as the API does it, without HTTP and the API process."""

    name = "exodus-direct"

    def __init__(self, client: Client, settings: Settings, run_id: str) -> None:
        """Start order workflows through ``client`` on ``settings.temporal.task_queue``."""
        self._client = client
        self._settings = settings
        self._run_id = run_id

    async def submit(self, n: int) -> tuple[float, WorkflowHandle[Any, Any]]:
        """Update-with-start one order workflow."""
        started = time.perf_counter()
        start = order_start(_order_request(self._run_id, n, "direct-"), self._settings)
        decision = await start.decide(self._client)
        elapsed = time.perf_counter() - started
        if not decision.approved:
            raise SubmitError(f"denied: {decision.reasons}")
        return elapsed, self._client.get_workflow_handle(start.workflow_id)


class CeilingOrders:
    """The no-op workflow of the same shape, started with the same call (the engine's ceiling)."""

    name = "ceiling"

    def __init__(
        self,
        client: Client,
        task_queue: str,
        run_id: str,
        sizes: dict[str, int],
        shape: dict[str, int],
        *,
        minimal: bool = False,
    ) -> None:
        """Start ``CeilingWorkflow`` on ``task_queue`` with payloads of ``sizes`` and the given ``shape``.

        ``minimal``: the minimal durable order (system ``minimal``) instead of the same-shape ceiling.
        """
        self.name = "minimal" if minimal else "ceiling"
        self._minimal = minimal
        self._client = client
        self._task_queue = task_queue
        self._run_id = run_id
        self._sizes = sizes
        self._shape = shape

    async def submit(self, n: int) -> tuple[float, WorkflowHandle[Any, Any]]:
        """Update-with-start one ceiling workflow."""
        started = time.perf_counter()
        # The same search attributes and summary as a real order, so the server indexes the same things.
        order = _order_request(self._run_id, n, "ceiling-")
        wf_id = f"{self.name}-{self._run_id}-{n}"
        start = WithStartWorkflowOperation(
            CeilingWorkflow.run,
            CeilingInput(
                pad="i" * self._sizes.get("input", 1000),
                broker_task_queue=broker_task_queue(self._task_queue),
                sizes=self._sizes,
                signals=self._shape.get("signals", 2),
                upserts=self._shape.get("upserts", 2),
                persists=self._shape.get("persists", 3),
                reconcile=bool(self._shape.get("reconcile", 1)),
                minimal=self._minimal,
            ),
            id=wf_id,
            task_queue=self._task_queue,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
            search_attributes=search_attributes(order),
            static_summary=summary(order),
        )
        await self._client.execute_update_with_start_workflow(
            CeilingWorkflow.decision, "h" * self._sizes.get("update_in", 64), start_workflow_operation=start
        )
        return time.perf_counter() - started, self._client.get_workflow_handle(wf_id)


@dataclass
class LoopResult:
    """What one closed-loop run measured."""

    system: str
    concurrency: int
    window_seconds: float
    #: Orders that finished inside the measured window.
    completed: int = 0
    #: Per order finished inside the window: seconds to the decision, seconds to done.
    decision: list[float] = field(default_factory=list)
    lifecycle: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    error_count: int = 0
    #: Orders answered "pending" (no decision within the API's timeout); they are followed to the end
    #: and count for throughput and submit-to-done latency, not for decision latency.
    pending: int = 0
    #: Orders submitted in the whole run (warm-up and drain included).
    submitted: int = 0
    sample_workflow_id: str | None = None

    @property
    def throughput(self) -> float:
        """Completed orders per second in the window."""
        return self.completed / self.window_seconds if self.window_seconds else 0.0


async def closed_loop(
    system: System,
    *,
    concurrency: int,
    duration: float,
    warmup: float,
    numbers: itertools.count[int],
    on_window: Callable[[str], None] | None = None,
) -> LoopResult:
    """Run ``concurrency`` callers for ``warmup`` + ``duration`` seconds; measure the window after the warm-up.

    The warm-up lasts at least ``warmup`` seconds and until ``concurrency`` orders have finished, so the
    window starts in a steady state. Latencies are those of the orders that finished inside the window.
    ``on_window("open")`` and ``on_window("close")`` are called at the window's edges (CPU readings).
    """
    loop = asyncio.get_running_loop()
    result = LoopResult(system=system.name, concurrency=concurrency, window_seconds=duration)
    t0 = loop.time()
    finished_in_warmup = 0
    window_start: float | None = None
    window_end: float | None = None
    window_open = asyncio.Event()

    def maybe_open() -> None:
        nonlocal window_start, window_end
        if window_start is None and loop.time() - t0 >= warmup and finished_in_warmup >= concurrency:
            window_start = loop.time()
            window_end = window_start + duration
            window_open.set()
            if on_window:
                on_window("open")

    async def caller() -> None:
        nonlocal finished_in_warmup
        while window_end is None or loop.time() < window_end:
            n = next(numbers)
            result.submitted += 1
            started = loop.time()
            decision_s: float | None
            try:
                try:
                    decision_s, handle = await system.submit(n)
                except Pending as p:
                    result.pending += 1
                    decision_s, handle = None, p.handle
                await handle.result()
            except Exception as e:
                result.error_count += 1
                if len(result.errors) < 20:
                    result.errors.append(f"{type(e).__name__}: {e}"[:300])
                await asyncio.sleep(0.1)
                continue
            done = loop.time()
            if window_start is None:
                finished_in_warmup += 1
                maybe_open()
            elif window_end is not None and done <= window_end:
                result.completed += 1
                if decision_s is not None:
                    result.decision.append(decision_s)
                result.lifecycle.append(done - started)
                result.sample_workflow_id = handle.id

    async def clock() -> None:
        while window_start is None:
            maybe_open()
            await asyncio.sleep(0.02)
        await asyncio.sleep(duration)
        if on_window:
            on_window("close")

    ticking = asyncio.create_task(clock())
    try:
        await asyncio.gather(*(caller() for _ in range(concurrency)))
        await ticking
    finally:
        ticking.cancel()
    await window_open.wait()
    return result


def temporal_settings_for(address: str, namespace: str, task_queue: str) -> Settings:
    """Settings naming a running stack's Temporal server (for ``DirectOrders``)."""
    return Settings(temporal=TemporalSettings(address=address, namespace=namespace, task_queue=task_queue))
