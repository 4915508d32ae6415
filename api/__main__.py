"""``python -m api``: serve the REST API with uvicorn on the configured host and port."""

from __future__ import annotations

import logging

import uvicorn

from api.main import create_app
from core.settings import get_settings


def main() -> None:
    """Run uvicorn."""
    settings = get_settings()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    uvicorn.run(
        create_app(settings), host=settings.api.host, port=settings.api.port, log_level="info", access_log=False
    )


if __name__ == "__main__":
    main()
