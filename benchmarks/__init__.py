"""Benchmarks: figures, not tests (outside testpaths).

``python -m benchmarks`` (``make bench``) measures the order lifecycle next to the Temporal engine's own
ceiling; ``python -m benchmarks.risk_latency`` measures the stages of a risk decision; ``python -m
benchmarks.idle`` what resting orders cost while nothing happens.
"""

__all__ = [
    "ceiling",
    "ceiling_types",
    "ceiling_workflow",
    "idle",
    "load",
    "procstats",
    "report",
    "risk_floor_workflow",
    "risk_latency",
    "run",
    "shape",
    "stack",
]
