"""Settings, capabilities and wire vocabulary of the OANDA broker (cheap to import: no HTTP, no I/O)."""

from __future__ import annotations

import re
from typing import Final

from brokers.base import BrokerCapabilities
from core.domain import OrderType, TimeInForce
from core.settings import OandaSettings

__all__ = [
    "EXODUS_CL_ORD_ID",
    "OANDA_CAPABILITIES",
    "OANDA_TIF",
    "OANDA_TOUCHED_TIF",
    "OANDA_TYPE",
    "ORDER_CREATE_TYPES",
    "OandaSettings",
]

#: Exodus order type -> OANDA order type. MARKET_IF_TOUCHED's ``price`` is our ``stop_price`` (the threshold; OANDA
#: takes it GTC, GFD or GTD only). OANDA also has the dependent TAKE_PROFIT / STOP_LOSS / TRAILING_STOP_LOSS orders
#: (issue 15); a STOP with ``priceBound`` is not a stop-limit (it is cancelled, not left resting, when the bound is
#: violated), so STOP_LIMIT and LIMIT_IF_TOUCHED are not offered.
OANDA_TYPE: Final = {
    OrderType.MARKET: "MARKET",
    OrderType.LIMIT: "LIMIT",
    OrderType.STOP: "STOP",
    OrderType.MARKET_IF_TOUCHED: "MARKET_IF_TOUCHED",
}
#: The times in force OANDA takes for a MARKET_IF_TOUCHED order.
OANDA_TOUCHED_TIF: Final = frozenset({TimeInForce.GTC, TimeInForce.DAY, TimeInForce.GTD})

#: Exodus time in force -> OANDA's. DAY is OANDA's GFD ("good for day", cancelled at 5 pm New York). MARKET orders
#: take FOK or IOC only: a MARKET order with DAY/GTC/GTD is sent as FOK, OANDA's default for market orders.
OANDA_TIF: Final = {
    TimeInForce.DAY: "GFD",
    TimeInForce.GTC: "GTC",
    TimeInForce.GTD: "GTD",
    TimeInForce.IOC: "IOC",
    TimeInForce.FOK: "FOK",
}

OANDA_CAPABILITIES = BrokerCapabilities(
    order_types=frozenset(OANDA_TYPE),
    time_in_force=frozenset(OANDA_TIF),
    # PUT /orders/{specifier}: OANDA cancels the order and creates its replacement (a new OANDA id).
    supports_replace=True,
    # OANDA refuses a client id only while another *pending* order holds it (CLIENT_ORDER_ID_ALREADY_EXISTS): once
    # filled or cancelled the id can be used again, so a blind resend can create a twin. The adapter looks up first.
    dedupes_cl_ord_id=False,
    # 120 requests per second, then 429.
    rate_limited=True,
    # End-of-day reconciliation compares its positions and fills with the ledger.
    reports_positions=True,
    one_account=True,  # positions() is the one account of the key: compared with every Exodus account routed here
    reports_fills=True,
    mass_status=True,  # open_orders() is one request: the owning worker sweeps it (worker/sweep.py)
)

#: The transaction types that create an order (their ``clientExtensions.id`` is our client order id).
ORDER_CREATE_TYPES: Final = {
    "MARKET_ORDER": OrderType.MARKET,
    "LIMIT_ORDER": OrderType.LIMIT,
    "STOP_ORDER": OrderType.STOP,
    "MARKET_IF_TOUCHED_ORDER": OrderType.MARKET_IF_TOUCHED,
}

#: Client order ids Exodus sends (``EX`` + 16 characters, ``.n`` after the n-th replacement): orders of the same
#: OANDA account placed by anybody else are not ours and are left alone.
EXODUS_CL_ORD_ID: Final = re.compile(r"^EX[0-9A-Z]{16}(\.\d+)?$")
