"""What the order and order-list routes answer alike: JSON bodies, refusals, and a workflow's state by query."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from fastapi import HTTPException
from fastapi.responses import JSONResponse
from temporalio.client import WorkflowQueryFailedError
from temporalio.service import RPCError, RPCStatusCode

from api.schemas import ErrorBody, Reason

__all__ = ["CREATE_ANSWERS", "QUERY_TIMEOUT", "json_answer", "query_state", "rejected"]

#: What a submission (an order, an order list) answers besides its 201.
CREATE_ANSWERS: dict[int | str, dict[str, Any]] = {
    200: {"description": "repeat of an earlier request"},
    409: {"model": ErrorBody},
    422: {"model": ErrorBody},
}

#: How long a read waits for a running workflow to answer its query.
QUERY_TIMEOUT = timedelta(seconds=5)


class _EncodedJSON(JSONResponse):
    """A ``JSONResponse`` whose content is JSON text already (``render`` passes it through)."""

    def render(self, content: Any) -> bytes:
        """The body as given."""
        return content  # type: ignore[no-any-return]


def json_answer(status: int, model: Any, headers: dict[str, str] | None = None) -> JSONResponse:
    """``model`` as the API writes it (camelCase, no nulls).

    pydantic writes the JSON itself (``model_dump_json``) rather than a dict of JSON values that ``json.dumps``
    then walks again: the same document (compact, UTF-8), one pass. The models answered here carry no floats.
    """
    body = model.model_dump_json(by_alias=True, exclude_none=True).encode()
    return _EncodedJSON(status_code=status, content=body, headers=headers)


def rejected(
    status: int, reasons: list[Reason], *, order_id: str | None = None, message: str | None = None
) -> JSONResponse:
    """A refusal with its reasons (the message: theirs, joined, unless given)."""
    return json_answer(
        status,
        ErrorBody(
            status="rejected",
            message=message or "; ".join(r.message for r in reasons),
            reasons=reasons,
            internal_order_id=order_id,
        ),
    )


async def query_state(temporal: Any, workflow_id: str, query: Any, *, what: str) -> Any:
    """The answer of a running workflow's ``query``; None when Temporal has no such workflow.

    A workflow that cannot answer yet is a 503 naming ``what`` ("order EX..."): the caller retries shortly.
    """
    handle = temporal.get_workflow_handle(workflow_id)
    try:
        return await handle.query(query, rpc_timeout=QUERY_TIMEOUT)
    except RPCError as e:
        if e.status == RPCStatusCode.NOT_FOUND:
            return None
        raise
    except WorkflowQueryFailedError as e:
        raise HTTPException(503, detail=f"{what} is not readable yet ({e}); retry shortly") from e
