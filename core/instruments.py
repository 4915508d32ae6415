"""The instrument catalogue: the default list and loading a replacement from a JSON file.

The API validates symbols against it, the risk check reads tick and lot rules from it, and the simulated
venue seeds its price feed from it. Set ``EXODUS_INSTRUMENTS_FILE`` to a JSON list of ``Instrument``
objects to replace the defaults.
"""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

from core.domain import Instrument, InstrumentClass

__all__ = ["DEFAULT_INSTRUMENTS", "InstrumentCatalog", "load_instruments"]

D = Decimal


def _fx(symbol: str, price: str, *, tick: str = "0.00001") -> Instrument:
    base, quote = symbol[:3], symbol[3:]
    return Instrument(
        symbol=symbol,
        instrument_class=InstrumentClass.FX,
        base_currency=base,
        quote_currency=quote,
        tick_size=D(tick),
        lot_step=D("1000"),
        min_qty=D("1000"),
        max_qty=D("50000000"),
        initial_price=D(price),
        volatility=D("0.00005"),
        display_qty=D("1000000"),
    )


def _equity(symbol: str, price: str) -> Instrument:
    return Instrument(
        symbol=symbol,
        instrument_class=InstrumentClass.EQUITY,
        base_currency=symbol,
        quote_currency="USD",
        tick_size=D("0.01"),
        lot_step=D("1"),
        min_qty=D("1"),
        max_qty=D("100000"),
        initial_price=D(price),
        volatility=D("0.0002"),
        display_qty=D("500"),
    )


def _crypto(symbol: str, price: str, *, tick: str, step: str, display: str) -> Instrument:
    base, quote = symbol.split("-")
    return Instrument(
        symbol=symbol,
        instrument_class=InstrumentClass.CRYPTO,
        base_currency=base,
        quote_currency=quote,
        tick_size=D(tick),
        lot_step=D(step),
        min_qty=D(step),
        max_qty=D("1000"),
        initial_price=D(price),
        volatility=D("0.0005"),
        display_qty=D(display),
    )


DEFAULT_INSTRUMENTS: list[Instrument] = [
    _fx("EURUSD", "1.08500"),
    _fx("GBPUSD", "1.27000"),
    _fx("USDJPY", "150.000", tick="0.001"),
    _fx("AUDUSD", "0.65500"),
    _equity("AAPL", "190.00"),
    _equity("MSFT", "420.00"),
    _equity("NVDA", "120.00"),
    _equity("SPY", "560.00"),
    _crypto("BTC-USD", "65000.00", tick="0.01", step="0.0001", display="2"),
    _crypto("ETH-USD", "3200.00", tick="0.01", step="0.001", display="20"),
]


class InstrumentCatalog:
    """Instruments by symbol."""

    def __init__(self, instruments: list[Instrument]) -> None:
        """Index ``instruments`` by symbol."""
        self._by_symbol = {i.symbol: i for i in instruments}

    def get(self, symbol: str) -> Instrument | None:
        """The instrument for ``symbol``, or None."""
        return self._by_symbol.get(symbol)

    def __contains__(self, symbol: object) -> bool:
        return symbol in self._by_symbol

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self._by_symbol.values())

    def symbols(self) -> list[str]:
        """All symbols, sorted."""
        return sorted(self._by_symbol)


def load_instruments(path: Path | None) -> InstrumentCatalog:
    """Load the catalogue from ``path`` (a JSON list), or the defaults when ``path`` is None."""
    if path is None:
        return InstrumentCatalog(DEFAULT_INSTRUMENTS)
    raw = json.loads(Path(path).read_text())
    return InstrumentCatalog([Instrument.model_validate(item) for item in raw])
