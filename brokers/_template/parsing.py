"""The template broker's wire mapping: domain requests to the broker's messages, its answers to domain reports.

Your copy: pure functions, no I/O, tested on their own (``tests/brokers/<name>/test_<name>_parsing.py``). Refuse what
the broker cannot carry with ``ValueError`` (the adapter answers it as a definite refusal before sending anything).
"""

from __future__ import annotations

from typing import Any

from core.domain import ExecutionReport, SubmitOrder

__all__ = ["order_body", "report_of"]


def order_body(order: SubmitOrder) -> dict[str, Any]:
    """The broker's new-order message for ``order``: its ``OrderTerms``, under ``order.cl_ord_id``."""
    raise NotImplementedError("function `order_body` must be implemented in brokers/<name>/parsing.py")


def report_of(message: dict[str, Any], *, broker: str) -> ExecutionReport | None:
    """The execution report a broker message stands for (None: it reports nothing new).

    Every report needs an exec id the broker gives the same way however it is learnt (stream, catch-up, lookup),
    so a report learnt twice is journaled and booked once.
    """
    raise NotImplementedError("function `report_of` must be implemented in brokers/<name>/parsing.py")
