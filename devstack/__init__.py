"""The local stack behind ``make run``: embedded Postgres, the Temporal dev server, the worker and the API."""

__all__: list[str] = []
