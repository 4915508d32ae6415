"""What a workflow costs the engine: its history's events by kind, and the sizes of its payloads.

Used twice: on a real Exodus order, to size the ceiling workflow's payloads, and on both after the run, so
the report shows that the ceiling did the same engine work as an order (same events, similar bytes).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowHistory

__all__ = ["history_shape", "payload_sizes"]

_KINDS = {
    EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED: "workflow_tasks",
    EventType.EVENT_TYPE_MARKER_RECORDED: "local_activities",
    EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED: "activities",
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED: "signals",
    EventType.EVENT_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES: "search_attribute_upserts",
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED: "updates",
    EventType.EVENT_TYPE_TIMER_STARTED: "timers",
}


def history_shape(history: WorkflowHistory) -> dict[str, Any]:
    """Counts of the events that cost the engine work, the total event count, and the history's bytes."""
    counts: Counter[str] = Counter()
    for event in history.events:
        kind = _KINDS.get(event.event_type)
        if kind:
            counts[kind] += 1
    shape: dict[str, Any] = {kind: counts.get(kind, 0) for kind in _KINDS.values()}
    shape["events"] = len(history.events)
    shape["history_bytes"] = sum(e.ByteSize() for e in history.events)
    return shape


def _size(payloads: Any) -> int:
    return sum(len(p.data) for p in payloads.payloads) if payloads is not None else 0


def payload_sizes(history: WorkflowHistory) -> dict[str, int]:
    """Payload bytes of an order's steps, keyed the way ``CeilingWorkflow`` reads them."""
    sizes: dict[str, int] = {}
    scheduled: dict[int, str] = {}
    markers = 0
    for e in history.events:
        t = e.event_type
        if t == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED:
            sizes["input"] = _size(e.workflow_execution_started_event_attributes.input)
        elif t == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            a = e.activity_task_scheduled_event_attributes
            name = {"submit_order": "ceiling_submit", "get_order_status": "ceiling_status"}.get(
                a.activity_type.name, a.activity_type.name
            )
            scheduled[e.event_id] = name
            sizes.setdefault(f"{name}_in", _size(a.input))
        elif t == EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED:
            done = e.activity_task_completed_event_attributes
            completed = scheduled.get(done.scheduled_event_id)
            if completed:
                sizes.setdefault(f"{completed}_out", _size(done.result))
        elif t == EventType.EVENT_TYPE_MARKER_RECORDED:
            details = e.marker_recorded_event_attributes.details
            result = details.get("result")
            if markers == 0 and result is not None:
                sizes["risk_out"] = _size(result)
            markers += 1
        elif t == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED:
            sizes.setdefault("signal", _size(e.workflow_execution_signaled_event_attributes.input))
        elif t == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED:
            sizes["update_in"] = _size(
                e.workflow_execution_update_accepted_event_attributes.accepted_request.input.args
            )
        elif t == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED:
            sizes["result"] = _size(e.workflow_execution_completed_event_attributes.result)
    return sizes
