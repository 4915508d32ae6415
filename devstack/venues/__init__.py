"""Local venues: counterparts that speak a broker's real wire protocol in front of the paper matching engine."""

__all__: list[str] = []
