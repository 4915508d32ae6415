"""``python -m devstack.venues.fix``: run the local FIX venue until SIGINT/SIGTERM.

Defaults come from the ``fix`` settings, so the venue pairs with the adapter's session: the port is ``fix.port``,
the venue's CompID the adapter's target and the other way round. With ``DATABASE_URL`` the book is journaled in
Postgres (the paper venue's tables, under the key ``fix-venue``) and survives restarts.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
from pathlib import Path

__all__ = ["main"]

log = logging.getLogger("devstack.venues.fix")


async def _run(args: argparse.Namespace) -> None:
    from core.instruments import load_instruments
    from core.settings import get_settings
    from devstack.venues.fix.venue import FixVenue
    from sim.venue import SimVenue

    settings = get_settings()
    instruments = load_instruments(settings.instruments_file)
    pool = None
    journal = None
    url = args.database_url or settings.database_url
    if url and not args.no_journal:
        from core.db import open_pool
        from sim.journal import PostgresVenueJournal

        pool = await open_pool(settings.model_copy(update={"database_url": url}), name="fix-venue")
        journal = PostgresVenueJournal(pool, url, venue=args.journal_key)
    sim = SimVenue(
        instruments,
        name="fixvenue",
        seed=settings.paper.seed,
        tick_interval=args.tick_interval_ms / 1000,
        journal=journal,
    )
    venue = FixVenue(
        sim,
        port=args.port,
        directory=Path(args.data_dir).resolve(),
        begin_string=args.begin_string,
        sender_comp_id=args.sender_comp_id,
        target_comp_id=args.target_comp_id,
        username=args.username,
        password=args.password,
        allowed_remote_addresses=args.allow,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await venue.start()
    log.info(
        "FIX venue %s listening on port %d for %s (journal: %s)",
        venue.config.key,
        args.port,
        args.target_comp_id,
        "Postgres" if journal else "none, the book lives in memory",
    )
    try:
        await stop.wait()
    finally:
        await venue.stop()
        if pool is not None:
            await pool.close()


def main(argv: list[str] | None = None) -> None:
    """Parse the options and run the venue."""
    from core.settings import get_settings

    fx = get_settings().fix
    data_dir = get_settings().data_dir / "fix-venue"
    parser = argparse.ArgumentParser(prog="python -m devstack.venues.fix", description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=fx.port, help="TCP port (default: fix.port, %(default)s)")
    parser.add_argument("--begin-string", default=fx.begin_string, choices=["FIX.4.2", "FIX.4.4", "FIXT.1.1"])
    parser.add_argument("--sender-comp-id", default=fx.target_comp_id, help="the venue's CompID (%(default)s)")
    parser.add_argument("--target-comp-id", default=fx.sender_comp_id, help="the initiator's CompID (%(default)s)")
    parser.add_argument("--username", default=fx.username, help="require this Logon Username (553)")
    parser.add_argument(
        "--password",
        default=fx.password.get_secret_value() if fx.password else None,
        help="require this Logon Password (554)",
    )
    parser.add_argument("--data-dir", default=str(data_dir), help="QuickFIX store and logs (%(default)s)")
    parser.add_argument(
        "--tick-interval-ms",
        type=int,
        default=fx.local_venue_tick_interval_ms,
        help="price feed step interval (%(default)s; 0 = prices never move)",
    )
    parser.add_argument("--database-url", default=None, help="journal the book in Postgres (default: DATABASE_URL)")
    parser.add_argument("--no-journal", action="store_true", help="keep the book in memory only")
    parser.add_argument("--journal-key", default="fix-venue", help="the venue's key in the journal tables")
    parser.add_argument("--allow", nargs="*", default=["127.0.0.1"], help="peers allowed to connect")
    args = parser.parse_args(argv)
    from core.logs import setup_logging
    from core.settings import get_settings

    setup_logging(fmt=get_settings().log.format)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_run(args))


if __name__ == "__main__":
    main()
