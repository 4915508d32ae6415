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

import asyncio
import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx

from brokers.http import RateLimiter, loads
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


class AlpacaRest:
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
        self.name = name
        self._settings = settings
        headers = {"User-Agent": "exodus-alpaca/1"}
        if settings.key_id is not None:
            headers["APCA-API-KEY-ID"] = settings.key_id.get_secret_value()
        if settings.secret_key is not None:
            headers["APCA-API-SECRET-KEY"] = settings.secret_key.get_secret_value()
        self._http = httpx.AsyncClient(
            base_url=base_url.rstrip("/"),
            headers=headers,
            timeout=settings.request_timeout_seconds,
            follow_redirects=False,
            transport=transport,
            event_hooks=event_hooks,
        )
        self.limiter = limiter or RateLimiter(settings.rate_limit_per_minute)
        #: 429 answers seen, and retries made (diagnostics and tests).
        self.throttled = 0
        self.retries = 0
        #: When a call last got a 2xx answer (the broker health page shows it through the session's heartbeat).
        self.last_ok_at: datetime | None = None

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._http.aclose()

    async def get(self, path: str, params: dict[str, Any] | None = None) -> Any:
        """GET (retried on 429, 5xx and transport errors)."""
        return await self.request("GET", path, params=params)

    async def request(
        self, method: str, path: str, *, params: dict[str, Any] | None = None, json_body: dict[str, Any] | None = None
    ) -> Any:
        """One call, as the module docstring says."""
        read = method == "GET"
        attempt = 0
        backoff = 0.25
        s = self._settings
        while True:
            attempt += 1
            last = attempt > s.max_retries
            await self.limiter.acquire()
            try:
                response = await self._http.request(method, path, params=params, json=json_body)
            except httpx.HTTPError as e:
                if read and not last:
                    self.retries += 1
                    await asyncio.sleep(min(backoff, s.max_backoff_seconds))
                    backoff *= 2
                    continue
                what = "no answer" if isinstance(e, httpx.TimeoutException) else "the connection failed"
                raise BrokerUnavailable(
                    f"{self.name}: {method} {path}: {what} ({type(e).__name__}: {e}); the outcome is unknown"
                ) from e
            status = response.status_code
            if status < 300:
                self.last_ok_at = datetime.now(UTC)
                try:
                    return loads(response.content)
                except ValueError as e:
                    raise BrokerUnavailable(f"{self.name}: {method} {path}: an answer that is not JSON") from e
            if status == 429:
                self.throttled += 1
                wait = self._reset_wait(response, backoff)
                backoff *= 2
                if last:
                    raise BrokerUnavailable(
                        f"{self.name}: {method} {path}: rate limited (429) {attempt} times; not sent, try again later"
                    )
                self.retries += 1
                log.info("%s: 429 on %s %s; waiting %.1fs for the rate limit", self.name, method, path, wait)
                self.limiter.blocked_until = max(self.limiter.blocked_until, time.monotonic() + wait)
                continue
            if status >= 500:
                if read and not last:
                    self.retries += 1
                    await asyncio.sleep(min(backoff, s.max_backoff_seconds))
                    backoff *= 2
                    continue
                raise BrokerUnavailable(
                    f"{self.name}: {method} {path}: {status} {response.text[:200]!r}; the outcome is unknown"
                )
            body = self._error_body(response)
            code = body.get("code") if isinstance(body.get("code"), int) else None
            message = str(body.get("message") or response.text[:200] or response.reason_phrase)
            if status == 401 or (status == 403 and code is None):
                # Keys missing, wrong, or for the other domain (paper keys on live): nothing was done; fix the keys.
                log.error(
                    "%s: %s %s refused %d: %s (check the API keys and base URL)",
                    self.name,
                    method,
                    path,
                    status,
                    message,
                )
                raise BrokerUnavailable(f"{self.name}: not authorized ({status}: {message}); check the API keys")
            raise AlpacaError(status, code, message, body)

    def _reset_wait(self, response: httpx.Response, backoff: float) -> float:
        cap = self._settings.max_backoff_seconds
        reset = response.headers.get("X-RateLimit-Reset")
        retry_after = response.headers.get("Retry-After")
        try:
            if retry_after is not None:
                return min(max(float(retry_after), 0.05), cap)
            if reset is not None:
                return min(max(float(reset) - time.time(), 0.05), cap)
        except ValueError:
            pass
        return min(backoff, cap)

    @staticmethod
    def _error_body(response: httpx.Response) -> dict[str, Any]:
        try:
            body = response.json()
        except ValueError:
            return {}
        return body if isinstance(body, dict) else {}
