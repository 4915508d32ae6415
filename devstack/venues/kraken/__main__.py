"""``python -m devstack.venues.kraken``: run the local Kraken venue until SIGINT/SIGTERM.

Defaults come from the ``kraken`` settings, so the venue pairs with the adapter: the port is
``kraken.local_venue_port``, the key ``kraken.api_key``/``kraken.api_secret``. With ``DATABASE_URL`` the book is
journaled in Postgres (the paper venue's tables, under the key ``kraken-venue``) and survives restarts.
"""

from __future__ import annotations

import argparse
import logging

from devstack.venues.runner import PaperBook, add_book_options, main_loop, serve_venue, venue_parser

__all__ = ["main"]

log = logging.getLogger("devstack.venues.kraken")


async def _run(args: argparse.Namespace) -> None:
    from devstack.venues.kraken.venue import KrakenVenue, VenueServer

    def venue(book: PaperBook) -> KrakenVenue:
        venue = KrakenVenue(book.sim, book.instruments, api_key=args.api_key, api_secret=args.api_secret)
        if args.rate_limit:
            venue.throttle(args.rate_limit, args.rate_decay)
        return venue

    def started(server: VenueServer, book: PaperBook) -> None:
        log.info(
            "Kraken venue on %s (call counters: %s; journal: %s)",
            server.base_url,
            f"{args.rate_limit} decaying {args.rate_decay}/s" if args.rate_limit else "none",
            book.journal_text,
        )

    await serve_venue(args, name="krakenvenue", venue=venue, server=VenueServer, started=started)


def main(argv: list[str] | None = None) -> None:
    """Parse the options and run the venue."""
    from core.settings import get_settings
    from devstack.venues.kraken.local import LOCAL_KEYS

    cfg = get_settings().kraken
    parser = venue_parser("devstack.venues.kraken", __doc__, port=cfg.local_venue_port)
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
