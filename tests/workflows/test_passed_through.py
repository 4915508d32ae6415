"""The workflow code the sandbox does not check: the passed-through workflow modules stay deterministic.

``workflows.order`` (and the other registered workflow modules) are executed and checked by the sandbox for every
run (``tests/worker/test_sandbox.py``). The workflow helpers passed through it (``worker.sandbox.PASSED_THROUGH``:
the booking rounds, the order's pure rules, the models, the native lists) run unchecked, so this reads their source:
no clock but ``workflow.now()``, no randomness, no ids, no files, processes, threads or sockets.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from worker.sandbox import PASSED_THROUGH

ROOT = Path(__file__).resolve().parents[2]
#: The passed-through modules that hold workflow code (the domain's ``core`` is checked by its own tests).
WORKFLOW_HELPERS = sorted(name for name in PASSED_THROUGH if name.startswith("workflows."))
#: Modules whose use in workflow code is nondeterministic or a side effect.
FORBIDDEN_MODULES = {
    "os",
    "random",
    "secrets",
    "socket",
    "subprocess",
    "threading",
    "multiprocessing",
    "time",
    "uuid",
    "requests",
    "httpx",
    "psycopg",
}
#: Clock reads (``datetime.now()``, ``date.today()``...): time comes from ``workflow.now()`` only.
CLOCK_ATTRIBUTES = {"now", "utcnow", "today", "fromtimestamp", "utcfromtimestamp"}
#: Builtins that read or write outside the workflow.
FORBIDDEN_CALLS = {"open", "input", "print", "breakpoint", "exec", "eval", "__import__"}


def nondeterminism(source: str) -> list[str]:
    """What in ``source`` would make workflow code nondeterministic, as ``line: what``."""
    found: list[str] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [
                f"{node.lineno}: import {a.name}" for a in node.names if a.name.split(".")[0] in FORBIDDEN_MODULES
            ]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            if node.module.split(".")[0] in FORBIDDEN_MODULES:
                found.append(f"{node.lineno}: from {node.module} import ...")
        elif isinstance(node, ast.Attribute) and node.attr in CLOCK_ATTRIBUTES:
            if not (isinstance(node.value, ast.Name) and node.value.id == "workflow"):
                found.append(f"{node.lineno}: {ast.unparse(node)}")
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in FORBIDDEN_CALLS:
            found.append(f"{node.lineno}: {node.func.id}()")
    return found


def test_the_workflow_helpers_are_listed() -> None:
    assert "workflows.booking" in WORKFLOW_HELPERS and "workflows.order_rules" in WORKFLOW_HELPERS


@pytest.mark.parametrize("name", WORKFLOW_HELPERS)
def test_passed_through_workflow_code_is_deterministic(name: str) -> None:
    source = (ROOT / (name.replace(".", "/") + ".py")).read_text()
    assert nondeterminism(source) == []


@pytest.mark.parametrize(
    "planted",
    [
        "from datetime import datetime\n\ndef f():\n    return datetime.now()\n",
        "import datetime\n\ndef f():\n    return datetime.date.today()\n",
        "import random\n",
        "from uuid import uuid4\n",
        "import time\n",
        "import os.path\n",
        "from threading import Lock\n",
        "def f(path):\n    return open(path).read()\n",
    ],
)
def test_the_check_finds_a_planted_violation(planted: str) -> None:
    assert nondeterminism(planted)


def test_the_workflows_own_clock_passes() -> None:
    assert nondeterminism("from temporalio import workflow\n\ndef f():\n    return workflow.now()\n") == []
