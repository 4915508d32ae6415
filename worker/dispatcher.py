"""Deliver broker execution reports to their order workflows as signals.

The dispatcher is the ``ReportSink`` every broker adapter pushes to. It returns once the report is
delivered, or once it is clear it never can be (no such order, or the order's workflow already closed);
such reports are kept in ``unmatched_reports`` for an operator, never dropped, and a fill among them is a
reconciliation break (``UNMATCHED_FILL``), unless the order already had that report (a broker's or our
outbox's late repeat of a fill its order booked, or of another report its timeline shows, before it closed).
Any other failure (Temporal unreachable) raises, and the adapter's outbox retries.
"""

from __future__ import annotations

import logging

from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from activities.answered import ANSWERED, AnsweredReports
from core.domain import Break, BreakKind, ExecutionReport, ReportKind, workflow_id_for
from core.metrics import REPORTS_ANSWERED, REPORTS_UNMATCHED
from store import Pool
from store.breaks import add_order_break, add_unmatched_report
from store.ledger import fill_booked
from store.timeline import report_on_timeline
from workflows.order import OrderWorkflow

__all__ = ["ReportDispatcher"]

log = logging.getLogger(__name__)


class ReportDispatcher:
    """Signals ``OrderWorkflow.execution_report`` to the workflow of the report's order."""

    def __init__(self, client: Client, pool: Pool | None, *, answered: AnsweredReports = ANSWERED) -> None:
        """Signal through ``client``; record undeliverable reports through ``pool``.

        A report the answer to its order's submission carried (``answered``, filled by this worker's submit
        activities) is not signaled: the order has it from the answer.
        """
        self._client = client
        self._pool = pool
        self._answered = answered

    async def __call__(self, report: ExecutionReport) -> None:
        """Deliver one report."""
        if await self._answered.carried(report):
            REPORTS_ANSWERED.labels(broker=report.broker).inc()
            return
        handle = self._client.get_workflow_handle(workflow_id_for(report.order_id))
        try:
            await handle.signal(OrderWorkflow.execution_report, report)
        except RPCError as e:
            if e.status != RPCStatusCode.NOT_FOUND:
                raise
            await self._unmatched(report, reason=str(e) or "no running order workflow")

    async def _unmatched(self, report: ExecutionReport, *, reason: str) -> None:
        kind = "closed" if "completed" in reason or "closed" in reason else "unknown"
        if await self._already_booked(report):
            REPORTS_UNMATCHED.labels(broker=report.broker, reason="already_booked").inc()
            log.info(
                "%s report %s for %s arrived after its order closed; the order already had it",
                report.kind.value,
                report.exec_id,
                report.cl_ord_id,
            )
            return
        REPORTS_UNMATCHED.labels(broker=report.broker, reason=kind).inc()
        log.warning("report %s for %s reached no workflow: %s", report.exec_id, report.cl_ord_id, reason)
        if self._pool is None:
            return
        # Broker text is stored as Postgres can hold it (a NUL would make this insert, and so the outbox, fail).
        async with self._pool.connection() as conn, conn.transaction():
            await add_unmatched_report(
                conn,
                broker=report.broker,
                exec_id=report.exec_id,
                cl_ord_id=report.cl_ord_id,
                reason=reason,
                report=report.model_dump(mode="json"),
            )
            if report.kind is ReportKind.FILL:
                brk = Break(
                    kind=BreakKind.UNMATCHED_FILL,
                    detail=f"{report.exec_id} {report.last_qty} @ {report.last_price} ({kind} order)",
                )
                await add_order_break(conn, brk, order_id=report.order_id, broker=report.broker)

    async def _already_booked(self, report: ExecutionReport) -> bool:
        if self._pool is None:
            return False
        async with self._pool.connection() as conn:
            if report.kind is ReportKind.FILL:
                return await fill_booked(conn, broker=report.broker, exec_id=report.exec_id, order_id=report.order_id)
            # A repeat of a report the order took before it closed (an acknowledgement that also rode in the
            # submission's answer, say): its timeline has it.
            return await report_on_timeline(conn, order_id=report.order_id, exec_id=report.exec_id)
