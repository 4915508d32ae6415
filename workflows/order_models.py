"""The order workflow's input, configuration, result, and what a continued run carries over.

Kept out of ``workflows.order`` and passed through the workflow sandbox: the sandbox executes the workflow's
module afresh for every workflow run, and creating these pydantic classes (schema building) each time was a
large part of the worker's CPU per order.

These models travel through Temporal (they are in every order's history): add fields only as optional with
defaults, never remove or rename one, so that payloads written by earlier releases still load.
"""

from __future__ import annotations

from datetime import datetime, time
from typing import Literal

from pydantic import BaseModel, ConfigDict

from core.domain import Break, CancelRequest, OrderRequest, OrderState, OrderStatus, RiskDecision
from core.orderlist import ListBook, ListStatus, OrderListRequest

__all__ = [
    "ListCarry",
    "ListLink",
    "ListResult",
    "OrderCarry",
    "OrderConfig",
    "OrderListInput",
    "OrderResult",
    "OrderWorkflowInput",
]


class OrderConfig(BaseModel):
    """Lifecycle settings, fixed when the order starts (so replays see the same values)."""

    model_config = ConfigDict(frozen=True)

    broker_task_queue: str
    supports_replace: bool = True
    day_close_utc: time = time(21, 0)
    status_poll_seconds: float = 60.0
    immediacy_timeout_seconds: float = 5.0
    broker_call_timeout_seconds: float = 15.0
    #: Pause between rounds of an unconfirmed submission (each round asks the broker first).
    resubmit_pause_seconds: float = 30.0
    #: Attempts of a risk check (new order or amend) before it counts as failed: the order is DENIED, the
    #: amend refused.
    risk_attempts: int = 5
    #: Attempts of one booking round; after a failed round the booking is retried after a durable pause
    #: that doubles from ``booking_retry_seconds`` up to ``booking_retry_max_seconds``.
    booking_attempts: int = 3
    booking_retry_seconds: float = 1.0
    booking_retry_max_seconds: float = 60.0
    #: After a cancel the broker refused, a new cancel request is sent again no sooner than this after the
    #: last one, doubling with every send up to ``cancel_retry_max_seconds``.
    cancel_retry_seconds: float = 1.0
    cancel_retry_max_seconds: float = 60.0
    #: Continue as a new run once the history has this many events (or Temporal suggests it).
    continue_as_new_events: int = 2000
    #: Trailing stops: emulated by the workflow (the broker has no native one), checked this often.
    emulates_trailing_stop: bool = True
    trail_check_seconds: float = 1.0
    #: The broker is swept (``worker/sweep.py``): a working order arms no status-poll timer, and polls only when a
    #: sweep signals that the broker's view differs, or while a cancel or replace waits for its answer.
    swept: bool = False


class OrderCarry(BaseModel):
    """What a run of the order workflow hands to the run it continues as (continue-as-new).

    Taken only at a safe point: no handler running, no broker call in flight, everything booked.
    """

    model_config = ConfigDict(frozen=True)

    state: OrderState
    #: Where the new run resumes: still asking the broker about an unconfirmed submission, following, or holding
    #: an emulated trailing stop.
    phase: Literal["submitting", "following", "trailing"] = "following"
    decision: RiskDecision | None = None
    #: The operator's cancel request, whether it was sent, how often, and when last.
    cancel: CancelRequest | None = None
    cancel_sent: bool = False
    cancel_sends: int = 0
    cancel_sent_at: datetime | None = None
    breaks: list[Break] = []
    persisted_events: int = 0
    persisted_fills: int = 0
    persisted_breaks: int = 0
    acked: bool = False
    immediacy_at: datetime | None = None
    next_poll_at: datetime | None = None
    poll_backoff: int = 1
    last_status: OrderStatus | None = None
    #: How many runs came before this one.
    generation: int = 0


class ListLink(BaseModel):
    """An order that is a leg of an order list: where it reports (``OrderListWorkflow.leg_report``) and as what."""

    model_config = ConfigDict(frozen=True)

    workflow_id: str
    leg: str


class OrderWorkflowInput(BaseModel):
    """The workflow's single argument."""

    model_config = ConfigDict(frozen=True)

    order: OrderRequest
    config: OrderConfig
    #: Set when this run continues an earlier one (continue-as-new).
    carried: OrderCarry | None = None
    #: Set when the order is a leg of an order list.
    parent: ListLink | None = None


class OrderResult(BaseModel):
    """What the workflow returns when the order is final."""

    model_config = ConfigDict(frozen=True)

    order_id: str
    status: OrderStatus
    filled_qty: str
    avg_price: str | None = None
    reason: str | None = None
    breaks: list[Break] = []


class ListCarry(BaseModel):
    """What a run of the list's coordinator hands to the run it continues as: its book and read-model version."""

    model_config = ConfigDict(frozen=True)

    book: ListBook
    saved: int = 0
    #: The next quote check of the legs held on quotes (None: at once).
    next_check: datetime | None = None


class OrderListInput(BaseModel):
    """The coordinator's single argument: the list, and each leg's order workflow input (``workflows.order_client``).

    A leg's input is sent as it is but for its quantity (a child is sized to its parent's fills); the flatten leg
    (``core.orderlist.FLATTEN_LEG``) takes the parent's configuration.
    """

    model_config = ConfigDict(frozen=True)

    request: OrderListRequest
    legs: dict[str, OrderWorkflowInput]
    #: The task queue the legs' order workflows run on.
    task_queue: str
    #: Pause between attempts of a leg's resize that the order could not take yet (not acknowledged yet).
    resize_retry_seconds: float = 1.0
    #: The broker carries the list itself (``core.nativelist``): the legs are marked (``OrderRequest.native``), the
    #: coordinator follows the broker's legs instead of releasing, resizing and canceling them itself.
    native: bool = False
    #: Set when this run continues an earlier one (continue-as-new, patch ``list-continue-as-new``).
    carried: ListCarry | None = None


class ListResult(BaseModel):
    """What the coordinator returns when every leg is closed."""

    model_config = ConfigDict(frozen=True)

    list_id: str
    status: ListStatus
    legs: dict[str, OrderStatus]
    flags: list[str] = []
