"""The MT5 bridge endpoints the ExodusBridge EA calls: heartbeat, poll, acknowledge, report trades and ticks.

Ticks are stored as the quotes (source ``mt5``) that price MT5 orders.

Authenticated per account by the bridge token (``Authorization: Bearer <token>``, ``mt5.accounts``), which
stands for a principal with role ``bridge`` and that account as its scope, or by an API key / JWT whose
principal has role ``bridge`` and the account in scope. The wire protocol is ``brokers/mt5/protocol.py``
(documented in ``mql5/PROTOCOL.md``). Refusals use the API's one error shape and name the field at fault.
"""

from __future__ import annotations

from typing import Annotated

import psycopg
from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from psycopg_pool import PoolTimeout
from pydantic import BaseModel

from api.auth import AccessRule, forbid, refuse
from api.deps import InstrumentsDep, PoolDep, SettingsDep
from api.edge import EdgeRoute
from api.identity import Authenticator, AuthFailure
from api.schemas import ErrorBody, Reason
from brokers.mt5.bridge import Bridge, BridgeRefused
from brokers.mt5.protocol import (
    PATHS,
    PROTOCOL_VERSION,
    AckReply,
    HeartbeatReply,
    PollReply,
    TicksReply,
    TradeReply,
)
from brokers.mt5.protocol import Ack as AckBody
from brokers.mt5.protocol import Heartbeat as HeartbeatBody
from brokers.mt5.protocol import PollRequest as PollBody
from brokers.mt5.protocol import Ticks as TicksBody
from brokers.mt5.protocol import TradeReport as TradeBody
from core.auth import API_KEY_PREFIX, Permission
from core.settings import Settings

__all__ = ["router"]

router = APIRouter(prefix="/bridge/mt5", tags=["bridge-mt5"], route_class=EdgeRoute)


class BridgeAccount(AccessRule):
    """The MT5 bridge endpoints of one account: its bridge token, or an API key / JWT with role ``bridge``.

    Always authenticated, also in development mode (the EA protocol has always sent its token).
    """

    async def __call__(self, account: str, request: Request) -> str:
        """The account in the path, once the caller is proven to be its bridge."""
        settings: Settings = request.app.state.settings
        auth: Authenticator = request.app.state.authenticator
        header = request.headers.get("Authorization")
        if not header:
            await refuse(
                request,
                _unauthorized(
                    account,
                    "TOKEN_MISSING",
                    "missing bridge token: send 'Authorization: Bearer <token>' (the EA's InpToken)",
                ),
            )
        scheme, _, token = header.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            message = "malformed Authorization header: expected 'Bearer <token>'"
            await refuse(request, _unauthorized(account, "TOKEN_MALFORMED", message))
        if account not in settings.mt5.accounts:
            message = f"no MT5 bridge account {account!r} is configured (mt5.accounts)"
            await refuse(request, _unauthorized(account, "UNKNOWN_ACCOUNT", message))
        if auth.bridge_token_matches(account, token):
            principal = auth.bridge_principal(account)
        elif token.startswith(API_KEY_PREFIX) or (auth.jwt is not None and token.count(".") == 2):
            try:
                principal = await auth.resolve(token, getattr(request.app.state, "pool", None))
            except AuthFailure as e:
                await refuse(request, e)
            if not principal.can(Permission.BRIDGE_MT5):
                await forbid(
                    request,
                    principal,
                    code="FORBIDDEN_ROLE",
                    field=None,
                    message=f"{principal.name} (roles: {principal.roles_text()}) may not use the MT5 bridge; "
                    "it needs the role bridge",
                )
            if not principal.scope.allows_account(account):
                await forbid(
                    request,
                    principal,
                    code="OUT_OF_SCOPE",
                    field="account",
                    message=f"account: {account!r} is outside the scope of {principal.name}",
                )
        else:
            await refuse(request, _unauthorized(account, "TOKEN_WRONG", f"wrong bridge token for account {account!r}"))
        request.state.principal = principal
        return account

    def describe(self) -> str:
        """What the rule lets through."""
        return "the account's MT5 bridge token, or bridge:mt5 with the account in scope"


def _unauthorized(account: str, code: str, message: str) -> AuthFailure:
    return AuthFailure(401, code, message, presented=f"mt5-bridge:{account}", field="Authorization")


BridgeAccountDep = Annotated[str, Depends(BridgeAccount())]


def _bridge(pool: PoolDep, settings: SettingsDep, instruments: InstrumentsDep) -> Bridge:
    return Bridge(pool, settings.mt5, instruments=instruments)


BridgeDep = Annotated[Bridge, Depends(_bridge)]


def _refuse(status: int, code: str, field: str | None, message: str) -> JSONResponse:
    word = "conflict" if status == 409 else "not_found" if status == 404 else "rejected"
    body = ErrorBody(status=word, message=message, reasons=[Reason(code=code, field=field, message=message)])
    return JSONResponse(status_code=status, content=body.model_dump(mode="json", exclude_none=True))


def _version_problem(protocol: int) -> JSONResponse | None:
    if protocol == PROTOCOL_VERSION:
        return None
    return _refuse(
        400,
        "PROTOCOL_VERSION",
        "protocol",
        f"protocol: this server speaks bridge protocol {PROTOCOL_VERSION}, the EA sent {protocol}; "
        "install the ExodusBridge EA that matches this Exodus version",
    )


async def _answer(call: object) -> JSONResponse:
    try:
        reply: BaseModel = await call  # type: ignore[misc]
    except BridgeRefused as e:
        return _refuse(e.status, e.code, e.field, str(e))
    except (psycopg.OperationalError, PoolTimeout) as e:
        body = ErrorBody(status="error", message=f"bridge storage unavailable ({type(e).__name__}); retry")
        return JSONResponse(
            status_code=503, content=body.model_dump(mode="json", exclude_none=True), headers={"Retry-After": "2"}
        )
    return JSONResponse(content=reply.model_dump(mode="json"))


@router.post("/accounts/{account}" + PATHS["heartbeat"], response_model=HeartbeatReply)
async def heartbeat(account: BridgeAccountDep, body: HeartbeatBody, bridge: BridgeDep) -> JSONResponse:
    """The EA is alive: record terminal and account state; a reconnect triggers reconciliation."""
    return _version_problem(body.protocol) or await _answer(bridge.heartbeat(account, body))


@router.post("/accounts/{account}" + PATHS["poll"], response_model=PollReply)
async def poll(account: BridgeAccountDep, body: PollBody, bridge: BridgeDep) -> JSONResponse:
    """Lease the commands the EA should execute (again, until it acknowledges them)."""
    return _version_problem(body.protocol) or await _answer(bridge.poll(account, body))


@router.post("/accounts/{account}" + PATHS["ack"], response_model=AckReply)
async def acknowledge(account: BridgeAccountDep, body: AckBody, bridge: BridgeDep) -> JSONResponse:
    """The outcome of one command (a repeat of an acknowledgement is answered DUPLICATE)."""
    return _version_problem(body.protocol) or await _answer(bridge.ack(account, body))


@router.post("/accounts/{account}" + PATHS["trades"], response_model=TradeReply)
async def trades(account: BridgeAccountDep, body: TradeBody, bridge: BridgeDep) -> JSONResponse:
    """Deals and final order states (deduplicated by ticket)."""
    return _version_problem(body.protocol) or await _answer(bridge.trades(account, body))


@router.post("/accounts/{account}" + PATHS["ticks"], response_model=TicksReply)
async def ticks(account: BridgeAccountDep, body: TicksBody, bridge: BridgeDep) -> JSONResponse:
    """The terminal's last ticks: stored as quotes of source ``mt5`` (broker names mapped to Exodus symbols)."""
    return _version_problem(body.protocol) or await _answer(bridge.ticks(account, body))
