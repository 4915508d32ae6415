"""Dependencies of the routes: settings, the Temporal client, the Postgres pool, the caller's name.

Who may call a route is its declared rule (``api/auth.py``); ``ActorDep`` is only the name to audit.

Every dependency here is ``async``: FastAPI runs a plain ``def`` dependency in a thread of its pool, and a thread
hop per dependency cost the order route about as much CPU as its JSON and validation together.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Header, Request
from temporalio.client import Client

from api.auth import authenticate
from core.instruments import InstrumentCatalog
from core.settings import Settings
from store import Pool
from store.policy import PolicyStore

__all__ = [
    "ActorDep",
    "IdempotencyKeyHeader",
    "InstrumentsDep",
    "PolicyDep",
    "PoolDep",
    "SettingsDep",
    "TemporalDep",
]


async def _settings(request: Request) -> Settings:
    return request.app.state.settings  # type: ignore[no-any-return]


async def _temporal(request: Request) -> Client:
    return request.app.state.temporal  # type: ignore[no-any-return]


async def _pool(request: Request) -> Pool:
    return request.app.state.pool  # type: ignore[no-any-return]


async def _instruments(request: Request) -> InstrumentCatalog:
    return request.app.state.instruments  # type: ignore[no-any-return]


async def _policy(request: Request) -> PolicyStore:
    return request.app.state.policy  # type: ignore[no-any-return]


async def _actor(request: Request) -> str:
    # The audited identity: the authenticated principal's name (X-Actor only in development mode, where
    # it names the development principal). Authorization is the route's declared rule (api/auth.py).
    return (await authenticate(request)).name


SettingsDep = Annotated[Settings, Depends(_settings)]
TemporalDep = Annotated[Client, Depends(_temporal)]
PoolDep = Annotated[Pool, Depends(_pool)]
InstrumentsDep = Annotated[InstrumentCatalog, Depends(_instruments)]
ActorDep = Annotated[str, Depends(_actor)]
#: A submission's idempotency key (``X-Idempotency-Key``); without it the client's own id keys the request.
IdempotencyKeyHeader = Annotated[str | None, Header(alias="X-Idempotency-Key", max_length=128)]
#: The app's one policy store (its cache is per version, so it must outlive a request).
PolicyDep = Annotated[PolicyStore, Depends(_policy)]
