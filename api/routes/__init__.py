"""One router per resource."""

__all__ = ["health", "operator", "orders", "positions", "quotes", "risk"]
