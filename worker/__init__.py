"""The worker process: order workflows, their activities, and the broker sessions it owns."""

__all__: list[str] = []
