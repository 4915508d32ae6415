"""Request hashing of an order body: what decides that a retried POST is the same request (200) or another (409)."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from api.schemas import OrderCreate
from tests.harness import unique


def order_body(**overrides: Any) -> dict[str, Any]:
    body = {"clientId": unique("desk"), "clientOrderId": unique("co"), "symbol": "AAPL", "side": "BUY", "qty": 10}
    body.update(overrides)
    return body


def test_a_body_without_a_trail_hashes_as_before_the_trail_keys_existed() -> None:
    # An order sent before the upgrade and retried after it must not look like another body (409).
    body = order_body(type="LIMIT", price="190", timeInForce="GTC")
    before = OrderCreate.model_validate(body).model_dump(mode="json", by_alias=True)
    for key in ("trailAmount", "trailPercent", "activationPrice", "trailTicks"):
        del before[key]
    before["type"] = "LIMIT"
    canonical = json.dumps(before, sort_keys=True, separators=(",", ":"))
    assert OrderCreate.model_validate(body).request_hash() == hashlib.sha256(canonical.encode()).hexdigest()
    trailing = OrderCreate.model_validate(order_body(type="TRAILING_STOP", trailAmount=1))
    assert (
        trailing.request_hash()
        != OrderCreate.model_validate(order_body(type="TRAILING_STOP", trailAmount=2)).request_hash()
    )
