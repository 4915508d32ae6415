"""Framework-free core: domain model, errors, settings, risk, ledger, storage and Temporal connection helpers."""

__all__ = [
    "audit",
    "auth",
    "auth_store",
    "db",
    "domain",
    "errors",
    "instruments",
    "ledger",
    "marketdata",
    "metrics",
    "risk",
    "settings",
    "temporal",
]
