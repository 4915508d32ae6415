"""Settings, capabilities and wire vocabulary of the Alpaca broker (cheap to import: no HTTP, no I/O)."""

from __future__ import annotations

import re
from typing import Final

from brokers.base import BrokerCapabilities
from core.domain import OrderStatus, OrderType, TimeInForce
from core.settings import AlpacaSettings

__all__ = [
    "ALPACA_CAPABILITIES",
    "ALPACA_STATUS",
    "ALPACA_TIF",
    "ALPACA_TYPE",
    "EXODUS_CL_ORD_ID",
    "AlpacaSettings",
]

#: Alpaca's order types and times in force that Exodus' domain has (``trailing_stop`` included); GTD, pegged and
#: touched orders do not exist at Alpaca. ``opg`` and ``cls`` (at the open /
#: close auction) take market and limit orders only (the terms rules refuse the others before they get here).
ALPACA_TYPE: Final = {
    OrderType.MARKET: "market",
    OrderType.LIMIT: "limit",
    OrderType.STOP: "stop",
    OrderType.STOP_LIMIT: "stop_limit",
    # Native: trail_price (our trailAmount) or trail_percent; no activation price (such an order is emulated).
    OrderType.TRAILING_STOP: "trailing_stop",
}
ALPACA_TIF: Final = {
    TimeInForce.DAY: "day",
    TimeInForce.GTC: "gtc",
    TimeInForce.IOC: "ioc",
    TimeInForce.FOK: "fok",
    TimeInForce.OPG: "opg",
    TimeInForce.CLS: "cls",
}

ALPACA_CAPABILITIES = BrokerCapabilities(
    order_types=frozenset(ALPACA_TYPE),
    time_in_force=frozenset(ALPACA_TIF),
    supports_replace=True,
    # A client_order_id is Alpaca's forever: a second POST with it is refused 422 "client_order_id must be unique".
    dedupes_cl_ord_id=True,
    # 200 requests per minute and key, then 429 with X-RateLimit-Reset.
    rate_limited=True,
    # End-of-day reconciliation compares its positions and fills with the ledger.
    reports_positions=True,
    one_account=True,  # positions() is the one account of the key: compared with every Exodus account routed here
    reports_fills=True,
    # Alpaca's order classes: a bracket, an OCO and an OTO go out as one order with its legs (``core.nativelist``).
    native_lists=frozenset({"BRACKET", "OCO", "OTO"}),
    mass_status=True,  # open_orders() is one request: the owning worker sweeps it (worker/sweep.py)
)

#: Alpaca order status -> Exodus status; None: still working (ACCEPTED or PARTIALLY_FILLED by what has filled).
ALPACA_STATUS: Final[dict[str, OrderStatus | None]] = {
    "new": None,
    "accepted": None,
    "pending_new": None,
    "accepted_for_bidding": None,
    "partially_filled": None,
    "pending_cancel": None,
    "pending_replace": None,
    "done_for_day": None,
    "stopped": None,
    "suspended": None,
    "calculated": None,
    "filled": OrderStatus.FILLED,
    "canceled": OrderStatus.CANCELED,
    "expired": OrderStatus.EXPIRED,
    "rejected": OrderStatus.REJECTED,
    "replaced": None,
}

#: Client order ids Exodus sends (``EX`` + 16 characters, ``.n`` after the n-th replacement): orders of the same
#: Alpaca account placed by anybody else are not ours and are left alone.
EXODUS_CL_ORD_ID: Final = re.compile(r"^EX[0-9A-Z]{16}(\.\d+)?$")
