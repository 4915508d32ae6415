"""The template broker: the ``Broker`` protocol, every call still to be written.

=====================  ========  ===========================================================================
method                 required  what your copy does (``brokers/base.py`` has the contract)
=====================  ========  ===========================================================================
``start(sink)``        yes       start the delivery (it redelivers what a previous process journaled and never
                                 delivered), the session recorder, the connection; catch up after every
                                 (re)connect
``close()``            yes       stop all of it; idempotent
``submit_order``       yes       send under ``order.cl_ord_id``; a definite refusal is
                                 ``BrokerAck(accepted=False)``; a timeout, disconnect, 5xx or 429 that
                                 outlasted the retries raises ``BrokerUnavailable``
``cancel_order``       yes       cancel; ``not_found=True`` when the broker never had it; "too late" is a
                                 refusal with the reason
``replace_order``      optional  cancel/replace: the order known as ``orig_cl_ord_id`` takes the new terms
                                 and the new ``cl_ord_id``; a broker without it refuses
``get_order_status``   yes       the broker's view by ``cl_ord_id``, with the journaled reports, or
                                 None; retried submissions ask this first, so it must be authoritative
``open_orders``        yes       every order the broker still works for us (after a restart too)
``fills_since``        optional  fills after a time
``positions``          optional  the broker's positions
=====================  ========  ===========================================================================

What every adapter shares and this one already has: ``storage_boundary`` (a failure of its records is
``BrokerUnavailable``, never a refusal), the report path of ``JournaledBroker`` (``brokers/journal.py``: ``start``
begins with ``await self._start_reports(sink)``, which starts the session record and the delivery; every report goes
through ``await self._record(report, ref=..., source=...)``, journaled once per exec id *before* it is delivered;
``close`` ends with ``await self._stop_reports(<your clients>)``), and the session record (``self._recorder``: call
``changed(True/False, detail)`` as the connection comes and goes; the spec's session check refuses new orders
while it is down). Records of your own: a ``store.py`` on ``brokers.journal.AdapterStore``.

Names (``core/domain.py``): ``cl_ord_id`` is the id an order goes to the broker under (``{order_id}``, then
``{order_id}.{n}`` after the n-th replacement); every request, ack and report carries it under that name
(``SubmitOrder.cl_ord_id``, ``CancelOrder.cl_ord_id``, ``ReplaceOrder.orig_cl_ord_id``/``cl_ord_id``,
``BrokerAck.cl_ord_id``, ``ExecutionReport.cl_ord_id``, ``OrderStatusReport.cl_ord_id``). ``client_order_id`` is
the client's own id (``clientOrderId`` in the API) and never reaches a broker. An order's terms are ``OrderTerms``
(``SubmitOrder`` and ``ReplaceOrder`` inherit them): a record of your own that keeps an order's terms inherits them
too, and is built from ``order.terms()``.
"""

from __future__ import annotations

from datetime import datetime

from brokers._template.config import TEMPLATE_CAPABILITIES, TemplateSettings
from brokers.base import ReportSink, storage_boundary
from brokers.journal import JournaledBroker, ReportJournal
from brokers.sessions import SessionRecorder
from core.domain import (
    BrokerAck,
    CancelOrder,
    ExecutionReport,
    OrderStatusReport,
    PositionReport,
    ReplaceOrder,
    SubmitOrder,
)
from core.marketdata import QuoteSink
from store import Pool

__all__ = ["TemplateBroker"]


def _unwritten(method: str) -> NotImplementedError:
    return NotImplementedError(f"method `{method}` must be implemented in brokers/<name>/execution.py")


@storage_boundary
class TemplateBroker(JournaledBroker):
    """Orders at the template broker (copy, rename, write every method)."""

    capabilities = TEMPLATE_CAPABILITIES

    def __init__(
        self,
        settings: TemplateSettings,
        *,
        pool: Pool,
        name: str = "template",
        quotes: QuoteSink | None = None,
    ) -> None:
        """An adapter with ``settings``, keeping its records through ``pool``; quotes go to ``quotes``."""
        # The journal: every report, once per exec id, with its delivery mark (stream: the broker's name). The
        # recorder: the connection's state in ``broker_sessions``, which the spec's session check reads.
        self._init_reports(
            name, ReportJournal(pool, broker=name), SessionRecorder(pool, broker=name, session=settings.base_url)
        )
        self.settings = settings
        self.quotes = quotes

    async def start(self, sink: ReportSink) -> None:
        """Connect and start pushing execution reports to ``sink``."""
        raise _unwritten("start")

    async def close(self) -> None:
        """Disconnect (idempotent)."""
        raise _unwritten("close")

    async def submit_order(self, order: SubmitOrder) -> BrokerAck:
        """Send a new order."""
        raise _unwritten("submit_order")

    async def cancel_order(self, request: CancelOrder) -> BrokerAck:
        """Ask the broker to cancel an order."""
        raise _unwritten("cancel_order")

    async def replace_order(self, request: ReplaceOrder) -> BrokerAck:
        """Change an order's quantity or prices."""
        raise _unwritten("replace_order")

    async def get_order_status(self, cl_ord_id: str) -> OrderStatusReport | None:
        """The broker's view of an order and its fills, or None when the broker does not know it."""
        raise _unwritten("get_order_status")

    async def open_orders(self) -> list[OrderStatusReport]:
        """Every order the broker still works for us."""
        raise _unwritten("open_orders")

    async def fills_since(self, since: datetime) -> list[ExecutionReport]:
        """Fills after ``since``."""
        raise _unwritten("fills_since")

    async def positions(self) -> list[PositionReport]:
        """The broker's positions."""
        raise _unwritten("positions")
