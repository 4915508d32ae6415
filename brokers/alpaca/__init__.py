"""Alpaca broker: the Trading API v2 (REST) and its ``trade_updates`` stream, over httpx and websockets.

Importing this package is cheap: ``AlpacaBroker`` (and with it httpx and websockets) loads on first use, so the
registry can read ``ALPACA_CAPABILITIES`` in processes that never talk to Alpaca. See ``README.md`` beside this.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from brokers.alpaca.config import ALPACA_CAPABILITIES, AlpacaSettings

if TYPE_CHECKING:
    from brokers.alpaca.execution import AlpacaBroker

__all__ = ["ALPACA_CAPABILITIES", "AlpacaBroker", "AlpacaSettings"]


def __getattr__(name: str) -> Any:
    if name == "AlpacaBroker":
        from brokers.alpaca.execution import AlpacaBroker

        return AlpacaBroker
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
