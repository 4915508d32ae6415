"""``python -m devstack.chaos`` (``make chaos``): orders flow while the worker dies and Temporal and Postgres restart.

Afterwards nothing may be lost, stuck, sent twice or booked differently from what the venue did.

The stack is the one ``make run`` starts, on free ports in a temporary directory: an embedded Postgres, the
Temporal dev server on a SQLite file, ``python -m worker`` (paper venue ticking, journaled in Postgres) and
``python -m api``, the worker and the API under ``make run``'s supervisor (``devstack.supervise``), which
restarts them when they exit.

While ``clients`` desks send orders through the REST API (market orders, limit orders near the market that
fill as it moves, limit orders far from it that rest, cancels and amends of some of those, and a few limit
orders outside the price band that risk refuses), the run SIGKILLs the worker
``worker_kills`` times, kills and restarts the Temporal server, and stops Postgres (immediate shutdown, every
connection cut) and starts it again. Every request is retried on a transport error or a 5xx with the same body
(the same idempotency key); a 202 "pending" is asked again until it is decided.

Then it waits for quiescence and checks, in two phases:

1. **working orders**: every accepted order is final, or working with the same status and filled quantity in
   the workflow, the orders table and the venue's journal; every venue report was delivered; each working
   order has the same terms (quantity, price) in its row and at the venue, and its reservation holds exactly
   its open terms (nothing left over from an amend);
2. after cancelling every working order through the API: every accepted order's workflow has completed with
   the status and filled quantity of its row; no order reached the venue twice (``sim_duplicate_submits``
   empty, at most one venue order per order); the ledger's fills are exactly the venue's fills (execution id,
   quantity, price); each order's filled quantity agrees across ledger, row and venue; positions are the sum
   of the fills; every reservation is released exactly for the closed orders; no reconciliation break, no
   unmatched report.

It prints the figures (orders sent, by final status, kills and restarts done, fills, checks passed) and exits
non-zero when a check fails, keeping the data directory (logs, the databases) for the evidence.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import json
import os
import random
import shutil
import signal
import subprocess
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

import httpx
import psycopg
from psycopg.rows import dict_row

from core.db import wait_for_postgres
from core.domain import OrderStatus, derive_order_id, workflow_id_for
from core.instruments import DEFAULT_INSTRUMENTS
from devstack.services import EmbeddedPostgres, PortReservation, start_dev_server, start_python
from devstack.supervise import Supervisor, stop_process

__all__ = ["ChaosPlan", "ChaosReport", "main", "run_chaos"]

SYMBOLS = ["AAPL", "MSFT", "NVDA", "SPY"]
_PRICES = {i.symbol: i.initial_price for i in DEFAULT_INSTRUMENTS}
_TERMINAL = {"FILLED", "CANCELED", "EXPIRED", "REJECTED", "DENIED"}
_WORKING = {"ACCEPTED", "PARTIALLY_FILLED"}


@dataclass
class ChaosPlan:
    """What the run does."""

    #: Seconds of order flow (the faults happen within it).
    duration: float = 120.0
    #: Desks sending orders concurrently, one order at a time each.
    clients: int = 4
    worker_kills: int = 6
    temporal_restarts: int = 1
    postgres_restarts: int = 1
    #: How long Temporal and Postgres stay down.
    temporal_downtime: float = 3.0
    postgres_downtime: float = 3.0
    #: Pause between a desk's orders.
    pace: float = 0.05
    #: Paper venue feed step.
    tick_interval_ms: int = 100
    #: How long to wait for quiescence (each phase).
    settle_timeout: float = 240.0
    seed: int = 7
    keep: bool = False

    @classmethod
    def quick(cls) -> ChaosPlan:
        """The small version ``make test`` runs."""
        return cls(
            duration=22.0,
            clients=3,
            worker_kills=2,
            temporal_downtime=2.0,
            postgres_downtime=2.0,
            pace=0.1,
            settle_timeout=90.0,
        )


@dataclass
class Order:
    """One order the run sent."""

    client_id: str
    client_order_id: str
    kind: str
    body: dict[str, Any]
    order_id: str = ""
    #: accepted, denied, pending, invalid, conflict, unresolved
    outcome: str = "unsent"
    reasons: list[str] = field(default_factory=list)
    posts: int = 0
    cancel_requested: bool = False

    def __post_init__(self) -> None:
        self.order_id = derive_order_id(f"{self.client_id}/order/{self.client_order_id}")


@dataclass
class Check:
    """One check's outcome."""

    name: str
    ok: bool
    detail: str = ""


@dataclass
class ChaosReport:
    """Figures and checks of a run."""

    plan: ChaosPlan
    orders: list[Order] = field(default_factory=list)
    events: list[str] = field(default_factory=list)
    faults: Counter[str] = field(default_factory=Counter)
    answers: Counter[str] = field(default_factory=Counter)
    final_status: Counter[str] = field(default_factory=Counter)
    unexpected_exits: Counter[str] = field(default_factory=Counter)
    checks: list[Check] = field(default_factory=list)
    #: Answers worth a look: 5xx other than 503, transport errors (what, when, the answer).
    anomalies: list[str] = field(default_factory=list)
    working_verified: int = 0
    fills: int = 0
    cancels_sent: int = 0
    amends_sent: int = 0
    data_dir: Path | None = None
    seconds: float = 0.0
    started: float = field(default_factory=time.monotonic)

    def clock(self) -> float:
        """Seconds since the run started."""
        return time.monotonic() - self.started

    @property
    def ok(self) -> bool:
        """Whether every check passed."""
        return bool(self.checks) and all(c.ok for c in self.checks)

    def check(self, name: str, problems: list[str], *, detail: str = "") -> None:
        """Record a check: it passes when ``problems`` is empty."""
        shown = "; ".join(problems[:8]) + (f"; ... ({len(problems)} in all)" if len(problems) > 8 else "")
        self.checks.append(Check(name, not problems, shown if problems else detail))

    def render(self) -> str:
        """The figures and checks, as printed."""
        accepted = [o for o in self.orders if o.outcome == "accepted"]
        by_kind = Counter(o.kind for o in self.orders)
        lines = [
            "",
            f"  Chaos run: {self.seconds:.0f}s, seed {self.plan.seed}, {self.plan.clients} desks, "
            f"{self.plan.duration:.0f}s of order flow",
            f"  orders sent        {len(self.orders)} ({', '.join(f'{k} {n}' for k, n in sorted(by_kind.items()))}); "
            f"POSTs {sum(o.posts for o in self.orders)}; cancels sent {self.cancels_sent}; "
            f"amends sent {self.amends_sent}",
            f"  decisions          accepted {len(accepted)}, denied {sum(o.outcome == 'denied' for o in self.orders)}"
            f" ({', '.join(f'{k} {n}' for k, n in self._denials().items()) or 'none'}), other "
            f"{sum(o.outcome not in ('accepted', 'denied') for o in self.orders)}",
            f"  answers            {', '.join(f'{k} {n}' for k, n in sorted(self.answers.items()))}",
            f"  final status       {', '.join(f'{k} {n}' for k, n in sorted(self.final_status.items()))}",
            f"  faults             worker SIGKILLs {self.faults['worker_kill']}, Temporal restarts "
            f"{self.faults['temporal_restart']}, Postgres restarts {self.faults['postgres_restart']}",
            "  unexpected exits   "
            + (", ".join(f"{k} {n}" for k, n in sorted(self.unexpected_exits.items())) or "none"),
            f"  fills              {self.fills} (ledger = venue); working orders verified before the final cancels: "
            f"{self.working_verified}",
            f"  checks             {sum(c.ok for c in self.checks)}/{len(self.checks)} passed",
        ]
        for c in self.checks:
            lines.append(f"    [{'ok' if c.ok else 'FAIL'}] {c.name}" + (f": {c.detail}" if c.detail else ""))
        if self.anomalies:
            lines.append(f"  answers to look at ({len(self.anomalies)}; retried with the same body):")
            lines += [f"    {a}" for a in self.anomalies[:20]]
        if self.data_dir is not None:
            lines.append(f"  data and logs      {self.data_dir}")
        return "\n".join(lines)

    def _denials(self) -> Counter[str]:
        return Counter(r for o in self.orders if o.outcome == "denied" for r in o.reasons)


# ------------------------------------------------------------------------------------------------ the stack


class ChaosStack:
    """``make run``'s processes on free ports, with the faults the run injects."""

    def __init__(self, plan: ChaosPlan, report: ChaosReport, say: Callable[[str], None]) -> None:
        self.plan = plan
        self.report = report
        self.say = say
        self.data = Path(tempfile.mkdtemp(prefix="exodus-chaos-"))
        self.logs = self.data / "logs"
        self.logs.mkdir()
        self.pg: EmbeddedPostgres | None = None
        self.temporal: subprocess.Popen[bytes] | None = None
        # Held until stop(): nobody else takes them before the servers bind them, nor while Temporal restarts.
        self._ports = (PortReservation(), PortReservation())
        self.temporal_port, self.api_port = (p.port for p in self._ports)
        self.supervisor = Supervisor(initial_delay=0.5, max_delay=5.0, stable_after=30.0, log_lines=0, say=say)
        self.url = ""
        self._our_kills = 0
        self._poller: asyncio.Task[None] | None = None

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    @property
    def temporal_address(self) -> str:
        return f"127.0.0.1:{self.temporal_port}"

    async def start(self) -> None:
        self.pg = await asyncio.to_thread(EmbeddedPostgres, self.data / "postgres", delete_on_exit=True)
        self.url = self.pg.url
        await wait_for_postgres(self.url)
        self.temporal = await asyncio.to_thread(self._start_temporal)
        env = {
            "DATABASE_URL": self.url,
            "EXODUS_DATA_DIR": str(self.data),
            "EXODUS_TEMPORAL__ADDRESS": self.temporal_address,
            "EXODUS_TEMPORAL__START_DEV_SERVER": "false",
            "EXODUS_API__HOST": "127.0.0.1",
            "EXODUS_API__PORT": str(self.api_port),
            "EXODUS_WORKER__METRICS_PORT": "0",
            "EXODUS_WORKER__TEMPORAL_METRICS_PORT": "0",
            "EXODUS_PAPER__TICK_INTERVAL_MS": str(self.plan.tick_interval_ms),
            "EXODUS_PAPER__SEED": str(self.plan.seed),
            # Shorter than the defaults so that the run settles sooner; the same code paths.
            "EXODUS_ORDERS__BROKER_CALL_TIMEOUT_SECONDS": "5",
            "EXODUS_ORDERS__STATUS_POLL_SECONDS": "10",
        }
        for name, module in (("worker", "worker"), ("API", "api")):
            log = self.logs / f"{module}.log"
            self.supervisor.add(name, functools.partial(_start_logged, module, env, log), log=log)
        self._poller = asyncio.create_task(self._supervise())
        async with httpx.AsyncClient(timeout=3) as http:
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                with contextlib.suppress(httpx.HTTPError):
                    if (await http.get(f"{self.api_url}/ready")).status_code == 200:
                        return
                for child in self.supervisor.children:
                    if child.failures >= 3 and child.log is not None:  # it cannot start: no point waiting
                        tail = "\n".join(child.log.read_text(errors="replace").splitlines()[-15:])
                        raise RuntimeError(f"the {child.name} exits at start-up:\n{tail}")
                await asyncio.sleep(0.3)
        raise TimeoutError(f"the stack was not ready after 120s (logs in {self.logs})")

    def _start_temporal(self) -> subprocess.Popen[bytes]:
        return start_dev_server(
            db_file=self.data / "temporal" / "temporal.db",
            port=self.temporal_port,
            ui_port=None,
            log=(self.logs / "temporal.log").open("ab"),
        )

    async def _supervise(self) -> None:
        while True:
            self.supervisor.poll()
            await asyncio.sleep(0.2)

    # -- faults -------------------------------------------------------------------------------------------

    async def kill_worker(self) -> None:
        child = self.supervisor.get("worker")
        if child.proc is not None and child.proc.poll() is None:
            child.proc.send_signal(signal.SIGKILL)
            self._our_kills += 1
            self.report.faults["worker_kill"] += 1
            self.say(f"  chaos: SIGKILL the worker (pid {child.proc.pid})")

    async def restart_temporal(self) -> None:
        assert self.temporal is not None
        self.say("  chaos: SIGKILL the Temporal server")
        self.temporal.send_signal(signal.SIGKILL)
        await asyncio.to_thread(self.temporal.wait)
        await asyncio.sleep(self.plan.temporal_downtime)
        self.temporal = await asyncio.to_thread(self._start_temporal)
        self.report.faults["temporal_restart"] += 1
        self.say("  chaos: Temporal server started again")

    async def restart_postgres(self) -> None:
        assert self.pg is not None
        self.say("  chaos: stop Postgres (immediate shutdown)")
        await asyncio.to_thread(self.pg.halt)
        await asyncio.sleep(self.plan.postgres_downtime)
        await asyncio.to_thread(self.pg.resume)
        self.report.faults["postgres_restart"] += 1
        self.say("  chaos: Postgres started again")

    def exits(self) -> Counter[str]:
        """Restarts of the worker and the API that the run did not cause."""
        worker = self.supervisor.get("worker").restarts
        api = self.supervisor.get("API").restarts
        out: Counter[str] = Counter()
        if worker > self._our_kills:
            out["worker"] = worker - self._our_kills
        if api:
            out["API"] = api
        return out

    async def stop(self, *, keep: bool) -> None:
        if self._poller is not None:
            self._poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._poller
        await asyncio.to_thread(self.supervisor.stop_all, timeout=15)
        await asyncio.to_thread(stop_process, self.temporal, "Temporal", say=self.say)
        if self.pg is not None:
            if keep:
                # Keep the database for the evidence: stop the server, leave its files.
                with contextlib.suppress(Exception):
                    await asyncio.to_thread(self.pg.halt, immediate=False)
                self.pg._server.cleanup_mode = None
            await asyncio.to_thread(self.pg.stop)
        if not keep:
            shutil.rmtree(self.data, ignore_errors=True)
        for reservation in self._ports:
            reservation.close()


# ------------------------------------------------------------------------------------------------ the load


class Desk:
    """One desk sending orders through the REST API."""

    def __init__(self, n: int, http: httpx.AsyncClient, report: ChaosReport, rng: random.Random, plan: ChaosPlan):
        self.client_id = f"chaos-desk-{n}"
        self.http = http
        self.report = report
        self.rng = rng
        self.plan = plan
        self.seq = 0
        self.resting: list[Order] = []

    def _body(self) -> tuple[str, dict[str, Any]]:
        self.seq += 1
        symbol = self.rng.choice(SYMBOLS)
        side = self.rng.choice(["BUY", "SELL"])
        body: dict[str, Any] = {
            "clientId": self.client_id,
            "clientOrderId": f"c{self.seq}",
            "symbol": symbol,
            "side": side,
            "qty": self.rng.randint(1, 1500),
            "timeInForce": "GTC",
        }
        roll = self.rng.random()
        if roll < 0.03:
            # Half (or one and a half times) the market: far outside the price band, refused by risk.
            factor = Decimal("0.5") if side == "BUY" else Decimal("1.5")
            body["type"] = "LIMIT"
            body["price"] = str((_PRICES[symbol] * factor).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP))
            return "limit-out-of-band", body
        if roll < 0.5:
            body["type"] = "MARKET"
            return "market", body
        near = roll < 0.75
        away = Decimal("0.002") if near else Decimal("0.03")
        price = _PRICES[symbol] * (1 - away if side == "BUY" else 1 + away)
        body["type"] = "LIMIT"
        body["price"] = str(price.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP))
        return ("limit-near" if near else "limit-far"), body

    def _amendment(self, order: Order) -> dict[str, Any]:
        """New terms for a resting order: another quantity, and sometimes a price a little further away."""
        change: dict[str, Any] = {"qty": self.rng.randint(1, 1500)}
        if self.rng.random() < 0.5:
            price = Decimal(str(order.body["price"]))
            away = Decimal("0.999") if order.body["side"] == "BUY" else Decimal("1.001")
            change["price"] = str((price * away).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP))
        return change

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            roll = self.rng.random()
            if self.resting and roll < 0.2:
                order = self.resting.pop(self.rng.randrange(len(self.resting)))
                await cancel(self.http, order, self.report)
            elif self.resting and roll < 0.3:
                order = self.resting[self.rng.randrange(len(self.resting))]
                await amend(self.http, order, self._amendment(order), self.report)
            else:
                kind, body = self._body()
                order = Order(self.client_id, body["clientOrderId"], kind, body)
                self.report.orders.append(order)
                await post(self.http, order, self.report)
                if order.outcome == "accepted" and kind.startswith("limit"):
                    self.resting.append(order)
            await asyncio.sleep(self.plan.pace)


async def _retrying(
    call: Callable[[], Awaitable[httpx.Response]], report: ChaosReport, *, deadline: float, what: str, kind: str
) -> httpx.Response | None:
    """The first answer that is not a 5xx or a transport error (None after ``deadline``)."""
    while time.monotonic() < deadline:
        sent = time.monotonic()
        try:
            r = await call()
        except httpx.HTTPError as e:
            report.answers[f"{kind} {type(e).__name__}"] += 1
            report.anomalies.append(
                f"{report.clock():.1f}s {what}: {type(e).__name__} after {time.monotonic() - sent:.1f}s"
            )
            await asyncio.sleep(0.5)
            continue
        report.answers[f"{kind} {r.status_code}"] += 1
        if r.status_code >= 500 and r.status_code != 503:
            report.anomalies.append(f"{report.clock():.1f}s {what}: {r.status_code} {r.text[:240]}")
        if r.status_code < 500:
            return r
        await asyncio.sleep(min(float(r.headers.get("Retry-After", "0.5")), 2.0))
    return None


async def post(http: httpx.AsyncClient, order: Order, report: ChaosReport, *, patience: float = 300) -> None:
    """POST the order (again) until it is decided or pending."""

    async def send() -> httpx.Response:
        order.posts += 1
        return await http.post("/api/v1/orders", json=order.body)

    what = f"POST /orders {order.client_id}/{order.client_order_id} ({order.order_id})"
    r = await _retrying(send, report, deadline=time.monotonic() + patience, what=what, kind="order")
    if r is None:
        order.outcome = "unresolved"
        return
    body = r.json()
    if r.status_code in (200, 201) and body.get("status") == "accepted":
        order.outcome = "accepted"
    elif r.status_code in (200, 422) and body.get("status") == "rejected":
        order.reasons = [x.get("code", "?") for x in body.get("reasons", [])]
        # A risk denial is an order (recorded DENIED); a refusal of the input (nothing started) is not.
        order.outcome = "denied" if body.get("orderStatus") == OrderStatus.DENIED else "invalid"
    elif r.status_code == 202:
        order.outcome = "pending"
    elif r.status_code == 409:
        order.outcome = "conflict"
        order.reasons = [body.get("message", "")]
    else:
        order.outcome = f"http-{r.status_code}"
        order.reasons = [r.text[:200]]


async def cancel(http: httpx.AsyncClient, order: Order, report: ChaosReport, *, patience: float = 120) -> None:
    """Ask for a cancel (again) until the API takes it or says the order is closed."""

    async def send() -> httpx.Response:
        return await http.post(f"/api/v1/orders/{order.order_id}/cancel", json={"reason": "chaos"})

    report.cancels_sent += 1
    what = f"POST /orders/{order.order_id}/cancel"
    r = await _retrying(send, report, deadline=time.monotonic() + patience, what=what, kind="cancel")
    if r is not None and r.status_code == 202:
        order.cancel_requested = True


async def amend(
    http: httpx.AsyncClient, order: Order, change: dict[str, Any], report: ChaosReport, *, patience: float = 120
) -> None:
    """Amend (again, with the same body) until the API answers; a refusal (filled meanwhile, risk) is an answer."""

    async def send() -> httpx.Response:
        return await http.patch(f"/api/v1/orders/{order.order_id}", json=change)

    report.amends_sent += 1
    what = f"PATCH /orders/{order.order_id} {change}"
    r = await _retrying(send, report, deadline=time.monotonic() + patience, what=what, kind="amend")
    if r is not None and r.status_code == 200 and "price" in change:
        order.body["price"] = change["price"]


# ------------------------------------------------------------------------------------------------ checks


async def _fetch(url: str, sql: str, *params: Any) -> list[dict[str, Any]]:
    async with await psycopg.AsyncConnection.connect(url, autocommit=True, row_factory=dict_row) as conn:
        cur = await conn.execute(sql.encode(), params or None)
        return await cur.fetchall()


def _start_logged(module: str, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    return start_python(module, env=env, log=log.open("ab"))


def _root(cl_ord_id: str) -> str:
    return cl_ord_id.split(".")[0]


async def _views(url: str) -> tuple[dict[str, dict[str, Any]], dict[str, list[dict[str, Any]]], int]:
    rows = await _fetch(url, "SELECT order_id, status, filled_qty, qty, price FROM orders")
    venue_rows = await _fetch(url, "SELECT client_order_id, status, body FROM sim_orders WHERE venue = 'paper'")
    venue: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for v in venue_rows:
        venue[_root(v["body"]["client_order_ids"][0])].append(v)
    undelivered = (
        await _fetch(url, "SELECT count(*) AS n FROM sim_reports WHERE venue = 'paper' AND delivered_at IS NULL")
    )[0]["n"]
    return {r["order_id"]: r for r in rows}, venue, int(undelivered)


def _unsettled(
    accepted: list[Order], table: dict[str, dict[str, Any]], venue: dict[str, list[dict[str, Any]]]
) -> list[str]:
    """Accepted orders that are neither final nor working identically in the table and at the venue."""
    out = []
    for o in accepted:
        row = table.get(o.order_id)
        if row is None:
            out.append(f"{o.order_id}: no row")
            continue
        if row["status"] in _TERMINAL:
            continue
        at_venue = venue.get(o.order_id, [])
        if row["status"] not in _WORKING or len(at_venue) != 1:
            out.append(f"{o.order_id}: {row['status']} (venue orders {len(at_venue)})")
            continue
        v = at_venue[0]
        if v["status"] != row["status"] or Decimal(str(v["body"]["filled_qty"])) != row["filled_qty"]:
            out.append(
                f"{o.order_id}: {row['status']} {row['filled_qty']} here, {v['status']} {v['body']['filled_qty']} "
                "at the venue"
            )
    return out


async def _settle(
    url: str, accepted: list[Order], timeout: float, *, final: bool
) -> tuple[list[str], dict[str, dict[str, Any]], dict[str, list[dict[str, Any]]]]:
    deadline = time.monotonic() + timeout
    while True:
        table, venue, undelivered = await _views(url)
        problems = _unsettled(accepted, table, venue)
        if final:
            problems += [
                f"{o.order_id}: still {table[o.order_id]['status']}"
                for o in accepted
                if o.order_id in table and table[o.order_id]["status"] not in _TERMINAL
            ]
        if undelivered:
            problems.append(f"{undelivered} venue reports not delivered yet")
        if not problems or time.monotonic() > deadline:
            return problems, table, venue
        await asyncio.sleep(1.0)


async def _workflow_states(address: str, orders: list[Order], *, final: bool, timeout: float) -> dict[str, Any]:
    from temporalio.client import Client
    from temporalio.contrib.pydantic import pydantic_data_converter

    from core.domain import OrderState
    from workflows.order_models import OrderResult

    client = await Client.connect(address, data_converter=pydantic_data_converter)
    limit = asyncio.Semaphore(16)
    deadline = time.monotonic() + timeout  # for all of them: a stuck order must not hold up the rest

    async def one(o: Order) -> tuple[str, Any]:
        handle = client.get_workflow_handle(workflow_id_for(o.order_id), result_type=OrderResult)
        async with limit:
            try:
                call = handle.result() if final else handle.query("state", result_type=OrderState)
                return o.order_id, await asyncio.wait_for(call, max(1.0, deadline - time.monotonic()))
            except Exception as e:  # recorded as the check's evidence
                return o.order_id, e

    return dict(await asyncio.gather(*(one(o) for o in orders)))


def _state_of(value: Any) -> tuple[str, Decimal] | None:
    if isinstance(value, Exception):
        return None
    status = getattr(value, "status", None)
    filled = getattr(value, "filled_qty", None)
    if status is None or filled is None:
        return None
    return str(getattr(status, "value", status)), Decimal(str(filled))


async def run_checks(stack: ChaosStack, report: ChaosReport, http: httpx.AsyncClient) -> None:
    """Wait for quiescence, verify working orders, cancel them, wait again, and check everything agrees."""
    url, plan = stack.url, stack.plan
    accepted = [o for o in report.orders if o.outcome == "accepted"]
    report.check(
        "every order was decided (accepted or denied by risk)",
        [
            f"{o.order_id} ({o.client_id}/{o.client_order_id}): {o.outcome} {o.reasons}"
            for o in report.orders
            if o.outcome not in ("accepted", "denied")
        ],
    )

    # Phase 1: working orders agree in the table, the venue and the workflow (read again while an order near
    # the market fills between the reads).
    deadline = time.monotonic() + plan.settle_timeout
    while True:
        problems, table, venue = await _settle(url, accepted, max(1.0, deadline - time.monotonic()), final=False)
        working = [o for o in accepted if table.get(o.order_id, {}).get("status") in _WORKING]
        states = await _workflow_states(stack.temporal_address, working, final=False, timeout=30)
        for o in working:
            st = _state_of(states.get(o.order_id))
            current = table[o.order_id]
            if st != (current["status"], current["filled_qty"]):
                seen = st or repr(states.get(o.order_id))[:160]
                problems.append(f"{o.order_id}: workflow {seen} vs row {current['status']} {current['filled_qty']}")
        if not problems or time.monotonic() > deadline:
            break
        await asyncio.sleep(1.0)
    report.working_verified = len(working) if not problems else 0
    report.check(
        "quiescence: every accepted order is final, or working alike in workflow, row and venue",
        problems,
        detail=f"{len(working)} working, {len(accepted) - len(working)} final",
    )
    report.check(
        "working orders: the same terms in row and venue, and a reservation of exactly their open terms",
        await _working_terms(url, working, venue),
    )

    # Phase 2: cancel what still works; every order must then complete.
    for o in working:
        await cancel(http, o, report)
    problems, table, venue = await _settle(url, accepted, plan.settle_timeout, final=True)
    report.check("every accepted order reached a final status (none stuck)", problems)
    results = await _workflow_states(stack.temporal_address, accepted, final=True, timeout=plan.settle_timeout)
    wf_problems = []
    for o in accepted:
        res = results.get(o.order_id)
        st = _state_of(res)
        row = table.get(o.order_id)
        if st is None or row is None or st != (row["status"], row["filled_qty"]):
            wf_problems.append(
                f"{o.order_id}: workflow {res!r:.200} vs row {row and (row['status'], row['filled_qty'])}"
            )
        elif breaks := getattr(res, "breaks", None):
            wf_problems.append(f"{o.order_id}: breaks {breaks}")
    report.check("every workflow completed with its row's status and filled quantity, no breaks", wf_problems)
    for o in report.orders:
        row = table.get(o.order_id)
        report.final_status[row["status"] if row else f"no row ({o.outcome})"] += 1

    # Nothing sent twice.
    dups = await _fetch(url, "SELECT client_order_id FROM sim_duplicate_submits")
    report.check("the venue's duplicate-submission record is empty", [d["client_order_id"] for d in dups])
    report.check(
        "each order has at most one venue order",
        [f"{k}: {len(v)} venue orders" for k, v in venue.items() if len(v) > 1],
    )
    ours = {o.order_id for o in report.orders}
    report.check("the venue holds no order the run did not send", [k for k in venue if k not in ours])
    denied_at_venue = [o.order_id for o in report.orders if o.outcome == "denied" and o.order_id in venue]
    report.check("no order denied by risk reached the venue", denied_at_venue)

    # The ledger is the venue's fills, exactly.
    venue_fills = {
        (r["exec_id"], Decimal(str(r["last_qty"])), Decimal(str(r["last_price"])))
        for vs in venue.values()
        for v in vs
        for r in v["body"]["reports"]
        if r["kind"] == "FILL"
    }
    ledger = await _fetch(url, "SELECT exec_id, order_id, account, symbol, side, qty, price FROM fills")
    ledger_fills = {(f["exec_id"], f["qty"], f["price"]) for f in ledger}
    report.fills = len(ledger)
    report.check(
        "ledger fills = the venue's fills (exec id, quantity, price)",
        [f"only in the ledger: {x}" for x in sorted(ledger_fills - venue_fills)]
        + [f"only at the venue: {x}" for x in sorted(venue_fills - ledger_fills)]
        + (
            [f"{len(ledger)} ledger rows for {len(ledger_fills)} executions"]
            if len(ledger) != len(ledger_fills)
            else []
        ),
    )
    journal = await _fetch(url, "SELECT exec_id, delivered_at FROM sim_reports WHERE venue = 'paper'")
    in_bodies = {r["exec_id"] for vs in venue.values() for v in vs for r in v["body"]["reports"]}
    report.check(
        "the venue's journal: every report recorded with its order and delivered",
        [f"{j['exec_id']} undelivered" for j in journal if j["delivered_at"] is None]
        + [
            f"{x}: in an order but not in the report journal"
            for x in sorted(in_bodies - {j["exec_id"] for j in journal})
        ],
    )

    # Each order's filled quantity and status agree across ledger, row and venue.
    by_order: dict[str, Decimal] = defaultdict(Decimal)
    for f in ledger:
        by_order[f["order_id"]] += f["qty"]
    qty_problems = []
    for o in accepted:
        row = table.get(o.order_id)
        if row is None:
            continue
        vs = venue.get(o.order_id, [])
        v_filled = Decimal(str(vs[0]["body"]["filled_qty"])) if vs else Decimal(0)
        v_status = vs[0]["status"] if vs else None
        if not (row["filled_qty"] == by_order[o.order_id] == v_filled):
            qty_problems.append(
                f"{o.order_id}: row {row['filled_qty']}, ledger {by_order[o.order_id]}, venue {v_filled}"
            )
        if v_status is not None and v_status != row["status"]:
            qty_problems.append(f"{o.order_id}: {row['status']} here, {v_status} at the venue")
        if v_status is None and row["status"] not in ("CANCELED", "REJECTED"):
            qty_problems.append(f"{o.order_id}: {row['status']} but unknown to the venue")
    report.check("each order's filled quantity and status agree across ledger, row and venue", qty_problems)

    # Positions are the fills.
    expected: dict[tuple[str, str], Decimal] = defaultdict(Decimal)
    for f in ledger:
        expected[(f["account"], f["symbol"])] += f["qty"] if f["side"] == "BUY" else -f["qty"]
    positions = await _fetch(url, "SELECT account, symbol, qty FROM positions")
    actual = {(p["account"], p["symbol"]): p["qty"] for p in positions if p["qty"] != 0}
    report.check(
        "positions = the sum of the fills",
        [
            f"{k}: position {actual.get(k, 0)}, fills {expected.get(k, 0)}"
            for k in sorted(set(actual) | set(expected))
            if actual.get(k, Decimal(0)) != expected.get(k, Decimal(0))
        ],
    )

    # Reservations are released exactly for the closed orders.
    reservations = {
        r["order_id"]: r for r in await _fetch(url, "SELECT order_id, released_at, qty_open FROM risk_reservations")
    }
    res_problems = []
    for o in report.orders:
        row = table.get(o.order_id)
        res = reservations.get(o.order_id)
        if o.outcome == "accepted" and res is None:
            res_problems.append(f"{o.order_id}: accepted without a reservation")
        elif res is not None and row is not None:
            closed = row["status"] in _TERMINAL
            if closed and res["released_at"] is None:
                res_problems.append(f"{o.order_id}: {row['status']} but its reservation ({res['qty_open']}) is held")
            if not closed and res["released_at"] is not None:
                res_problems.append(f"{o.order_id}: {row['status']} but its reservation was released")
    report.check("reservations released exactly for the closed orders", res_problems)

    breaks = await _fetch(url, "SELECT order_id, kind, detail FROM reconciliation_breaks")
    unmatched = await _fetch(url, "SELECT exec_id, client_order_id, reason FROM unmatched_reports")
    report.check(
        "no reconciliation break, no unmatched report",
        [f"break {b['order_id']} {b['detail']}" for b in breaks]
        + [f"unmatched {u['exec_id']} ({u['client_order_id']}): {u['reason']}" for u in unmatched],
    )
    exits = stack.exits()
    report.unexpected_exits = exits


async def _working_terms(url: str, working: list[Order], venue: dict[str, list[dict[str, Any]]]) -> list[str]:
    """Problems with the working orders' terms.

    Each working order's quantity and price must agree between its row and the venue (amends included), and
    its reservation must be held for exactly its open quantity at its price (no amend's hold left behind).
    The row and its reservation are read in one statement: a booking changes both in one transaction, so the
    statement sees them agree. An order that stopped working since the quiescence check (a resting limit the
    moving market filled meanwhile) is left to the final checks, which see every order closed.
    """
    rows = {
        r["order_id"]: r
        for r in await _fetch(
            url,
            "SELECT o.order_id, o.status, o.qty, o.filled_qty, o.price, r.order_id AS reserved,"
            " r.qty_open, r.price AS reserved_price, r.released_at"
            " FROM orders o LEFT JOIN risk_reservations r ON r.order_id = o.order_id"
            " WHERE o.order_id = ANY(%s)",
            [o.order_id for o in working],
        )
    }
    problems = []
    for o in working:
        row = rows.get(o.order_id)
        if row is None:
            problems.append(f"{o.order_id}: no order row")
            continue
        if row["status"] not in _WORKING:
            continue
        at_venue = venue.get(o.order_id, [])
        if at_venue:
            body = at_venue[0]["body"]
            v_price = None if body.get("price") is None else Decimal(str(body["price"]))
            if (Decimal(str(body["qty"])), v_price) != (row["qty"], row["price"]):
                problems.append(
                    f"{o.order_id}: {row['qty']} @ {row['price']} here, {body['qty']} @ {v_price} at the venue"
                )
        open_qty = row["qty"] - row["filled_qty"]
        if row["reserved"] is None or row["released_at"] is not None:
            problems.append(f"{o.order_id}: {row['status']} without a held reservation")
        elif row["qty_open"] != open_qty or (row["price"] is not None and row["reserved_price"] != row["price"]):
            problems.append(
                f"{o.order_id}: reservation {row['qty_open']} @ {row['reserved_price']},"
                f" open terms {open_qty} @ {row['price']}"
            )
    return problems


# ------------------------------------------------------------------------------------------------ the run


def _schedule(plan: ChaosPlan) -> list[tuple[float, str]]:
    """When each fault happens (seconds into the order flow)."""
    events = [((i + 1) / (plan.worker_kills + 1) * 0.85, "worker_kill") for i in range(plan.worker_kills)]
    events += [(0.42 + 0.05 * i, "postgres_restart") for i in range(plan.postgres_restarts)]
    events += [(0.63 + 0.05 * i, "temporal_restart") for i in range(plan.temporal_restarts)]
    return sorted((at * plan.duration, kind) for at, kind in events)


async def run_chaos(plan: ChaosPlan, *, say: Callable[[str], None] | None = None) -> ChaosReport:
    """Run the whole thing and return the figures and checks (the stack is stopped afterwards)."""
    report = ChaosReport(plan=plan)

    def log(line: str) -> None:
        stamped = f"[{report.clock():6.1f}s] {line.strip()}"
        report.events.append(stamped)
        if say is not None:
            say(stamped)

    stack = ChaosStack(plan, report, log)
    keep = plan.keep
    try:
        log("starting Postgres, Temporal, the worker and the API ...")
        await stack.start()
        log(f"stack ready (API {stack.api_url}, Temporal {stack.temporal_address}, data {stack.data})")
        rng = random.Random(plan.seed)
        stop = asyncio.Event()
        async with httpx.AsyncClient(base_url=stack.api_url, timeout=30) as http:
            desks = [Desk(i + 1, http, report, random.Random(rng.random()), plan) for i in range(plan.clients)]
            for desk in desks:  # accounts exist only once registered (the dev stack lets anyone in as admin)
                r = await http.put(f"/api/v1/admin/accounts/{desk.client_id}", json={"description": "chaos desk"})
                if r.status_code != 200:
                    raise RuntimeError(f"cannot register {desk.client_id}: HTTP {r.status_code}: {r.text[:300]}")
            flow = [asyncio.create_task(d.run(stop)) for d in desks]
            flow_started = time.monotonic()
            actions = {
                "worker_kill": stack.kill_worker,
                "temporal_restart": stack.restart_temporal,
                "postgres_restart": stack.restart_postgres,
            }
            for at, kind in _schedule(plan):
                await asyncio.sleep(max(0.0, flow_started + at - time.monotonic()))
                await actions[kind]()
            await asyncio.sleep(max(0.0, flow_started + plan.duration - time.monotonic()))
            stop.set()
            log("order flow stopped; resolving pending decisions ...")
            await asyncio.gather(*flow)
            for o in report.orders:
                if o.outcome in ("pending", "unresolved"):
                    await post(http, o, report, patience=plan.settle_timeout)
            log("waiting for quiescence and checking ...")
            await run_checks(stack, report, http)
        keep = keep or not report.ok
    except BaseException:
        keep = True
        raise
    finally:
        report.seconds = report.clock()
        report.data_dir = stack.data if keep else None
        await stack.stop(keep=keep)
    return report


def main(argv: list[str] | None = None) -> int:
    """``python -m devstack.chaos``."""
    p = argparse.ArgumentParser(prog="python -m devstack.chaos", description=__doc__.split("\n\n")[0])
    d = ChaosPlan()
    p.add_argument("--quick", action="store_true", help="the small version make test runs")
    p.add_argument("--duration", type=float, default=d.duration, help="seconds of order flow (%(default)s)")
    p.add_argument("--clients", type=int, default=d.clients, help="desks sending orders (%(default)s)")
    p.add_argument("--worker-kills", type=int, default=d.worker_kills, help="SIGKILLs of the worker (%(default)s)")
    p.add_argument("--temporal-restarts", type=int, default=d.temporal_restarts)
    p.add_argument("--postgres-restarts", type=int, default=d.postgres_restarts)
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--keep", action="store_true", help="keep the data directory (always kept on failure)")
    p.add_argument("--json", type=Path, help="also write the figures and checks to this file")
    args = p.parse_args(argv)
    if args.quick:
        plan = ChaosPlan.quick()
        plan.seed, plan.keep = args.seed, args.keep
    else:
        plan = ChaosPlan(
            duration=args.duration,
            clients=args.clients,
            worker_kills=args.worker_kills,
            temporal_restarts=args.temporal_restarts,
            postgres_restarts=args.postgres_restarts,
            seed=args.seed,
            keep=args.keep,
        )
    report = asyncio.run(run_chaos(plan, say=lambda line: print(line, flush=True)))
    print(report.render(), flush=True)
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "plan": plan.__dict__,
                    "orders": len(report.orders),
                    "final_status": report.final_status,
                    "faults": report.faults,
                    "unexpected_exits": report.unexpected_exits,
                    "answers": report.answers,
                    "fills": report.fills,
                    "checks": [c.__dict__ for c in report.checks],
                    "ok": report.ok,
                },
                indent=2,
                default=str,
            )
        )
    return 0 if report.ok else 1


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    from core.process import exit_now

    exit_now(main())  # the Temporal client's threads must not meet interpreter teardown; see core/process.py
