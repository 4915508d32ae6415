"""Payloads of the ceiling workflow (passed through the workflow sandbox, like Exodus' models)."""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["Blob", "CeilingInput"]


@dataclass
class Blob:
    """A payload of a given size (``pad``), and the size the receiver should answer with."""

    pad: str = ""
    answer: int = 0
    #: Workflow id the activity worker should signal (submission only).
    workflow_id: str = ""
    signals: int = 0
    signal_size: int = 0


@dataclass
class CeilingInput:
    """The workflow's argument: its payload sizes and the second task queue."""

    pad: str
    broker_task_queue: str
    #: Sizes (characters) of each step's input and output, measured on real Exodus payloads.
    sizes: dict[str, int] = field(default_factory=dict)
    #: Execution reports the venue pushes per order (signals).
    signals: int = 2
    #: Search-attribute upserts (status changes) per order.
    upserts: int = 2
    #: Booking local activities per order.
    persists: int = 3
    #: Book before answering (in the first workflow task) instead of with the submission's answer.
    book_in_first_task: bool = False
    #: A reconciliation activity after the submission (an order its fill report does not settle).
    reconcile: bool = True
    #: The minimal durable order instead of the same shape: risk, one submission, its report(s), one booking.
    minimal: bool = False
