"""The ``Broker`` protocol every adapter implements, and what each method must do.

=====================  ========  =================================================================
method                 required  contract
=====================  ========  =================================================================
``start(sink)``        yes       connect; from now on push every execution report to ``sink``
``close()``            yes       disconnect; idempotent
``submit_order``       yes       send a new order under ``cl_ord_id``; a definite refusal is
                                 ``BrokerAck(accepted=False)``; an unknown outcome (timeout,
                                 disconnect, 5xx, 429) raises ``BrokerUnavailable``
``cancel_order``       yes       ask to cancel; ``not_found=True`` when the broker never had it;
                                 "too late" is ``accepted=False`` with the reason
``replace_order``      optional  change qty/price (cancel/replace); raise ``BrokerRejected`` if unsupported
``get_order_status``   yes       the broker's view of one order (with its fills) or ``None`` if unknown;
                                 retried submissions call this first, so it must be authoritative
``open_orders``        yes       every order the broker still works for us (resync after reconnect)
``fills_since``        optional  fills after a time, for account-wide reconciliation
``positions``          optional  the broker's positions, for reconciliation
=====================  ========  =================================================================

Execution reports pushed to the sink must carry a broker-unique ``exec_id``; the same report may be
pushed more than once (the order workflow deduplicates). Adapters convert library errors at one boundary
into the ``core.errors`` tree.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any, Protocol, runtime_checkable

from psycopg import AsyncConnection
from pydantic import BaseModel, ConfigDict

from core.domain import (
    BrokerAck,
    CancelOrder,
    ExecutionReport,
    OrderStatusReport,
    OrderType,
    PositionReport,
    ReplaceOrder,
    SubmitOrder,
    TimeInForce,
)

__all__ = ["Broker", "BrokerCapabilities", "ReportSink", "SessionCheck"]

#: Where a broker pushes execution reports (the worker wires it to the order workflows' signal).
ReportSink = Callable[[ExecutionReport], Awaitable[None]]

#: Answers "can this broker take a new order for this account right now?": None when it can, else the reason
#: (for example "the MT5 terminal of account 1234 has not sent a heartbeat for 45 s"). The risk check
#: refuses new orders with that reason; orders already working are not affected. It is called with the risk
#: decision's own connection (inside its transaction, possibly in pipeline mode): it must not take another.
SessionCheck = Callable[[AsyncConnection[Any], str], Awaitable[str | None]]


class BrokerCapabilities(BaseModel):
    """What a broker supports; the risk check refuses orders outside it."""

    model_config = ConfigDict(frozen=True)

    order_types: frozenset[OrderType]
    time_in_force: frozenset[TimeInForce]
    supports_replace: bool = True
    #: The broker deduplicates ``cl_ord_id`` itself (a resend with the same id cannot create a twin).
    dedupes_cl_ord_id: bool = False


@runtime_checkable
class Broker(Protocol):
    """A connection to one broker or venue."""

    name: str
    capabilities: BrokerCapabilities

    async def start(self, sink: ReportSink) -> None:
        """Connect and start pushing execution reports to ``sink``."""
        ...

    async def close(self) -> None:
        """Disconnect (idempotent)."""
        ...

    async def submit_order(self, order: SubmitOrder) -> BrokerAck:
        """Send a new order."""
        ...

    async def cancel_order(self, request: CancelOrder) -> BrokerAck:
        """Ask the broker to cancel an order."""
        ...

    async def replace_order(self, request: ReplaceOrder) -> BrokerAck:
        """Change an order's quantity or prices."""
        ...

    async def get_order_status(self, cl_ord_id: str) -> OrderStatusReport | None:
        """The broker's view of an order and its fills, or None when the broker does not know it."""
        ...

    async def open_orders(self) -> list[OrderStatusReport]:
        """Every order the broker still works for us."""
        ...

    async def fills_since(self, since: datetime) -> list[ExecutionReport]:
        """Fills after ``since``."""
        ...

    async def positions(self) -> list[PositionReport]:
        """The broker's positions."""
        ...
