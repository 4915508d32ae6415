"""End-of-day reconciliation of one broker for one UTC day.

::

    broker_statement (activity on the broker's task queue: positions, the day's fills, open orders)
        ▼
    reconcile_statement (activity on the orders' queue: compare with the ledger and the read model,
                         open breaks, keep the report)

Started by the broker's Temporal Schedule (``reconcile-<broker>``, daily at ``reconciliation.time_utc``; its day is
the scheduled day minus ``days_back``) or on demand by ``POST /api/v1/reconciliations`` (workflow id
``reconcile-<broker>-<date>``: one per broker and day). A second run of a day opens no break the first one
opened (breaks are kept once per broker, kind and ref while open). A broker that cannot answer is retried for
up to ``statement_timeout_seconds``; then the run fails (visible in the Temporal UI), and nothing is recorded.
"""

from __future__ import annotations

from datetime import date, timedelta

from pydantic import BaseModel, ConfigDict
from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from activities.broker import StatementInput
    from activities.reconciliation import ReconcileInput, ReconcileResult
    from core.reconciliation import BrokerStatement

__all__ = ["ReconciliationInput", "ReconciliationWorkflow"]


class ReconciliationInput(BaseModel):
    """Which broker, where its session lives, and which day (None: the day the run starts, minus ``days_back``)."""

    model_config = ConfigDict(frozen=True)

    broker: str
    broker_task_queue: str
    day: date | None = None
    days_back: int = 0
    #: How long the broker may take to answer (retried meanwhile) before the run fails.
    statement_timeout_seconds: float = 3600.0


@workflow.defn(name="ReconciliationWorkflow")
class ReconciliationWorkflow:
    """One reconciliation run."""

    @workflow.run
    async def run(self, inp: ReconciliationInput) -> ReconcileResult:
        """Take the broker's statement, compare it with the ledger, keep the report."""
        started = workflow.now()
        day = inp.day or (started - timedelta(days=inp.days_back)).date()
        statement: BrokerStatement = await workflow.execute_activity(
            "broker_statement",
            StatementInput(broker=inp.broker, day=day),
            result_type=BrokerStatement,
            task_queue=inp.broker_task_queue,
            start_to_close_timeout=timedelta(minutes=5),
            schedule_to_close_timeout=timedelta(seconds=inp.statement_timeout_seconds),
            heartbeat_timeout=timedelta(seconds=30),
            retry_policy=RetryPolicy(maximum_interval=timedelta(minutes=1), non_retryable_error_types=["ConfigError"]),
        )
        info = workflow.info()
        result: ReconcileResult = await workflow.execute_activity(
            "reconcile_statement",
            ReconcileInput(workflow_id=info.workflow_id, run_id=info.run_id, started_at=started, statement=statement),
            result_type=ReconcileResult,
            start_to_close_timeout=timedelta(minutes=5),
            retry_policy=RetryPolicy(maximum_interval=timedelta(minutes=1)),
        )
        return result
