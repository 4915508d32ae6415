"""Reports a submission's answer already carried are not signaled again (issue 18).

A broker's answer to a submission often carries the order's first reports (the acknowledgement, and a fill when
a market order is taken at once): the order workflow applies them from the answer (``BrokerAck.reports``). The
same reports also reach the report sink (the paper venue, and adapters that journal what an answer showed, push
them too), and each repeat cost the order a signal and often a workflow task of its own.

The broker's ``submit_order`` activity and the report dispatcher run in the same worker (the broker session's
owner), on one event loop. While a submission is in flight, the dispatcher holds a report of that order until the
answer is in (at most ``wait_seconds``, 2 s, as its shard of the outbox waits meanwhile; a later answer just
means the report is signaled as before); a report the answer carried is then not signaled (it is marked
delivered: the order has it). Safe when the answer never reaches the workflow: the submission is then retried,
and a retry asks the broker for the order first, whose status carries every report again.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable

from core.domain import BrokerAck, ExecutionReport

__all__ = ["ANSWERED", "AnsweredReports"]


class AnsweredReports:
    """The reports submissions' answers carried, by broker and ``cl_ord_id``, for a while."""

    def __init__(self, *, keep_seconds: float = 300.0, wait_seconds: float = 2.0) -> None:
        """Remember an answer's reports ``keep_seconds``; hold a report at most ``wait_seconds`` for its answer."""
        self._keep = keep_seconds
        self._wait = wait_seconds
        self._in_flight: dict[tuple[str, str], asyncio.Event] = {}
        self._carried: dict[tuple[str, str], tuple[float, frozenset[str]]] = {}

    @contextlib.asynccontextmanager
    async def submitting(self, broker: str, cl_ord_id: str) -> AsyncIterator[Callable[[BrokerAck], None]]:
        """A submission in flight; call what it yields with the broker's answer."""
        key = (broker, cl_ord_id)
        event = asyncio.Event()
        self._in_flight[key] = event

        def answered(ack: BrokerAck) -> None:
            self._prune()
            self._carried.pop(key, None)  # (re-inserted last: the dict stays in time order)
            self._carried[key] = (time.monotonic(), frozenset(r.exec_id for r in ack.reports))

        try:
            yield answered
        finally:
            if self._in_flight.get(key) is event:
                del self._in_flight[key]
            event.set()

    async def carried(self, report: ExecutionReport) -> bool:
        """Whether a submission's answer carried ``report`` (waiting for an answer in flight first)."""
        key = (report.broker, report.cl_ord_id)
        event = self._in_flight.get(key)
        if event is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(event.wait(), self._wait)
        entry = self._carried.get(key)
        return entry is not None and report.exec_id in entry[1]

    def _prune(self) -> None:
        cutoff = time.monotonic() - self._keep
        while self._carried:
            key, (at, _) = next(iter(self._carried.items()))
            if at >= cutoff:
                return
            del self._carried[key]


#: The worker's registry (its submit activities and its dispatcher share it).
ANSWERED = AnsweredReports()
