"""Capabilities and wire vocabulary of the Interactive Brokers adapter (cheap to import: no ib_async, no I/O)."""

from __future__ import annotations

import re
from typing import Final

from brokers.base import BrokerCapabilities
from core.domain import OrderType, TimeInForce
from core.settings import IBSettings

__all__ = [
    "EXODUS_CL_ORD_ID",
    "IB_CAPABILITIES",
    "IB_DONE",
    "IB_ON_CLOSE_TYPE",
    "IB_TIF",
    "IB_TYPE",
    "IB_WARNINGS",
    "IB_WORKING",
    "IBSettings",
]

#: Domain order type -> IB ``orderType``. The touched types are IB's ``MIT`` (``auxPrice`` the trigger) and ``LIT``
#: (``auxPrice`` the trigger, ``lmtPrice`` the limit). IB also has trailing stops (``TRAIL``, ``TRAIL LIMIT``), pegs
#: and algos; the domain has no such types yet (issue 15), so they are not offered.
IB_TYPE: Final = {
    OrderType.MARKET: "MKT",
    OrderType.LIMIT: "LMT",
    OrderType.STOP: "STP",
    OrderType.STOP_LIMIT: "STP LMT",
    OrderType.MARKET_IF_TOUCHED: "MIT",
    OrderType.LIMIT_IF_TOUCHED: "LIT",
}
#: Domain time in force -> IB ``tif`` (GTD carries ``goodTillDate``). OPG (market or limit on open) is IB's ``OPG``;
#: CLS is not a tif at IB but an order type: a DAY ``MOC`` (market on close) or ``LOC`` (limit on close).
IB_TIF: Final = {
    TimeInForce.DAY: "DAY",
    TimeInForce.GTC: "GTC",
    TimeInForce.IOC: "IOC",
    TimeInForce.FOK: "FOK",
    TimeInForce.GTD: "GTD",
    TimeInForce.OPG: "OPG",
    TimeInForce.CLS: "DAY",
}
#: The order type IB gives an at-the-close (CLS) order.
IB_ON_CLOSE_TYPE: Final = {OrderType.MARKET: "MOC", OrderType.LIMIT: "LOC"}

IB_CAPABILITIES = BrokerCapabilities(
    order_types=frozenset(IB_TYPE),
    time_in_force=frozenset(IB_TIF),
    # placeOrder under a working order's id modifies it (quantity, prices).
    supports_replace=True,
    replace_changes_qty=True,
    marketable_limits=True,
    # IB does not refuse a second order with the same orderRef: the adapter looks the order up before any resend.
    dedupes_cl_ord_id=False,
    # IB paces at about 50 messages/s; ib_async queues requests beyond that on the client side (no 429 to retry).
    rate_limited=False,
    # End-of-day reconciliation compares its positions and fills with the ledger.
    reports_positions=True,
    reports_fills=True,
    # A bracket's or OTO's legs are children of the entry (parentId, the last sent with transmit=True), a bracket's
    # exits and an OCO's two orders one OCA group (ocaType 1): core.nativelist's shapes (README "Native lists").
    native_lists=frozenset({"BRACKET", "OCO", "OTO"}),
    # open_orders() is one sync, three requests however many orders work (reqExecutions, reqAllOpenOrders,
    # reqCompletedOrders): the owning worker sweeps it (worker/sweep.py) and IB orders arm no poll timer.
    mass_status=True,
)

#: orderStatus values of an order that still works (or may: PendingSubmit, ApiPending).
IB_WORKING: Final = frozenset(
    {"PendingSubmit", "PreSubmitted", "Submitted", "ApiPending", "PendingCancel", "ApiUpdate"}
)
#: orderStatus values of an order that is done.
IB_DONE: Final = frozenset({"Filled", "Cancelled", "ApiCancelled", "Inactive"})

#: Error codes that are warnings or information, never a refusal (2100-2199 are farm/connection notices too).
IB_WARNINGS: Final = frozenset({105, 110, 165, 399, 404, 434, 492, 10167, 2104, 2106, 2107, 2108, 2119, 2158})

#: Client order ids Exodus sends (``EX`` + 16 characters, ``.n`` after the n-th replacement): orders of the same
#: IB account placed by anybody else (TWS, other clients) are not ours and are left alone.
EXODUS_CL_ORD_ID: Final = re.compile(r"^EX[0-9A-Z]{16}(\.\d+)?$")
