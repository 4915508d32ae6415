"""Deterministic orchestration: the order workflow."""

__all__ = ["order"]
