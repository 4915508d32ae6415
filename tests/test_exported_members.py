"""Every package declares its public names, and every name it declares exists."""

from __future__ import annotations

import importlib
import importlib.util
import pkgutil

import pytest

PACKAGES = ["core", "store", "brokers", "sim", "activities", "workflows", "worker", "api", "devstack"]


def _modules() -> list[str]:
    names = []
    for pkg in PACKAGES:
        module = importlib.import_module(pkg)
        names.append(pkg)
        for info in pkgutil.walk_packages(module.__path__, prefix=f"{pkg}."):
            if info.name.endswith("__main__"):
                continue
            names.append(info.name)
    return names


@pytest.mark.parametrize("name", _modules())
def test_module_all_is_declared_and_resolves(name: str) -> None:
    module = importlib.import_module(name)
    assert module.__doc__, f"{name} has no module docstring"
    exported = getattr(module, "__all__", None)
    if exported is None:
        assert not hasattr(module, "__path__"), f"package {name} must declare __all__"
        return
    for item in exported:
        if hasattr(module, "__path__") and importlib.util.find_spec(f"{name}.{item}") is not None:
            continue
        assert hasattr(module, item), f"{name}.__all__ names {item!r}, which does not exist"
