"""``python -m devstack.venues.fix``: run the local FIX venue until SIGINT/SIGTERM.

Defaults come from the ``fix`` settings, so the venue pairs with the adapter's session: the port is ``fix.port``,
the venue's CompID the adapter's target and the other way round. With ``DATABASE_URL`` the book is journaled in
Postgres (the paper venue's tables, under the key ``fix-venue``) and survives restarts.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from devstack.venues.runner import add_book_options, main_loop, paper_book, run_until_signalled

__all__ = ["main"]

log = logging.getLogger("devstack.venues.fix")


async def _run(args: argparse.Namespace) -> None:
    from devstack.venues.fix.venue import FixVenue

    async with paper_book(args, name="fixvenue") as book:
        venue = FixVenue(
            book.sim,
            port=args.port,
            directory=Path(args.data_dir).resolve(),
            begin_string=args.begin_string,
            sender_comp_id=args.sender_comp_id,
            target_comp_id=args.target_comp_id,
            username=args.username,
            password=args.password,
            allowed_remote_addresses=args.allow,
            mass_status=not args.no_mass_status,
        )
        await run_until_signalled(
            venue.start,
            venue.stop,
            started=lambda: log.info(
                "FIX venue %s listening on port %d for %s (journal: %s)",
                venue.config.key,
                args.port,
                args.target_comp_id,
                book.journal_text,
            ),
        )


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
    add_book_options(parser, tick_interval_ms=fx.local_venue_tick_interval_ms, journal_key="fix-venue")
    parser.add_argument("--allow", nargs="*", default=["127.0.0.1"], help="peers allowed to connect")
    parser.add_argument(
        "--no-mass-status",
        action="store_true",
        help="refuse OrderMassStatusRequests (35=AF) as unsupported, like a venue without them",
    )
    args = parser.parse_args(argv)
    main_loop(_run, args)


if __name__ == "__main__":
    main()
