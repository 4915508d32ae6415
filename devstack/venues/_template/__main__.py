"""``python -m devstack.venues.<name>``: run the local venue until SIGINT/SIGTERM (the template: not written yet).

Your copy keeps this shape: defaults from the broker's settings section (so the venue pairs with the adapter), the
book journaled in Postgres when ``DATABASE_URL`` is set (``sim.journal.PostgresVenueJournal``, its own key), the
paper matching engine (``sim.venue.SimVenue``) behind a server that speaks the broker's protocol (``venue.py``).
"""

from __future__ import annotations

import argparse
import logging

from devstack.venues.runner import add_book_options, main_loop, paper_book

__all__ = ["main"]

log = logging.getLogger("devstack.venues.template")


async def _run(args: argparse.Namespace) -> None:
    async with paper_book(args, name="templatevenue") as book:
        del book
        raise NotImplementedError(
            "serve the broker's wire protocol in front of book.sim here (devstack/venues/<name>/venue.py), "
            "then: await run_until_signalled(server.start, server.stop, started=lambda: log.info(...))"
        )


def main(argv: list[str] | None = None) -> None:
    """Parse the options and run the venue."""
    parser = argparse.ArgumentParser(prog="python -m devstack.venues.<name>", description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=8799)
    add_book_options(parser, tick_interval_ms=500, journal_key="template-venue")
    args = parser.parse_args(argv)
    main_loop(_run, args)


if __name__ == "__main__":
    main()
