"""FIX broker: a QuickFIX initiator session (FIX 4.2, 4.4, 5.0 SP2) behind the ``Broker`` protocol.

Importing this package is cheap: ``FixBroker`` (and with it the ``quickfix`` extension) loads on first use,
so the registry can read ``FIX_CAPABILITIES`` in processes that never open a session.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from brokers.fix.config import FIX_CAPABILITIES, FixSettings

if TYPE_CHECKING:
    from brokers.fix.execution import FixBroker

__all__ = ["FIX_CAPABILITIES", "FixBroker", "FixSettings"]


def __getattr__(name: str) -> Any:
    if name == "FixBroker":
        from brokers.fix.execution import FixBroker

        return FixBroker
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
