"""core.reconciliation.compare: the kinds, what the grace period leaves, what a broker that cannot report skips."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from core.domain import ExecutionReport, OrderSide, OrderStatus, OrderStatusReport, PositionReport, ReportKind
from core.reconciliation import (
    BrokerStatement,
    LedgerFill,
    LedgerOrder,
    LedgerView,
    ReconciliationKind,
    compare,
)

K = ReconciliationKind
NOW = datetime(2026, 11, 30, 21, 30, tzinfo=UTC)
DAY = date(2026, 11, 30)
GRACE = timedelta(minutes=2)


def _fill(exec_id: str, cid: str, qty: int, at: datetime, side: OrderSide = OrderSide.BUY) -> ExecutionReport:
    return ExecutionReport(
        broker="paper",
        exec_id=exec_id,
        kind=ReportKind.FILL,
        cl_ord_id=cid,
        symbol="AAPL",
        side=side,
        last_qty=Decimal(qty),
        last_price=Decimal(190),
        cum_qty=Decimal(qty),
        transact_at=at,
    )


def _order(order_id: str, status: OrderStatus, at: datetime, account: str = "a") -> LedgerOrder:
    return LedgerOrder(order_id=order_id, account=account, symbol="AAPL", status=status, updated_at=at)


def _working(cid: str) -> OrderStatusReport:
    return OrderStatusReport(
        broker="paper",
        cl_ord_id=cid,
        broker_order_id="v1",
        status=OrderStatus.ACCEPTED,
        qty=Decimal(1),
        cum_qty=Decimal(0),
    )


def test_a_missing_fill_explains_its_position_a_sell_counts_negative_and_nothing_else_is_reported() -> None:
    old = NOW - timedelta(hours=3)
    statement = BrokerStatement(
        broker="paper",
        day=DAY,
        taken_at=NOW,
        positions=[PositionReport(broker="paper", account="a", symbol="AAPL", qty=Decimal(-2))],
        fills=[_fill("x1", "EXA", 1, old), _fill("x2", "EXA.1", 3, old, OrderSide.SELL)],
    )
    ledger = LedgerView(
        positions={"a/AAPL": Decimal(1)},
        fills=[
            LedgerFill(
                exec_id="x1",
                order_id="EXA",
                account="a",
                symbol="AAPL",
                side=OrderSide.BUY,
                qty=Decimal(1),
                price=Decimal(190),
                filled_at=old,
            )
        ],
        known={"EXA": _order("EXA", OrderStatus.FILLED, old)},
    )
    [missing] = compare(statement, ledger, grace=GRACE)
    assert (missing.kind, missing.ref, missing.order_id) == (K.FILL_MISSING_IN_LEDGER, "x2", "EXA")
    assert missing.account == "a"


def test_unexplained_drift_says_both_sides_and_is_the_same_text_every_run() -> None:
    statement = BrokerStatement(
        broker="paper",
        day=DAY,
        taken_at=NOW,
        positions=[PositionReport(broker="paper", account="a", symbol="AAPL", qty=Decimal("2.50"))],
        fills=[],
    )
    ledger = LedgerView(positions={"a/AAPL": Decimal(1), "b/MSFT": Decimal(-4)})
    first = compare(statement, ledger, grace=GRACE)
    assert [(d.kind, d.ref) for d in first] == [(K.POSITION_DRIFT, "a/AAPL"), (K.POSITION_DRIFT, "b/MSFT")]
    assert first[0].detail == "a/AAPL: the broker holds 2.5, the ledger 1"
    assert first[1].detail == "b/MSFT: the broker holds 0, the ledger -4"
    assert compare(statement, ledger, grace=GRACE) == first


def test_what_is_younger_than_the_grace_period_waits_for_the_next_run() -> None:
    young = NOW - timedelta(seconds=30)
    statement = BrokerStatement(
        broker="paper",
        day=DAY,
        taken_at=NOW,
        positions=[],
        fills=[_fill("x9", "EXB", 1, young)],
        open_orders=[_working("EXC")],
    )
    ledger = LedgerView(
        open_orders=[_order("EXD", OrderStatus.SUBMITTED, young)],
        known={"EXC": _order("EXC", OrderStatus.CANCELED, young)},
    )
    assert compare(statement, ledger, grace=GRACE) == []
    # The same, two minutes later: a fill the ledger lacks, an order finished here but working there, an order
    # open here and not there.
    later = statement.model_copy(update={"taken_at": NOW + timedelta(minutes=5)})
    kinds = {d.kind for d in compare(later, ledger, grace=GRACE)}
    assert kinds == {K.FILL_MISSING_IN_LEDGER, K.ORPHAN_ORDER_AT_BROKER, K.ORDER_NOT_AT_BROKER}


def test_a_broker_that_cannot_report_positions_or_fills_is_compared_on_orders_only() -> None:
    old = NOW - timedelta(hours=1)
    statement = BrokerStatement(broker="fix", day=DAY, taken_at=NOW, open_orders=[_working("EXZ")])
    ledger = LedgerView(
        positions={"a/AAPL": Decimal(5)},
        fills=[
            LedgerFill(
                exec_id="f1",
                order_id="EXY",
                account="a",
                symbol="AAPL",
                side=OrderSide.BUY,
                qty=Decimal(5),
                price=Decimal(190),
                filled_at=old,
            )
        ],
    )
    [orphan] = compare(statement, ledger, grace=GRACE)
    assert (orphan.kind, orphan.ref, orphan.order_id) == (K.ORPHAN_ORDER_AT_BROKER, "EXZ", None)
    assert "Exodus knows no such order" in orphan.detail


def test_every_reconciliation_kind_is_a_typed_break_kind() -> None:
    from core.domain import BreakKind

    assert {k.break_kind for k in K} <= set(BreakKind)
