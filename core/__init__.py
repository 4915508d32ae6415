"""Framework-free core: domain model, errors, settings, risk, ledger, the pool and migrations, Temporal helpers."""

__all__ = [
    "audit",
    "auth",
    "db",
    "domain",
    "errors",
    "export",
    "instruments",
    "ledger",
    "marketdata",
    "metrics",
    "risk",
    "settings",
    "temporal",
]
