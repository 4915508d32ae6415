"""Broker sweeps: one mass-status request per broker session and interval instead of a status poll per order.

A broker whose capabilities declare ``mass_status`` lists every order it still works for Exodus in one request
(``Broker.open_orders``: Alpaca ``GET /v2/orders?status=open``, OANDA's pending orders after its transaction
catch-up, Kraken ``OpenOrders``, IB's one sync of executions, open and completed orders, MT5's bridge order rows
that the EA's acks and trade reports move, the paper venue's book). The worker that owns
the broker's session (its claim, ``worker/ownership.py``) runs one ``BrokerSweep`` for it: every
``EXODUS_ORDERS__SWEEP_SECONDS`` it reads the orders Postgres books as working for the broker, asks the broker for
its open orders, and signals ``OrderWorkflow.sweep_found`` only to the orders whose broker view differs:

* the broker no longer works the order (it filled, was canceled or expired, or the broker does not know it), or
* the broker has filled more of it than the ledger holds.

The order then looks itself up (its usual status lookup, with its own current ``cl_ord_id``) and books what it
finds. A working order with nothing new costs nothing in its history; a sweep with no working orders makes no
broker request. A difference is checked again after ``grace_seconds`` before it is signaled, so a report
already on its way (delivered, not booked yet) does not cost the order a lookup; one that outlasts the lookups it
caused is signaled again after 2, 4, ... up to 32 sweeps.

Orders of a swept broker (``OrderConfig.swept``) arm no poll timer of their own (``PATCH_BROKER_SWEEPS``); orders
started before it, and every order of a broker without mass status, keep polling.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from decimal import Decimal

from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from brokers.base import Broker
from core.domain import base_order_id, workflow_id_for
from core.metrics import BROKER_REQUESTS, BROKER_SWEEPS, SWEEP_SIGNALS
from store import Pool
from store.orders import WorkingOrder, working_orders
from workflows.order import OrderWorkflow

__all__ = ["BrokerSweep", "SweepOutcome"]

log = logging.getLogger(__name__)

#: An order whose difference outlasts the lookups it was signaled for (the broker does not know it, or its bookings
#: are delayed) is signaled again after 2, 4, ... up to this many sweeps (16 minutes at 30 s), like the poll's backoff.
_MAX_GAP = 32


@dataclass
class SweepOutcome:
    """What one sweep did."""

    #: Orders Postgres books as working for the broker.
    working: int = 0
    #: Requests made to the broker (0 when nothing works).
    requests: int = 0
    #: Orders signaled (their broker view differed), by order id, with the difference.
    signaled: dict[str, str] = field(default_factory=dict)


class BrokerSweep:
    """Sweeps one broker session: compares its open orders with the working orders in Postgres."""

    def __init__(
        self, client: Client, pool: Pool, broker: Broker, *, interval: float, grace_seconds: float = 1.0
    ) -> None:
        """Sweep ``broker`` every ``interval`` seconds, signaling its orders through ``client``."""
        self._client = client
        self._pool = pool
        self.broker = broker
        self.interval = interval
        self._grace = grace_seconds
        #: Sweeps completed, and what the last one did.
        self.sweeps = 0
        self.last: SweepOutcome | None = None
        #: Orders signaled while their difference lasts: the sweep from which the next signal may go, and the gap.
        self._backoff: dict[str, tuple[int, int]] = {}

    async def run(self, stop: asyncio.Event) -> None:
        """Sweep every ``interval`` until ``stop`` is set; a failed sweep is logged and the next one tries again."""
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.interval)
            if stop.is_set():
                return
            try:
                await self.sweep_once()
            except Exception as e:  # the broker or Postgres away: the next sweep tries again
                BROKER_SWEEPS.labels(broker=self.broker.name, outcome="failed").inc()
                log.warning("broker %s: sweep failed, trying again in %.0fs: %s", self.broker.name, self.interval, e)

    async def sweep_once(self) -> SweepOutcome:
        """One sweep: read, ask, compare, signal the orders that differ."""
        name = self.broker.name
        outcome = SweepOutcome()
        async with self._pool.connection() as conn:
            booked = await working_orders(conn, name)
        outcome.working = len(booked)
        if booked:
            differs = await self._differences(booked, outcome)
            if differs:
                # A report on its way is booked within moments: look again before signaling.
                await asyncio.sleep(self._grace)
                async with self._pool.connection() as conn:
                    again = {r["order_id"]: r for r in await working_orders(conn, name, order_ids=list(differs))}
                for order_id, (why, broker_cum) in differs.items():
                    row = again.get(order_id)
                    if row is None:
                        continue  # booked as closed meanwhile
                    if broker_cum is not None and row["filled_qty"] >= broker_cum:
                        continue  # the fill is booked meanwhile
                    due, gap = self._backoff.get(order_id, (0, 1))
                    if self.sweeps < due:
                        continue  # signaled before and still different (a lookup did not settle it): back off
                    if await self._signal(order_id, why):
                        outcome.signaled[order_id] = why
                    gap = min(gap * 2, _MAX_GAP)
                    self._backoff[order_id] = (self.sweeps + gap, gap)
            for order_id in [o for o in self._backoff if o not in differs]:
                del self._backoff[order_id]  # settled
        else:
            self._backoff.clear()
        self.sweeps += 1
        self.last = outcome
        BROKER_SWEEPS.labels(broker=name, outcome="ok").inc()
        if outcome.signaled:
            SWEEP_SIGNALS.labels(broker=name).inc(len(outcome.signaled))
            log.info("broker %s: sweep signaled %d of %d working orders", name, len(outcome.signaled), outcome.working)
        return outcome

    async def _differences(
        self, booked: list[WorkingOrder], outcome: SweepOutcome
    ) -> dict[str, tuple[str, Decimal | None]]:
        """Orders whose broker view differs: order id -> (why, the broker's filled quantity if it still works it)."""
        BROKER_REQUESTS.labels(broker=self.broker.name, call="sweep").inc()
        outcome.requests += 1
        listed = await self.broker.open_orders()
        at_broker: dict[str, Decimal] = {}
        for status in listed:
            order_id = base_order_id(status.cl_ord_id)
            at_broker[order_id] = max(at_broker.get(order_id, Decimal(0)), status.cum_qty)
        differs: dict[str, tuple[str, Decimal | None]] = {}
        for row in booked:
            cum = at_broker.get(row["order_id"])
            if cum is None:
                differs[row["order_id"]] = ("no longer working at the broker", None)
            elif cum > row["filled_qty"]:
                differs[row["order_id"]] = (f"the broker has filled {cum:f}, the ledger {row['filled_qty']:f}", cum)
        return differs

    async def _signal(self, order_id: str, why: str) -> bool:
        handle = self._client.get_workflow_handle(workflow_id_for(order_id))
        try:
            await handle.signal(OrderWorkflow.sweep_found, f"sweep of {self.broker.name}: {why}")
        except RPCError as e:
            if e.status != RPCStatusCode.NOT_FOUND:
                raise
            log.warning(
                "broker %s: sweep found order %s differing, but its workflow is closed", self.broker.name, order_id
            )
            return False
        return True
