"""Temporal activities: thin, idempotent, class-based; they depend on the Broker protocol and core only."""

__all__ = ["broker", "persistence", "risk"]
