"""The bridge's orders and the execution reports derived from them: how a report moves an order, and the journal.

Every role that learns something about an order (the EA-facing bridge from acknowledgements, deals and order
updates; the command queue when it withdraws or expires a command) calls ``emit``, which journals the report in
the shared report journal (``broker_reports``, broker ``mt5``, the account as the stream; ``store/reports.py``)
and moves the bridge's order row with it in the caller's transaction. The worker reads the bridge's orders and
their reports through ``ReportJournal``; the shared ``ReportDelivery`` delivers the journaled reports to the order
workflows until they are marked delivered (a NOTIFY on ``exodus_mt5`` wakes it at once).

Every report has an exec id derived from MT5 tickets or command ids, so a report is journaled once whichever path
learns of it first (``emit`` returns None for a report already journaled), and the order workflow books each once.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any, Final

from psycopg import AsyncConnection

from brokers.mt5 import tables
from brokers.mt5.rows import BROKER, OrderRow
from core.domain import ExecutionReport, OrderSide, OrderStatus, OrderStatusReport, ReportKind
from store import Pool
from store.reports import fill_reports, insert_report, reports_of

__all__ = ["OPEN_STATUSES", "ReportJournal", "emit"]

#: An order in one of these is still working at the terminal.
OPEN_STATUSES: Final = tuple(
    s.value for s in (OrderStatus.SUBMITTED, OrderStatus.ACCEPTED, OrderStatus.PARTIALLY_FILLED)
)
_FINAL_KINDS: Final = {
    ReportKind.CANCELED: OrderStatus.CANCELED,
    ReportKind.EXPIRED: OrderStatus.EXPIRED,
    ReportKind.REJECTED: OrderStatus.REJECTED,
}


async def emit(
    conn: AsyncConnection[Any],
    order: OrderRow,
    kind: ReportKind,
    *,
    exec_id: str,
    at: datetime,
    last_qty: Decimal = Decimal(0),
    last_price: Decimal | None = None,
    fee: Decimal = Decimal(0),
    reason: str | None = None,
    cl_ord_id: str | None = None,
    new_price: Decimal | None = None,
    new_stop_price: Decimal | None = None,
) -> ExecutionReport | None:
    """Journal one report of ``order`` and move the bridge's order row with it (in place).

    ``order`` must be locked by the caller's transaction. Returns None (and changes nothing) when a report
    with ``exec_id`` was journaled before.
    """
    status = OrderStatus(order["status"])
    cum, avg = order["cum_qty"], order["avg_price"]
    cid = cl_ord_id or order["client_order_id"]
    if kind is ReportKind.FILL:
        assert last_price is not None
        avg = ((avg or Decimal(0)) * cum + last_qty * last_price) / (cum + last_qty)
        cum = cum + last_qty
        if cum >= order["qty"]:
            status = OrderStatus.FILLED
        elif not status.is_terminal:
            status = OrderStatus.PARTIALLY_FILLED
    elif kind is ReportKind.ACCEPTED:
        if status is OrderStatus.SUBMITTED:
            status = OrderStatus.ACCEPTED
    elif kind in _FINAL_KINDS:
        if status is not OrderStatus.FILLED:
            status = _FINAL_KINDS[kind]
    terminal = status.is_terminal
    report = ExecutionReport(
        broker=BROKER,
        exec_id=exec_id,
        kind=kind,
        cl_ord_id=cid,
        broker_order_id=str(order["ticket"]) if order["ticket"] else None,
        symbol=order["symbol"],
        side=OrderSide(order["side"]),
        last_qty=last_qty,
        last_price=last_price,
        cum_qty=cum,
        leaves_qty=Decimal(0) if terminal else max(order["qty"] - cum, Decimal(0)),
        avg_price=avg,
        fee=fee,
        reason=reason,
        new_qty=order["qty"] if kind is ReportKind.REPLACED else None,
        new_price=new_price,
        new_stop_price=new_stop_price,
        transact_at=at,
    )
    if not await insert_report(conn, report, broker=BROKER, stream=order["account"], order_id=order["order_id"]):
        return None
    price, stop = order["price"], order["stop_price"]
    if kind is ReportKind.REPLACED:
        price = new_price if new_price is not None else price
        stop = new_stop_price if new_stop_price is not None else stop
    order["status"], order["cum_qty"], order["avg_price"] = status.value, cum, avg
    order["client_order_id"], order["price"], order["stop_price"] = cid, price, stop
    if kind in _FINAL_KINDS and reason:
        order["reason"] = reason
    await tables.update_order(conn, order)
    return report


class ReportJournal:
    """The worker's reads of the bridge's orders and their reports (in the shared journal)."""

    def __init__(self, pool: Pool) -> None:
        """Read through ``pool``."""
        self._pool = pool

    async def order(self, order_id: str) -> OrderRow | None:
        """The bridge's row of an order."""
        async with self._pool.connection() as conn:
            return await tables.order(conn, order_id)

    async def reports_of(self, order_id: str) -> list[ExecutionReport]:
        """Every report of an order, in the order they were produced."""
        async with self._pool.connection() as conn:
            return await reports_of(conn, broker=BROKER, order_id=order_id)

    async def status_report(self, order_id: str) -> OrderStatusReport | None:
        """The bridge's view of an order and every report it produced."""
        order = await self.order(order_id)
        if order is None:
            return None
        return _status_report(order, await self.reports_of(order_id))

    async def open_orders(self, accounts: list[str]) -> list[OrderStatusReport]:
        """Orders still working at the terminals of ``accounts`` as the EA's acks and trade reports left them.

        One statement however many orders work (the broker sweep's mass status); without their reports
        (``status_report`` has them).
        """
        async with self._pool.connection() as conn:
            rows = await tables.open_orders(conn, accounts, list(OPEN_STATUSES))
        return [_status_report(row, []) for row in rows]

    async def fills_since(self, accounts: list[str], since: datetime) -> list[ExecutionReport]:
        """Fills of ``accounts`` that happened after ``since``."""
        async with self._pool.connection() as conn:
            reports = await fill_reports(conn, broker=BROKER, streams=accounts)
        return [r for r in reports if r.transact_at > since]


def _status_report(order: OrderRow, reports: list[ExecutionReport]) -> OrderStatusReport:
    return OrderStatusReport(
        broker=BROKER,
        cl_ord_id=order["client_order_id"],
        broker_order_id=str(order["ticket"]) if order["ticket"] else None,
        status=OrderStatus(order["status"]),
        qty=order["qty"],
        cum_qty=order["cum_qty"],
        avg_price=order["avg_price"],
        price=order["price"],
        stop_price=order["stop_price"],
        reports=reports,
    )
