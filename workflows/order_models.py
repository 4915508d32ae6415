"""The order workflow's input, configuration and result.

Kept out of ``workflows.order`` and passed through the workflow sandbox: the sandbox executes the workflow's
module afresh for every workflow run, and creating these pydantic classes (schema building) each time was a
large part of the worker's CPU per order.
"""

from __future__ import annotations

from datetime import time

from pydantic import BaseModel, ConfigDict

from core.domain import OrderRequest, OrderStatus

__all__ = ["OrderConfig", "OrderResult", "OrderWorkflowInput"]


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


class OrderWorkflowInput(BaseModel):
    """The workflow's single argument."""

    model_config = ConfigDict(frozen=True)

    order: OrderRequest
    config: OrderConfig


class OrderResult(BaseModel):
    """What the workflow returns when the order is final."""

    model_config = ConfigDict(frozen=True)

    order_id: str
    status: OrderStatus
    filled_qty: str
    avg_price: str | None = None
    reason: str | None = None
    breaks: list[str] = []
