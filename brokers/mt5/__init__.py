"""MetaTrader 5 bridge: the ExodusBridge EA (``mql5/``) polls commands over HTTP; see ``protocol.py``.

The package splits by role: ``bridge.py`` serves the EA (the API's bridge routes), ``commands.py`` is the command
queue, ``reconcile.py`` compares the terminal with the ledger, ``session.py`` answers the risk check's "is the
terminal connected", ``reports.py`` derives and journals execution reports, and ``execution.py`` is the worker's
``Mt5Broker``. ``tables.py`` holds the SQL of the bridge's tables, ``rows.py`` their rows.
"""

from brokers.mt5.config import MT5_CAPABILITIES
from brokers.mt5.execution import Mt5Broker

__all__ = ["MT5_CAPABILITIES", "Mt5Broker"]
