"""Capabilities, settings and wire vocabulary of the template broker (cheap to import: no library, no I/O).

Your copy: declare what the broker really offers (the risk check refuses orders outside it, and the contract suite
picks its cases by it), and map the domain's order types and times in force to the broker's words.
"""

from __future__ import annotations

from typing import Final

from pydantic import BaseModel

from brokers.base import BrokerCapabilities
from core.domain import OrderType, TimeInForce

__all__ = ["TEMPLATE_CAPABILITIES", "TEMPLATE_TIF", "TEMPLATE_TYPE", "TemplateSettings"]

#: Domain order type -> the broker's word for it (what is not here is refused before sending).
TEMPLATE_TYPE: Final = {OrderType.MARKET: "market", OrderType.LIMIT: "limit"}
#: Domain time in force -> the broker's word for it.
TEMPLATE_TIF: Final = {TimeInForce.DAY: "day", TimeInForce.GTC: "gtc"}

TEMPLATE_CAPABILITIES = BrokerCapabilities(
    order_types=frozenset(TEMPLATE_TYPE),
    time_in_force=frozenset(TEMPLATE_TIF),
    supports_replace=True,
    # True only when the broker refuses a second order under a ``cl_ord_id`` (then a resend cannot make a twin).
    dedupes_cl_ord_id=False,
    # True for a REST broker that answers 429 beyond a rate.
    rate_limited=False,
    # True once positions() / fills_since() give the broker's own account (end-of-day reconciliation uses them).
    reports_positions=False,
    reports_fills=False,
    # True when one connection (key, token) is one account at the broker: positions() then reports that account's
    # positions, compared with every Exodus account routed to the broker. False: the broker's account ids are
    # matched to Exodus accounts through the accounts registry's broker_account.
    one_account=False,
)


class TemplateSettings(BaseModel):
    """The broker's settings section. Your copy moves it to ``core/settings.py`` (see README, "Configure")."""

    base_url: str = "http://127.0.0.1:8799"
    #: How long one request may take before its outcome counts as unknown (``BrokerUnavailable``, never a refusal).
    request_timeout_seconds: float = 5.0
    #: ``make run`` starts the local venue and lets the worker own the broker.
    local_venue: bool = False
