"""What every ``python -m devstack.venues.<broker>`` shares: the paper engine behind the venue, its journal, the run.

A venue's ``__main__`` declares its own options (the broker's keys, ports, limits) and builds its server; the rest
is here: the parser with the host and port options (:func:`venue_parser`), the feed-step and journal options
(:func:`add_book_options`), the paper matching engine with its book journaled in Postgres when a database is
configured (:func:`paper_book`), running until SIGINT/SIGTERM (:func:`run_until_signalled`; a venue served over
HTTP in front of the paper book: :func:`serve_venue`) with the process's logging set up (:func:`main_loop`).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

if TYPE_CHECKING:
    from core.domain import Instrument
    from sim.venue import SimVenue

__all__ = [
    "PaperBook",
    "add_book_options",
    "main_loop",
    "paper_book",
    "run_until_signalled",
    "serve_venue",
    "venue_parser",
]


def venue_parser(module: str, doc: str | None, *, port: int) -> argparse.ArgumentParser:
    """The options of ``python -m <module>`` (described by ``doc``'s first paragraph): ``--host`` and ``--port``."""
    parser = argparse.ArgumentParser(prog=f"python -m {module}", description=(doc or "").split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=port, help="(default: %(default)s)")
    return parser


def add_book_options(parser: argparse.ArgumentParser, *, tick_interval_ms: int, journal_key: str | None) -> None:
    """The price feed's step, and (with ``journal_key``) where the book is journaled."""
    parser.add_argument(
        "--tick-interval-ms",
        type=int,
        default=tick_interval_ms,
        help="price feed step interval (%(default)s; 0 = prices never move)",
    )
    if journal_key is None:
        return
    parser.add_argument("--database-url", default=None, help="journal the book in Postgres (default: DATABASE_URL)")
    parser.add_argument("--no-journal", action="store_true", help="keep the book in memory only")
    parser.add_argument("--journal-key", default=journal_key, help="the venue's key in the journal tables")


@dataclass(frozen=True)
class PaperBook:
    """The paper matching engine a venue fronts, the instruments it trades, and whether its book is journaled."""

    sim: SimVenue
    instruments: list[Instrument]
    journaled: bool

    @property
    def journal_text(self) -> str:
        """For the venue's start-up line."""
        return "Postgres" if self.journaled else "none, the book lives in memory"


@contextlib.asynccontextmanager
async def paper_book(args: argparse.Namespace, *, name: str) -> AsyncIterator[PaperBook]:
    """The paper engine named ``name`` (``alpacavenue``), journaled when the options and settings give a database.

    ``args`` carries :func:`add_book_options`' options; without the journal ones the book lives in memory.
    """
    from core.instruments import load_instruments
    from core.settings import get_settings
    from sim.venue import SimVenue

    settings = get_settings()
    instruments = load_instruments(settings.instruments_file)
    url = getattr(args, "database_url", None) or settings.database_url
    wants_journal = hasattr(args, "journal_key") and not args.no_journal
    async with contextlib.AsyncExitStack() as stack:
        journal = None
        if url and wants_journal:
            from core.db import open_pool
            from sim.journal import PostgresVenueJournal

            pool = await open_pool(settings.model_copy(update={"database_url": url}), name=args.journal_key)
            stack.push_async_callback(pool.close)
            journal = PostgresVenueJournal(pool, url, venue=args.journal_key)
        sim = SimVenue(
            instruments,
            name=name,
            seed=settings.paper.seed,
            tick_interval=args.tick_interval_ms / 1000,
            journal=journal,
        )
        yield PaperBook(sim, list(instruments), journal is not None)


async def run_until_signalled(
    start: Callable[[], Awaitable[object]],
    stop: Callable[[], Awaitable[object]],
    *,
    started: Callable[[], object] = lambda: None,
) -> None:
    """``start()``, ``started()`` (the venue's start-up line), then wait for SIGINT or SIGTERM, then ``stop()``."""
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stopping.set)
    await start()
    started()
    try:
        await stopping.wait()
    finally:
        await stop()


class _Server(Protocol):
    async def start(self) -> None: ...

    async def stop(self) -> None: ...


_V = TypeVar("_V")
_S = TypeVar("_S", bound=_Server)


async def serve_venue(
    args: argparse.Namespace,
    *,
    name: str,
    venue: Callable[[PaperBook], _V],
    server: Callable[..., _S],
    started: Callable[[_S, PaperBook], object],
) -> None:
    """Serve ``venue(book)`` in front of the paper book ``name`` until SIGINT/SIGTERM.

    ``server`` (the venue's ``VenueServer``) takes the venue and ``host``/``port`` (``args.host``, ``args.port``);
    ``started(server, book)`` writes the venue's start-up line.
    """
    async with paper_book(args, name=name) as book:
        served = server(venue(book), host=args.host, port=args.port)
        await run_until_signalled(served.start, served.stop, started=lambda: started(served, book))


def main_loop(run: Callable[[argparse.Namespace], Coroutine[Any, Any, None]], args: argparse.Namespace) -> None:
    """Set up the process's logging from the settings and run ``run(args)`` to its end; Ctrl-C ends it quietly."""
    from core.logs import setup_logging
    from core.settings import get_settings

    setup_logging(fmt=get_settings().log.format)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run(args))
