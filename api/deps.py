"""Dependencies of the routes: settings, the Temporal client, the Postgres pool, the caller's identity."""

from __future__ import annotations

import secrets
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from psycopg_pool import AsyncConnectionPool
from temporalio.client import Client

from core.instruments import InstrumentCatalog
from core.policy import PolicyStore
from core.settings import Settings

__all__ = ["ActorDep", "InstrumentsDep", "PolicyDep", "PoolDep", "SettingsDep", "TemporalDep"]


def _settings(request: Request) -> Settings:
    return request.app.state.settings  # type: ignore[no-any-return]


def _temporal(request: Request) -> Client:
    return request.app.state.temporal  # type: ignore[no-any-return]


def _pool(request: Request) -> AsyncConnectionPool:
    return request.app.state.pool  # type: ignore[no-any-return]


def _instruments(request: Request) -> InstrumentCatalog:
    return request.app.state.instruments  # type: ignore[no-any-return]


def _policy(request: Request) -> PolicyStore:
    return request.app.state.policy  # type: ignore[no-any-return]


def _actor(request: Request, settings: Annotated[Settings, Depends(_settings)]) -> str:
    """The principal behind the request: from the bearer token when tokens are configured."""
    tokens = settings.api.tokens
    if not tokens:
        return request.headers.get("X-Actor", "").strip()[:100] or "anonymous"
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() == "bearer" and token:
        for principal, expected in tokens.items():
            if secrets.compare_digest(token.encode(), expected.get_secret_value().encode()):
                return principal
    raise HTTPException(
        status_code=401, detail="missing or invalid bearer token", headers={"WWW-Authenticate": "Bearer"}
    )


SettingsDep = Annotated[Settings, Depends(_settings)]
TemporalDep = Annotated[Client, Depends(_temporal)]
PoolDep = Annotated[AsyncConnectionPool, Depends(_pool)]
InstrumentsDep = Annotated[InstrumentCatalog, Depends(_instruments)]
ActorDep = Annotated[str, Depends(_actor)]
#: The app's one policy store (its cache is per version, so it must outlive a request).
PolicyDep = Annotated[PolicyStore, Depends(_policy)]
