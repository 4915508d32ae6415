"""The routes' dependencies are coroutines: FastAPI runs a plain ``def`` dependency in a worker thread, per request."""

from __future__ import annotations

import inspect

from api import deps


def test_every_dependency_of_api_deps_is_async() -> None:
    found = {name: dep for name, dep in vars(deps).items() if name.endswith("Dep")}
    calls = {name: dep.__metadata__[0].dependency for name, dep in found.items()}
    assert set(calls) == set(deps.__all__) and calls
    assert {name for name, call in calls.items() if not inspect.iscoroutinefunction(call)} == set()
