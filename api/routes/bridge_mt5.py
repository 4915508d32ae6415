"""The MT5 bridge endpoints the ExodusBridge EA calls: heartbeat, poll, acknowledge, report trades and ticks.

Ticks are stored as the quotes (source ``mt5``) that price MT5 orders.

Authenticated per account by the bridge token (``Authorization: Bearer <token>``, ``mt5.accounts``), not by
the API's user tokens. The wire protocol is ``brokers/mt5/protocol.py`` (documented in
``mql5/PROTOCOL.md``). Refusals use the API's one error shape and name the field at fault.
"""

from __future__ import annotations

import secrets
from typing import Annotated

import psycopg
from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import JSONResponse
from psycopg_pool import PoolTimeout
from pydantic import BaseModel

from api.deps import InstrumentsDep, PoolDep, SettingsDep
from api.schemas import ErrorBody, Reason
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
from brokers.mt5.store import BridgeRefused, BridgeStore

__all__ = ["router"]

router = APIRouter(prefix="/bridge/mt5", tags=["bridge-mt5"])

_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="exodus-mt5-bridge"'}


def _unauthorized(code: str, message: str) -> HTTPException:
    reason = Reason(code=code, field="Authorization", message=message)
    body = ErrorBody(status="unauthorized", message=message, reasons=[reason])
    return HTTPException(401, body.model_dump(mode="json", exclude_none=True), _CHALLENGE)


def _bridge_account(account: str, request: Request, settings: SettingsDep) -> str:
    """The account in the path, once its bridge token is proven."""
    header = request.headers.get("Authorization")
    if not header:
        raise _unauthorized(
            "TOKEN_MISSING", "missing bridge token: send 'Authorization: Bearer <token>' (the EA's InpToken)"
        )
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise _unauthorized("TOKEN_MALFORMED", "malformed Authorization header: expected 'Bearer <token>'")
    cfg = settings.mt5.accounts.get(account)
    if cfg is None:
        raise _unauthorized("UNKNOWN_ACCOUNT", f"no MT5 bridge account {account!r} is configured (mt5.accounts)")
    if not secrets.compare_digest(token.strip().encode(), cfg.token.get_secret_value().encode()):
        raise _unauthorized("TOKEN_WRONG", f"wrong bridge token for account {account!r}")
    return account


BridgeAccountDep = Annotated[str, Depends(_bridge_account)]


def _store(pool: PoolDep, settings: SettingsDep, instruments: InstrumentsDep) -> BridgeStore:
    return BridgeStore(pool, settings.mt5, instruments=instruments)


StoreDep = Annotated[BridgeStore, Depends(_store)]


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
async def heartbeat(account: BridgeAccountDep, body: HeartbeatBody, store: StoreDep) -> JSONResponse:
    """The EA is alive: record terminal and account state; a reconnect triggers reconciliation."""
    return _version_problem(body.protocol) or await _answer(store.heartbeat(account, body))


@router.post("/accounts/{account}" + PATHS["poll"], response_model=PollReply)
async def poll(account: BridgeAccountDep, body: PollBody, store: StoreDep) -> JSONResponse:
    """Lease the commands the EA should execute (again, until it acknowledges them)."""
    return _version_problem(body.protocol) or await _answer(store.poll(account, body))


@router.post("/accounts/{account}" + PATHS["ack"], response_model=AckReply)
async def acknowledge(account: BridgeAccountDep, body: AckBody, store: StoreDep) -> JSONResponse:
    """The outcome of one command (a repeat of an acknowledgement is answered DUPLICATE)."""
    return _version_problem(body.protocol) or await _answer(store.ack(account, body))


@router.post("/accounts/{account}" + PATHS["trades"], response_model=TradeReply)
async def trades(account: BridgeAccountDep, body: TradeBody, store: StoreDep) -> JSONResponse:
    """Deals and final order states (deduplicated by ticket)."""
    return _version_problem(body.protocol) or await _answer(store.trades(account, body))


@router.post("/accounts/{account}" + PATHS["ticks"], response_model=TicksReply)
async def ticks(account: BridgeAccountDep, body: TicksBody, store: StoreDep) -> JSONResponse:
    """The terminal's last ticks: stored as quotes of source ``mt5`` (broker names mapped to Exodus symbols)."""
    return _version_problem(body.protocol) or await _answer(store.ticks(account, body))
