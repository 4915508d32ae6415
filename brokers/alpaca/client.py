"""A thin async client of Alpaca's REST APIs (httpx): authentication, rate limit, retries, error classes.

Every answer is one of three things, and nothing else escapes:

* the decoded JSON body of a 2xx answer (``None`` for 204);
* ``AlpacaError`` for a definite 4xx answer (status, Alpaca's 8-digit code, its message): the request was
  refused and nothing happened;
* ``BrokerUnavailable`` when the outcome is unknown or Alpaca could not be asked: a timeout, a dropped
  connection, a 5xx, a 429 that outlasted the retries, a 401 (keys wrong or for the other domain).

Retries inside one call: a 429 is retried after the window resets (``X-RateLimit-Reset``, else a doubling
pause), for every method, since Alpaca refused the request before doing anything; a 5xx or a transport error is
retried only for reads (GET). A write whose outcome is unknown is never sent again here: the caller asks Alpaca
by client order id first (``activities/broker.py``). A local limiter keeps the client under
``rate_limit_per_minute`` so that 429s stay rare.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any, NoReturn

import httpx

from brokers.http import RateLimiter, RestCalls, rest_client
from core.errors import BrokerUnavailable
from core.settings import AlpacaSettings

__all__ = ["AlpacaError", "AlpacaRest", "RateLimiter"]

log = logging.getLogger(__name__)


@dataclass
class AlpacaError(Exception):
    """A definite refusal: a 4xx answer other than 401 and 429."""

    status: int
    code: int | None
    message: str
    body: dict[str, Any]

    def __str__(self) -> str:
        code = f" {self.code}" if self.code is not None else ""
        return f"{self.status}{code}: {self.message}"


class AlpacaRest(RestCalls):
    """Calls to one Alpaca host (trading or market data)."""

    def __init__(
        self,
        base_url: str,
        settings: AlpacaSettings,
        *,
        name: str = "alpaca",
        limiter: RateLimiter | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        event_hooks: dict[str, list[Any]] | None = None,
    ) -> None:
        """A client of ``base_url`` with the keys, timeouts and limits of ``settings`` (hooks: tests)."""
        self._settings = settings
        headers = {"User-Agent": "exodus-alpaca/1"}
        if settings.key_id is not None:
            headers["APCA-API-KEY-ID"] = settings.key_id.get_secret_value()
        if settings.secret_key is not None:
            headers["APCA-API-SECRET-KEY"] = settings.secret_key.get_secret_value()
        http = rest_client(
            base_url,
            headers=headers,
            timeout=settings.request_timeout_seconds,
            transport=transport,
            event_hooks=event_hooks,
        )
        super().__init__(
            name,
            http,
            limiter or RateLimiter(settings.rate_limit_per_minute),
            max_retries=settings.max_retries,
            max_backoff=settings.max_backoff_seconds,
        )

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._http.aclose()

    async def get(self, path: str, params: dict[str, Any] | None = None) -> Any:
        """GET (retried on 429, 5xx and transport errors)."""
        return await self.call("GET", path, params=params)

    async def request(
        self, method: str, path: str, *, params: dict[str, Any] | None = None, json_body: dict[str, Any] | None = None
    ) -> Any:
        """One call, as the module docstring says."""
        return await self.call(method, path, params=params, json_body=json_body)

    def refused(self, method: str, url: str, response: httpx.Response) -> NoReturn:
        """``AlpacaError``; ``BrokerUnavailable`` for a 401, or a 403 without Alpaca's code (the keys)."""
        status = response.status_code
        body = self.error_body(response)
        code = body.get("code") if isinstance(body.get("code"), int) else None
        message = str(body.get("message") or response.text[:200] or response.reason_phrase)
        if status == 401 or (status == 403 and code is None):
            # Keys missing, wrong, or for the other domain (paper keys on live): nothing was done; fix the keys.
            log.error(
                "%s: %s %s refused %d: %s (check the API keys and base URL)", self.name, method, url, status, message
            )
            raise BrokerUnavailable(f"{self.name}: not authorized ({status}: {message}); check the API keys")
        raise AlpacaError(status, code, message, body)

    def retry_wait(self, response: httpx.Response, backoff: float) -> float:
        """``Retry-After``, else until ``X-RateLimit-Reset`` (Alpaca's window), else ``backoff``; capped."""
        reset = response.headers.get("X-RateLimit-Reset")
        if response.headers.get("Retry-After") is None and reset is not None:
            try:
                return min(max(float(reset) - time.time(), 0.05), self._max_backoff)
            except ValueError:
                pass
        return super().retry_wait(response, backoff)
