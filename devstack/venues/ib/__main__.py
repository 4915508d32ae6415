"""``python -m devstack.venues.ib``: run the local TWS venue until SIGINT/SIGTERM.

Defaults come from the ``ib`` settings, so the venue pairs with the adapter: the port is ``ib.local_venue_port``,
the managed account ``ib.account`` (or DU1234567). The book lives in memory: a restart is a new paper account.
"""

from __future__ import annotations

import argparse
import logging
from decimal import Decimal

from devstack.venues.runner import add_book_options, main_loop, paper_book, run_until_signalled

__all__ = ["main"]

log = logging.getLogger("devstack.venues.ib")


async def _run(args: argparse.Namespace) -> None:
    from devstack.venues.ib.venue import IBVenue, IBVenueServer

    async with paper_book(args, name="ibvenue") as book:
        venue = IBVenue(book.sim, book.instruments, accounts=args.account, initial_cash=Decimal(args.cash))
        server = IBVenueServer(venue, host=args.host, port=args.port)
        await run_until_signalled(
            server.start,
            server.stop,
            started=lambda: log.info(
                "TWS venue on %s:%d (accounts %s; the book lives in memory)", args.host, server.port, venue.accounts
            ),
        )


def main(argv: list[str] | None = None) -> None:
    """Parse the options and run the venue."""
    from core.settings import get_settings
    from devstack.venues.ib import LOCAL_IB_ACCOUNT

    cfg = get_settings().ib
    parser = argparse.ArgumentParser(prog="python -m devstack.venues.ib", description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=cfg.local_venue_port, help="(default: %(default)s)")
    parser.add_argument(
        "--account",
        action="append",
        default=None,
        help=f"an account the login manages (repeatable; default: {cfg.account or LOCAL_IB_ACCOUNT})",
    )
    add_book_options(parser, tick_interval_ms=cfg.local_venue_tick_interval_ms, journal_key=None)
    parser.add_argument("--cash", default="1000000", help="the account's starting cash (%(default)s)")
    args = parser.parse_args(argv)
    args.account = args.account or [cfg.account or LOCAL_IB_ACCOUNT]
    main_loop(_run, args)


if __name__ == "__main__":
    main()
