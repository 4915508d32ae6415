"""``python -m devstack.venues.kraken``: run the local Kraken venue until SIGINT/SIGTERM.

Defaults come from the ``kraken`` settings, so the venue pairs with the adapter: the port is
``kraken.local_venue_port``, the key ``kraken.api_key``/``kraken.api_secret``. With ``DATABASE_URL`` the book is
journaled in Postgres (the paper venue's tables, under the key ``kraken-venue``) and survives restarts.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal

__all__ = ["main"]

log = logging.getLogger("devstack.venues.kraken")


async def _run(args: argparse.Namespace) -> None:
    from core.instruments import load_instruments
    from core.settings import get_settings
    from devstack.venues.kraken.venue import KrakenVenue, VenueServer
    from sim.venue import SimVenue

    settings = get_settings()
    instruments = load_instruments(settings.instruments_file)
    pool = None
    journal = None
    url = args.database_url or settings.database_url
    if url and not args.no_journal:
        from core.db import open_pool
        from sim.journal import PostgresVenueJournal

        pool = await open_pool(settings.model_copy(update={"database_url": url}), name="kraken-venue")
        journal = PostgresVenueJournal(pool, url, venue=args.journal_key)
    sim = SimVenue(
        instruments,
        name="krakenvenue",
        seed=settings.paper.seed,
        tick_interval=args.tick_interval_ms / 1000,
        journal=journal,
    )
    venue = KrakenVenue(sim, list(instruments), api_key=args.api_key, api_secret=args.api_secret)
    if args.rate_limit:
        venue.throttle(args.rate_limit, args.rate_decay)
    server = VenueServer(venue, host=args.host, port=args.port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await server.start()
    log.info(
        "Kraken venue on %s (call counters: %s; journal: %s)",
        server.base_url,
        f"{args.rate_limit} decaying {args.rate_decay}/s" if args.rate_limit else "none",
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
    from devstack.venues.kraken.local import LOCAL_KEYS

    cfg = get_settings().kraken
    parser = argparse.ArgumentParser(prog="python -m devstack.venues.kraken", description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=cfg.local_venue_port, help="(default: %(default)s)")
    parser.add_argument("--api-key", default=cfg.api_key.get_secret_value() if cfg.api_key else LOCAL_KEYS[0])
    parser.add_argument(
        "--api-secret",
        default=cfg.api_secret.get_secret_value() if cfg.api_secret else LOCAL_KEYS[1],
        help="the base64 private key API-Sign is checked with",
    )
    parser.add_argument(
        "--rate-limit", type=float, default=0, help="call and trading counter maximum (0: none; Kraken: 15-20 / 60-180)"
    )
    parser.add_argument("--rate-decay", type=float, default=1.0, help="counter decay per second (%(default)s)")
    parser.add_argument(
        "--tick-interval-ms",
        type=int,
        default=cfg.local_venue_tick_interval_ms,
        help="price feed step interval (%(default)s; 0 = prices never move)",
    )
    parser.add_argument("--database-url", default=None, help="journal the book in Postgres (default: DATABASE_URL)")
    parser.add_argument("--no-journal", action="store_true", help="keep the book in memory only")
    parser.add_argument("--journal-key", default="kraken-venue", help="the venue's key in the journal tables")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_run(args))


if __name__ == "__main__":
    main()
