"""The market data service: staleness, which source prices what (the quote store: tests/store/test_quotes.py)."""

from __future__ import annotations

from decimal import Decimal

from core.domain import InstrumentClass
from core.marketdata import PriceBook
from core.settings import MarketDataClassSettings
from tests.quotekit import NOW, market, q

D = Decimal


def test_a_quote_older_than_its_class_limit_is_stale_and_prices_nothing() -> None:
    md = market(max_age_seconds=30, classes={InstrumentClass.FX: MarketDataClassSettings(max_age_seconds=5)})
    book = PriceBook(md, "fix", [q("AAPL", "fix", "190", age=29), q("EURUSD", "fix", "1.08", age=6)], NOW)
    aapl, eurusd = book.reference("AAPL"), book.reference("EURUSD")
    assert (aapl.status, aapl.price) == ("OK", D("190"))
    assert (eurusd.status, eurusd.price) == ("STALE_REFERENCE_PRICE", None)
    assert eurusd.view is not None and eurusd.view.max_age_seconds == 5 and eurusd.view.age_seconds == 6
    assert eurusd.problem() == (
        "the fix quote for EURUSD is 6.0s old (quoted at 2026-11-20T14:59:54+00:00); quotes older than 5s are stale"
    )
    assert book.reference("MSFT").status == "NO_REFERENCE_PRICE"
    assert "no quote for MSFT from source 'fix'" in (book.reference("MSFT").problem() or "")


def test_the_orders_own_broker_prices_it_unless_the_instrument_names_a_source() -> None:
    md = market(sources={"MSFT": "mt5", "NVDA": "paper"})
    quotes = [q("AAPL", "paper", "100"), q("MSFT", "mt5", "420"), q("MSFT", "fix", "400"), q("NVDA", "paper", "120")]
    fix = PriceBook(md, "fix", quotes, NOW)
    assert fix.reference("AAPL").source == "fix" and fix.reference("AAPL").price is None  # never the paper feed
    assert (fix.reference("MSFT").source, fix.reference("MSFT").price) == ("mt5", D("420"))
    # A simulated source configured for an instrument prices only the simulated broker's orders.
    assert (fix.reference("NVDA").source, fix.reference("NVDA").price) == ("fix", None)
    paper = PriceBook(md, "paper", quotes, NOW)
    assert paper.reference("NVDA").price == D("120") and paper.reference("AAPL").price == D("100")


def test_marks_and_fx_rates_never_come_from_the_simulated_feed_for_a_real_broker() -> None:
    md = market()
    quotes = [q("USDJPY", "paper", "100.000", spread="0.001"), q("EURUSD", "paper", "1.20000", spread="0.00001")]
    fix = PriceBook(md, "fix", quotes, NOW)
    assert fix.mark("EURUSD") is None and fix.rate("JPY", "USD") is None
    paper = PriceBook(md, "paper", quotes, NOW)
    assert paper.rate("JPY", "USD") == D(1) / D("100.000") and paper.rate("EUR", "USD") == D("1.20000")
    # With a real source's quote: the reference source first, else the freshest real quote (stale or not).
    real = [*quotes, q("USDJPY", "mt5", "150.000", age=100, spread="0.001"), q("EURUSD", "mt5", "1.08", age=3)]
    fix = PriceBook(md, "fix", real, NOW)
    assert fix.rate("JPY", "USD") == D(1) / D("150.000") and fix.mark("EURUSD") == D("1.08")
    fix = PriceBook(md, "fix", [*real, q("EURUSD", "fix", "1.09")], NOW)
    assert fix.mark("EURUSD") == D("1.09")


def test_limit_orders_may_go_without_a_quote_only_where_their_class_says_so() -> None:
    md = market(classes={InstrumentClass.CRYPTO: MarketDataClassSettings(own_price_without_quote=True)})
    book = PriceBook(md, "mt5", [], NOW)
    assert book.reference("BTC-USD").own_price_without_quote and not book.reference("AAPL").own_price_without_quote
