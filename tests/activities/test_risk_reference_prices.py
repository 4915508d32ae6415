"""Where risk gets its prices: the market data service's quote store, the order's own broker's quote, never the
simulated feed for a real broker; no quote or a stale one is a denial naming the source and the age.

The risk activity runs for real against Postgres (a database of its own, so these tests own every quote in it);
the last test runs two workers, one with the paper venue and one without, on the session's stack.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from activities.risk import RiskActivities
from brokers import capabilities
from core.domain import InstrumentClass
from core.instruments import InstrumentCatalog
from core.marketdata import MarketData, Quote, StoredQuote
from core.risk import ReasonCode
from core.settings import MarketDataClassSettings, MarketDataSettings, Settings
from store.quotes import upsert_quotes
from tests.conftest import create_database, make_settings
from tests.harness import Stack, make_order, unique

D = Decimal

MARKET = MarketDataSettings(
    max_age_seconds=30,
    classes={
        InstrumentClass.FX: MarketDataClassSettings(max_age_seconds=5),
        InstrumentClass.CRYPTO: MarketDataClassSettings(own_price_without_quote=True),
    },
    sources={"MSFT": "mt5", "NVDA": "paper"},
)


@pytest.fixture(scope="module")
async def md_db(postgres_admin_url: str) -> AsyncIterator[tuple[str, AsyncConnectionPool]]:
    url = await create_database(postgres_admin_url, "exodus_refprice")
    pool = AsyncConnectionPool(
        url, min_size=1, max_size=6, kwargs={"autocommit": True, "row_factory": dict_row}, open=False
    )
    await pool.open(wait=True)
    yield url, pool
    await pool.close()


@pytest.fixture
async def risk(md_db: tuple[str, AsyncConnectionPool], instruments: InstrumentCatalog) -> RiskActivities:
    url, pool = md_db
    async with pool.connection() as conn:
        await conn.execute("DELETE FROM market_quotes")
    settings = make_settings(url, "localhost:1", market_data=MARKET)
    return RiskActivities(
        pool=pool,
        settings=settings,
        instruments=instruments,
        market=MarketData(settings.market_data, instruments),
        capabilities=capabilities(),
        session_checks={},  # broker sessions are not what these tests are about
    )


async def publish(risk: RiskActivities, *quotes: tuple[str, str, str, float]) -> None:
    """(source, symbol, mid, age in seconds) -> the quote store, one tick either side of the mid."""
    now = datetime.now(UTC)
    rows = []
    for source, symbol, mid, age in quotes:
        inst = risk.gatherer.instruments.get(symbol)
        tick = inst.tick_size if inst else D("0.01")
        at = now - timedelta(seconds=age)
        rows.append(StoredQuote(Quote(symbol=symbol, source=source, bid=D(mid) - tick, ask=D(mid) + tick, at=at), at))
    async with risk._pool.connection() as conn:
        await upsert_quotes(conn, rows)


def codes(decision: Any) -> list[str]:
    return [r.code for r in decision.reasons]


async def test_a_fix_order_is_never_priced_off_the_paper_feed(risk: RiskActivities) -> None:
    await publish(risk, ("paper", "AAPL", "190.00", 0))
    denied = await risk.check_order(make_order(broker="fix", symbol="AAPL", type="MARKET"))
    assert codes(denied) == [ReasonCode.NO_REFERENCE_PRICE] and denied.reference_price is None
    [reason] = denied.reasons
    assert "no quote for AAPL from source 'fix'" in reason.message and reason.field == "symbol"
    # The same order for the paper venue is priced by the paper feed.
    approved = await risk.check_order(make_order(broker="paper", symbol="AAPL", type="MARKET", qty="10"))
    assert approved.approved and approved.reference_price == D("190.00") and approved.notional == D("1900.00")


async def test_a_fresh_quote_from_the_orders_broker_prices_it(risk: RiskActivities) -> None:
    await publish(risk, ("paper", "AAPL", "150.00", 0), ("fix", "AAPL", "191.50", 2))
    decision = await risk.check_order(make_order(broker="fix", symbol="AAPL", type="MARKET", qty="10"))
    assert decision.approved, decision.reasons
    assert decision.reference_price == D("191.50") and decision.notional == D("1915.00")


async def test_a_stale_quote_is_refused_with_its_source_and_age(risk: RiskActivities) -> None:
    await publish(risk, ("fix", "AAPL", "191.50", 120), ("paper", "AAPL", "191.50", 0))
    for order in (
        make_order(broker="fix", symbol="AAPL", type="MARKET"),
        make_order(broker="fix", symbol="AAPL", type="LIMIT", price="191.00"),  # EQUITY: no own-price pricing
    ):
        decision = await risk.check_order(order)
        assert codes(decision) == [ReasonCode.STALE_REFERENCE_PRICE], order.type
        [reason] = decision.reasons
        assert "the fix quote for AAPL is 12" in reason.message and "older than 30s are stale" in reason.message


async def test_the_age_limit_is_per_instrument_class(risk: RiskActivities) -> None:
    await publish(risk, ("fix", "EURUSD", "1.08500", 10), ("fix", "AAPL", "190.00", 10))
    fx = await risk.check_order(make_order(broker="fix", symbol="EURUSD", type="MARKET", qty="10000"))
    assert codes(fx) == [ReasonCode.STALE_REFERENCE_PRICE] and "older than 5s" in fx.reasons[0].message
    equity = await risk.check_order(make_order(broker="fix", symbol="AAPL", type="MARKET", qty="1"))
    assert equity.approved, equity.reasons


async def test_limit_and_stop_orders_go_on_their_own_price_only_where_the_class_allows(risk: RiskActivities) -> None:
    # CRYPTO allows it: no quote at all, a limit (or stop) order is valued at its own price; a market order is not.
    limit = await risk.check_order(make_order(broker="fix", symbol="BTC-USD", type="LIMIT", price="60000", qty="0.01"))
    assert limit.approved and limit.reference_price is None and limit.notional == D("600.0000")
    stop = await risk.check_order(
        make_order(broker="fix", symbol="BTC-USD", type="STOP", stop_price="70000", qty="0.01")
    )
    assert stop.approved, stop.reasons
    market = await risk.check_order(make_order(broker="fix", symbol="BTC-USD", type="MARKET", qty="0.01"))
    assert codes(market) == [ReasonCode.NO_REFERENCE_PRICE]
    # ... and with a stale quote the same (the stale price is not used, not even for the band).
    await publish(risk, ("fix", "BTC-USD", "10000", 600))
    far = await risk.check_order(make_order(broker="fix", symbol="BTC-USD", type="LIMIT", price="60000", qty="0.01"))
    assert far.approved and far.reference_price is None


async def test_an_instrument_may_name_its_source_but_never_the_simulated_one_for_a_real_broker(
    risk: RiskActivities,
) -> None:
    await publish(risk, ("mt5", "MSFT", "420.00", 1), ("fix", "MSFT", "300.00", 1), ("paper", "NVDA", "120.00", 0))
    msft = await risk.check_order(make_order(broker="fix", symbol="MSFT", type="MARKET", qty="1"))
    assert msft.approved and msft.reference_price == D("420.00")  # market_data.sources: MSFT from mt5
    nvda = await risk.check_order(make_order(broker="fix", symbol="NVDA", type="MARKET", qty="1"))
    assert codes(nvda) == [ReasonCode.NO_REFERENCE_PRICE] and "source 'fix'" in nvda.reasons[0].message
    paper = await risk.check_order(make_order(broker="paper", symbol="NVDA", type="MARKET", qty="1"))
    assert paper.approved and paper.reference_price == D("120.00")


async def test_position_marks_and_fx_rates_come_from_the_store_in_the_same_transaction(risk: RiskActivities) -> None:
    account = unique("acct")
    async with risk._pool.connection() as conn:
        await conn.execute(
            "INSERT INTO positions (account, symbol, qty, avg_price) VALUES (%s, 'EURUSD', 100000, 1.10000),"
            " (%s, 'USDJPY', 10000, 150.000)",
            (account, account),
        )
    await publish(
        risk,
        ("paper", "EURUSD", "1.30000", 0),  # simulated: marks nothing for a FIX order
        ("mt5", "EURUSD", "1.08000", 1),
        ("mt5", "USDJPY", "160.000", 400),  # stale for pricing, still the last known rate and mark
        ("fix", "AAPL", "190.00", 0),
    )
    order = make_order(broker="fix", symbol="AAPL", type="MARKET", qty="1", account=account)
    async with risk._pool.connection() as conn, conn.pipeline(), conn.transaction():
        _, state = await risk.gatherer.gather(conn, order)
    assert state.positions["EURUSD"].mark == D("1.08000") and state.positions["EURUSD"].quote_rate == D(1)
    jpy = state.positions["USDJPY"]
    assert jpy.mark == D("160.000") and jpy.quote_rate == D(1) / D("160.000")
    assert (state.reference_price, state.reference_source) == (D("190.00"), "fix")
    assert state.reference_age_seconds is not None and state.reference_age_seconds < 5
    # Unrealized: EURUSD 100,000 x (1.08 - 1.10) = -2,000 USD; USDJPY 10,000 x (160 - 150) JPY = +625 USD.
    assert state.day_start_equity == D(10_000_000) - D(2000) + D(10000) * 10 / D(160)


async def test_a_real_brokers_positions_are_never_converted_off_the_paper_feed(risk: RiskActivities) -> None:
    # A JPY position, and a USDJPY quote from the paper feed only: the paper feed converts no real broker's
    # currency, so a FIX order's account cannot be valued: refused NO_FX_RATE, never converted at 1.
    account = unique("acct")
    async with risk._pool.connection() as conn:
        await conn.execute(
            "INSERT INTO positions (account, symbol, qty, avg_price) VALUES (%s, 'USDJPY', 10000, 150.000)", (account,)
        )
    await publish(risk, ("paper", "USDJPY", "150.000", 0), ("fix", "AAPL", "190.00", 0), ("paper", "AAPL", "190.00", 0))
    fix = await risk.check_order(make_order(broker="fix", symbol="AAPL", type="MARKET", qty="1", account=account))
    assert codes(fix) == [ReasonCode.NO_FX_RATE] and "from JPY to USD" in fix.reasons[0].message
    # The same account's paper order may be valued with the paper feed's rate.
    paper = await risk.check_order(make_order(broker="paper", symbol="AAPL", type="MARKET", qty="1", account=account))
    assert paper.approved, paper.reasons
    # A real source's rate values it for FIX, even a stale one (the last known rate beats none).
    await publish(risk, ("mt5", "USDJPY", "151.000", 400))
    again = await risk.check_order(make_order(broker="fix", symbol="AAPL", type="MARKET", qty="1", account=account))
    assert again.approved, again.reasons


async def test_a_pegged_order_needs_a_fresh_quote_even_where_limits_may_go_without(risk: RiskActivities) -> None:
    # CRYPTO lets limit and stop orders go at their own price; a pegged order has none of its own.
    peg: dict[str, Any] = {"type": "PEGGED", "peg_type": "MARKET", "peg_offset": D("10.00"), "qty": "0.01"}
    await publish(risk, ("fix", "BTC-USD", "60000.00", 600))
    stale = await risk.check_order(make_order(broker="fix", symbol="BTC-USD", **peg))
    assert codes(stale) == [ReasonCode.STALE_REFERENCE_PRICE]
    assert "the fix quote for BTC-USD" in stale.reasons[0].message
    await publish(risk, ("fix", "BTC-USD", "60000.00", 0))
    fresh = await risk.check_order(make_order(broker="fix", symbol="BTC-USD", **peg))
    assert fresh.approved and fresh.reference_price == D("60000.00")
    # Valued at the worst price its peg can reach: the top of the band (60% in these tests' policy).
    assert fresh.notional == D("0.01") * D("60000.00") * D("1.6")


async def test_a_worker_with_the_paper_venue_and_one_without_decide_the_same(stack: Stack) -> None:
    """Both read the quote store: the one without ``paper`` no longer prices off a feed of its own."""
    settings: Settings = make_settings(
        stack.settings.require_database_url(),
        stack.settings.temporal.address,
    )
    await stack.venue.set_mid("AAPL", D("200.00"))  # not the catalogue's 190.00: a static feed would say that
    paper_queue = stack.settings.temporal.broker_task_queue("paper")
    async with Stack.running(stack.client, settings, stack.pool, stack.instruments, {}) as bare:
        assert "paper" not in bare.brokers
        decisions = {}
        for name, s in (("with paper", stack), ("without", bare)):
            approved, handle = await s.submit(make_order(symbol="AAPL", qty="10"), broker_task_queue=paper_queue)
            far, _ = await s.submit(make_order(symbol="AAPL", type="LIMIT", price="340.00", qty="10"))
            mt5, _ = await s.submit(make_order(broker="mt5", symbol="AAPL", qty="10"))
            decisions[name] = (approved, far, mt5)
            assert (await s.result(handle)).status.value == "FILLED"  # executed by the paper worker either way
    for approved, far, mt5 in decisions.values():
        assert approved.approved and approved.reference_price == D("200.00") and approved.notional == D("2000.0000")
        assert ReasonCode.PRICE_OUT_OF_BAND in codes(far) and far.reference_price == D("200.00")
        assert ReasonCode.NO_REFERENCE_PRICE in codes(mt5)  # the paper feed never prices a real broker
    a, b = decisions.values()
    assert [r.message for r in a[1].reasons] == [r.message for r in b[1].reasons]
