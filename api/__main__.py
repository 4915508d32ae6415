"""``python -m api``: serve the REST API with uvicorn on the configured host and port.

Before serving, it waits for Postgres (and applies the migrations) and for Temporal, one log line per failed
try with backoff, instead of exiting; SIGINT/SIGTERM while it waits ends it cleanly.
"""

from __future__ import annotations

import asyncio
import logging
import signal

import uvicorn

from api.main import create_app
from core.db import wait_for_postgres
from core.logs import setup_logging
from core.process import exit_now
from core.settings import Settings, get_settings
from core.startup import StartupAborted, wait_for_temporal
from core.tracing import setup_tracing

log = logging.getLogger("api")


async def wait_for_dependencies(settings: Settings) -> None:
    """Wait until Postgres (migrated) and Temporal answer; ``StartupAborted`` on SIGINT/SIGTERM."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await wait_for_postgres(settings.require_database_url(), stop=stop)
        client = await wait_for_temporal(settings, identity="exodus-api", stop=stop)
        del client  # the app connects its own client in its lifespan, on uvicorn's event loop
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


def main() -> None:
    """Wait for Postgres and Temporal, then run uvicorn."""
    settings = get_settings()
    setup_logging(fmt=settings.log.format, level=settings.log.level)
    setup_tracing("exodus-api")
    try:
        asyncio.run(wait_for_dependencies(settings))
    except StartupAborted as e:
        log.info("%s", e)
        exit_now(0)
    uvicorn.run(
        create_app(settings),
        host=settings.api.host,
        port=settings.api.port,
        log_level="info",
        access_log=False,
        log_config=None,
        timeout_keep_alive=settings.api.keep_alive_seconds,
        # Open streams (GET /api/v1/stream) never end by themselves: they are cut after this at shutdown, and
        # their clients resume on reconnecting.
        timeout_graceful_shutdown=5,
    )
    exit_now(0)  # uvicorn has shut the app (and its Temporal client) down; see core/process.py


if __name__ == "__main__":
    main()
