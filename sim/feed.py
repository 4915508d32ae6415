"""A seeded random-walk price feed, one walk per instrument.

Each ``step()`` moves every mid price by a normally distributed fraction of itself (the instrument's
``volatility``), rounded to the tick. The spread is ``half_spread_ticks`` ticks either side of the mid.
With the same seed and the same sequence of steps the walk is identical, and an instrument with zero
volatility keeps its price, which tests use to make fills predictable.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal

from core.domain import Instrument

__all__ = ["PriceFeed", "Quote"]


@dataclass(frozen=True, slots=True)
class Quote:
    """Top of the simulated book."""

    symbol: str
    bid: Decimal
    ask: Decimal

    @property
    def mid(self) -> Decimal:
        """Midpoint of bid and ask."""
        return (self.bid + self.ask) / 2


class PriceFeed:
    """Random-walk quotes for a set of instruments."""

    def __init__(self, instruments: Iterable[Instrument], *, seed: int) -> None:
        """Start every instrument at its ``initial_price``."""
        self._instruments = {i.symbol: i for i in instruments}
        self._mid = {s: i.round_price(i.initial_price) for s, i in self._instruments.items()}
        # One generator per symbol, seeded from the feed seed and the symbol, so adding an instrument
        # does not change the others' walks.
        self._rng = {s: random.Random(f"{seed}:{s}") for s in self._instruments}

    def symbols(self) -> list[str]:
        """Symbols the feed quotes."""
        return list(self._instruments)

    def quote(self, symbol: str) -> Quote:
        """The current quote; ``KeyError`` for an unknown symbol."""
        inst = self._instruments[symbol]
        mid = self._mid[symbol]
        half = inst.tick_size * inst.half_spread_ticks
        bid = max(mid - half, inst.tick_size)
        return Quote(symbol=symbol, bid=bid, ask=mid + half)

    def reference_price(self, symbol: str) -> Decimal | None:
        """The mid price, or None for an unknown symbol."""
        return self._mid.get(symbol)

    def step(self) -> None:
        """Move every walk one step."""
        for symbol, inst in self._instruments.items():
            if inst.volatility == 0:
                continue
            z = Decimal(repr(self._rng[symbol].gauss(0.0, 1.0)))
            moved = self._mid[symbol] * (1 + inst.volatility * z)
            self._mid[symbol] = max(inst.round_price(moved), inst.tick_size)

    def set_mid(self, symbol: str, mid: Decimal) -> None:
        """Put the mid price somewhere (tests and demos)."""
        inst = self._instruments[symbol]
        self._mid[symbol] = inst.round_price(mid)
