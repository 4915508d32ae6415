"""``python -m devstack.venues.<name>``: run the local venue until SIGINT/SIGTERM (the template: not written yet).

Your copy keeps this shape: defaults from the broker's settings section (so the venue pairs with the adapter), the
book journaled in Postgres when ``DATABASE_URL`` is set (``sim.journal.PostgresVenueJournal``, its own key), the
paper matching engine (``sim.venue.SimVenue``) behind a server that speaks the broker's protocol (``venue.py``).
"""

from __future__ import annotations

import argparse
import logging
from typing import Any

from devstack.venues.runner import PaperBook, add_book_options, main_loop, serve_venue, venue_parser
from devstack.venues.server import HttpVenueServer

__all__ = ["main"]

log = logging.getLogger("devstack.venues.template")


async def _run(args: argparse.Namespace) -> None:
    def venue(book: PaperBook) -> Any:
        raise NotImplementedError(
            "build the venue in front of book.sim here (devstack/venues/<name>/venue.py: the broker's wire protocol, "
            "served by its VenueServer over devstack.venues.server.HttpVenueServer), and pass that server below"
        )

    def started(server: HttpVenueServer[Any], book: PaperBook) -> None:
        log.info("<name> venue on %s (journal: %s)", server.base_url, book.journal_text)

    await serve_venue(args, name="templatevenue", venue=venue, server=HttpVenueServer, started=started)


def main(argv: list[str] | None = None) -> None:
    """Parse the options and run the venue."""
    parser = venue_parser("devstack.venues.<name>", __doc__, port=8799)
    add_book_options(parser, tick_interval_ms=500, journal_key="template-venue")
    args = parser.parse_args(argv)
    main_loop(_run, args)


if __name__ == "__main__":
    main()
