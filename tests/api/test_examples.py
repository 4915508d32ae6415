"""Every documented order example works: the README's curl calls and the OpenAPI document's examples.

Two checks: each example passes the *default* risk policy at the paper feed's starting prices (the test stack
widens the price band, so this is checked with the risk engine directly), and each one, submitted through the
API of a running stack, is accepted; the README's amend and cancel calls then work on the README's limit order.
"""

from __future__ import annotations

import json
import re
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from api.main import create_app
from api.schemas import OrderCreate
from core.domain import OrderRequest, OrderType, TimeInForce
from core.instruments import DEFAULT_INSTRUMENTS, InstrumentCatalog
from core.risk import AccountState, PolicySet, ReasonCode, basic_check
from tests.harness import Stack, reached, unique

README = (Path(__file__).parents[2] / "README.md").read_text()
CATALOG = InstrumentCatalog(DEFAULT_INSTRUMENTS)


def _curl_bodies(method: str, path: str) -> list[dict[str, Any]]:
    """The JSON bodies (-d '...') of the README's curl calls with this method and path."""
    calls = re.findall(r"curl -s -X (\w+) (\S+)((?:[^\n]*\\\n)*[^\n]*)", README)
    out = []
    for verb, url, rest in calls:
        if verb == method and re.fullmatch(path, url.removeprefix("http://127.0.0.1:8000")):
            body = re.search(r"-d '(\{.*?\})'", rest, re.S)
            if body:
                out.append(json.loads(body.group(1)))
    return out


def readme_orders() -> list[dict[str, Any]]:
    # Orders for other brokers (FIX, MT5) are documented in their sections and need those brokers running.
    return [b for b in _curl_bodies("POST", "/api/v1/orders") if "broker" not in b]


def openapi_orders() -> list[dict[str, Any]]:
    return create_app().openapi()["components"]["schemas"]["OrderCreate"]["examples"]  # type: ignore[no-any-return]


def test_the_documents_have_order_examples() -> None:
    assert len(readme_orders()) >= 3
    assert {"AAPL", "MSFT", "EURUSD"} <= {b["symbol"] for b in readme_orders()}
    assert len(openapi_orders()) >= 3
    assert len(_curl_bodies("PATCH", r"/api/v1/orders/\$ID")) == 1
    assert len(_curl_bodies("POST", r"/api/v1/orders/\$ID/cancel")) == 1


def _request(body: dict[str, Any]) -> OrderRequest:
    parsed = OrderCreate.model_validate(body)
    return OrderRequest(
        order_id="EX" + "A" * 16,
        idempotency_key="k",
        request_hash="h",
        client_id=parsed.client_id,
        client_order_id=parsed.client_order_id,
        account=parsed.client_id,
        symbol=parsed.symbol,
        side=parsed.side,
        type=parsed.order_type,
        time_in_force=parsed.time_in_force,
        qty=parsed.qty,
        price=parsed.price,
        stop_price=parsed.stop_price,
        expire_at=parsed.expire_at,
        broker="paper",
        received_at=datetime.now(UTC),
    )


def default_policy_reasons(body: dict[str, Any]) -> list[str]:
    order = _request(body)
    instrument = CATALOG.get(order.symbol)
    assert instrument is not None
    state = AccountState(
        now=datetime.now(UTC),
        instrument=instrument,
        reference_price=instrument.initial_price,
        broker_order_types=frozenset(OrderType),
        broker_time_in_force=frozenset(TimeInForce),
    )
    limits = PolicySet().limits(order.account, instrument)
    return [r.code for r in basic_check(order, limits, state)]


@pytest.mark.parametrize(
    "body", readme_orders() + openapi_orders(), ids=lambda b: f"{b['symbol']}-{b['clientOrderId']}"
)
def test_each_example_passes_the_default_policy_at_the_feeds_starting_price(body: dict[str, Any]) -> None:
    assert default_policy_reasons(body) == []


def test_a_eurusd_limit_at_1_1234_is_out_of_the_default_band_as_the_readme_says() -> None:
    assert "1.1234" in README and "PRICE_OUT_OF_BAND" in README
    body = {"clientId": "d", "clientOrderId": "o", "symbol": "EURUSD", "side": "BUY", "qty": 100000, "price": "1.1234"}
    assert default_policy_reasons(body) == [ReasonCode.PRICE_OUT_OF_BAND]


async def test_the_examples_are_accepted_by_a_running_stack(stack: Stack) -> None:
    examples = readme_orders() + openapi_orders()
    for symbol in {b["symbol"] for b in examples}:
        instrument = CATALOG.get(symbol)
        assert instrument is not None
        await stack.venue.set_mid(symbol, instrument.initial_price)
    working: dict[str, str] = {}
    async with stack.api() as http:
        for example in examples:
            body = {
                **example,
                "clientId": unique("doc"),
                "clientOrderId": f"{example['clientOrderId']}-{uuid.uuid4().hex[:6]}",
            }
            r = await http.post("/api/v1/orders", json=body)
            assert r.status_code == 201, (example, r.text)
            assert r.json()["status"] == "accepted"
            if body.get("timeInForce") in ("GTC", "GTD"):
                working[example["clientOrderId"]] = r.json()["internalOrderId"]
        # The README's amend and cancel act on its MSFT limit (ord-2).
        order_id = working["ord-2"]
        await reached(http, stack, order_id, "ACCEPTED")
        [amend] = _curl_bodies("PATCH", r"/api/v1/orders/\$ID")
        r = await http.patch(f"/api/v1/orders/{order_id}", json=amend)
        assert r.status_code == 200 and r.json()["status"] == "amended", r.text
        assert Decimal(r.json()["qty"]) == Decimal(str(amend["qty"]))
        [cancel] = _curl_bodies("POST", r"/api/v1/orders/\$ID/cancel")
        for order_id in working.values():
            r = await http.post(f"/api/v1/orders/{order_id}/cancel", json=cancel, headers={"X-Actor": "ops-jane"})
            assert r.status_code == 202, r.text
