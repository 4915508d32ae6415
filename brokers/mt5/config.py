"""Settings and capabilities of the MT5 bridge (cheap to import: no I/O, no MetaTrader5 package)."""

from brokers.base import BrokerCapabilities
from core.domain import OrderType, TimeInForce
from core.settings import Mt5AccountSettings, Mt5Settings, Mt5TerminalSettings

__all__ = ["MT5_CAPABILITIES", "Mt5AccountSettings", "Mt5Settings", "Mt5TerminalSettings"]

MT5_CAPABILITIES = BrokerCapabilities(
    # No pegged orders in MT5. IOC/FOK apply to market orders only (the adapter refuses IOC/FOK pending orders).
    order_types=frozenset({OrderType.MARKET, OrderType.LIMIT, OrderType.STOP, OrderType.STOP_LIMIT}),
    # MT5 has no at-the-open / at-the-close orders.
    time_in_force=frozenset(TimeInForce) - {TimeInForce.OPG, TimeInForce.CLS},
    # Prices of a pending order can be modified; its volume cannot (the adapter refuses that amend).
    supports_replace=True,
    replace_changes_qty=False,
    # A buy limit above the ask (a sell limit below the bid) is refused (10015 invalid price): it must rest.
    marketable_limits=False,
    # MT5 itself has no client-id deduplication, but the bridge's outbox is keyed by the Exodus order id and
    # the EA looks an order up by magic + comment before sending it: a resend cannot create a twin.
    dedupes_cl_ord_id=True,
    # End-of-day reconciliation compares its positions and fills with the ledger.
    reports_positions=True,
    reports_fills=True,
    # open_orders() is one read of the bridge's order rows, which the EA's acks and trade reports move: the owning
    # worker sweeps it (worker/sweep.py) and MT5 orders arm no poll timer (a poll read the same rows).
    mass_status=True,
)
