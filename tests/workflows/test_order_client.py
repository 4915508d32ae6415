"""``workflows/order_client.py``: the one place an order's workflow input and start are built."""

from __future__ import annotations

import dataclasses
from datetime import time

import pytest
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy

import workflows.order_client as order_client
from brokers import BROKERS
from core.domain import OrderStatus, workflow_id_for
from core.settings import OrderSettings, Settings
from core.temporal import SA_BROKER, SA_CLIENT_ORDER_ID, SA_STATUS
from tests.conftest import make_settings
from tests.harness import make_order
from workflows.order_client import order_config, order_input, order_start
from workflows.order_models import OrderWorkflowInput


def _settings() -> Settings:
    orders = OrderSettings(
        day_close_utc=time(20, 30), status_poll_seconds=7, immediacy_timeout_seconds=3, continue_as_new_events=500
    )
    return make_settings("postgresql://nowhere/exodus", "localhost:1", orders=orders)


def test_an_orders_config_takes_the_lifecycle_settings_and_the_brokers_queue_and_capabilities(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = _settings()
    paper = BROKERS["paper"]
    no_replace = paper.capabilities.model_copy(update={"supports_replace": False})
    monkeypatch.setitem(BROKERS, "paper", dataclasses.replace(paper, capabilities=no_replace))
    config = order_config(settings, "paper")
    assert config.broker_task_queue == settings.temporal.broker_task_queue("paper")
    assert config.supports_replace is False
    assert (config.day_close_utc, config.status_poll_seconds, config.immediacy_timeout_seconds) == (time(20, 30), 7, 3)
    assert config.continue_as_new_events == 500
    assert order_config(settings, "paper", booking_attempts=9).booking_attempts == 9


def test_the_workflow_input_is_the_order_and_its_brokers_config() -> None:
    settings = _settings()
    order = make_order(broker="fix")
    inp = order_input(order, settings)
    assert inp == OrderWorkflowInput(order=order, config=order_config(settings, "fix"))


def test_a_start_is_keyed_by_the_order_id_never_starts_twice_and_is_indexed_for_operators() -> None:
    settings = _settings()
    order = make_order(type="LIMIT", price="101.5")
    start = order_start(order, settings)
    op = start.operation._start_workflow_input
    assert start.workflow_id == op.id == workflow_id_for(order.order_id)
    assert op.workflow == "OrderWorkflow" and op.task_queue == settings.temporal.task_queue
    assert op.id_conflict_policy is WorkflowIDConflictPolicy.USE_EXISTING
    assert op.id_reuse_policy is WorkflowIDReusePolicy.REJECT_DUPLICATE
    assert op.args == [order_input(order, settings)]
    attributes = op.search_attributes
    assert attributes is not None
    assert attributes.get(SA_STATUS) == OrderStatus.RECEIVED.value
    assert attributes.get(SA_CLIENT_ORDER_ID) == order.client_order_id and attributes.get(SA_BROKER) == "paper"
    assert op.static_summary == order_client.summary(order)
    assert order.summary() in op.static_summary and order.client_order_id in op.static_summary
    elsewhere = order_start(order, settings, task_queue="elsewhere").operation._start_workflow_input
    assert elsewhere.task_queue == "elsewhere"
