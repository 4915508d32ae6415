"""``python -m devstack.venues.ib``: run the local TWS venue until SIGINT/SIGTERM.

Defaults come from the ``ib`` settings, so the venue pairs with the adapter: the port is ``ib.local_venue_port``,
the managed account ``ib.account`` (or DU1234567). The book lives in memory: a restart is a new paper account.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
from decimal import Decimal

__all__ = ["main"]

log = logging.getLogger("devstack.venues.ib")


async def _run(args: argparse.Namespace) -> None:
    from core.instruments import load_instruments
    from core.settings import get_settings
    from devstack.venues.ib.venue import IBVenue, IBVenueServer
    from sim.venue import SimVenue

    settings = get_settings()
    instruments = load_instruments(settings.instruments_file)
    sim = SimVenue(instruments, name="ibvenue", seed=settings.paper.seed, tick_interval=args.tick_interval_ms / 1000)
    venue = IBVenue(sim, list(instruments), accounts=args.account, initial_cash=Decimal(args.cash))
    server = IBVenueServer(venue, host=args.host, port=args.port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await server.start()
    log.info("TWS venue on %s:%d (accounts %s; the book lives in memory)", args.host, server.port, venue.accounts)
    try:
        await stop.wait()
    finally:
        await server.stop()


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
    parser.add_argument(
        "--tick-interval-ms",
        type=int,
        default=cfg.local_venue_tick_interval_ms,
        help="price feed step interval (%(default)s; 0 = prices never move)",
    )
    parser.add_argument("--cash", default="1000000", help="the account's starting cash (%(default)s)")
    args = parser.parse_args(argv)
    args.account = args.account or [cfg.account or LOCAL_IB_ACCOUNT]
    from core.logs import setup_logging
    from core.settings import get_settings

    setup_logging(fmt=get_settings().log.format)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_run(args))


if __name__ == "__main__":
    main()
