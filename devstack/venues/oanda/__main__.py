"""``python -m devstack.venues.oanda``: run the local OANDA venue until SIGINT/SIGTERM.

Defaults come from the ``oanda`` settings, so the venue pairs with the adapter: the port is
``oanda.local_venue_port``, the token and account ``oanda.token``/``oanda.account_id`` (development ones when unset).
With ``DATABASE_URL`` the book is journaled in Postgres (the paper venue's tables, under the key ``oanda-venue``)
and survives restarts.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
from decimal import Decimal

__all__ = ["main"]

log = logging.getLogger("devstack.venues.oanda")


async def _run(args: argparse.Namespace) -> None:
    from core.instruments import load_instruments
    from core.settings import get_settings
    from devstack.venues.oanda.venue import OandaVenue, VenueServer
    from sim.venue import SimVenue

    settings = get_settings()
    instruments = load_instruments(settings.instruments_file)
    pool = None
    journal = None
    url = args.database_url or settings.database_url
    if url and not args.no_journal:
        from core.db import open_pool
        from sim.journal import PostgresVenueJournal

        pool = await open_pool(settings.model_copy(update={"database_url": url}), name="oanda-venue")
        journal = PostgresVenueJournal(pool, url, venue=args.journal_key)
    sim = SimVenue(
        instruments,
        name="oandavenue",
        seed=settings.paper.seed,
        tick_interval=args.tick_interval_ms / 1000,
        journal=journal,
    )
    venue = OandaVenue(
        sim,
        list(instruments),
        token=args.token,
        account_id=args.account_id,
        rate_limit_per_second=args.rate_limit,
        heartbeat_seconds=args.heartbeat_seconds,
        balance=Decimal(args.balance),
    )
    server = VenueServer(venue, host=args.host, port=args.port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await server.start()
    log.info(
        "OANDA venue on %s, account %s (rate limit %s/s; journal: %s)",
        server.base_url,
        args.account_id,
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
    from devstack.venues.oanda.local import LOCAL_OANDA_ACCOUNT, LOCAL_TOKEN

    cfg = get_settings().oanda
    parser = argparse.ArgumentParser(prog="python -m devstack.venues.oanda", description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=cfg.local_venue_port, help="(default: %(default)s)")
    parser.add_argument("--token", default=cfg.token.get_secret_value() if cfg.token else LOCAL_TOKEN)
    parser.add_argument("--account-id", default=cfg.account_id or LOCAL_OANDA_ACCOUNT, help="(default: %(default)s)")
    parser.add_argument(
        "--rate-limit",
        type=int,
        default=cfg.local_venue_rate_limit_per_second,
        help="requests per second and token before 429 (0: none; OANDA's is 120)",
    )
    parser.add_argument("--heartbeat-seconds", type=float, default=5.0, help="stream heartbeat (%(default)s)")
    parser.add_argument(
        "--tick-interval-ms",
        type=int,
        default=cfg.local_venue_tick_interval_ms,
        help="price feed step interval (%(default)s; 0 = prices never move)",
    )
    parser.add_argument("--balance", default="10000000", help="the account's balance in USD (%(default)s)")
    parser.add_argument("--database-url", default=None, help="journal the book in Postgres (default: DATABASE_URL)")
    parser.add_argument("--no-journal", action="store_true", help="keep the book in memory only")
    parser.add_argument("--journal-key", default="oanda-venue", help="the venue's key in the journal tables")
    args = parser.parse_args(argv)
    from core.logs import setup_logging
    from core.settings import get_settings

    setup_logging(fmt=get_settings().log.format)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_run(args))


if __name__ == "__main__":
    main()
