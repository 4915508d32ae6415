"""The order workflow's pure rules: values in, values out, nothing else.

Passed through the workflow sandbox (executed once per worker process, not once per order): everything here is a
constant or a function of its arguments. No ``workflow.*`` call, no clock, no randomness, no I/O: the time a rule
needs comes in as an argument (the workflow's ``workflow.now()``). ``tests/workflows/test_passed_through.py`` checks
that of every passed-through workflow module; what needs the workflow's context stays in ``workflows.order``, which
the sandbox executes and checks for every order.
"""

from __future__ import annotations

import re
from datetime import datetime, time, timedelta
from decimal import Decimal

from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

from core.domain import (
    AmendRequest,
    AmendResult,
    Break,
    BreakKind,
    ExecutionReport,
    OrderRequest,
    OrderState,
    OrderStatus,
    OrderType,
    TimeInForce,
)
from core.errors import NON_RETRYABLE_ERROR_TYPES
from workflows.booking import doubling
from workflows.order_models import OrderConfig

__all__ = [
    "AVG_TOLERANCE",
    "RISK_RETRY",
    "TICK",
    "UNSENDABLE",
    "WORKING",
    "amend_problem",
    "amend_result",
    "cancel_not_before",
    "order_expiry",
    "is_business_error",
    "next_day_close",
    "settled_by_report",
    "unknown_at_broker",
]

# Unbounded: only orders that replay without the order workflow's patches still use it.
RISK_RETRY = RetryPolicy(initial_interval=timedelta(milliseconds=100), maximum_interval=timedelta(seconds=5))
WORKING = (OrderStatus.ACCEPTED, OrderStatus.TRIGGERED, OrderStatus.PARTIALLY_FILLED)
#: Control characters (and lone surrogates) never reach a broker in a cancel's reason.
UNSENDABLE = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
#: Slack when comparing workflow time with a timer's deadline.
TICK = timedelta(milliseconds=10)
#: How far (relative) a final report's average price may be from the ledger's and still settle the order.
AVG_TOLERANCE = Decimal("1e-9")


def next_day_close(received_at: datetime, close: time) -> datetime:
    """The first ``close`` (time of day) after ``received_at``."""
    candidate = received_at.replace(hour=close.hour, minute=close.minute, second=0, microsecond=0)
    return candidate if candidate > received_at else candidate + timedelta(days=1)


def order_expiry(request: OrderRequest, cfg: OrderConfig) -> datetime | None:
    """When a GTD or DAY order expires (None: it does not)."""
    if request.time_in_force is TimeInForce.GTD and request.expire_at is not None:
        return request.expire_at
    if request.time_in_force is TimeInForce.DAY:
        return next_day_close(request.received_at, cfg.day_close_utc)
    return None


def amend_problem(state: OrderState, cfg: OrderConfig, request: AmendRequest) -> str | None:
    """Why ``request`` cannot amend the order as it stands (None: it can)."""
    if state.is_terminal:
        return f"order is {state.status.value}; only a working order can be amended"
    if state.status is OrderStatus.EMULATED:
        return "a trailing stop held by Exodus cannot be amended: cancel it and send a new one"
    if not cfg.supports_replace:
        return f"broker {state.request.broker} does not support amending orders"
    if state.status not in WORKING:
        return f"order is {state.status.value}; wait until the broker has acknowledged it and no request is pending"
    if request.qty is None and request.price is None and request.stop_price is None:
        return "nothing to change: give qty, price or stopPrice"
    if request.qty is not None and request.qty <= state.filled_qty:
        return f"new qty {request.qty} must exceed the filled quantity {state.filled_qty}"
    if request.price is not None and not state.request.type.needs_price:
        return f"a {state.request.type.value} order has no limit price to change"
    if request.stop_price is not None and not state.request.type.needs_stop_price:
        return f"a {state.request.type.value} order has no stop price to change"
    if state.request.type is OrderType.STOP_LIMIT and state.status is OrderStatus.TRIGGERED and request.stop_price:
        return "the stop has already triggered"
    return None


def amend_result(state: OrderState, accepted: bool, reason: str | None) -> AmendResult:
    """An amend's answer: the order's terms as they stand."""
    return AmendResult(
        accepted=accepted,
        status=state.status,
        reason=reason,
        qty=state.qty,
        price=state.price,
        stop_price=state.stop_price,
    )


def settled_by_report(state: OrderState, report: ExecutionReport | None, *, breaks: bool) -> bool:
    """The broker's own closing ``report`` carries the final figures: a status round trip would add nothing.

    FILLED by one fill report (an order filled in parts is reconciled) whose cumulative quantity is the order's
    whole quantity and what the ledger holds, with nothing left and an average price that agrees with the ledger's;
    no break (``breaks``: the order has some) and no flag.
    """
    if state.status is not OrderStatus.FILLED or report is None or report.avg_price is None:
        return False
    if len(state.fills) != 1 or breaks or state.flags or state.avg_price is None:
        return False
    if report.leaves_qty != 0 or not (report.cum_qty == state.filled_qty == state.qty):
        return False
    return abs(report.avg_price - state.avg_price) <= abs(state.avg_price) * AVG_TOLERANCE


def cancel_not_before(cfg: OrderConfig, *, resent: bool, sends: int, sent_at: datetime | None) -> datetime | None:
    """When the next cancel may go out (backoff after the ``sends`` already sent, the last at ``sent_at``).

    None: at once (also for orders without cancels sent again, ``resent`` false).
    """
    if not resent or sent_at is None or sends == 0:
        return None
    return sent_at + timedelta(seconds=doubling(cfg.cancel_retry_seconds, cfg.cancel_retry_max_seconds, sends))


def unknown_at_broker(broker: str, cl_ord_id: str) -> Break:
    """The break of an order its broker does not know."""
    return Break(kind=BreakKind.UNKNOWN_AT_BROKER, detail=f"{broker} does not know {cl_ord_id}")


def is_business_error(e: ActivityError) -> bool:
    """A broker call failed for a reason retrying cannot change (a definite refusal)."""
    cause = e.cause
    return isinstance(cause, ApplicationError) and cause.type in NON_RETRYABLE_ERROR_TYPES
