"""Benchmarks of the order lifecycle against the Temporal engine's own ceiling (``python -m benchmarks``)."""

__all__ = ["ceiling", "ceiling_types", "ceiling_workflow", "load", "procstats", "report", "run", "shape", "stack"]
