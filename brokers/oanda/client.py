"""A thin async client of OANDA's v20 REST API (httpx): the bearer token, the rate limit, retries, error classes.

Every answer is one of three things, and nothing else escapes:

* the decoded JSON body of a 2xx answer;
* ``OandaError`` for a definite 4xx answer (400 with an ``orderRejectTransaction``, 404 for an order OANDA does not
  have or an ``orderCancelRejectTransaction``): the request was refused and nothing happened beyond the reject
  transaction OANDA recorded;
* ``BrokerUnavailable`` when the outcome is unknown or OANDA could not be asked: a timeout, a dropped connection,
  a 5xx, a 429 that outlasted the retries, a 401/403 (the token is wrong, or a practice token on live).

Retries inside one call: a 429 is retried after a pause (``Retry-After``, else a doubling one) for every method,
since OANDA refused it before doing anything; a 5xx or a transport error is retried only for reads (GET). A write
whose outcome is unknown is never sent again here: the adapter looks the order up first. A local limiter keeps
the client under ``rate_limit_per_second`` so that 429s stay rare.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, NoReturn

import httpx

from brokers.http import RateLimiter, RestCalls, rest_client
from core.errors import BrokerUnavailable
from core.settings import OandaSettings

__all__ = ["OandaError", "OandaRest", "RateLimiter"]

log = logging.getLogger(__name__)


@dataclass
class OandaError(Exception):
    """A definite refusal: a 4xx answer other than 401, 403 and 429."""

    status: int
    code: str | None
    message: str
    body: dict[str, Any]

    def __str__(self) -> str:
        code = f" {self.code}" if self.code else ""
        return f"{self.status}{code}: {self.message}"

    @property
    def reject_reason(self) -> str | None:
        """The ``rejectReason`` of the reject transaction the answer carries, if any."""
        for key in ("orderRejectTransaction", "orderCancelRejectTransaction"):
            txn = self.body.get(key)
            if isinstance(txn, dict) and txn.get("rejectReason"):
                return str(txn["rejectReason"])
        return self.code


class OandaRest(RestCalls):
    """Calls to OANDA's REST host for one account."""

    first_backoff = 0.1

    def __init__(
        self,
        settings: OandaSettings,
        *,
        name: str = "oanda",
        transport: httpx.AsyncBaseTransport | None = None,
        event_hooks: dict[str, list[Any]] | None = None,
    ) -> None:
        """A client of ``settings.base_url`` with the token, timeouts and limits of ``settings`` (hooks: tests)."""
        self._settings = settings
        self.account_path = f"/v3/accounts/{settings.account_id}"
        self._headers = {
            "User-Agent": "exodus-oanda/1",
            "Content-Type": "application/json",
            "Accept-Datetime-Format": "RFC3339",
        }
        if settings.token is not None:
            self._headers["Authorization"] = f"Bearer {settings.token.get_secret_value()}"
        http = rest_client(
            settings.base_url,
            headers=self._headers,
            timeout=settings.request_timeout_seconds,
            transport=transport,
            event_hooks=event_hooks,
        )
        self._stream_http = rest_client(
            settings.stream_url,
            headers=self._headers,
            timeout=httpx.Timeout(settings.request_timeout_seconds, read=settings.stream_timeout_seconds),
            transport=transport,
        )
        super().__init__(
            name,
            http,
            RateLimiter(settings.rate_limit_per_second, window=1.0),
            max_retries=settings.max_retries,
            max_backoff=settings.max_backoff_seconds,
        )

    async def aclose(self) -> None:
        """Close the connection pools."""
        await self._http.aclose()
        await self._stream_http.aclose()

    async def get(self, path: str, params: dict[str, Any] | None = None) -> Any:
        """GET an account path (retried on 429, 5xx and transport errors)."""
        return await self.request("GET", path, params=params)

    async def request(
        self, method: str, path: str, *, params: dict[str, Any] | None = None, json_body: dict[str, Any] | None = None
    ) -> Any:
        """One call to ``<account path><path>``, as the module docstring says."""
        return await self.call(method, self.account_path + path, params=params, json_body=json_body)

    def refused(self, method: str, url: str, response: httpx.Response) -> NoReturn:
        """``OandaError``; ``BrokerUnavailable`` for a 401 or 403 (the token, or its environment)."""
        status = response.status_code
        body = self.error_body(response)
        code = body.get("errorCode")
        message = str(body.get("errorMessage") or response.text[:200] or response.reason_phrase)
        if status in (401, 403):
            # The token is missing, wrong, or for the other environment: nothing was done; fix the settings.
            log.error(
                "%s: %s %s refused %d: %s (check the token and account id)", self.name, method, url, status, message
            )
            raise BrokerUnavailable(f"{self.name}: not authorized ({status}: {message}); check the token")
        raise OandaError(status, str(code) if code else None, message, body)

    async def stream_lines(
        self, path: str, *, on_open: Callable[[], Awaitable[None]] | None = None
    ) -> AsyncIterator[bytes]:
        """The lines of a streaming endpoint on the stream host (``/transactions/stream``), until it ends.

        Raises ``BrokerUnavailable`` when it cannot be opened or breaks (a read times out after
        ``stream_timeout_seconds`` without a line: heartbeats stopped).
        """
        url = self.account_path + path
        try:
            async with self._stream_http.stream("GET", url) as response:
                if response.status_code != 200:
                    await response.aread()
                    raise BrokerUnavailable(f"{self.name}: {url}: {response.status_code} {response.text[:200]!r}")
                if on_open is not None:
                    await on_open()
                async for line in response.aiter_lines():
                    if line.strip():
                        yield line.encode()
        except httpx.HTTPError as e:
            raise BrokerUnavailable(f"{self.name}: the transaction stream broke ({type(e).__name__}: {e})") from e
