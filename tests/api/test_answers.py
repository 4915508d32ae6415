"""The order routes' JSON answers: pydantic writes the text, the document is what the model dumps as JSON."""

from __future__ import annotations

import json
from decimal import Decimal

from api.answers import json_answer, rejected
from api.schemas import OrderAccepted, Reason
from core.domain import OrderStatus


def test_a_json_answer_is_the_models_json_dump_camel_case_without_nulls() -> None:
    body = OrderAccepted(
        status="accepted",
        internal_order_id="EXAAAAAAAAAAAAAAAA",
        client_order_id="co-é-1",
        client_id="desk-1",
        order_status=OrderStatus.SUBMITTED,
        reasons=[Reason(code="X", message="qty: at most 10 ✓")],
        workflow_id="order-EXAAAAAAAAAAAAAAAA",
        links={"self": "/api/v1/orders/EXAAAAAAAAAAAAAAAA"},
    )
    answer = json_answer(201, body, {"Location": "/api/v1/orders/EXAAAAAAAAAAAAAAAA"})
    assert answer.status_code == 201
    assert answer.headers["content-type"] == "application/json"
    assert answer.headers["location"] == "/api/v1/orders/EXAAAAAAAAAAAAAAAA"
    assert int(answer.headers["content-length"]) == len(answer.body)
    document = json.loads(bytes(answer.body))
    assert document == body.model_dump(mode="json", by_alias=True, exclude_none=True)
    assert document["internalOrderId"] == "EXAAAAAAAAAAAAAAAA" and "field" not in document["reasons"][0]
    assert "co-é-1".encode() in answer.body  # UTF-8, not \\u escapes (as JSONResponse wrote it)


def test_a_refusal_names_its_fields() -> None:
    answer = rejected(422, [Reason(code="INVALID_FIELD", field="qty", message=f"qty: {Decimal('1.5')} too fine")])
    assert answer.status_code == 422
    assert json.loads(bytes(answer.body)) == {
        "status": "rejected",
        "message": "qty: 1.5 too fine",
        "reasons": [{"code": "INVALID_FIELD", "field": "qty", "message": "qty: 1.5 too fine"}],
    }
