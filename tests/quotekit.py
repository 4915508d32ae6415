"""Quotes at a fixed time, and the market data service over the static instruments: what the market data tests
(``tests/core/test_marketdata.py``) and the quote store's (``tests/store/test_quotes.py``) share."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from core.marketdata import MarketData, Quote, StoredQuote
from core.settings import MarketDataSettings
from tests.harness import static_instruments

__all__ = ["CATALOG", "NOW", "market", "q"]

D = Decimal
NOW = datetime(2026, 11, 20, 15, 0, tzinfo=UTC)
CATALOG = static_instruments()


def q(symbol: str, source: str, mid: str, *, age: float = 0.0, spread: str = "0.01") -> StoredQuote:
    """A quote of ``symbol`` from ``source`` around ``mid`` (``spread`` either side), ``age`` seconds before NOW."""
    m, s = D(mid), D(spread)
    at = NOW - timedelta(seconds=age)
    return StoredQuote(Quote(symbol=symbol, source=source, bid=m - s, ask=m + s, at=at), at)


def market(**settings: object) -> MarketData:
    """The market data service with ``settings``."""
    return MarketData(MarketDataSettings(**settings), CATALOG)  # type: ignore[arg-type]
