"""Temporal activities: thin, idempotent, class-based; they depend on the Broker protocol, core and store."""

__all__ = ["broker", "persistence", "risk"]
