"""``python -m devstack.venues.<name>``: run the local venue until SIGINT/SIGTERM (the template: not written yet).

Your copy keeps this shape: defaults from the broker's settings section (so the venue pairs with the adapter), the
book journaled in Postgres when ``DATABASE_URL`` is set (``sim.journal.PostgresVenueJournal``, its own key), the
paper matching engine (``sim.venue.SimVenue``) behind a server that speaks the broker's protocol (``venue.py``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging

__all__ = ["main"]

log = logging.getLogger("devstack.venues.template")


async def _run(args: argparse.Namespace) -> None:
    from core.instruments import load_instruments
    from core.settings import get_settings
    from sim.venue import SimVenue

    settings = get_settings()
    sim = SimVenue(load_instruments(settings.instruments_file), name="templatevenue", tick_interval=0.5)
    del sim, args
    raise NotImplementedError(
        "serve the broker's wire protocol in front of the SimVenue here (devstack/venues/<name>/venue.py)"
    )


def main(argv: list[str] | None = None) -> None:
    """Parse the options and run the venue."""
    parser = argparse.ArgumentParser(prog="python -m devstack.venues.<name>", description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=8799)
    args = parser.parse_args(argv)
    from core.logs import setup_logging
    from core.settings import get_settings

    setup_logging(fmt=get_settings().log.format)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_run(args))


if __name__ == "__main__":
    main()
