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


def _positions(broker: str, *held: tuple[str, str, int]) -> list[PositionReport]:
    return [PositionReport(broker=broker, account=a, symbol=s, qty=Decimal(q)) for a, s, q in held]


def test_a_one_account_broker_is_compared_with_every_exodus_account_routed_to_it() -> None:
    # Alpaca reports its one account (under EXODUS_ALPACA__ACCOUNT); two desks trade through it.
    statement = BrokerStatement(
        broker="alpaca",
        day=DAY,
        taken_at=NOW,
        positions=_positions("alpaca", ("alpaca", "AAPL", 100), ("alpaca", "MSFT", 5)),
        fills=[],
        one_account=True,
    )
    ledger = LedgerView(positions={"desk1/AAPL": Decimal(60), "desk2/AAPL": Decimal(40), "desk2/MSFT": Decimal(4)})
    [drift] = compare(statement, ledger, grace=GRACE)
    assert (drift.kind, drift.ref, drift.account, drift.symbol) == (K.POSITION_DRIFT, "alpaca/MSFT", "alpaca", "MSFT")
    assert drift.detail == "alpaca/MSFT: the broker holds 5, the ledger 4 (desk2 4)"
    # Compared account by account (as before this grouping), every position would be a drift.
    apart = compare(statement.model_copy(update={"one_account": False}), ledger, grace=GRACE)
    assert {d.ref for d in apart} == {"alpaca/AAPL", "alpaca/MSFT", "desk1/AAPL", "desk2/AAPL", "desk2/MSFT"}
    # Nothing held at the broker: the ledger's position is a drift of the connection, keyed the same way.
    flat, _ = compare(statement.model_copy(update={"positions": []}), ledger, grace=GRACE)
    assert (flat.ref, flat.account) == ("alpaca/AAPL", None)
    assert flat.detail == "alpaca/AAPL: the broker holds 0, the ledger 100 (desk1 60, desk2 40)"


def test_broker_account_ids_are_matched_to_exodus_accounts_through_the_registry() -> None:
    # IB reports its own account ids; desk1 and desk2 share DU111, desk3 has DU333 to itself, desk4 is unregistered.
    statement = BrokerStatement(
        broker="ib",
        day=DAY,
        taken_at=NOW,
        positions=_positions(
            "ib", ("DU111", "AAPL", 10), ("DU333", "AAPL", 7), ("desk4", "AAPL", 1), ("DU333", "IBM", 2)
        ),
        fills=[],
    )
    ledger = LedgerView(
        positions={
            "desk1/AAPL": Decimal(4),
            "desk2/AAPL": Decimal(6),
            "desk3/AAPL": Decimal(7),
            "desk4/AAPL": Decimal(1),
        },
        broker_accounts={"desk1": "DU111", "desk2": "DU111", "desk3": "DU333"},
    )
    [drift] = compare(statement, ledger, grace=GRACE)
    # The account a desk knows, not the broker's id, when one Exodus account holds the broker account.
    assert (drift.ref, drift.account, drift.detail) == (
        "desk3/IBM",
        "desk3",
        "desk3/IBM: the broker holds 2, the ledger 0",
    )
    shared = compare(
        statement.model_copy(update={"positions": _positions("ib", ("DU111", "AAPL", 9), ("DU333", "AAPL", 7))}),
        ledger,
        grace=GRACE,
    )
    assert [(d.ref, d.account, d.detail) for d in shared] == [
        ("DU111/AAPL", None, "DU111/AAPL: the broker holds 9, the ledger 10 (desk1 4, desk2 6)"),
        ("desk4/AAPL", "desk4", "desk4/AAPL: the broker holds 0, the ledger 1"),
    ]


def test_a_fill_difference_explains_the_position_of_the_broker_account_it_belongs_to() -> None:
    old = NOW - timedelta(hours=3)
    statement = BrokerStatement(
        broker="alpaca",
        day=DAY,
        taken_at=NOW,
        positions=_positions("alpaca", ("alpaca", "AAPL", 3)),
        fills=[_fill("x7", "EXQ", 1, old)],
        one_account=True,
    )
    ledger = LedgerView(
        positions={"desk1/AAPL": Decimal(2)},
        known={"EXQ": _order("EXQ", OrderStatus.FILLED, old, account="desk1")},
    )
    [missing] = compare(statement, ledger, grace=GRACE)
    assert missing.kind is K.FILL_MISSING_IN_LEDGER


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
