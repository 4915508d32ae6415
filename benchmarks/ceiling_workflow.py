"""The engine's ceiling: a no-op workflow with the order workflow's shape and none of its work.

Per order it does what the Temporal server and the SDK see an Exodus market order do, with payloads of the
same sizes: update-with-start (six search attributes, a static summary) answered right after a local
activity (the risk check), in the same workflow task that schedules a regular activity on a second task
queue (the submission), whose worker then signals the workflow (the venue's execution reports); then a
local activity booking the change (with a search-attribute upsert and the current details) while a second
regular activity runs (the reconciliation); then the final booking. The number of bookings, signals and
upserts is a parameter, set from a real order's history. Activities and handlers only return payloads.

With ``minimal`` it is the minimal durable order instead (the second ceiling): update-with-start answered after
the risk local activity, one submission activity, the venue's report signal(s) awaited, one booking, completion.

Kept apart from ``benchmarks.ceiling`` so the workflow sandbox imports only this module; its payload classes
are passed through the sandbox (``benchmarks.ceiling_types``), as Exodus' are (``workflows.order_models``).
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy, SearchAttributeKey

with workflow.unsafe.imports_passed_through():
    from benchmarks.ceiling_types import Blob, CeilingInput

__all__ = ["Blob", "CeilingInput", "CeilingWorkflow", "SA_STATUS"]

SA_STATUS = SearchAttributeKey.for_keyword("ExodusStatus")

_LOCAL = timedelta(seconds=10)
_RETRY = RetryPolicy(initial_interval=timedelta(milliseconds=200), maximum_interval=timedelta(seconds=10))


@workflow.defn(name="CeilingWorkflow")
class CeilingWorkflow:
    """See the module docstring."""

    @workflow.init
    def __init__(self, inp: CeilingInput) -> None:
        """Nothing decided yet."""
        self._inp = inp
        self._decision: Blob | None = None
        self._reports = 0
        self._upserts = 0

    @workflow.update
    async def decision(self, request_hash: str) -> Blob:
        """Answered as soon as the risk local activity returns."""
        await workflow.wait_condition(lambda: self._decision is not None)
        decision: Blob | None = self._decision
        assert decision is not None
        return decision

    @workflow.signal
    def report(self, report: Blob) -> None:
        """An execution report (counted, nothing else)."""
        self._reports += 1

    def _size(self, name: str) -> int:
        return self._inp.sizes.get(name, 100)

    async def _persist(self, status: str) -> None:
        await workflow.execute_local_activity(
            "ceiling_persist",
            Blob(pad="p" * self._size("persist_in")),
            result_type=int,
            start_to_close_timeout=_LOCAL,
            retry_policy=_RETRY,
        )
        if self._upserts < self._inp.upserts:
            workflow.upsert_search_attributes([SA_STATUS.value_set(status)])
            self._upserts += 1
        workflow.set_current_details(f"{status} · {'d' * 60}")

    async def _broker(self, name: str, *, signals: int = 0) -> Blob:
        answer: Blob = await workflow.execute_activity(
            name,
            Blob(
                pad="b" * self._size(f"{name}_in"),
                answer=self._size(f"{name}_out"),
                workflow_id=workflow.info().workflow_id,
                signals=signals,
                signal_size=self._size("signal"),
            ),
            result_type=Blob,
            task_queue=self._inp.broker_task_queue,
            start_to_close_timeout=timedelta(seconds=15),
            heartbeat_timeout=timedelta(seconds=10),
            retry_policy=RetryPolicy(
                initial_interval=timedelta(milliseconds=500), maximum_interval=timedelta(seconds=10)
            ),
        )
        return answer

    @workflow.run
    async def run(self, inp: CeilingInput) -> Blob:
        """Risk and answer; submit; book and reconcile; final booking."""
        self._decision = await workflow.execute_local_activity(
            "ceiling_risk",
            Blob(pad="r" * self._size("risk_in"), answer=self._size("risk_out")),
            result_type=Blob,
            start_to_close_timeout=_LOCAL,
            retry_policy=_RETRY,
        )
        if inp.minimal:
            await self._broker("ceiling_submit", signals=inp.signals)
            await workflow.wait_condition(lambda: self._reports >= inp.signals)
            await self._persist("FILLED")
            return Blob(pad="o" * self._size("result"))
        persists = 0
        if inp.book_in_first_task:
            booked = asyncio.create_task(self._persist("SUBMITTED"))
            await self._broker("ceiling_submit", signals=inp.signals)
            await booked
            persists += 1
        else:
            await self._broker("ceiling_submit", signals=inp.signals)
        if not inp.reconcile:
            pass  # settled by the venue's final report (the leaner history): no status round trip
        elif persists < inp.persists - 1:
            # The submission's answer is booked while the reconciliation runs.
            booked = asyncio.create_task(self._persist("FILLED"))
            await self._broker("ceiling_status")
            await booked
            persists += 1
        else:
            await self._broker("ceiling_status")
        await workflow.wait_condition(workflow.all_handlers_finished)
        while persists < inp.persists:
            await self._persist("FILLED")
            persists += 1
        return Blob(pad="o" * self._size("result"))
