"""Every pre-trade check on its own: approved exactly at the limit, refused just past it, with its reason code."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from brokers.alpaca.config import ALPACA_CAPABILITIES
from core.domain import OrderSide, OrderType, PegType, RiskReason, TermsCode, TimeInForce, TradingState
from core.risk import (
    AccountOverrides,
    AccountState,
    BrokerLimits,
    ClassLimits,
    Currency,
    InstrumentOverrides,
    Limits,
    PolicySet,
    PositionView,
    ReasonCode,
    ReservationView,
    RiskPolicy,
    VelocityLimit,
    account_equity,
    basic_check,
    valuation_price,
)
from tests.harness import make_order, static_instruments

D = Decimal
NOW = datetime(2026, 11, 20, 15, 0, tzinfo=UTC)
CATALOG = static_instruments()
AAPL = CATALOG.get("AAPL")  # tick 0.01, lot 1, min 1, max 100000
EURUSD = CATALOG.get("EURUSD")  # tick 0.00001, lot 1000

POLICY = RiskPolicy(
    max_notional_per_order=D(100_000),
    max_open_orders_per_client=3,
    max_position_notional=D(300_000),
    max_gross_exposure=D(500_000),
    account_capital=D(100_000),
    daily_loss_limit=D(5_000),
    max_drawdown=D(8_000),
    classes={
        "EQUITY": ClassLimits(price_band_pct=D(10), leverage=D(4)),
        "FX": ClassLimits(price_band_pct=D(2), leverage=D(30)),
        "CRYPTO": ClassLimits(price_band_pct=D(15), leverage=D(2)),
    },
    velocity_per_client=VelocityLimit(max_orders=5, window_seconds=1),
    velocity_per_symbol=VelocityLimit(max_orders=8, window_seconds=1),
    velocity_global=VelocityLimit(max_orders=10, window_seconds=1),
)
ALL_TYPES = frozenset(OrderType)
ALL_TIF = frozenset(TimeInForce)


def limits(**overrides: Any) -> Limits:
    return PolicySet(policy=POLICY).limits("acct", AAPL).model_copy(update=overrides)


def state(**overrides: Any) -> AccountState:
    base: dict[str, Any] = {
        "now": NOW,
        "instrument": AAPL,
        "reference_price": D(100),
        "broker_order_types": ALL_TYPES,
        "broker_time_in_force": ALL_TIF,
        "day_start_equity": D(100_000),
        "day_peak_equity": D(100_000),
    }
    base.update(overrides)
    return AccountState(**base)


def order(**kw: Any) -> Any:
    kw.setdefault("symbol", "AAPL")
    kw.setdefault("client_id", "c1")
    kw.setdefault("account", "acct")
    return make_order(**kw)


def codes(o: Any, lim: Limits | None = None, st: AccountState | None = None) -> list[str]:
    return [r.code for r in basic_check(o, lim or limits(), st or state())]


def position(
    qty: str, avg: str = "100", mark: str = "100", symbol: str = "AAPL", realized: str = "0"
) -> dict[str, PositionView]:
    return {
        symbol: PositionView(
            symbol=symbol, qty=D(qty), avg_price=D(avg), mark=D(mark), realized_pnl=D(realized), leverage=D(4)
        )
    }


def test_a_plain_order_passes() -> None:
    assert codes(order(qty="10")) == []


# -- instrument and order shape ---------------------------------------------------------------------------


def test_unknown_instrument() -> None:
    assert codes(order(symbol="NOPE"), st=state(instrument=None)) == [ReasonCode.UNKNOWN_INSTRUMENT]


def test_instrument_disabled_by_policy_override() -> None:
    lim = PolicySet(policy=POLICY, instruments={"AAPL": InstrumentOverrides(tradable=False)}).limits("acct", AAPL)
    assert codes(order(qty="1"), lim) == [ReasonCode.INSTRUMENT_NOT_TRADABLE]


@pytest.mark.parametrize(
    ("qty", "expected"),
    [("1", []), ("0.5", [ReasonCode.QTY_BELOW_MIN, ReasonCode.QTY_NOT_ON_LOT]), ("1.5", [ReasonCode.QTY_NOT_ON_LOT])],
)
def test_quantity_min_and_lot(qty: str, expected: list[str]) -> None:
    assert codes(order(qty=qty)) == expected


def test_quantity_max_at_and_past_the_limit() -> None:
    big = limits(
        max_notional_per_order=D(10**12),
        max_position_notional=D(10**12),
        max_gross_exposure=D(10**12),
        account_capital=D(10**12),
    )
    rich = state(day_start_equity=None, day_peak_equity=None, reference_price=D(1))
    assert codes(order(qty="100000", type="LIMIT", price="1.00"), big, rich) == []
    assert codes(order(qty="100001", type="LIMIT", price="1.00"), big, rich) == [ReasonCode.QTY_ABOVE_MAX]


def test_price_on_tick_and_required_prices() -> None:
    assert codes(order(type="LIMIT", price="100.01")) == []
    assert codes(order(type="LIMIT", price="100.015")) == [ReasonCode.PRICE_NOT_ON_TICK]
    assert codes(order(type="LIMIT")) == [TermsCode.PRICE_REQUIRED]
    assert codes(order(type="STOP_LIMIT", price="100.00")) == [TermsCode.STOP_PRICE_REQUIRED]


def test_terms_that_do_not_go_together_are_denied_under_the_api_codes() -> None:
    # An order that did not come through the API (which refuses these with a 422) meets the same rule here.
    assert codes(order(type="MARKET", price="100.00")) == [TermsCode.PRICE_NOT_ALLOWED]
    assert codes(order(type="LIMIT", price="100.00", stop_price="99.00")) == [TermsCode.STOP_PRICE_NOT_ALLOWED]
    assert codes(order(type="PEGGED")) == [TermsCode.PEG_TYPE_REQUIRED]
    assert codes(order(type="MARKET", peg_type=PegType.MIDPOINT)) == [TermsCode.PEG_NOT_ALLOWED]
    assert codes(order(type="LIMIT", price="100.00", expire_at=NOW + timedelta(hours=1))) == [
        TermsCode.EXPIRY_NOT_ALLOWED
    ]
    denied = basic_check(
        order(type="MARKET", time_in_force="GTD", expire_at=NOW + timedelta(hours=1)), limits(), state()
    )
    assert [(r.code, r.field) for r in denied] == [(TermsCode.TIME_IN_FORCE_NOT_ALLOWED, "timeInForce")]


def test_price_band_at_the_edge_and_past_it() -> None:
    # Band 10% around the reference 100: 110.00 is on the edge, 110.01 is past it; the same for stops.
    assert codes(order(type="LIMIT", price="110.00")) == []
    assert codes(order(type="LIMIT", price="90.00", side="SELL"), st=state(positions=position("100"))) == []
    assert codes(order(type="LIMIT", price="110.01")) == [ReasonCode.PRICE_OUT_OF_BAND]
    assert codes(order(type="STOP", stop_price="89.99", side="SELL"), st=state(positions=position("100"))) == [
        ReasonCode.PRICE_OUT_OF_BAND
    ]


def test_price_band_per_instrument_override() -> None:
    lim = PolicySet(policy=POLICY, instruments={"AAPL": InstrumentOverrides(price_band_pct=D(1))}).limits("acct", AAPL)
    assert codes(order(type="LIMIT", price="101.00"), lim) == []
    assert codes(order(type="LIMIT", price="101.01"), lim) == [ReasonCode.PRICE_OUT_OF_BAND]


def test_market_order_needs_a_reference_price() -> None:
    assert codes(order(), st=state(reference_price=None)) == [ReasonCode.NO_REFERENCE_PRICE]


def test_gtd_expiry() -> None:
    assert codes(order(type="LIMIT", price="100.00", time_in_force="GTD", expire_at=NOW + timedelta(seconds=1))) == []
    assert codes(order(type="LIMIT", price="100.00", time_in_force="GTD", expire_at=NOW)) == [ReasonCode.EXPIRY_IN_PAST]
    assert codes(order(type="LIMIT", price="100.00", time_in_force="GTD")) == [TermsCode.EXPIRY_REQUIRED]


def test_broker_capabilities_and_availability() -> None:
    limited = state(broker_order_types=frozenset({OrderType.MARKET}), broker_time_in_force=frozenset({TimeInForce.DAY}))
    assert codes(order(type="LIMIT", price="100.00", time_in_force="GTC"), st=limited) == [
        ReasonCode.UNSUPPORTED_ORDER_TYPE,
        ReasonCode.UNSUPPORTED_TIME_IN_FORCE,
    ]
    assert codes(order(), st=state(broker_order_types=None)) == [ReasonCode.UNKNOWN_BROKER]
    assert codes(order(), st=state(broker_unavailable="terminal offline")) == [ReasonCode.BROKER_UNAVAILABLE]


# -- notional, position, exposure, buying power --------------------------------------------------------------


def test_max_notional_at_and_past_the_limit() -> None:
    assert codes(order(qty="1000")) == []  # 1000 x 100 = 100,000
    assert codes(order(qty="1000", type="LIMIT", price="100.01")) == [ReasonCode.MAX_NOTIONAL]


def test_max_notional_converts_the_quote_currency() -> None:
    # USDJPY-like: the order is valued in JPY and converted at 1/150.
    assert codes(order(qty="100"), st=state(reference_price=D(150_000), quote_rate=D(1) / D(150))) == []
    assert codes(order(qty="101"), st=state(reference_price=D(150_000), quote_rate=D(1) / D(150))) == [
        ReasonCode.MAX_NOTIONAL
    ]


def test_max_notional_account_override_and_instrument_cap() -> None:
    ps = PolicySet(
        policy=POLICY,
        accounts={"acct": AccountOverrides(max_notional_per_order=D(200_000))},
        instruments={"AAPL": InstrumentOverrides(max_notional_per_order=D(150_000))},
    )
    lim = ps.limits("acct", AAPL).model_copy(
        update={"max_position_notional": D(10**9), "max_gross_exposure": D(10**9), "account_capital": D(10**9)}
    )
    rich = state(day_start_equity=None, day_peak_equity=None)
    assert codes(order(qty="1500"), lim, rich) == []
    assert codes(order(qty="1501"), lim, rich) == [ReasonCode.MAX_NOTIONAL]


def test_max_open_orders_per_client() -> None:
    assert codes(order(), st=state(open_orders_of_client=2)) == []
    assert codes(order(), st=state(open_orders_of_client=3)) == [ReasonCode.MAX_OPEN_ORDERS]


def test_projected_position_counts_working_orders() -> None:
    # Limit 300,000 at mark 100 = 3000 shares: 1000 held + 1000 working + 1000 new fits; one more share does not.
    working = [ReservationView(order_id="w", symbol="AAPL", side=OrderSide.BUY, qty_open=D(1000), price=D(100))]
    rich = limits(account_capital=D(10**7), max_gross_exposure=D(10**7))
    st = state(positions=position("1000"), reservations=working)
    assert codes(order(qty="1000"), rich, st) == []
    assert codes(order(qty="1001"), rich, st) == [ReasonCode.MAX_NOTIONAL, ReasonCode.MAX_POSITION]
    assert codes(order(qty="1001"), rich.model_copy(update={"max_notional_per_order": D(10**7)}), st) == [
        ReasonCode.MAX_POSITION
    ]


def test_position_limit_in_units_from_an_instrument_override() -> None:
    lim = limits(max_position_qty=D(500), account_capital=D(10**7))
    assert codes(order(qty="500"), lim) == []
    assert codes(order(qty="501"), lim) == [ReasonCode.MAX_POSITION]


def test_gross_exposure_across_symbols() -> None:
    # 400,000 in MSFT already (valued at its mark); 1000 AAPL at 100 brings gross to exactly 500,000.
    msft = {"MSFT": PositionView(symbol="MSFT", qty=D(1000), avg_price=D(400), mark=D(400), leverage=D(4))}
    lim = limits(account_capital=D(10**7))
    assert codes(order(qty="1000"), lim, state(positions=msft)) == []
    assert codes(
        order(qty="1001"), lim.model_copy(update={"max_notional_per_order": D(10**7)}), state(positions=msft)
    ) == [ReasonCode.MAX_GROSS_EXPOSURE]


def test_gross_exposure_values_working_orders_in_other_symbols() -> None:
    working = [ReservationView(order_id="w", symbol="MSFT", side=OrderSide.SELL, qty_open=D(1000), price=D(400))]
    lim = limits(account_capital=D(10**7), max_notional_per_order=D(10**7))
    assert codes(order(qty="1000"), lim, state(reservations=working)) == []
    assert codes(order(qty="1001"), lim, state(reservations=working)) == [ReasonCode.MAX_GROSS_EXPOSURE]


def test_buying_power_counts_positions_and_working_orders() -> None:
    # Equity 100,000 at leverage 4 carries 400,000 of exposure: 200,000 held + 100,000 working + 100,000 new.
    working = [
        ReservationView(order_id="w", symbol="MSFT", side=OrderSide.BUY, qty_open=D(250), price=D(400), leverage=D(4))
    ]
    msft_mark = {"MSFT": PositionView(symbol="MSFT", qty=D(0), mark=D(400), leverage=D(4))}
    st = state(positions={**position("2000"), **msft_mark}, reservations=working)
    lim = limits(max_position_notional=D(10**7), max_gross_exposure=D(10**7))
    assert codes(order(qty="1000"), lim, st) == []
    assert codes(order(qty="1001"), lim.model_copy(update={"max_notional_per_order": D(10**7)}), st) == [
        ReasonCode.INSUFFICIENT_BUYING_POWER
    ]


def test_equity_includes_realized_and_unrealized_pnl() -> None:
    positions = {
        **position("100", avg="100", mark="90", realized="500"),
        "EURUSD": PositionView(symbol="EURUSD", qty=D(-10000), avg_price=D("1.10"), mark=D("1.09"), quote_rate=D(1)),
    }
    assert account_equity(D(1000), positions) == D(1000) + D(500) - D(1000) + D(100)


# -- reducing orders -------------------------------------------------------------------------------------


def test_reduce_only_refuses_an_increase_and_a_flip() -> None:
    held = state(positions=position("100"))
    assert codes(order(side="SELL", qty="100", reduce_only=True), st=held) == []
    assert codes(order(side="SELL", qty="101", reduce_only=True), st=held) == [ReasonCode.REDUCE_ONLY_WOULD_INCREASE]
    assert codes(order(side="BUY", qty="1", reduce_only=True), st=held) == [ReasonCode.REDUCE_ONLY_WOULD_INCREASE]
    assert codes(order(side="SELL", qty="1", reduce_only=True)) == [ReasonCode.REDUCE_ONLY_WOULD_INCREASE]


def test_reducing_orders_are_exempt_from_exposure_and_loss_limits() -> None:
    # The account is over every limit, yet selling down its long is fine.
    broke = state(
        positions=position("5000", avg="100", mark="90"), day_start_equity=D(200_000), day_peak_equity=D(300_000)
    )
    assert codes(order(side="SELL", qty="1000", type="LIMIT", price="90.00"), st=broke) == []
    assert ReasonCode.DAILY_LOSS_LIMIT in codes(order(side="BUY", qty="1"), st=broke)


# -- trading states ----------------------------------------------------------------------------------------


def test_halted_refuses_everything_new() -> None:
    halted = state(
        trading_state=TradingState.HALTED,
        trading_state_reason="incident",
        trading_state_scope="ACCOUNT acct",
        positions=position("100"),
    )
    assert codes(order(side="SELL", qty="10"), st=halted) == [ReasonCode.TRADING_HALTED]
    [reason] = basic_check(order(qty="1"), limits(), halted)
    assert "ACCOUNT acct" in reason.message and "incident" in reason.message


def test_reducing_takes_only_reducing_orders() -> None:
    reducing = state(trading_state=TradingState.REDUCING, positions=position("100"))
    assert codes(order(side="SELL", qty="100"), st=reducing) == []
    assert codes(order(side="SELL", qty="101"), st=reducing) == [ReasonCode.TRADING_REDUCING]
    assert codes(order(side="BUY", qty="1"), st=reducing) == [ReasonCode.TRADING_REDUCING]


# -- velocity and duplicates ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "at_limit", "code"),
    [
        ("recent_orders_of_client", 4, ReasonCode.VELOCITY_CLIENT),
        ("recent_orders_of_symbol", 7, ReasonCode.VELOCITY_SYMBOL),
        ("recent_orders_global", 9, ReasonCode.VELOCITY_GLOBAL),
    ],
)
def test_velocity(field: str, at_limit: int, code: str) -> None:
    # The count excludes this order: with max N, N-1 earlier orders leave room for this one.
    assert codes(order(), st=state(**{field: at_limit})) == []
    assert codes(order(), st=state(**{field: at_limit + 1})) == [code]


def test_duplicate_guard() -> None:
    assert codes(order(), st=state(duplicate_of="EXSOMETHINGELSE12")) == [ReasonCode.DUPLICATE_ORDER]


def test_amends_skip_velocity_duplicates_and_open_order_counts() -> None:
    busy = state(recent_orders_of_client=99, duplicate_of="X", open_orders_of_client=99, is_amend=True)
    assert codes(order(), st=busy) == []


# -- losses ------------------------------------------------------------------------------------------------


def test_daily_loss_limit_at_and_past_the_limit() -> None:
    # Capital 100,000 with a long 1000 @ 100 marked at 95: equity 95,000, down exactly 5,000 today.
    at_limit = state(positions=position("1000", avg="100", mark="95"))
    assert codes(order(qty="1"), st=at_limit) == []
    past = state(positions=position("1000", avg="100", mark="94.99"))
    assert codes(order(qty="1"), st=past) == [ReasonCode.DAILY_LOSS_LIMIT]


def test_drawdown_from_the_day_peak() -> None:
    # Equity 100,000 now; the day peaked at 108,000: a drawdown of exactly the 8,000 limit is allowed.
    assert codes(order(qty="1"), st=state(day_start_equity=D(90_000), day_peak_equity=D(108_000))) == []
    assert codes(order(qty="1"), st=state(day_start_equity=D(90_000), day_peak_equity=D("108000.01"))) == [
        ReasonCode.MAX_DRAWDOWN
    ]


def test_every_reason_is_reported_not_just_the_first() -> None:
    st = state(trading_state=TradingState.HALTED, recent_orders_of_client=10, duplicate_of="X")
    assert codes(order(qty="0.5", type="LIMIT", price="200.001"), st=st) == [
        ReasonCode.QTY_BELOW_MIN,
        ReasonCode.QTY_NOT_ON_LOT,
        ReasonCode.PRICE_NOT_ON_TICK,
        ReasonCode.PRICE_OUT_OF_BAND,
        ReasonCode.TRADING_HALTED,
        ReasonCode.VELOCITY_CLIENT,
        ReasonCode.DUPLICATE_ORDER,
    ]


def test_fx_uses_its_class_band_and_leverage() -> None:
    lim = PolicySet(policy=POLICY).limits("acct", EURUSD)
    assert lim.price_band_pct == D(2) and lim.leverage == D(30)
    st = state(instrument=EURUSD, reference_price=D("1.08500"))
    assert codes(order(symbol="EURUSD", qty="10000", type="LIMIT", price="1.10670"), lim, st) == []
    assert codes(order(symbol="EURUSD", qty="10000", type="LIMIT", price="1.10671"), lim, st) == [
        ReasonCode.PRICE_OUT_OF_BAND
    ]


# -- worst case per side (issue 11) ----------------------------------------------------------------------


def working(side: str, qty: str, price: str = "100", symbol: str = "AAPL", oid: str = "w") -> ReservationView:
    return ReservationView(
        order_id=oid, symbol=symbol, side=OrderSide(side), qty_open=D(qty), price=D(price), leverage=D(4)
    )


def test_resting_sells_do_not_make_room_for_buys_the_104000_aapl_example() -> None:
    # Long 104,000 AAPL at 190 (19.76M of the default 20M position limit) with 104,000 in resting sells: if the
    # sells are canceled and the buy fills, the position is 130,000 (24.7M). Netting the sells approved it.
    lim = PolicySet(policy=RiskPolicy()).limits("acct", AAPL)
    st = state(
        reference_price=D(190),
        positions={"AAPL": PositionView(symbol="AAPL", qty=D(104_000), avg_price=D(190), mark=D(190), leverage=D(4))},
        reservations=[working("SELL", "104000", "190.00")],
        day_start_equity=None,
        day_peak_equity=None,
    )
    assert codes(order(qty="26000", type="LIMIT", price="190.00"), lim, st) == [ReasonCode.MAX_POSITION]
    # Without the resting sells it is refused as well: the sells never counted for the buy side.
    no_sells = st.model_copy(update={"reservations": []})
    assert codes(order(qty="26000", type="LIMIT", price="190.00"), lim, no_sells) == [ReasonCode.MAX_POSITION]
    # What fits: the long plus 1,263 more is 19,999,970.
    assert codes(order(qty="1263", type="LIMIT", price="190.00"), lim, st) == []


def test_worst_case_side_is_the_larger_of_the_two() -> None:
    # Flat, 2,000 resting buys and 2,900 resting sells at 100 (limit 300,000 = 3,000 shares either way).
    st = state(reservations=[working("BUY", "2000", oid="b"), working("SELL", "2900", oid="s")])
    lim = limits(account_capital=D(10**7), max_gross_exposure=D(10**7), max_notional_per_order=D(10**7))
    assert codes(order(side="SELL", qty="100"), lim, st) == []  # 3,000 short at worst
    assert codes(order(side="SELL", qty="101"), lim, st) == [ReasonCode.MAX_POSITION]
    assert codes(order(side="BUY", qty="1000"), lim, st) == []  # 3,000 long at worst
    assert codes(order(side="BUY", qty="1001"), lim, st) == [ReasonCode.MAX_POSITION]


def test_gross_exposure_and_buying_power_use_the_worst_side() -> None:
    # Long 1,000 MSFT at 400 with 1,000 resting MSFT sells: worst case 400,000 (the long), not 0 (netted).
    msft = {"MSFT": PositionView(symbol="MSFT", qty=D(1000), avg_price=D(400), mark=D(400), leverage=D(4))}
    st = state(positions=msft, reservations=[working("SELL", "1000", "400", symbol="MSFT")])
    lim = limits(account_capital=D(10**7))
    assert codes(order(qty="1000"), lim, st) == []  # 400,000 + 100,000 = the 500,000 limit
    assert codes(order(qty="1001"), lim.model_copy(update={"max_notional_per_order": D(10**7)}), st) == [
        ReasonCode.MAX_GROSS_EXPOSURE
    ]
    # Buying power: equity 100,000 x 4 carries 400,000: the long alone uses all of it, the sells free nothing.
    poor = limits(max_gross_exposure=D(10**7))
    assert codes(order(qty="1"), poor, st) == [ReasonCode.INSUFFICIENT_BUYING_POWER]


def test_reducing_state_does_not_count_a_resting_buy_as_a_position() -> None:
    # Flat with a resting BUY: under REDUCING a SELL would open a short, whatever rests on the other side.
    st = state(trading_state=TradingState.REDUCING, reservations=[working("BUY", "100")])
    assert codes(order(side="SELL", qty="50"), st=st) == [ReasonCode.TRADING_REDUCING]


def test_reduce_only_sell_on_a_flat_position_with_a_resting_buy_is_refused() -> None:
    st = state(reservations=[working("BUY", "100")])
    assert codes(order(side="SELL", qty="50", reduce_only=True), st=st) == [ReasonCode.REDUCE_ONLY_WOULD_INCREASE]


def test_a_resting_order_cannot_open_exposure_after_a_daily_loss_breach() -> None:
    # Down 10,000 today (limit 5,000), flat in AAPL with a resting BUY 100: a SELL 50 is not "reducing" (it
    # would open a short once the buy is canceled), so the loss limit applies to it.
    st = state(
        reservations=[working("BUY", "100")],
        positions=position("0", realized="-10000"),
        day_start_equity=D(100_000),
        day_peak_equity=None,
    )
    assert codes(order(side="SELL", qty="50"), st=st) == [ReasonCode.DAILY_LOSS_LIMIT]


def test_an_order_reduces_only_by_what_other_same_side_orders_leave() -> None:
    # Long 100 with resting sells of 80: only 20 more can reduce; 21 would sell into a short.
    st = state(trading_state=TradingState.REDUCING, positions=position("100"), reservations=[working("SELL", "80")])
    assert codes(order(side="SELL", qty="20"), st=st) == []
    assert codes(order(side="SELL", qty="21"), st=st) == [ReasonCode.TRADING_REDUCING]
    assert codes(
        order(side="SELL", qty="21", reduce_only=True), st=st.model_copy(update={"trading_state": "ACTIVE"})
    ) == [ReasonCode.REDUCE_ONLY_WOULD_INCREASE]
    # Buys resting on the other side change nothing about what a sell reduces.
    both = st.model_copy(update={"reservations": [working("SELL", "80", oid="s"), working("BUY", "500", oid="b")]})
    assert codes(order(side="SELL", qty="20"), st=both) == []


def test_a_truly_reducing_order_is_exempt_from_exposure_and_loss_checks() -> None:
    broke = state(
        positions=position("5000", avg="100", mark="90"),
        reservations=[working("BUY", "100000", oid="b")],
        day_start_equity=D(200_000),
        day_peak_equity=D(300_000),
    )
    assert codes(order(side="SELL", qty="1000", type="LIMIT", price="90.00"), st=broke) == []


# -- pegged orders, FX, magnitudes, broker limits -------------------------------------------------------------


def test_pegged_order_is_valued_at_the_top_of_the_band() -> None:
    # Reference 100, band 10%: a pegged order can reach 110, so 909 is 99,990 and 910 is 100,100 (limit 100,000).
    peg = {"type": "PEGGED", "peg_type": "MARKET", "peg_offset": D("0.05")}
    assert codes(order(qty="909", **peg)) == []
    assert codes(order(qty="910", **peg)) == [ReasonCode.MAX_NOTIONAL]


def test_pegged_offset_outside_the_band_is_refused() -> None:
    assert codes(order(qty="1", type="PEGGED", peg_type="PRIMARY", peg_offset=D("10.00"))) == []
    assert codes(order(qty="1", type="PEGGED", peg_type="PRIMARY", peg_offset=D("-10.01"))) == [
        ReasonCode.PEG_OFFSET_OUT_OF_BAND
    ]
    assert codes(order(qty="1", type="PEGGED", peg_type="MIDPOINT", peg_offset=D("1E+30"))) == [
        ReasonCode.VALUE_OUT_OF_RANGE
    ]


def test_no_fx_rate_is_a_denial_never_a_conversion_at_one() -> None:
    assert codes(order(qty="1"), st=state(quote_rate=None)) == [ReasonCode.NO_FX_RATE]
    # A position in a currency without a rate cannot be valued either (for orders that add exposure).
    chf = {"CHFX": PositionView(symbol="CHFX", qty=D(10), mark=D(1), quote_rate=None, currency="CHF")}
    [reason] = basic_check(order(qty="1"), limits(), state(positions=chf))
    assert reason.code == ReasonCode.NO_FX_RATE and "CHF" in reason.message


def test_absurd_magnitudes_are_refused_without_arithmetic() -> None:
    assert codes(order(qty="1E+24")) == [ReasonCode.VALUE_OUT_OF_RANGE]
    assert codes(order(qty="1", type="LIMIT", price="1E+28")) == [ReasonCode.VALUE_OUT_OF_RANGE]
    amend = state(is_amend=True, open_qty=D("1E+28"))
    assert codes(order(qty="1E+28"), st=amend) == [ReasonCode.VALUE_OUT_OF_RANGE]
    # Large but representable numbers produce messages, not exceptions.
    big = codes(order(qty="99999999999999", type="LIMIT", price="999999999999"))
    assert ReasonCode.QTY_ABOVE_MAX in big and ReasonCode.MAX_NOTIONAL in big


def test_broker_per_order_limit() -> None:
    ps = PolicySet(policy=POLICY.model_copy(update={"brokers": {"paper": BrokerLimits(max_notional_per_order=D(500))}}))
    assert codes(order(qty="5"), ps.limits("acct", AAPL, "paper")) == []
    assert codes(order(qty="6"), ps.limits("acct", AAPL, "paper")) == [ReasonCode.BROKER_MAX_NOTIONAL]
    assert codes(order(qty="6"), ps.limits("acct", AAPL, "fix")) == []  # another broker's orders are not capped


def test_policy_currency_is_an_iso_code_we_support() -> None:
    assert RiskPolicy(currency="eur").currency is Currency.EUR  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="currency"):
        RiskPolicy(currency="XYZ")  # type: ignore[arg-type]


def test_amend_is_checked_against_the_larger_of_old_and_new_terms() -> None:
    # The order holds 2,000 at 100 now; amended to 1,000 at 100 it still holds 2,000 until the broker answers,
    # so the position is checked at 2,000 + 1,500 held = 3,500 > 3,000 (limit 300,000 at 100).
    hold = working("BUY", "2000", oid="me")
    st = state(is_amend=True, open_qty=D(1000), hold=hold, positions=position("1500"))
    lim = limits(account_capital=D(10**7), max_gross_exposure=D(10**7))
    assert codes(order(qty="1000"), lim, st) == [ReasonCode.MAX_POSITION]
    assert codes(order(qty="1000"), lim, st.model_copy(update={"positions": position("1000")})) == []


def test_without_a_reference_price_only_limit_and_stop_orders_may_go_at_their_own_price() -> None:
    # The market data's answer (a stale quote, say) is the refusal, with its code and message; a limit or stop
    # order is valued at its own price only where its instrument class allows it; market and pegged never.
    stale = RiskReason(code=ReasonCode.STALE_REFERENCE_PRICE, message="the fix quote for AAPL is 45.0s old")
    allowed = state(reference_price=None, reference_problem=stale, own_price_without_quote=True)
    assert codes(order(type="LIMIT", price="100.00"), st=allowed) == []
    assert codes(order(type="STOP", stop_price="100.00"), st=allowed) == []
    peg = {"type": "PEGGED", "peg_type": "MARKET", "peg_offset": D("0.05")}
    for refused in (order(), order(qty="1", **peg)):
        [reason] = basic_check(refused, limits(), allowed)
        assert (reason.code, reason.field) == (ReasonCode.STALE_REFERENCE_PRICE, "symbol")
        assert "45.0s old" in reason.message
    required = state(reference_price=None, reference_problem=stale, own_price_without_quote=False)
    assert codes(order(type="LIMIT", price="100.00"), st=required) == [ReasonCode.STALE_REFERENCE_PRICE]
    assert codes(order(type="STOP", stop_price="100.00"), st=required) == [ReasonCode.STALE_REFERENCE_PRICE]


def test_a_bracket_exit_reduces_though_its_linked_exit_rests() -> None:
    # Long 100 with the take-profit (SELL 100) resting: the stop-loss (SELL 100) reduces too when the two are
    # linked (they never work beyond one's size together); unlinked, it would not.
    st = state(positions=position("100"), reservations=[working("SELL", "100")])
    assert codes(order(side="SELL", qty="100", reduce_only=True), st=st) == [ReasonCode.REDUCE_ONLY_WOULD_INCREASE]
    linked = st.model_copy(update={"linked_qty": D(100)})
    assert codes(order(side="SELL", qty="100", reduce_only=True, linked_orders=("EXTP",)), st=linked) == []


def test_a_reduce_only_amend_is_judged_by_what_it_will_hold() -> None:
    # A stop-loss SELL 1200 whose position shrank to 700 (the take-profit filled 500) is shrunk to 700: allowed,
    # though its current reservation (1200) is larger than the position; growing it to 800 is not.
    hold = working("SELL", "1200", oid="sl")
    st = state(positions=position("700"), is_amend=True, hold=hold, open_qty=D(700))
    assert codes(order(side="SELL", qty="700", reduce_only=True), st=st) == []
    grown = st.model_copy(update={"open_qty": D(800)})
    assert codes(order(side="SELL", qty="800", reduce_only=True), st=grown) == [ReasonCode.REDUCE_ONLY_WOULD_INCREASE]


def test_a_touched_order_is_valued_at_its_trigger_and_banded_like_a_stop() -> None:
    mit = order(type="MARKET_IF_TOUCHED", stop_price="95.00", qty="10")
    assert valuation_price(mit, D(100)) == D("95.00")
    lit = order(type="LIMIT_IF_TOUCHED", stop_price="95.00", price="94.50", qty="10")
    assert valuation_price(lit, D(100)) == D("94.50")
    assert codes(mit) == []
    far = order(type="MARKET_IF_TOUCHED", stop_price="80.00", qty="10")  # 20% from the reference, band 10%
    assert codes(far) == [ReasonCode.PRICE_OUT_OF_BAND]
    assert codes(order(type="MARKET_IF_TOUCHED", qty="10")) == [TermsCode.STOP_PRICE_REQUIRED]


def test_a_broker_without_touched_orders_refuses_them_by_capability() -> None:
    st = state(broker_order_types=ALPACA_CAPABILITIES.order_types)
    assert codes(order(type="MARKET_IF_TOUCHED", stop_price="95.00", qty="10"), st=st) == [
        ReasonCode.UNSUPPORTED_ORDER_TYPE
    ]
