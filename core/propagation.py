"""The request id (and the principal) carried from the API into the order's workflow and its activities.

A Temporal interceptor for the client and the worker: the client puts the ids bound in ``core.logs`` into a
header of every workflow start, signal and update it sends; the workflow binds them for its own log lines and
passes them on to every activity it schedules; each activity binds them, with its workflow's and order's ids,
for the lines it logs. Headers are not part of what a replay compares, so histories recorded before this
interceptor replay unchanged.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import temporalio.activity
import temporalio.api.common.v1
import temporalio.client
import temporalio.converter
import temporalio.worker
import temporalio.workflow

from core.logs import bind, bound

__all__ = ["HEADER", "ContextInterceptor"]

#: The header that carries the ids (a JSON object of strings).
HEADER = "exodus-context"
#: The ids that travel (the rest are the workflow's or activity's own).
_CARRIED = ("request_id", "principal")

Headers = Mapping[str, temporalio.api.common.v1.Payload]


def _with_context(headers: Headers) -> Mapping[str, temporalio.api.common.v1.Payload]:
    ids = {k: v for k, v in bound().items() if k in _CARRIED}
    if not ids:
        return headers
    payload = temporalio.converter.PayloadConverter.default.to_payload(ids)
    return {**headers, HEADER: payload}


def _from(headers: Headers) -> dict[str, str]:
    payload = headers.get(HEADER)
    if payload is None:
        return {}
    try:
        value = temporalio.converter.PayloadConverter.default.from_payload(payload, dict)
    except Exception:  # a header we cannot read carries nothing; it never fails the workflow
        return {}
    return {k: str(v) for k, v in value.items() if k in _CARRIED and isinstance(v, str | int)}


class ContextInterceptor(temporalio.client.Interceptor, temporalio.worker.Interceptor):
    """Client and worker interceptor carrying the ids (pass it to ``Client.connect``; workers inherit it)."""

    def intercept_client(self, next: temporalio.client.OutboundInterceptor) -> temporalio.client.OutboundInterceptor:
        """The client's side: ids into headers."""
        return _ClientOutbound(next)

    def intercept_activity(
        self, next: temporalio.worker.ActivityInboundInterceptor
    ) -> temporalio.worker.ActivityInboundInterceptor:
        """The activities' side: ids from headers into the log context."""
        return _ActivityInbound(next)

    def workflow_interceptor_class(
        self, input: temporalio.worker.WorkflowInterceptorClassInput
    ) -> type[temporalio.worker.WorkflowInboundInterceptor]:
        """The workflows' side: ids from headers, and on to the activities."""
        return _WorkflowInbound


class _ClientOutbound(temporalio.client.OutboundInterceptor):
    async def start_workflow(self, input: temporalio.client.StartWorkflowInput) -> Any:
        input.headers = _with_context(input.headers)
        return await super().start_workflow(input)

    async def signal_workflow(self, input: temporalio.client.SignalWorkflowInput) -> None:
        input.headers = _with_context(input.headers)
        await super().signal_workflow(input)

    async def start_workflow_update(self, input: temporalio.client.StartWorkflowUpdateInput) -> Any:
        input.headers = _with_context(input.headers)
        return await super().start_workflow_update(input)

    async def start_update_with_start_workflow(self, input: temporalio.client.StartWorkflowUpdateWithStartInput) -> Any:
        # One encoding of the ids for both (each is a payload of the same JSON): this is every order's submission.
        carried = _with_context({})
        input.start_workflow_input.headers = {**input.start_workflow_input.headers, **carried}
        input.update_workflow_input.headers = {**input.update_workflow_input.headers, **carried}
        return await super().start_update_with_start_workflow(input)


class _WorkflowInbound(temporalio.worker.WorkflowInboundInterceptor):
    def init(self, outbound: temporalio.worker.WorkflowOutboundInterceptor) -> None:
        super().init(_WorkflowOutbound(outbound))

    async def execute_workflow(self, input: temporalio.worker.ExecuteWorkflowInput) -> Any:
        with bind(**_from(input.headers)):
            return await super().execute_workflow(input)

    async def handle_signal(self, input: temporalio.worker.HandleSignalInput) -> None:
        with bind(**_from(input.headers)):
            await super().handle_signal(input)

    async def handle_update_handler(self, input: temporalio.worker.HandleUpdateInput) -> Any:
        with bind(**_from(input.headers)):
            return await super().handle_update_handler(input)


class _WorkflowOutbound(temporalio.worker.WorkflowOutboundInterceptor):
    def start_activity(self, input: temporalio.worker.StartActivityInput) -> temporalio.workflow.ActivityHandle[Any]:
        input.headers = _with_context(input.headers)
        return super().start_activity(input)

    def start_local_activity(
        self, input: temporalio.worker.StartLocalActivityInput
    ) -> temporalio.workflow.ActivityHandle[Any]:
        input.headers = _with_context(input.headers)
        return super().start_local_activity(input)


def _order_ids(args: tuple[Any, ...]) -> dict[str, Any]:
    # An activity's first argument is an order (or carries one): its ids. The client's id (``client_order_id``) and
    # the id the broker knows the order by (``cl_ord_id``) are two ids, each under its own name.
    ids: dict[str, Any] = {}
    for arg in args[:1]:
        for source in (arg, getattr(arg, "order", None), getattr(arg, "request", None)):
            if source is None:
                continue
            for name in ("client_order_id", "cl_ord_id", "broker", "broker_order_id"):
                value = getattr(source, name, None)
                if isinstance(value, str) and name not in ids:
                    ids[name] = value
    return ids


class _ActivityInbound(temporalio.worker.ActivityInboundInterceptor):
    async def execute_activity(self, input: temporalio.worker.ExecuteActivityInput) -> Any:
        info = temporalio.activity.info()
        order_id = info.workflow_id.removeprefix("order-") if info.workflow_id else None
        with bind(
            **_from(input.headers),
            workflow_id=info.workflow_id,
            order_id=order_id,
            activity=info.activity_type,
            **_order_ids(tuple(input.args)),
        ):
            return await super().execute_activity(input)
