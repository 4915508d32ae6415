"""The accounts registry as the order path sees it: accounts exist only if registered.

An order for an account that is not registered is refused with ``UNKNOWN_ACCOUNT`` before any workflow
starts (so per-account limits cannot be dodged by inventing account names). An account registered for one
broker takes orders only for that broker, and an order that names no broker goes to the account's. The MT5
bridge accounts of the settings count as registered for broker ``mt5`` even before the API has written them
to the table (it does at start-up).
"""

from __future__ import annotations

from typing import Any

from fastapi import Request

from api.auth import check_order_scope
from api.schemas import Reason
from core.auth import Principal
from core.settings import Settings
from store.auth import AccountRecord, get_account

__all__ = ["broker_of", "registered_broker", "scoped_broker"]


async def registered_broker(
    pool: Any, settings: Settings, *, account: str, broker: str | None
) -> tuple[str, list[Reason]]:
    """The broker the order goes to, and the reasons to refuse it (unknown account, another broker)."""
    async with pool.connection() as conn:
        record = await get_account(conn, account)
    return broker_of(record, settings, account=account, broker=broker)


def broker_of(
    record: AccountRecord | None, settings: Settings, *, account: str, broker: str | None
) -> tuple[str, list[Reason]]:
    """``registered_broker`` from the account's registration (``record``, None if it has none) already read."""
    if record is not None:
        registered = record.broker
    elif account in settings.mt5.accounts:
        registered = "mt5"
    else:
        return broker or settings.default_broker, [
            Reason(
                code="UNKNOWN_ACCOUNT",
                field="account",
                message=f"account: {account!r} is not a registered account (an admin registers accounts: "
                "python -m api.keys accounts add, or PUT /api/v1/admin/accounts/{account})",
            )
        ]
    if registered is not None and broker is not None and broker != registered:
        return broker, [
            Reason(
                code="ACCOUNT_BROKER_MISMATCH",
                field="broker",
                message=f"broker: account {account!r} trades through broker {registered!r}, not {broker!r}",
            )
        ]
    return broker or registered or settings.default_broker, []


async def scoped_broker(
    request: Request,
    principal: Principal,
    pool: Any,
    settings: Settings,
    *,
    client_id: str,
    account: str,
    broker: str | None,
) -> tuple[str, list[Reason]]:
    """``registered_broker`` for a caller (the broker the order goes to, and the reasons to refuse it).

    403 when the client, the account or the broker (as given, then as resolved) is outside the principal's scope.
    """
    await check_order_scope(request, principal, client_id=client_id, account=account, broker=broker)
    resolved, problems = await registered_broker(pool, settings, account=account, broker=broker)
    await check_order_scope(request, principal, broker=resolved)
    return resolved, problems
