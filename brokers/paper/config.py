"""Settings and capabilities of the paper broker (cheap to import: no venue, no I/O)."""

from brokers.base import BrokerCapabilities
from core.domain import OrderType, TimeInForce
from core.settings import PaperSettings

__all__ = ["PAPER_CAPABILITIES", "PaperSettings"]

PAPER_CAPABILITIES = BrokerCapabilities(
    order_types=frozenset(OrderType) - {OrderType.TRAILING_STOP},  # trailing stops emulated
    time_in_force=frozenset(TimeInForce),
    supports_replace=True,
    dedupes_cl_ord_id=True,
    # End-of-day reconciliation compares its positions and fills with the ledger.
    reports_positions=True,
    reports_fills=True,
    mass_status=True,  # open_orders() is one request: the owning worker sweeps it (worker/sweep.py)
)
