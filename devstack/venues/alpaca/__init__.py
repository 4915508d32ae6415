"""The local Alpaca venue."""

__all__: list[str] = []
