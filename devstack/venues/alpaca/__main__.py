"""``python -m devstack.venues.alpaca``: run the local Alpaca venue until SIGINT/SIGTERM.

Defaults come from the ``alpaca`` settings, so the venue pairs with the adapter: the port is
``alpaca.local_venue_port``, the keys ``alpaca.key_id``/``alpaca.secret_key``. With ``DATABASE_URL`` the book is
journaled in Postgres (the paper venue's tables, under the key ``alpaca-venue``) and survives restarts.
"""

from __future__ import annotations

import argparse
import logging
from decimal import Decimal

from devstack.venues.runner import PaperBook, add_book_options, main_loop, serve_venue, venue_parser

__all__ = ["main"]

log = logging.getLogger("devstack.venues.alpaca")


async def _run(args: argparse.Namespace) -> None:
    from devstack.venues.alpaca.venue import AlpacaVenue, VenueServer

    def venue(book: PaperBook) -> AlpacaVenue:
        return AlpacaVenue(
            book.sim,
            book.instruments,
            key_id=args.key_id,
            secret_key=args.secret_key,
            rate_limit_per_minute=args.rate_limit,
            initial_cash=Decimal(args.cash),
        )

    def started(server: VenueServer, book: PaperBook) -> None:
        log.info(
            "Alpaca venue on %s (stream %s/stream; rate limit %s/min; journal: %s)",
            server.base_url,
            server.base_url.replace("http", "ws", 1),
            args.rate_limit or "none",
            book.journal_text,
        )

    await serve_venue(args, name="alpacavenue", venue=venue, server=VenueServer, started=started)


def main(argv: list[str] | None = None) -> None:
    """Parse the options and run the venue."""
    from core.settings import get_settings

    cfg = get_settings().alpaca
    parser = venue_parser("devstack.venues.alpaca", __doc__, port=cfg.local_venue_port)
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
    add_book_options(parser, tick_interval_ms=cfg.local_venue_tick_interval_ms, journal_key="alpaca-venue")
    parser.add_argument("--cash", default="1000000", help="the account's starting cash (%(default)s)")
    args = parser.parse_args(argv)
    main_loop(_run, args)


if __name__ == "__main__":
    main()
