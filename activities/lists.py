"""What an order list's coordinator asks of the world: resize a leg, raise the alert, write the list's row.

The row (``list_save``, a local activity) is what ``GET /order-lists/{id}`` answers from.

A workflow cannot send an update to another workflow, so a leg's resize goes through this activity (the Temporal
client's ``execute_update`` of the order's ``amend``). The alert is an audit entry and a metric.
"""

from __future__ import annotations

import logging
from decimal import Decimal

from pydantic import BaseModel, ConfigDict
from temporalio import activity
from temporalio.client import Client, WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode

from core.domain import AmendRequest, AmendResult, OrderStatus
from core.metrics import LIST_UNPROTECTED
from core.orderlist import ListBook, list_workflow_id
from store import Pool
from store.audit import append_audit
from store.order_lists import write_list

__all__ = ["LegAlert", "LegResize", "ListActivities", "ListSave"]

log = logging.getLogger(__name__)


class LegResize(BaseModel):
    """Resize the order ``workflow_id`` (a list's leg) to ``qty``."""

    model_config = ConfigDict(frozen=True)

    list_id: str
    leg: str
    workflow_id: str
    qty: Decimal


class LegAlert(BaseModel):
    """A protective leg ended unfilled while the position was open."""

    model_config = ConfigDict(frozen=True)

    list_id: str
    leg: str
    broker: str
    account: str
    symbol: str
    open_qty: Decimal
    detail: str


class ListSave(BaseModel):
    """The list's book as it stands, its ``version``-th write (later writes win)."""

    model_config = ConfigDict(frozen=True)

    version: int
    book: ListBook


#: An amend refused for these reasons may go through a moment later (the order is not acknowledged yet).
_NOT_YET = ("wait until the broker has acknowledged it",)


class ListActivities:
    """The coordinator's activities (on the order task queue)."""

    def __init__(self, *, client: Client, pool: Pool) -> None:
        """Resize through ``client``; write alerts to ``pool``."""
        self.client = client
        self.pool = pool

    @activity.defn(name="resize_leg")
    async def resize_leg(self, inp: LegResize) -> AmendResult:
        """Amend the leg's quantity. An order not acknowledged yet raises (retried); a refusal is returned."""
        handle = self.client.get_workflow_handle(inp.workflow_id)
        try:
            result: AmendResult = await handle.execute_update(
                "amend", AmendRequest(qty=inp.qty, requested_by=f"list:{inp.list_id}"), result_type=AmendResult
            )
        except WorkflowUpdateFailedError as e:
            reason = str(e.cause) if e.cause else str(e)
            if any(text in reason for text in _NOT_YET):
                raise ApplicationError(f"{inp.leg} cannot be resized yet: {reason}") from e
            return AmendResult(accepted=False, status=OrderStatus.RECEIVED, reason=reason, qty=inp.qty)
        except RPCError as e:
            if e.status is not RPCStatusCode.NOT_FOUND:
                raise  # unreachable: retried
            # The order is closed (its end reaches the list as a report): nothing to resize.
            return AmendResult(accepted=False, status=OrderStatus.RECEIVED, reason=e.message, qty=inp.qty)
        return result

    @activity.defn(name="list_alert")
    async def alert(self, inp: LegAlert) -> None:
        """Count the unprotected position and write it to the audit log."""
        async with self.pool.connection() as conn, conn.transaction():
            await append_audit(
                conn,
                actor=f"list:{inp.list_id}",
                action="list.unprotected",
                subject=inp.list_id,
                detail=inp.model_dump(mode="json"),
            )
        LIST_UNPROTECTED.labels(broker=inp.broker).inc()
        log.warning("order list %s: %s", inp.list_id, inp.detail)

    @activity.defn(name="list_save")
    async def save(self, inp: ListSave) -> bool:
        """Write the list's row (scope columns from its first leg); an older version than the row's is skipped."""
        book, request = inp.book, inp.book.request
        first = request.legs[0].order
        async with self.pool.connection() as conn, conn.transaction():
            return await write_list(
                conn,
                list_id=request.list_id,
                workflow_id=list_workflow_id(request.list_id),
                client_id=request.client_id,
                client_list_id=request.client_list_id,
                account=first.account,
                broker=first.broker,
                contingency=request.contingency.value,
                status=book.status.value,
                version=inp.version,
                book=book.model_dump(mode="json"),
            )
