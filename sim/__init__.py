"""Simulated venues: one price feed and matching engine, and the front doors that expose them."""

__all__: list[str] = []
