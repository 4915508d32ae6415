"""Benchmarks: figures, not tests (outside testpaths)."""

__all__: list[str] = []
