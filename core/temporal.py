"""The one place a Temporal client is built, and the search attributes Exodus keeps on every order.

Both the API and the worker connect through ``connect()``, so they cannot disagree on the data converter:
the pydantic converter, because the default one fails on ``Decimal``.
"""

from __future__ import annotations

from temporalio.client import Client, Interceptor
from temporalio.common import SearchAttributeKey
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.runtime import Runtime
from temporalio.worker import Interceptor as WorkerInterceptor

from core.settings import Settings

__all__ = [
    "SA_ACCOUNT",
    "SA_BROKER",
    "SA_CLIENT_ID",
    "SA_CLIENT_ORDER_ID",
    "SA_LIST_ID",
    "SA_STATUS",
    "SA_SYMBOL",
    "SEARCH_ATTRIBUTES",
    "connect",
    "interceptors",
    "missing_worker_interceptors",
    "search_attribute_flags",
]

SA_STATUS = SearchAttributeKey.for_keyword("ExodusStatus")
SA_SYMBOL = SearchAttributeKey.for_keyword("ExodusSymbol")
SA_CLIENT_ID = SearchAttributeKey.for_keyword("ExodusClientId")
SA_BROKER = SearchAttributeKey.for_keyword("ExodusBroker")
SA_CLIENT_ORDER_ID = SearchAttributeKey.for_keyword("ExodusClientOrderId")
SA_ACCOUNT = SearchAttributeKey.for_keyword("ExodusAccount")
#: The order list a coordinator runs, or an order is a leg of (issue 15).
SA_LIST_ID = SearchAttributeKey.for_keyword("ExodusListId")

#: Custom search attributes the order workflow keeps current (register them on the server).
SEARCH_ATTRIBUTES = [SA_STATUS, SA_SYMBOL, SA_CLIENT_ID, SA_BROKER, SA_CLIENT_ORDER_ID, SA_ACCOUNT, SA_LIST_ID]


def search_attribute_flags() -> list[str]:
    """``--search-attribute`` flags registering ``SEARCH_ATTRIBUTES`` on ``temporal server start-dev``."""
    flags: list[str] = []
    for key in SEARCH_ATTRIBUTES:
        flags += ["--search-attribute", f"{key.name}=Keyword"]
    return flags


def interceptors() -> list[Interceptor]:
    """The client (and worker) interceptors every Exodus client carries: the log context's ids, then traces.

    The tracing interceptor is there only when tracing is configured (``core.tracing``).
    """
    from core.propagation import ContextInterceptor
    from core.tracing import temporal_interceptor

    found: list[Interceptor] = [ContextInterceptor()]
    tracing = temporal_interceptor()
    if tracing is not None:
        found.append(tracing)
    return found


def missing_worker_interceptors(client: Client) -> list[WorkerInterceptor]:
    """The worker interceptors ``client`` does not carry already (a client's are its workers' too)."""
    have = {type(i) for i in client.config()["interceptors"]}
    return [i for i in interceptors() if type(i) not in have and isinstance(i, WorkerInterceptor)]


async def connect(settings: Settings, *, runtime: Runtime | None = None, identity: str | None = None) -> Client:
    """Connect to Temporal with the pydantic data converter and Exodus' interceptors."""
    return await Client.connect(
        settings.temporal.address,
        namespace=settings.temporal.namespace,
        data_converter=pydantic_data_converter,
        runtime=runtime,
        identity=identity or None,
        interceptors=interceptors(),
    )
