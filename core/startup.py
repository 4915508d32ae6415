"""Start-up: wait for the services a process needs (Postgres, Temporal) instead of exiting when they are not up yet.

Each try that fails logs one line, ``waiting for <what> at <where>: <error>; retrying in <n>s``, and the wait
doubles up to a maximum. Only the errors that mean "not reachable (yet)" are waited out; anything else (a bad
setting, a broken migration) raises at once. A stop event (SIGTERM, Ctrl-C) ends the wait with ``StartupAborted``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from temporalio.client import Client
    from temporalio.runtime import Runtime

    from core.settings import Settings

__all__ = ["StartupAborted", "wait_for_temporal", "wait_until_up"]

log = logging.getLogger("startup")

T = TypeVar("T")


class StartupAborted(Exception):
    """A stop was requested while waiting for a service."""


def _one_line(error: BaseException) -> str:
    text = " ".join(str(error).split()) or type(error).__name__
    return text if len(text) <= 300 else text[:297] + "..."


async def wait_until_up(
    what: str,
    where: str,
    attempt: Callable[[], Awaitable[T]],
    *,
    retry_on: tuple[type[BaseException], ...],
    stop: asyncio.Event | None = None,
    initial_delay: float = 0.5,
    max_delay: float = 10.0,
    logger: logging.Logger = log,
) -> T:
    """Call ``attempt`` until it returns, waiting (with backoff) after each failure listed in ``retry_on``."""
    delay = initial_delay
    tries = 0
    while True:
        tries += 1
        try:
            result = await attempt()
        except retry_on as e:
            logger.warning("waiting for %s at %s: %s; retrying in %gs", what, where, _one_line(e), delay)
        else:
            if tries > 1:
                logger.info("%s at %s is up (after %d tries)", what, where, tries)
            return result
        if stop is None:
            await asyncio.sleep(delay)
        else:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), delay)
            if stop.is_set():
                raise StartupAborted(f"stopped while waiting for {what} at {where}")
        delay = min(delay * 2, max_delay)


async def wait_for_temporal(
    settings: Settings,
    *,
    identity: str,
    stop: asyncio.Event | None = None,
    max_delay: float = 10.0,
    runtime: Runtime | None = None,
) -> Client:
    """Connect to the Temporal server of ``settings``, waiting (with backoff) until it accepts connections."""
    from temporalio.service import RPCError

    from core.temporal import connect

    return await wait_until_up(
        "Temporal",
        settings.temporal.address,
        lambda: connect(settings, identity=identity, runtime=runtime),
        # The SDK reports an unreachable server as a RuntimeError ("Failed client connect: ...").
        retry_on=(RuntimeError, RPCError, OSError, TimeoutError),
        stop=stop,
        max_delay=max_delay,
    )
