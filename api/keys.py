"""``python -m api.keys``: manage API keys and the accounts registry from a shell.

::

    python -m api.keys create --name desk-a --role trader --client desk-a --account desk-a --broker '*'
    python -m api.keys list [--all]
    python -m api.keys rotate <key id> [--grace-seconds 3600]
    python -m api.keys revoke <key id>
    python -m api.keys accounts add desk-a [--broker paper] [--broker-account 51234567] [--description ...]
    python -m api.keys accounts list
    python -m api.keys accounts remove desk-a

``create`` and ``rotate`` print the key once, alone on stdout (``KEY=$(python -m api.keys create ...)``);
only its hash is stored. Scope values repeat or are comma-separated; ``'*'`` means all. The database is
``DATABASE_URL``, else the embedded Postgres that ``make run`` uses (``<data dir>/postgres``). Every change
is in the audit log as ``cli:<user>``.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import sys
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

import psycopg
from psycopg.rows import dict_row
from pydantic import TypeAdapter, ValidationError

from core.auth import Name, Role, Scope, Tenant
from core.db import apply_migrations
from core.domain import utcnow
from store.auth import (
    create_api_key,
    list_accounts,
    list_api_keys,
    register_account,
    remove_account,
    revoke_api_key,
    rotate_api_key,
)

__all__ = ["main", "parser", "run"]


def parser() -> argparse.ArgumentParser:
    """The command line."""
    p = argparse.ArgumentParser(prog="python -m api.keys", description="Manage API keys and registered accounts.")
    sub = p.add_subparsers(dest="command", required=True)

    create = sub.add_parser("create", help="create a key (printed once)")
    create.add_argument("--name", required=True, help="principal name (audited as the actor)")
    create.add_argument("--role", action="append", required=True, choices=[r.value for r in Role], help="repeatable")
    create.add_argument("--client", action="append", default=[], help="client ids in scope ('*': all)")
    create.add_argument("--account", action="append", default=[], help="accounts in scope ('*': all)")
    create.add_argument("--broker", action="append", default=[], help="brokers in scope ('*': all)")
    create.add_argument("--tenant", help="idempotency namespace (default: the name)")
    create.add_argument("--description", default="")
    create.add_argument("--expires-in-days", type=float, help="the key stops working after this many days")

    listing = sub.add_parser("list", help="list keys (never their secrets)")
    listing.add_argument("--all", action="store_true", help="include revoked and expired keys")

    rotate = sub.add_parser("rotate", help="replace a key by a new one (printed once)")
    rotate.add_argument("key_id")
    rotate.add_argument("--grace-seconds", type=float, default=0, help="the old key keeps working this long")

    revoke = sub.add_parser("revoke", help="revoke a key at once")
    revoke.add_argument("key_id")

    accounts = sub.add_parser("accounts", help="the accounts registry")
    acc = accounts.add_subparsers(dest="accounts_command", required=True)
    acc.add_parser("list", help="registered accounts")
    add = acc.add_parser("add", help="register an account (or change its registration)")
    add.add_argument("account")
    add.add_argument("--broker", help="the one broker it trades through (default: any)")
    add.add_argument("--broker-account", help="the account at the broker (FIX Account, MT5 login, ...)")
    add.add_argument("--description", default="")
    remove = acc.add_parser("remove", help="unregister an account (new orders are refused)")
    remove.add_argument("account")
    return p


def _err(*lines: str) -> None:
    for line in lines:
        print(line, file=sys.stderr)


def _key_line(k: Any) -> str:
    state = "active" if k.active() else ("revoked" if k.revoked_at else "expired")
    expires = f" expires {k.expires_at:%Y-%m-%d %H:%M}Z" if k.expires_at else ""
    roles = ",".join(r.value for r in k.roles)
    return f"{k.key_id}  {k.name:<20} {state:<8} roles={roles} {k.scope.describe()} tenant={k.tenant}{expires}"


async def run(argv: Sequence[str], *, url: str, actor: str | None = None) -> int:
    """Run one command against the database at ``url``; return the exit status."""
    args = parser().parse_args(list(argv))
    actor = actor or f"cli:{getpass.getuser()}"
    await apply_migrations(url)
    async with await psycopg.AsyncConnection.connect(url, autocommit=True, row_factory=dict_row) as conn:
        if args.command == "create":
            try:
                name = TypeAdapter(Name).validate_python(args.name)
                tenant = TypeAdapter(Tenant).validate_python(args.tenant or name)
                scope = Scope(clients=args.client, accounts=args.account, brokers=args.broker)
            except ValidationError as e:
                _err(f"invalid name, tenant or scope: {e.errors()[0]['msg']}")
                return 2
            expires = utcnow() + timedelta(days=args.expires_in_days) if args.expires_in_days else None
            async with conn.transaction():
                text, record = await create_api_key(
                    conn,
                    name=name,
                    roles=[Role(r) for r in args.role],
                    scope=scope,
                    tenant=tenant,
                    actor=actor,
                    description=args.description,
                    expires_at=expires,
                )
            print(text)
            _err(
                f"created {_key_line(record)}",
                "the key above is shown once; store it now (only its hash is kept).",
                "the API accepts API keys when EXODUS_AUTH__API_KEYS=true.",
            )
            return 0
        if args.command == "list":
            for k in await list_api_keys(conn, include_inactive=args.all):
                print(_key_line(k))
            return 0
        if args.command == "rotate":
            async with conn.transaction():
                rotated = await rotate_api_key(conn, args.key_id, actor=actor, grace_seconds=args.grace_seconds)
            if rotated is None:
                _err(f"no active key {args.key_id!r}")
                return 1
            text, record = rotated
            print(text)
            grace = f" after {args.grace_seconds:g}s" if args.grace_seconds else " now"
            _err(f"created {_key_line(record)}", f"key {args.key_id} stops working{grace}; the new key is shown once.")
            return 0
        if args.command == "revoke":
            async with conn.transaction():
                revoked = await revoke_api_key(conn, args.key_id, actor=actor)
            if revoked is None:
                _err(f"no key {args.key_id!r} that is not revoked already")
                return 1
            _err(f"revoked {revoked.key_id} ({revoked.name})")
            return 0
        # accounts
        if args.accounts_command == "list":
            for a in await list_accounts(conn):
                extra = f" -> {a.broker_account}" if a.broker_account else ""
                print(f"{a.account:<24} broker={a.broker or '*'}{extra}  {a.description}".rstrip())
            return 0
        if args.accounts_command == "add":
            async with conn.transaction():
                account = await register_account(
                    conn,
                    account=args.account,
                    actor=actor,
                    broker=args.broker,
                    broker_account=args.broker_account,
                    description=args.description,
                )
            _err(f"registered {account.account} (broker {account.broker or 'any'})")
            return 0
        async with conn.transaction():
            removed = await remove_account(conn, args.account, actor=actor)
        if not removed:
            _err(f"no registered account {args.account!r}")
            return 1
        _err(f"removed {args.account}")
        return 0


def _database_url() -> tuple[str, Any]:
    from core.settings import get_settings

    settings = get_settings()
    if settings.database_url:
        return settings.database_url, None
    from devstack.services import EmbeddedPostgres

    server = EmbeddedPostgres(settings.data_dir.resolve() / "postgres")  # shared with make run, if it is up
    return server.url, server


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m api.keys``."""
    argv = sys.argv[1:] if argv is None else argv
    parser().parse_args(list(argv))  # --help and usage errors before touching a database
    url, _server = _database_url()
    return asyncio.run(run(argv, url=url))


if __name__ == "__main__":
    sys.exit(main())
