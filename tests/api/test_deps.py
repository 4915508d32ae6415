"""The routes' dependencies are coroutines: FastAPI runs a plain ``def`` dependency in a worker thread, per request."""

from __future__ import annotations

import inspect

from api import deps


def test_every_dependency_of_api_deps_is_async() -> None:
    found = {name: dep for name, dep in vars(deps).items() if name.endswith("Dep")}
    calls = {name: dep.__metadata__[0].dependency for name, dep in found.items()}
    # Every dependency it exports (a header parameter such as IdempotencyKeyHeader is no dependency call).
    assert set(calls) == {name for name in deps.__all__ if name.endswith("Dep")} and calls
    assert {name for name, call in calls.items() if not inspect.iscoroutinefunction(call)} == set()
