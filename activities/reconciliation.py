"""End-of-day reconciliation's Postgres side: compare a statement with the ledger, open breaks, keep the report.

``reconcile_statement`` runs on the orders' task queue (it needs Postgres, not the broker's session). In one
transaction it reads the ledger's view (``store.reconciliation.ledger_view``), compares (``core.reconciliation``),
opens a break per difference unless the same one is open, and keeps the run's report; a retried attempt finds
the report written and changes nothing. After the commit it sets the per-kind gauge and counts new breaks.
"""

from __future__ import annotations

import logging
from datetime import date, datetime, timedelta

from pydantic import BaseModel, ConfigDict
from temporalio import activity

from core.domain import base_order_id
from core.metrics import RECONCILIATION_BREAKS, RECONCILIATION_DIFFERENCES, RECONCILIATION_LAST_RUN
from core.reconciliation import BrokerStatement, ReconciliationKind, compare
from store import Pool
from store.reconciliation import ledger_view, open_break, record_run, run_of

__all__ = ["ReconcileInput", "ReconcileResult", "ReconciliationActivities"]

log = logging.getLogger(__name__)


class ReconcileInput(BaseModel):
    """Input of ``reconcile_statement``: the statement and the run it belongs to."""

    model_config = ConfigDict(frozen=True)

    workflow_id: str
    run_id: str
    started_at: datetime
    statement: BrokerStatement


class ReconcileResult(BaseModel):
    """What a run found: differences per kind and how many opened a new break."""

    model_config = ConfigDict(frozen=True)

    workflow_id: str
    run_id: str
    broker: str
    day: date
    compared: list[str]
    counts: dict[str, int]
    new_breaks: int


class ReconciliationActivities:
    """The reconciliation's Postgres side."""

    def __init__(self, *, pool: Pool, grace_seconds: float) -> None:
        """Use ``pool``; leave what is younger than ``grace_seconds`` at the statement's time for the next run."""
        self._pool = pool
        self._grace = timedelta(seconds=grace_seconds)

    @activity.defn(name="reconcile_statement")
    async def reconcile_statement(self, inp: ReconcileInput) -> ReconcileResult:
        """Compare, open breaks, keep the report (once per run)."""
        st = inp.statement
        compared = [
            name for name, given in (("positions", st.positions is not None), ("fills", st.fills is not None)) if given
        ] + ["orders"]
        names = {base_order_id(o.cl_ord_id) for o in st.open_orders}
        names |= {f.order_id for f in st.fills or []}
        async with self._pool.connection() as conn, conn.transaction():
            done = await run_of(conn, inp.workflow_id, inp.run_id)
            if done is not None:
                return ReconcileResult(
                    workflow_id=inp.workflow_id,
                    run_id=inp.run_id,
                    broker=st.broker,
                    day=st.day,
                    compared=done["compared"],
                    counts=done["counts"],
                    new_breaks=done["new_breaks"],
                )
            view = await ledger_view(conn, broker=st.broker, day=st.day, order_ids=names)
            differences = compare(st, view, grace=self._grace)
            counts = {k.value: 0 for k in ReconciliationKind}
            new_by_kind: dict[str, int] = {}
            rows = []
            for d in differences:
                break_id, new = await open_break(
                    conn, broker=st.broker, kind=d.kind.break_kind, ref=d.ref, order_id=d.order_id, detail=d.detail
                )
                counts[d.kind.value] += 1
                if new:
                    new_by_kind[d.kind.value] = new_by_kind.get(d.kind.value, 0) + 1
                rows.append(
                    {
                        "kind": d.kind.value,
                        "ref": d.ref,
                        "orderId": d.order_id,
                        "account": d.account,
                        "symbol": d.symbol,
                        "detail": d.detail,
                        "breakId": break_id,
                        "new": new,
                    }
                )
            new_breaks = sum(new_by_kind.values())
            await record_run(
                conn,
                workflow_id=inp.workflow_id,
                run_id=inp.run_id,
                broker=st.broker,
                day=st.day,
                started_at=inp.started_at,
                compared=compared,
                counts=counts,
                new_breaks=new_breaks,
                differences=rows,
            )
        for kind, n in counts.items():
            RECONCILIATION_DIFFERENCES.labels(broker=st.broker, kind=kind).set(n)
        for kind, n in new_by_kind.items():
            RECONCILIATION_BREAKS.labels(broker=st.broker, kind=kind).inc(n)
        RECONCILIATION_LAST_RUN.labels(broker=st.broker).set_to_current_time()
        log.info(
            "reconciled %s for %s: %d difference(s), %d new break(s) (compared %s)",
            st.broker,
            st.day.isoformat(),
            len(differences),
            new_breaks,
            ", ".join(compared),
        )
        return ReconcileResult(
            workflow_id=inp.workflow_id,
            run_id=inp.run_id,
            broker=st.broker,
            day=st.day,
            compared=compared,
            counts=counts,
            new_breaks=new_breaks,
        )
