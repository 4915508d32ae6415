"""Broker adapters behind one ``Broker`` protocol, and the registry of their specs.

Each adapter's package exports a ``BrokerSpec`` as ``SPEC`` (``brokers/base.py``): its capabilities (known
without connecting, so the API and the risk check can use them), how to build it from the settings, its session
check, where its quotes come from, its local venue and its settings section. Registering a broker is one line
below; ``brokers/README.md`` says how to add one (copy ``brokers/_template/``).

Importing this module loads each adapter's package and its ``config`` module, never its library (``quickfix``,
``websockets``, ``MetaTrader5``) nor its execution side: a spec's factory imports those when the broker is built
(``tests/brokers/test_imports.py`` and ``tests/brokers/test_registry.py`` check it).
"""

from __future__ import annotations

import importlib

from brokers.base import Broker, BrokerCapabilities, BrokerContext, BrokerSpec, ReportSink, SessionCheck

__all__ = [
    "BROKERS",
    "Broker",
    "BrokerCapabilities",
    "BrokerContext",
    "BrokerSpec",
    "PACKAGES",
    "ReportSink",
    "SessionCheck",
    "capabilities",
]

#: The registry: one line per broker, the package that exports its ``SPEC``.
PACKAGES = (
    "brokers.paper",
    "brokers.fix",
    "brokers.mt5",
    "brokers.alpaca",
    "brokers.oanda",
    "brokers.ib",
    "brokers.kraken",
)

#: Every broker Exodus knows, by name.
BROKERS: dict[str, BrokerSpec] = {
    spec.name: spec for spec in (importlib.import_module(package).SPEC for package in PACKAGES)
}


def capabilities() -> dict[str, BrokerCapabilities]:
    """Capabilities of every registered broker, by name."""
    return {name: spec.capabilities for name, spec in BROKERS.items()}
