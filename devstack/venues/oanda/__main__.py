"""``python -m devstack.venues.oanda``: run the local OANDA venue until SIGINT/SIGTERM.

Defaults come from the ``oanda`` settings, so the venue pairs with the adapter: the port is
``oanda.local_venue_port``, the token and account ``oanda.token``/``oanda.account_id`` (development ones when unset).
With ``DATABASE_URL`` the book is journaled in Postgres (the paper venue's tables, under the key ``oanda-venue``)
and survives restarts.
"""

from __future__ import annotations

import argparse
import logging
from decimal import Decimal

from devstack.venues.runner import PaperBook, add_book_options, main_loop, serve_venue, venue_parser

__all__ = ["main"]

log = logging.getLogger("devstack.venues.oanda")


async def _run(args: argparse.Namespace) -> None:
    from devstack.venues.oanda.venue import OandaVenue, VenueServer

    def venue(book: PaperBook) -> OandaVenue:
        return OandaVenue(
            book.sim,
            book.instruments,
            token=args.token,
            account_id=args.account_id,
            rate_limit_per_second=args.rate_limit,
            heartbeat_seconds=args.heartbeat_seconds,
            balance=Decimal(args.balance),
        )

    def started(server: VenueServer, book: PaperBook) -> None:
        log.info(
            "OANDA venue on %s, account %s (rate limit %s/s; journal: %s)",
            server.base_url,
            args.account_id,
            args.rate_limit or "none",
            book.journal_text,
        )

    await serve_venue(args, name="oandavenue", venue=venue, server=VenueServer, started=started)


def main(argv: list[str] | None = None) -> None:
    """Parse the options and run the venue."""
    from core.settings import get_settings
    from devstack.venues.oanda.local import LOCAL_OANDA_ACCOUNT, LOCAL_TOKEN

    cfg = get_settings().oanda
    parser = venue_parser("devstack.venues.oanda", __doc__, port=cfg.local_venue_port)
    parser.add_argument("--token", default=cfg.token.get_secret_value() if cfg.token else LOCAL_TOKEN)
    parser.add_argument("--account-id", default=cfg.account_id or LOCAL_OANDA_ACCOUNT, help="(default: %(default)s)")
    parser.add_argument(
        "--rate-limit",
        type=int,
        default=cfg.local_venue_rate_limit_per_second,
        help="requests per second and token before 429 (0: none; OANDA's is 120)",
    )
    parser.add_argument("--heartbeat-seconds", type=float, default=5.0, help="stream heartbeat (%(default)s)")
    add_book_options(parser, tick_interval_ms=cfg.local_venue_tick_interval_ms, journal_key="oanda-venue")
    parser.add_argument("--balance", default="10000000", help="the account's balance in USD (%(default)s)")
    args = parser.parse_args(argv)
    main_loop(_run, args)


if __name__ == "__main__":
    main()
