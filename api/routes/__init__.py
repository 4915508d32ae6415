"""One router per resource."""

__all__ = ["admin", "audit", "bridge_mt5", "health", "operator", "orders", "positions", "quotes", "risk"]
