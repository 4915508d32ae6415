"""Fixtures shared by the broker adapter tests (each adapter's conftest provides ``broker`` and ``market``)."""

from __future__ import annotations

import pytest

from tests.brokers.contract import ReportCollector


@pytest.fixture
def reports() -> ReportCollector:
    return ReportCollector()


@pytest.fixture
def broker() -> object:
    raise NotImplementedError("`broker` needs to be implemented in the adapter's conftest.py")


@pytest.fixture
def market() -> object:
    raise NotImplementedError("`market` needs to be implemented in the adapter's conftest.py")
