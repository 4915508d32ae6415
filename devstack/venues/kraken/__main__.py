"""``python -m devstack.venues.kraken``: run the local Kraken venue until SIGINT/SIGTERM.

Defaults come from the ``kraken`` settings, so the venue pairs with the adapter: the port is
``kraken.local_venue_port``, the key ``kraken.api_key``/``kraken.api_secret``. With ``DATABASE_URL`` the book is
journaled in Postgres (the paper venue's tables, under the key ``kraken-venue``) and survives restarts.
"""

from __future__ import annotations

import argparse
import logging

from devstack.venues.runner import add_book_options, main_loop, paper_book, run_until_signalled

__all__ = ["main"]

log = logging.getLogger("devstack.venues.kraken")


async def _run(args: argparse.Namespace) -> None:
    from devstack.venues.kraken.venue import KrakenVenue, VenueServer

    async with paper_book(args, name="krakenvenue") as book:
        venue = KrakenVenue(book.sim, book.instruments, api_key=args.api_key, api_secret=args.api_secret)
        if args.rate_limit:
            venue.throttle(args.rate_limit, args.rate_decay)
        server = VenueServer(venue, host=args.host, port=args.port)
        await run_until_signalled(
            server.start,
            server.stop,
            started=lambda: log.info(
                "Kraken venue on %s (call counters: %s; journal: %s)",
                server.base_url,
                f"{args.rate_limit} decaying {args.rate_decay}/s" if args.rate_limit else "none",
                book.journal_text,
            ),
        )


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
    add_book_options(parser, tick_interval_ms=cfg.local_venue_tick_interval_ms, journal_key="kraken-venue")
    args = parser.parse_args(argv)
    main_loop(_run, args)


if __name__ == "__main__":
    main()
