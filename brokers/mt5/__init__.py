"""MetaTrader 5 bridge: the ExodusBridge EA (``mql5/``) polls commands over HTTP; see ``protocol.py``."""

from brokers.mt5.config import MT5_CAPABILITIES
from brokers.mt5.execution import Mt5Broker
from brokers.mt5.store import BridgeStore, session_check

__all__ = ["MT5_CAPABILITIES", "BridgeStore", "Mt5Broker", "session_check"]
