"""The workers' workflow sandbox (worker/sandbox.py): still executes and checks the workflow modules, but cheaper.

What makes a run's start cheaper (kept code objects, modules named as passed through) must not take the workflow
modules' own code out of the sandbox's check: an order workflow calling ``datetime.now()`` must still be refused.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path
from types import ModuleType

import pytest
from temporalio.worker.workflow_sandbox import RestrictedWorkflowAccessError, SandboxedWorkflowRunner
from temporalio.worker.workflow_sandbox._importer import Importer
from temporalio.worker.workflow_sandbox._restrictions import RestrictionContext
from temporalio.worker.workflow_sandbox._runner import _Instance

from benchmarks.sandbox_cost import instance_details
from worker.sandbox import PASSED_THROUGH, SANDBOXED, _CachedCodeLoader, cache_workflow_code, workflow_runner
from workflows.order import OrderWorkflow
from workflows.order_list import OrderListWorkflow
from workflows.reconciliation import ReconciliationWorkflow

#: What ``worker.build.build_workers`` registers.
WORKFLOWS = (OrderWorkflow, OrderListWorkflow, ReconciliationWorkflow)
ROOT = Path(__file__).resolve().parents[2]


def _instance(runner: SandboxedWorkflowRunner, cls: type) -> _Instance:
    details = instance_details(cls)
    instance = runner.create_instance(details)
    assert isinstance(instance, _Instance)
    return instance


def _sandboxed_module(runner: SandboxedWorkflowRunner, cls: type) -> ModuleType | None:
    """The module ``cls`` came from in a fresh sandbox instance, if the sandbox executed it itself (else None)."""
    instance = _instance(runner, cls)
    module = instance.importer.new_modules[cls.__module__]
    if module is sys.modules[cls.__module__] or getattr(module, cls.__name__) is cls:
        return None  # passed through: the host's module, unchecked
    return module


async def test_the_workers_register_exactly_the_sandboxed_modules() -> None:
    assert {cls.__module__ for cls in WORKFLOWS} == set(SANDBOXED)


@pytest.mark.parametrize("cls", WORKFLOWS, ids=[c.__name__ for c in WORKFLOWS])
async def test_workflow_modules_are_executed_afresh_in_the_sandbox(cls: type) -> None:
    runner = workflow_runner()
    importer = Importer(runner.restrictions, RestrictionContext())
    assert not importer.module_configured_passthrough(cls.__module__)
    first, second = _sandboxed_module(runner, cls), _sandboxed_module(runner, cls)
    assert first is not None and second is not None and first is not second
    assert getattr(first, cls.__name__) is not getattr(second, cls.__name__)


async def test_the_order_workflows_clock_is_still_refused() -> None:
    instance = _instance(workflow_runner(), OrderWorkflow)
    module = instance.importer.new_modules["workflows.order"]
    instance.importer.restriction_context.is_runtime = True
    with pytest.raises(RestrictedWorkflowAccessError):
        module.datetime.now()  # what `datetime.now()` in the order workflow's code would do


async def test_the_check_fails_for_a_workflow_module_passed_through() -> None:
    # The planted violation: the order workflow's module passed through, as an experiment once did.
    runner = workflow_runner((*PASSED_THROUGH, "workflows.order"))
    assert _sandboxed_module(runner, OrderWorkflow) is None
    instance = _instance(runner, OrderWorkflow)
    instance.importer.restriction_context.is_runtime = True
    module = instance.importer.new_modules["workflows.order"]
    module.datetime.now()  # not refused any more: what the tests above guard against


def _imports_outside_passthrough(source: str) -> list[str]:
    """Modules under ``PASSED_THROUGH`` that ``source`` imports outside ``workflow.unsafe.imports_passed_through()``."""
    tree = ast.parse(source)
    inside: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.With) and any(
            isinstance(item.context_expr, ast.Call)
            and ast.unparse(item.context_expr.func).endswith("imports_passed_through")
            for item in node.items
        ):
            inside |= {id(n) for n in ast.walk(node)}
    found = []
    for node in ast.walk(tree):
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names = [node.module]
        for name in names:
            if id(node) not in inside and any(name == p or name.startswith(p + ".") for p in PASSED_THROUGH):
                found.append(name)
    return found


@pytest.mark.parametrize("name", SANDBOXED)
async def test_named_passthroughs_were_passed_through_already(name: str) -> None:
    # Naming them in the restrictions changes nothing the sandbox checks only if the workflow modules import them
    # passed through anyway.
    source = (ROOT / (name.replace(".", "/") + ".py")).read_text()
    assert _imports_outside_passthrough(source) == []


async def test_the_passthrough_check_finds_a_plain_import() -> None:
    planted = "from temporalio import workflow\nfrom core.domain import OrderState\n"
    planted += "with workflow.unsafe.imports_passed_through():\n    from core.errors import ConfigError\n"
    assert _imports_outside_passthrough(planted) == ["core.domain"]


async def test_the_sandbox_reuses_the_workflow_modules_code() -> None:
    cache_workflow_code([OrderWorkflow])
    runner = workflow_runner()
    first, second = _sandboxed_module(runner, OrderWorkflow), _sandboxed_module(runner, OrderWorkflow)
    assert first is not None and second is not None and first is not second
    assert isinstance(first.__spec__.loader, _CachedCodeLoader)
    # Executed afresh (new classes and functions) from one code object (not read and unmarshaled again).
    assert first.OrderWorkflow is not second.OrderWorkflow
    assert first.OrderWorkflow.run.__code__ is second.OrderWorkflow.run.__code__
