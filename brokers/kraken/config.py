"""Settings, capabilities and wire vocabulary of the Kraken spot broker (cheap to import: no HTTP, no I/O).

The one symbol table (``KRAKEN_PAIRS``) maps Exodus symbols to Kraken's pair names (``BTC-USD`` is sent as the
altname ``XBTUSD`` and answered as the canonical ``XXBTZUSD``) and to the asset codes ``Balance`` answers with.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from typing import Final

from brokers.base import BrokerCapabilities
from core.domain import OrderType, TimeInForce
from core.settings import KrakenSettings

__all__ = [
    "CL_ORD_ID_FREE_TEXT",
    "EXODUS_CL_ORD_ID",
    "KRAKEN_CAPABILITIES",
    "KRAKEN_PAIRS",
    "KRAKEN_TIF",
    "KRAKEN_TYPE",
    "KrakenPair",
    "KrakenSettings",
    "kraken_cl_ord_id",
    "pair_of_kraken",
]


@dataclass(frozen=True)
class KrakenPair:
    """One Kraken spot pair as Exodus trades it."""

    #: Exodus symbol.
    symbol: str
    #: What requests name it by (``pair=XBTUSD``).
    altname: str
    #: The canonical name answers are keyed by (``XXBTZUSD``).
    name: str
    #: ``Balance`` asset codes of its base and quote currencies.
    base: str
    quote: str


#: The one symbol table: Exodus symbol -> Kraken pair.
KRAKEN_PAIRS: Final[dict[str, KrakenPair]] = {
    p.symbol: p
    for p in (
        KrakenPair("BTC-USD", "XBTUSD", "XXBTZUSD", "XXBT", "ZUSD"),
        KrakenPair("ETH-USD", "ETHUSD", "XETHZUSD", "XETH", "ZUSD"),
        KrakenPair("SOL-USD", "SOLUSD", "SOLUSD", "SOL", "ZUSD"),
        KrakenPair("BTC-EUR", "XBTEUR", "XXBTZEUR", "XXBT", "ZEUR"),
        KrakenPair("ETH-EUR", "ETHEUR", "XETHZEUR", "XETH", "ZEUR"),
    )
}

_BY_KRAKEN: Final = {n: p for p in KRAKEN_PAIRS.values() for n in (p.altname, p.name)}


def pair_of_kraken(name: str) -> KrakenPair | None:
    """The pair Kraken names ``name`` (altname or canonical name), if Exodus trades it."""
    return _BY_KRAKEN.get(name)


#: Domain order type -> Kraken ``ordertype``. STOP is ``stop-loss`` (``price`` is the trigger), STOP_LIMIT is
#: ``stop-loss-limit`` (``price`` the trigger, ``price2`` the limit); the touched types are Kraken's take-profit
#: (it triggers when the price moves in the order's favour): MARKET_IF_TOUCHED is ``take-profit`` (``price`` the
#: trigger), LIMIT_IF_TOUCHED ``take-profit-limit`` (``price`` the trigger, ``price2`` the limit). Kraken's iceberg
#: type has no domain type.
KRAKEN_TYPE: Final = {
    OrderType.MARKET: "market",
    OrderType.LIMIT: "limit",
    OrderType.STOP: "stop-loss",
    OrderType.STOP_LIMIT: "stop-loss-limit",
    OrderType.MARKET_IF_TOUCHED: "take-profit",
    OrderType.LIMIT_IF_TOUCHED: "take-profit-limit",
}
#: Domain time in force -> Kraken ``timeinforce``. Kraken has GTC, IOC and GTD (``expiretm``); a DAY order is sent
#: GTC and the order workflow cancels it at the configured day close. FOK is not in Kraken's REST API.
KRAKEN_TIF: Final = {
    TimeInForce.DAY: "GTC",
    TimeInForce.GTC: "GTC",
    TimeInForce.IOC: "IOC",
    TimeInForce.GTD: "GTD",
}

KRAKEN_CAPABILITIES = BrokerCapabilities(
    order_types=frozenset(KRAKEN_TYPE),
    time_in_force=frozenset(KRAKEN_TIF),
    supports_replace=True,
    replace_changes_qty=True,
    marketable_limits=True,
    # Kraken refuses a second order under a cl_ord_id only while the first is open: once it is closed the id can be
    # used again, so a resend after a possible fill could make a twin. The adapter looks up before any resend.
    dedupes_cl_ord_id=False,
    # Call counters with decay: "EAPI:Rate limit exceeded" / "EOrder:Rate limit exceeded".
    rate_limited=True,
    # End-of-day reconciliation compares its positions and fills with the ledger.
    reports_positions=True,
    one_account=True,  # positions() is the one account of the key: compared with every Exodus account routed here
    reports_fills=True,
    # OpenOrders lists every open order in one call: the owning worker sweeps it (worker/sweep.py). Fills still come
    # from the adapter's own poll of open orders and trades (poll_interval_ms); swept orders arm no timer of their own.
    mass_status=True,
)

#: Client order ids Exodus sends (``EX`` + 16 characters, ``.n`` after the n-th replacement).
EXODUS_CL_ORD_ID: Final = re.compile(r"^EX[0-9A-Z]{16}(\.\d+)?$")

#: Kraken's free-text ``cl_ord_id``: printable ASCII, at most 18 characters.
CL_ORD_ID_FREE_TEXT: Final = re.compile(r"^[\x21-\x7e]{1,18}$")
_UUID: Final = re.compile(r"^[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}$")
_NS: Final = uuid.UUID("0b6c1a3e-5d0f-4a57-9a1c-6d8e0f4b2c71")


def kraken_cl_ord_id(order_id: str) -> str:
    """The ``cl_ord_id`` an order is known by at Kraken (for its whole amend chain: amends keep it).

    Our order id when Kraken takes it as it is (free text of at most 18 characters, or a UUID); otherwise a short
    UUID derived from it, the same every time.
    """
    if CL_ORD_ID_FREE_TEXT.match(order_id) or _UUID.match(order_id):
        return order_id
    return uuid.uuid5(_NS, order_id).hex
