"""The workflow sandbox the workers run their workflows in, and what it costs per workflow run.

Temporal's sandbox executes a workflow's module afresh for every workflow run (``workflows/order.py`` for every
order) with a fresh importer, so that no state survives between runs and every access to a restricted module member
(``datetime.now``, ``time``, ``random``, ``open``...) from the workflow's code is refused. Exodus keeps that: the
workflow modules (``SANDBOXED``) are never passed through. Two things only make a run's start cheaper, neither
changes what runs in the sandbox:

* **The workflow modules' code objects are kept** (``cache_workflow_code``): the sandbox's import of
  ``workflows.order`` reads and unmarshals its bytecode for every order (or, where nothing writes ``.pyc`` files,
  compiles its source); a code object is immutable, so the worker keeps the one it compiled and every run executes
  it in a fresh module, as before. A module changed on disk while the worker runs is not picked up (the worker's own
  workflow classes would not be either): restart the worker.
* **The modules the workflow code already passes through are named in the restrictions** (``PASSED_THROUGH``):
  each ``with workflow.unsafe.imports_passed_through()`` import then costs a dictionary lookup instead of a detour
  through the host's importer. Which modules those are is checked by ``tests/worker/test_sandbox.py`` against the
  workflow modules' imports, and that the workflow modules themselves stay sandboxed.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys
import threading
from collections.abc import Iterable, Sequence
from types import CodeType

from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

__all__ = ["CEILING_PASSED_THROUGH", "PASSED_THROUGH", "SANDBOXED", "cache_workflow_code", "workflow_runner"]

#: The workflow modules the sandbox executes afresh for every run: never passed through.
SANDBOXED = ("workflows.order", "workflows.order_list", "workflows.reconciliation")

#: Modules the workflow modules import only inside ``workflow.unsafe.imports_passed_through()`` (so they are passed
#: through already): the domain, the activities' types, and the workflows' passed-through helpers and models.
PASSED_THROUGH = (
    "activities",
    "core",
    "workflows.booking",
    "workflows.order_list_native",
    "workflows.order_models",
    "workflows.order_rules",
)
#: The same for the benchmark's ceiling worker (``benchmarks.ceiling_workflow`` passes its payload types through).
CEILING_PASSED_THROUGH = ("benchmarks.ceiling_types",)


def workflow_runner(passed_through: Sequence[str] = PASSED_THROUGH) -> SandboxedWorkflowRunner:
    """Temporal's sandbox with its default restrictions, ``passed_through`` named as passed through."""
    restrictions = SandboxRestrictions.default.with_passthrough_modules(*passed_through)
    return SandboxedWorkflowRunner(restrictions=restrictions)


class _CachedCodeLoader(importlib.machinery.SourceFileLoader):
    """A source file's loader that compiles (or unmarshals) the module's code once per process."""

    _codes: dict[str, CodeType] = {}

    def get_code(self, fullname: str) -> CodeType:
        code = self._codes.get(self.path)
        if code is None:
            code = super().get_code(fullname)
            if code is None:  # pragma: no cover - a source file always has code
                raise ImportError(f"no code for {fullname}", name=fullname)
            self._codes[self.path] = code
        return code


class _CachedCodeFinder(importlib.abc.MetaPathFinder):
    """Finds the named modules as the path finder does, loading them with ``_CachedCodeLoader``."""

    def __init__(self) -> None:
        self.names: set[str] = set()

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: object = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname not in self.names:
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is None or type(spec.loader) is not importlib.machinery.SourceFileLoader or spec.origin is None:
            return spec
        spec.loader = _CachedCodeLoader(fullname, spec.origin)
        return spec


_finder = _CachedCodeFinder()
_install = threading.Lock()


def cache_workflow_code(workflows: Iterable[type]) -> list[str]:
    """Keep the code objects of ``workflows``' modules (and their packages) for the sandbox's imports of them.

    Idempotent. Returns the module names now served from the cache.
    """
    names = {cls.__module__ for cls in workflows}
    names |= {".".join(name.split(".")[:i]) for name in names for i in range(1, name.count(".") + 1)}
    with _install:
        _finder.names |= names
        if _finder not in sys.meta_path:
            sys.meta_path.insert(0, _finder)
    return sorted(_finder.names)
