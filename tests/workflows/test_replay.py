"""Replaying order histories through the workflow code reproduces them (the workflow is deterministic).

Two kinds of history are replayed:

* the committed ones under ``tests/workflows/histories/``: real orders recorded by earlier releases (see
  ``tests/workflows/recording.py``). They stand for orders in flight during an upgrade: a change to the
  workflow that would make one of them fail is a change that needs ``workflow.patched``;
* histories made now, by this release, of every kind of order.

Both replay in the workers' own sandbox (``worker.sandbox.workflow_runner``).
"""

from __future__ import annotations

import base64
import json
from decimal import Decimal as D

import pytest
from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer

from core.domain import AmendRequest, CancelRequest, OrderStatus
from tests.harness import Stack, make_order
from tests.workflows.recording import HISTORIES
from worker.sandbox import workflow_runner
from workflows.order import (
    PATCH_AMEND_RECHECK_BOOKED,
    PATCH_BOOKING_BY_COUNTS,
    PATCH_BROKER_SWEEPS,
    PATCH_LEAN_HISTORY,
    PATCH_LIST_LEG_REPORTS,
    PATCH_NO_WEDGE,
    PATCH_TRAILING_STOP,
    OrderWorkflow,
)
from workflows.order_list import OrderListWorkflow
from workflows.order_list_native import PATCH_NATIVE_LISTS

COMMITTED = sorted(HISTORIES.glob("*.json"))
#: Order lists' coordinators (issue 15).
LISTS = sorted((HISTORIES / "lists").glob("*.json"))


def test_committed_histories_cover_every_kind_of_order() -> None:
    names = {p.stem for p in COMMITTED}
    for shape in ("market-filled", "partial", "canceled", "amended", "expired", "rejected", "denied"):
        assert any(shape in n for n in names), f"no committed history of a {shape} order"
    assert any(n.startswith("fix-") for n in names) and any(n.startswith("mt5-") for n in names)


def _payload_text(node: object) -> str:
    # Payload data is base64 in the JSON form of a history.
    if isinstance(node, dict):
        parts = [_payload_text(v) for k, v in node.items() if k != "data"]
        data = node.get("data")
        if isinstance(data, str):
            parts.append(base64.b64decode(data).decode("utf-8", "replace"))
        return "\n".join(parts)
    if isinstance(node, list):
        return "\n".join(_payload_text(v) for v in node)
    return ""


def test_committed_histories_cover_the_patched_shapes() -> None:
    # Orders of this release in flight at the next upgrade: the patched path, and runs that continued as new.
    shapes = {
        "paper-risk-check-failed-denied": "RISK_CHECK_FAILED",
        "paper-amend-risk-failed-then-canceled": "the risk check failed after",
        "paper-booking-delayed-then-canceled": "BOOKING_DELAYED",
        "paper-cancel-refused-then-sent-again": "VENUE_BUSY",
        "paper-task-failed-after-booking": "EVENT_TYPE_WORKFLOW_TASK_FAILED",
        "paper-gtc-continued-as-new": "EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW",
        "paper-gtc-continued-run": "EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW",
        "paper-gtc-continued-run-canceled": "EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED",
    }
    for name, mark in shapes.items():
        raw = (HISTORIES / f"{name}.json").read_text()
        text = raw + _payload_text(json.loads(raw))
        assert PATCH_NO_WEDGE in text and mark in text, name
    # An amend refused by the re-check after its risk check (patched where it happens, not at the start).
    raw = (HISTORIES / "paper-amend-refused-by-recheck-after-fill.json").read_text()
    text = _payload_text(json.loads(raw))
    assert PATCH_AMEND_RECHECK_BOOKED in text and "must exceed the filled quantity" in text
    for name in ("paper-gtc-continued-run", "paper-gtc-continued-run-canceled"):
        events = json.loads((HISTORIES / f"{name}.json").read_text())["events"]
        assert events[0]["workflowExecutionStartedEventAttributes"].get("continuedExecutionRunId"), name


def test_committed_histories_cover_booking_by_counts() -> None:
    # Orders of the release that books by counts (issue 19), every shape recorded again: they carry only the
    # newest marker of the chain, and they stand for this release's orders in flight at the next upgrade.
    by_counts = {p.stem.removesuffix("-by-counts"): p for p in COMMITTED if p.stem.endswith("-by-counts")}
    earlier = {
        p.stem
        for p in COMMITTED
        if not p.stem.endswith(("-by-counts", "-lean")) and not any(w in p.stem for w in ("sweep", "swept"))
    }
    assert earlier <= set(by_counts), sorted(earlier - set(by_counts))
    for name, path in by_counts.items():
        text = _payload_text(json.loads(path.read_text()))
        assert PATCH_BOOKING_BY_COUNTS in text and PATCH_NO_WEDGE not in text, name
    raw = by_counts["paper-amend-refused-by-recheck-after-fill"].read_text()
    assert PATCH_AMEND_RECHECK_BOOKED in _payload_text(json.loads(raw))


def test_committed_histories_cover_the_lean_history() -> None:
    # Orders of the release with the leaner history (issue 18): a market order settled by its fill report (no
    # status round trip) and a canceled order (still reconciled). They carry only the newest marker of the chain.
    for name, settled in (("paper-market-filled-lean", True), ("paper-limit-canceled-lean", False)):
        raw = (HISTORIES / f"{name}.json").read_text()
        text = _payload_text(json.loads(raw))
        assert PATCH_LEAN_HISTORY in text and PATCH_BOOKING_BY_COUNTS not in text, name
        assert ("get_order_status" in raw) is not settled, name


def test_committed_histories_cover_broker_sweeps() -> None:
    # Orders of a swept broker (issue 18): no poll timer while working; a fill found by the broker's sweep is looked
    # up on its ``sweep_found`` signal. They carry only the newest marker of the chain.
    for name in ("paper-market-filled-swept", "paper-swept-limit-canceled", "paper-sweep-recovers-fill"):
        raw = (HISTORIES / f"{name}.json").read_text()
        text = _payload_text(json.loads(raw))
        assert PATCH_BROKER_SWEEPS in text and PATCH_LEAN_HISTORY not in text, name
        assert "EVENT_TYPE_TIMER_STARTED" not in raw, name
    recovered = (HISTORIES / "paper-sweep-recovers-fill.json").read_text()
    assert "sweep_found" in recovered and "get_order_status" in recovered
    plain = (HISTORIES / "paper-market-filled-lean.json").read_text()
    assert PATCH_BROKER_SWEEPS not in _payload_text(json.loads(plain))


def test_committed_histories_cover_list_legs() -> None:
    # Legs of an order list report to their coordinator: the patched path, recorded where only legs take it.
    legs = [p for p in COMMITTED if p.stem.startswith("paper-bracket-leg-")]
    assert len(legs) >= 3
    for path in legs:
        assert PATCH_LIST_LEG_REPORTS in _payload_text(json.loads(path.read_text())), path.name
    plain = (HISTORIES / "paper-market-filled-by-counts.json").read_text()
    assert PATCH_LIST_LEG_REPORTS not in _payload_text(json.loads(plain))


def test_committed_histories_cover_trailing_stops() -> None:
    # Emulated trailing stops: the patched path, recorded where only trailing stops take it.
    trailing = [p for p in COMMITTED if p.stem.startswith("paper-trailing-stop-")]
    assert len(trailing) >= 2
    for path in trailing:
        text = _payload_text(json.loads(path.read_text()))
        assert PATCH_TRAILING_STOP in text and "EMULATE" in text, path.name
    plain = (HISTORIES / "paper-market-filled-by-counts.json").read_text()
    assert PATCH_TRAILING_STOP not in _payload_text(json.loads(plain))


def test_committed_histories_cover_native_lists() -> None:
    # A list the broker carries (Alpaca's bracket): the coordinator's native path, recorded where only such lists
    # take it; its legs are ordinary legs (the attached ones find the broker's leg instead of sending).
    native = [p for p in LISTS if p.stem.startswith("alpaca-native-")]
    assert native
    for path in native:
        assert PATCH_NATIVE_LISTS in _payload_text(json.loads(path.read_text())), path.name
    for path in LISTS:
        if not path.stem.startswith("alpaca-native-"):
            assert PATCH_NATIVE_LISTS not in _payload_text(json.loads(path.read_text())), path.name
    legs = [p for p in COMMITTED if p.stem.startswith("alpaca-native-bracket-leg-")]
    assert len(legs) == 3


@pytest.mark.parametrize("path", LISTS, ids=[p.stem for p in LISTS])
async def test_committed_list_history_replays(path) -> None:  # type: ignore[no-untyped-def]
    raw = path.read_text()
    assert json.loads(raw)["events"][0]["workflowExecutionStartedEventAttributes"]["workflowType"]["name"] == (
        "OrderListWorkflow"
    )
    history = WorkflowHistory.from_json(f"replay-{path.stem}", raw)
    replayer = Replayer(
        workflows=[OrderListWorkflow], data_converter=pydantic_data_converter, workflow_runner=workflow_runner()
    )
    result = await replayer.replay_workflow(history, raise_on_replay_failure=False)
    assert result.replay_failure is None, f"{path.name}: {result.replay_failure}"


@pytest.mark.parametrize("path", COMMITTED, ids=[p.stem for p in COMMITTED])
async def test_committed_history_replays(path) -> None:  # type: ignore[no-untyped-def]
    raw = path.read_text()
    events = json.loads(raw)["events"]
    started = events[0]["workflowExecutionStartedEventAttributes"]
    assert started["workflowType"]["name"] == "OrderWorkflow"
    history = WorkflowHistory.from_json(f"replay-{path.stem}", raw)
    replayer = Replayer(
        workflows=[OrderWorkflow], data_converter=pydantic_data_converter, workflow_runner=workflow_runner()
    )
    result = await replayer.replay_workflow(history, raise_on_replay_failure=False)
    assert result.replay_failure is None, f"{path.name}: {result.replay_failure}"


async def test_histories_of_every_kind_of_order_replay_cleanly(stack: Stack) -> None:
    await stack.venue.set_mid("AAPL", D("190.00"))
    handles = []
    # Filled at once, filled in pieces, amended then canceled, denied.
    _, h = await stack.submit(make_order(symbol="AAPL", qty="10"))
    handles.append(h)
    _, h = await stack.submit(make_order(symbol="AAPL", qty="900", type="LIMIT", price="191.00"))
    await stack.wait_for(h, OrderStatus.PARTIALLY_FILLED)
    await stack.venue.step()
    handles.append(h)
    _, h = await stack.submit(make_order(symbol="AAPL", qty="10", type="LIMIT", price="150.00"))
    await stack.wait_for(h, OrderStatus.ACCEPTED)
    assert (await h.execute_update(OrderWorkflow.amend, AmendRequest(price=D("151.00")))).accepted
    await h.signal(OrderWorkflow.cancel, CancelRequest(reason="replay test"))
    handles.append(h)
    _, h = await stack.submit(make_order(symbol="AAPL", qty="99999", type="LIMIT", price="190.00"))
    handles.append(h)
    statuses = [(await handle.result()).status for handle in handles]
    assert statuses == [OrderStatus.FILLED, OrderStatus.FILLED, OrderStatus.CANCELED, OrderStatus.DENIED]

    replayer = Replayer(
        workflows=[OrderWorkflow], data_converter=pydantic_data_converter, workflow_runner=workflow_runner()
    )
    for handle in handles:
        history = await handle.fetch_history()
        result = await replayer.replay_workflow(history, raise_on_replay_failure=False)
        assert result.replay_failure is None, f"{handle.id}: {result.replay_failure}"
