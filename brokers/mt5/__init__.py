"""MetaTrader 5 bridge: the ExodusBridge EA (``mql5/``) polls commands over HTTP; see ``protocol.py``.

The package splits by role: ``bridge.py`` serves the EA (the API's bridge routes), ``commands.py`` is the command
queue, ``reconcile.py`` compares the terminal with the ledger, ``session.py`` answers the risk check's "is the
terminal connected", ``reports.py`` derives and journals execution reports, and ``execution.py`` is the worker's
``Mt5Broker``. ``tables.py`` holds the SQL of the bridge's tables, ``rows.py`` their rows.

Importing this package is cheap: only ``config.py`` (the capabilities the registry reads) loads with it;
``Mt5Broker`` loads on first use, so the API and processes that never own the broker do not load the worker's side.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from brokers.mt5.config import MT5_CAPABILITIES

if TYPE_CHECKING:
    from brokers.mt5.execution import Mt5Broker

__all__ = ["MT5_CAPABILITIES", "Mt5Broker"]


def __getattr__(name: str) -> Any:
    if name == "Mt5Broker":
        from brokers.mt5.execution import Mt5Broker

        return Mt5Broker
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
