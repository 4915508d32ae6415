"""The REST API (FastAPI): validates, starts/signals/queries order workflows, reads the ledger."""

__all__: list[str] = []
