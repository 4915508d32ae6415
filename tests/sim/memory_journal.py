"""A venue journal in memory that fails on demand (the paper venue's and the local FIX venue's tests)."""

from __future__ import annotations

import copy
from typing import Any

from core.domain import ExecutionReport
from sim.matching import MatchResult, SimOrder

__all__ = ["JournalDown", "MemoryJournal"]


class JournalDown(OSError):
    pass


class MemoryJournal:
    """A venue journal in memory that can fail before or after committing."""

    def __init__(self) -> None:
        self.orders: dict[str, dict[str, Any]] = {}
        self.reports: dict[str, dict[str, Any]] = {}
        self.delivered: set[str] = set()
        self.duplicates: dict[str, str] = {}
        self.saves = 0
        #: Fail the next N saves before anything is written.
        self.fail_before_commit = 0
        #: Write the next N saves, then fail anyway (an answer lost after the commit).
        self.fail_after_commit = 0
        self.fail_loads = 0

    async def acquire(self) -> None:
        pass

    async def release(self) -> None:
        pass

    async def load(self) -> tuple[list[SimOrder], list[ExecutionReport]]:
        if self.fail_loads:
            self.fail_loads -= 1
            raise JournalDown("journal unreachable (injected)")
        orders = [SimOrder.model_validate(copy.deepcopy(o)) for o in self.orders.values()]
        pending = [ExecutionReport.model_validate(r) for k, r in self.reports.items() if k not in self.delivered]
        return orders, pending

    async def save(self, result: MatchResult) -> None:
        if self.fail_before_commit:
            self.fail_before_commit -= 1
            raise JournalDown("connection lost before commit (injected)")
        self.saves += 1
        for o in result.changed:
            self.orders[o.venue_order_id] = o.model_dump(mode="json")
        for r in result.reports:
            self.reports.setdefault(r.exec_id, r.model_dump(mode="json"))
        for d in result.duplicates:
            self.duplicates.setdefault(d.event_id, d.cl_ord_id)
        if self.fail_after_commit:
            self.fail_after_commit -= 1
            raise JournalDown("connection lost after commit (injected)")

    async def mark_delivered(self, exec_ids: list[str]) -> None:
        self.delivered.update(exec_ids)

    def status(self, cl_ord_id: str) -> str | None:
        for o in self.orders.values():
            if cl_ord_id in o["client_order_ids"]:
                return str(o["status"])
        return None
