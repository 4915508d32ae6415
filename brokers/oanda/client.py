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

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx

from brokers.http import RateLimiter, loads
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


class OandaRest:
    """Calls to OANDA's REST host for one account."""

    def __init__(
        self,
        settings: OandaSettings,
        *,
        name: str = "oanda",
        transport: httpx.AsyncBaseTransport | None = None,
        event_hooks: dict[str, list[Any]] | None = None,
    ) -> None:
        """A client of ``settings.base_url`` with the token, timeouts and limits of ``settings`` (hooks: tests)."""
        self.name = name
        self._settings = settings
        self.account_path = f"/v3/accounts/{settings.account_id}"
        self._headers = {
            "User-Agent": "exodus-oanda/1",
            "Content-Type": "application/json",
            "Accept-Datetime-Format": "RFC3339",
        }
        if settings.token is not None:
            self._headers["Authorization"] = f"Bearer {settings.token.get_secret_value()}"
        self._http = httpx.AsyncClient(
            base_url=settings.base_url.rstrip("/"),
            headers=self._headers,
            timeout=settings.request_timeout_seconds,
            follow_redirects=False,
            transport=transport,
            event_hooks=event_hooks,
        )
        self._stream_http = httpx.AsyncClient(
            base_url=settings.stream_url.rstrip("/"),
            headers=self._headers,
            timeout=httpx.Timeout(settings.request_timeout_seconds, read=settings.stream_timeout_seconds),
            follow_redirects=False,
            transport=transport,
        )
        self.limiter = RateLimiter(settings.rate_limit_per_second, window=1.0)
        #: 429 answers seen, and retries made (diagnostics and tests).
        self.throttled = 0
        self.retries = 0
        #: When a call last got a successful (2xx) answer: the broker-health page's "last successful call".
        self.last_ok_at: datetime | None = None

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
        url = self.account_path + path
        read = method == "GET"
        attempt = 0
        backoff = 0.1
        s = self._settings
        while True:
            attempt += 1
            last = attempt > s.max_retries
            await self.limiter.acquire()
            try:
                response = await self._http.request(method, url, params=params, json=json_body)
            except httpx.HTTPError as e:
                if read and not last:
                    self.retries += 1
                    await asyncio.sleep(min(backoff, s.max_backoff_seconds))
                    backoff *= 2
                    continue
                what = "no answer" if isinstance(e, httpx.TimeoutException) else "the connection failed"
                raise BrokerUnavailable(
                    f"{self.name}: {method} {url}: {what} ({type(e).__name__}: {e}); the outcome is unknown"
                ) from e
            status = response.status_code
            if status < 300:
                self.last_ok_at = datetime.now(UTC)
                try:
                    return loads(response.content)
                except ValueError as e:
                    raise BrokerUnavailable(f"{self.name}: {method} {url}: an answer that is not JSON") from e
            if status == 429:
                self.throttled += 1
                wait = self._retry_wait(response, backoff)
                backoff *= 2
                if last:
                    raise BrokerUnavailable(
                        f"{self.name}: {method} {url}: rate limited (429) {attempt} times; not done, try again later"
                    )
                self.retries += 1
                log.info("%s: 429 on %s %s; waiting %.2fs", self.name, method, url, wait)
                self.limiter.blocked_until = max(self.limiter.blocked_until, time.monotonic() + wait)
                continue
            if status >= 500:
                if read and not last:
                    self.retries += 1
                    await asyncio.sleep(min(backoff, s.max_backoff_seconds))
                    backoff *= 2
                    continue
                raise BrokerUnavailable(
                    f"{self.name}: {method} {url}: {status} {response.text[:200]!r}; the outcome is unknown"
                )
            body = self._error_body(response)
            code = body.get("errorCode")
            message = str(body.get("errorMessage") or response.text[:200] or response.reason_phrase)
            if status in (401, 403):
                # The token is missing, wrong, or for the other environment: nothing was done; fix the settings.
                log.error(
                    "%s: %s %s refused %d: %s (check the token and account id)", self.name, method, url, status, message
                )
                raise BrokerUnavailable(f"{self.name}: not authorized ({status}: {message}); check the token")
            raise OandaError(status, str(code) if code else None, message, body)

    @staticmethod
    def _retry_wait(response: httpx.Response, backoff: float) -> float:
        retry_after = response.headers.get("Retry-After")
        if retry_after is not None:
            try:
                return min(max(float(retry_after), 0.05), 8.0)
            except ValueError:
                pass
        return min(backoff, 8.0)

    @staticmethod
    def _error_body(response: httpx.Response) -> dict[str, Any]:
        try:
            body = response.json()
        except ValueError:
            return {}
        return body if isinstance(body, dict) else {}

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
