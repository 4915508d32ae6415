"""``python -m devstack.venues.alpaca``: run the local Alpaca venue until SIGINT/SIGTERM.

Defaults come from the ``alpaca`` settings, so the venue pairs with the adapter: the port is
``alpaca.local_venue_port``, the keys ``alpaca.key_id``/``alpaca.secret_key``. With ``DATABASE_URL`` the book is
journaled in Postgres (the paper venue's tables, under the key ``alpaca-venue``) and survives restarts.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
from decimal import Decimal

__all__ = ["main"]

log = logging.getLogger("devstack.venues.alpaca")


async def _run(args: argparse.Namespace) -> None:
    from core.instruments import load_instruments
    from core.settings import get_settings
    from devstack.venues.alpaca.venue import AlpacaVenue, VenueServer
    from sim.venue import SimVenue

    settings = get_settings()
    instruments = load_instruments(settings.instruments_file)
    pool = None
    journal = None
    url = args.database_url or settings.database_url
    if url and not args.no_journal:
        from core.db import open_pool
        from sim.journal import PostgresVenueJournal

        pool = await open_pool(settings.model_copy(update={"database_url": url}), name="alpaca-venue")
        journal = PostgresVenueJournal(pool, url, venue=args.journal_key)
    sim = SimVenue(
        instruments,
        name="alpacavenue",
        seed=settings.paper.seed,
        tick_interval=args.tick_interval_ms / 1000,
        journal=journal,
    )
    venue = AlpacaVenue(
        sim,
        list(instruments),
        key_id=args.key_id,
        secret_key=args.secret_key,
        rate_limit_per_minute=args.rate_limit,
        initial_cash=Decimal(args.cash),
    )
    server = VenueServer(venue, host=args.host, port=args.port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await server.start()
    log.info(
        "Alpaca venue on %s (stream %s/stream; rate limit %s/min; journal: %s)",
        server.base_url,
        server.base_url.replace("http", "ws", 1),
        args.rate_limit or "none",
        "Postgres" if journal else "none, the book lives in memory",
    )
    try:
        await stop.wait()
    finally:
        await server.stop()
        if pool is not None:
            await pool.close()


def main(argv: list[str] | None = None) -> None:
    """Parse the options and run the venue."""
    from core.settings import get_settings

    cfg = get_settings().alpaca
    parser = argparse.ArgumentParser(prog="python -m devstack.venues.alpaca", description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=cfg.local_venue_port, help="(default: %(default)s)")
    parser.add_argument(
        "--key-id", default=cfg.key_id.get_secret_value() if cfg.key_id else "exodus-local", help="APCA-API-KEY-ID"
    )
    parser.add_argument(
        "--secret-key",
        default=cfg.secret_key.get_secret_value() if cfg.secret_key else "exodus-local-secret",
        help="APCA-API-SECRET-KEY",
    )
    parser.add_argument(
        "--rate-limit",
        type=int,
        default=cfg.local_venue_rate_limit_per_minute,
        help="requests per minute and key before 429 (0: none; Alpaca's is 200)",
    )
    parser.add_argument(
        "--tick-interval-ms",
        type=int,
        default=cfg.local_venue_tick_interval_ms,
        help="price feed step interval (%(default)s; 0 = prices never move)",
    )
    parser.add_argument("--cash", default="1000000", help="the account's starting cash (%(default)s)")
    parser.add_argument("--database-url", default=None, help="journal the book in Postgres (default: DATABASE_URL)")
    parser.add_argument("--no-journal", action="store_true", help="keep the book in memory only")
    parser.add_argument("--journal-key", default="alpaca-venue", help="the venue's key in the journal tables")
    args = parser.parse_args(argv)
    from core.logs import setup_logging

    setup_logging(fmt=get_settings().log.format)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_run(args))


if __name__ == "__main__":
    main()
