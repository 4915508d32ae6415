"""Broker activities: submit, cancel, replace and status, on the task queue of the broker's session owner.

Each is idempotent against the broker:

* ``submit_order`` asks the broker for the order first whenever this is not the first try (a retried
  attempt, or a workflow that lost track of an earlier submission), and only sends when the broker does
  not know the order's ``cl_ord_id``. A refusal because the id is already in use is answered with the status
  of the order that holds it.
* ``cancel_order`` and ``replace_order`` check the broker's view on retries, so a repeated request does
  not turn into a spurious "too late".

``BrokerUnavailable`` propagates and Temporal retries it; ``BrokerRejected`` and ``OrderNotFound`` are
raised as non-retryable application errors.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Mapping
from datetime import date, timedelta

from pydantic import BaseModel, ConfigDict
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.answered import ANSWERED, AnsweredReports
from brokers.base import Broker
from core.domain import (
    BrokerAck,
    CancelOrder,
    OrderStatus,
    OrderStatusReport,
    ReplaceOrder,
    ReportKind,
    SubmitOrder,
    renamed,
    utcnow,
)
from core.errors import BrokerError, BrokerRejected, BrokerUnavailable, OrderNotFound
from core.metrics import BROKER_ERRORS, BROKER_REQUESTS, ORDER_LATENCY
from core.reconciliation import BrokerStatement, day_bounds

__all__ = ["BrokerActivities", "CancelInput", "ReplaceInput", "StatementInput", "StatusInput", "SubmitInput"]


class SubmitInput(BaseModel):
    """Input of ``submit_order``."""

    model_config = ConfigDict(frozen=True)

    broker: str
    order: SubmitOrder
    #: Ask the broker whether it has the order before sending (set after an unconfirmed earlier round).
    check_first: bool = False


class CancelInput(BaseModel):
    """Input of ``cancel_order``."""

    model_config = ConfigDict(frozen=True)

    broker: str
    request: CancelOrder


class ReplaceInput(BaseModel):
    """Input of ``replace_order``."""

    model_config = ConfigDict(frozen=True)

    broker: str
    request: ReplaceOrder


class StatusInput(BaseModel):
    """Input of ``get_order_status``."""

    model_config = ConfigDict(frozen=True, serialize_by_alias=True)

    broker: str
    cl_ord_id: str = renamed("client_order_id", "cl_ord_id")


class StatementInput(BaseModel):
    """Input of ``broker_statement``: the broker and the UTC day whose fills are wanted."""

    model_config = ConfigDict(frozen=True)

    broker: str
    day: date


def _ack_from_status(status: OrderStatusReport) -> BrokerAck:
    rejected = status.status is OrderStatus.REJECTED
    reason = next((r.reason for r in status.reports if r.kind is ReportKind.REJECTED), None)
    return BrokerAck(
        accepted=not rejected,
        cl_ord_id=status.cl_ord_id,
        broker_order_id=status.broker_order_id,
        reason=reason if rejected else None,
        reports=status.reports,
    )


@contextlib.asynccontextmanager
async def _heartbeating(interval: float = 2.0) -> AsyncIterator[None]:
    # Keeps long broker calls visible to Temporal (and lets a cancellation reach the activity).
    async def beat() -> None:
        while True:
            await asyncio.sleep(interval)
            activity.heartbeat()

    task = asyncio.create_task(beat())
    try:
        yield
    finally:
        task.cancel()


class BrokerActivities:
    """Activities that talk to brokers; built with the brokers this worker owns."""

    def __init__(self, brokers: Mapping[str, Broker], *, answered: AnsweredReports = ANSWERED) -> None:
        """Serve requests for ``brokers``; note submissions' answers in ``answered`` (the dispatcher reads it)."""
        self._brokers = brokers
        self._answered = answered

    def _broker(self, name: str) -> Broker:
        broker = self._brokers.get(name)
        if broker is None:
            raise ApplicationError(f"this worker does not own broker {name!r}", type="ConfigError", non_retryable=True)
        return broker

    @contextlib.asynccontextmanager
    async def _boundary(self, broker: str, op: str) -> AsyncIterator[None]:
        BROKER_REQUESTS.labels(broker=broker, call=op).inc()
        try:
            async with _heartbeating():
                yield
        except BrokerUnavailable as e:
            BROKER_ERRORS.labels(broker=broker, error="unavailable").inc()
            activity.logger.warning("%s %s: broker unavailable, will retry: %s", broker, op, e)
            raise
        except (BrokerRejected, OrderNotFound) as e:
            BROKER_ERRORS.labels(broker=broker, error=type(e).__name__).inc()
            raise ApplicationError(str(e), type=type(e).__name__, non_retryable=True) from e
        except BrokerError as e:
            BROKER_ERRORS.labels(broker=broker, error=type(e).__name__).inc()
            raise

    @activity.defn(name="submit_order")
    async def submit_order(self, inp: SubmitInput) -> BrokerAck:
        """Send a new order unless the broker already has it."""
        broker = self._broker(inp.broker)
        cid = inp.order.cl_ord_id
        async with self._boundary(inp.broker, "submit"), self._answered.submitting(inp.broker, cid) as answered:
            ack = await self._submit(broker, inp)
            answered(ack)  # the dispatcher does not signal again what this answer carries
            return ack

    async def _submit(self, broker: Broker, inp: SubmitInput) -> BrokerAck:
        cid = inp.order.cl_ord_id
        if inp.check_first or activity.info().attempt > 1:
            status = await broker.get_order_status(cid)
            if status is not None:
                activity.logger.info("%s already has %s (%s); not sending again", inp.broker, cid, status.status)
                return _ack_from_status(status)
        started = time.perf_counter()
        ack = await broker.submit_order(inp.order)
        ORDER_LATENCY.labels(stage="submit").observe(time.perf_counter() - started)
        if not ack.accepted and ack.reason and "DUPLICATE" in ack.reason.upper():
            status = await broker.get_order_status(cid)
            if status is not None:
                return _ack_from_status(status)
        return ack

    @activity.defn(name="cancel_order")
    async def cancel_order(self, inp: CancelInput) -> BrokerAck:
        """Ask the broker to cancel an order."""
        broker = self._broker(inp.broker)
        cid = inp.request.cl_ord_id
        async with self._boundary(inp.broker, "cancel"):
            if activity.info().attempt > 1:
                status = await broker.get_order_status(cid)
                if status is not None and status.status is OrderStatus.CANCELED:
                    return BrokerAck(
                        accepted=True,
                        cl_ord_id=cid,
                        broker_order_id=status.broker_order_id,
                        reports=status.reports,
                    )
            return await broker.cancel_order(inp.request)

    @activity.defn(name="replace_order")
    async def replace_order(self, inp: ReplaceInput) -> BrokerAck:
        """Ask the broker to change an order."""
        broker = self._broker(inp.broker)
        async with self._boundary(inp.broker, "replace"):
            if activity.info().attempt > 1:
                status = await broker.get_order_status(inp.request.cl_ord_id)
                if status is not None and status.cl_ord_id == inp.request.cl_ord_id:
                    return BrokerAck(
                        accepted=True,
                        cl_ord_id=status.cl_ord_id,
                        broker_order_id=status.broker_order_id,
                        reports=status.reports,
                    )
            return await broker.replace_order(inp.request)

    @activity.defn(name="get_order_status")
    async def get_order_status(self, inp: StatusInput) -> OrderStatusReport | None:
        """The broker's view of an order and its fills (None when the broker does not know it)."""
        broker = self._broker(inp.broker)
        async with self._boundary(inp.broker, "status"):
            return await broker.get_order_status(inp.cl_ord_id)

    @activity.defn(name="broker_statement")
    async def broker_statement(self, inp: StatementInput) -> BrokerStatement:
        """What the broker says for end-of-day reconciliation: positions, the day's fills, open orders.

        Positions and fills only when its capabilities say it reports them (None otherwise: not compared).
        """
        broker = self._broker(inp.broker)
        caps = broker.capabilities
        start, end = day_bounds(inp.day)
        async with self._boundary(inp.broker, "statement"):
            taken_at = utcnow()
            open_orders = await broker.open_orders()
            fills = None
            if caps.reports_fills:
                since = await broker.fills_since(start - timedelta(microseconds=1))
                fills = [f for f in since if f.kind is ReportKind.FILL and start <= f.transact_at < end]
            positions = await broker.positions() if caps.reports_positions else None
        return BrokerStatement(
            broker=inp.broker,
            day=inp.day,
            taken_at=taken_at,
            positions=positions,
            fills=fills,
            open_orders=open_orders,
            one_account=caps.one_account,
        )
