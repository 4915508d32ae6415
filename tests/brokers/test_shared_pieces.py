"""The pieces the REST adapters and their venues share: fill totals, status reports, wire numbers, injected faults."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from brokers.http import decimal_of, decimal_text
from brokers.journal import JournaledBroker, fill_totals
from core.domain import ExecutionReport, OrderSide, OrderStatus, ReportKind
from devstack.venues.alpaca.venue import VenueFaults as AlpacaFaults
from devstack.venues.kraken.venue import VenueFaults as KrakenFaults
from devstack.venues.oanda.venue import VenueFaults as OandaFaults

D = Decimal


def _report(exec_id: str, kind: ReportKind, qty: str = "0", price: str | None = None) -> ExecutionReport:
    return ExecutionReport(
        broker="test",
        exec_id=exec_id,
        kind=kind,
        cl_ord_id="EX0123456789ABCDEF",
        symbol="AAPL",
        side=OrderSide.BUY,
        last_qty=D(qty),
        last_price=D(price) if price is not None else None,
        cum_qty=D(0),
        leaves_qty=D(0),
        transact_at=datetime(2026, 1, 1, tzinfo=UTC),
    )


class _Adapter(JournaledBroker):
    def __init__(self) -> None:
        self.name = "test"


def test_fill_totals_and_the_status_report_count_only_fills() -> None:
    reports = [
        _report("a", ReportKind.ACCEPTED, qty="5"),
        _report("b", ReportKind.FILL, qty="2", price="10"),
        _report("c", ReportKind.FILL, qty="3", price="20"),
    ]
    assert fill_totals(reports) == (D(5), D(80))
    assert fill_totals(reports[:1]) == (D(0), D(0))
    working = _Adapter()._order_status(reports, cl_ord_id="EX0123456789ABCDEF", broker_order_id="x", qty=D(10))
    assert (working.status, working.cum_qty, working.avg_price) == (OrderStatus.PARTIALLY_FILLED, D(5), D(16))
    fresh = _Adapter()._order_status(reports[:1], cl_ord_id="EX0123456789ABCDEF", broker_order_id="x", qty=D(10))
    assert (fresh.status, fresh.cum_qty, fresh.avg_price) == (OrderStatus.ACCEPTED, D(0), None)
    done = _Adapter()._order_status(
        reports, cl_ord_id="EX0123456789ABCDEF", broker_order_id="x", qty=D(5), status=OrderStatus.FILLED
    )
    assert done.status is OrderStatus.FILLED


def test_wire_numbers_read_and_write_plain_decimals() -> None:
    assert decimal_of("1.50") == D("1.50") and decimal_of(D("2")) == D(2) and decimal_of(3) == D(3)
    assert [decimal_of(v) for v in (None, "", "abc", "Infinity", "NaN")] == [None] * 5
    assert decimal_text(D("1.500E+2")) == "150" and decimal_text(D("0.00010")) == "0.0001"


def test_each_venue_matches_its_faults_in_its_own_words() -> None:
    alpaca = AlpacaFaults()
    alpaca.add("error_before", method="POST", path="/v2/orders", times=2)
    assert alpaca.take("GET", "/v2/orders") is None and alpaca.take("POST", "/v2/account") is None
    fault = alpaca.take("POST", "/v2/orders/abc")  # a prefix of the path
    assert fault is not None and fault.status == 500 and len(alpaca.pending) == 1

    oanda = OandaFaults()
    oanda.add("drop_after", path=r"^/orders/\d+/cancel$")
    assert oanda.take("PUT", "/orders/12/cancelled") is None
    fault = oanda.take("PUT", "/orders/12/cancel")  # a regular expression
    assert fault is not None and fault.status == 503 and not oanda.pending

    kraken = KrakenFaults()
    kraken.add("error_after", method="AddOrder", errors=["EService:Unavailable"])
    assert kraken.take("CancelOrder") is None
    fault = kraken.take("AddOrder")  # by method alone
    assert fault is not None and fault.status == 502 and fault.errors == ["EService:Unavailable"]
