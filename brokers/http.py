"""What the REST adapters share on the wire: a rate limiter, exact-decimal JSON and one call loop with retries."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import deque
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any, NoReturn

import httpx

from core.errors import BrokerUnavailable

__all__ = ["RateLimiter", "RestCalls", "decimal_of", "decimal_text", "loads", "rest_client"]

log = logging.getLogger(__name__)


class RateLimiter:
    """At most ``limit`` requests in any ``window`` seconds (a sliding window), waiting when the window is full."""

    def __init__(self, limit: int, *, window: float = 60.0, clock: Any = time.monotonic) -> None:
        """Allow ``limit`` requests per ``window`` seconds (Alpaca counts per minute, OANDA per second)."""
        self.limit = limit
        self.window = window
        self._clock = clock
        self._sent: deque[float] = deque()
        self._lock = asyncio.Lock()
        #: Set by a 429: nothing is sent before this (monotonic) time.
        self.blocked_until = 0.0

    async def acquire(self) -> None:
        """Wait for a free slot and take it."""
        async with self._lock:
            while True:
                now = self._clock()
                while self._sent and self._sent[0] <= now - self.window:
                    self._sent.popleft()
                wait = self.blocked_until - now
                if len(self._sent) >= self.limit:
                    wait = max(wait, self._sent[0] + self.window - now)
                if wait <= 0:
                    self._sent.append(now)
                    return
                await asyncio.sleep(min(wait, 1.0))


def rest_client(
    base_url: str,
    *,
    headers: dict[str, str],
    timeout: float | httpx.Timeout,
    transport: httpx.AsyncBaseTransport | None = None,
    event_hooks: dict[str, list[Any]] | None = None,
) -> httpx.AsyncClient:
    """An HTTP client for a broker's API at ``base_url`` (a trailing ``/`` dropped), never following a redirect."""
    return httpx.AsyncClient(
        base_url=base_url.rstrip("/"),
        headers=headers,
        timeout=timeout,
        follow_redirects=False,
        transport=transport,
        event_hooks=event_hooks,
    )


def loads(content: bytes) -> Any:
    """JSON with exact decimals (None for an empty body)."""
    return json.loads(content, parse_float=Decimal) if content else None


def decimal_of(value: Any) -> Decimal | None:
    """A number a broker sent (a string, or a JSON number read as Decimal), or None (absent, unreadable, infinite)."""
    if value is None or value == "":
        return None
    try:
        number = Decimal(str(value))
    except InvalidOperation:
        return None
    return number if number.is_finite() else None


def decimal_text(value: Decimal) -> str:
    """A decimal as a plain string without exponent (REST brokers take numbers as strings)."""
    return f"{value.normalize():f}"


class RestCalls:
    """One REST call with its retries, as a broker's thin client needs it (Alpaca's and OANDA's share it).

    A call ends in one of three ways: the decoded JSON of a 2xx answer; ``BrokerUnavailable`` when the outcome is
    unknown or the broker could not be asked (a timeout, a dropped connection, a 5xx, a 429 that outlasted the
    retries, an answer that is not JSON); or what the broker's :meth:`refused` raises for any other answer (a
    definite refusal: the broker's error class, or ``BrokerUnavailable`` for wrong credentials).

    Retries inside one call: a 429 is retried for every method after :meth:`retry_wait` (the broker refused it
    before doing anything); a 5xx or a transport error only for reads (GET), with a doubling pause from
    ``first_backoff`` capped at ``max_backoff``. A write whose outcome is unknown is never sent again here: the
    adapter looks the order up first. Every attempt takes a slot of ``limiter`` first.
    """

    #: The first pause of the doubling backoff (seconds).
    first_backoff = 0.25

    def __init__(
        self, name: str, http: httpx.AsyncClient, limiter: RateLimiter, *, max_retries: int, max_backoff: float
    ) -> None:
        self.name = name
        self._http = http
        self.limiter = limiter
        self._max_retries = max_retries
        self._max_backoff = max_backoff
        #: 429 answers seen, and retries made (diagnostics and tests).
        self.throttled = 0
        self.retries = 0
        #: When a call last got a 2xx answer (the broker-health page's "last successful call").
        self.last_ok_at: datetime | None = None

    async def call(
        self, method: str, url: str, *, params: dict[str, Any] | None = None, json_body: dict[str, Any] | None = None
    ) -> Any:
        """One call to ``url`` (relative to the client's base), retried as the class docstring says."""
        read = method == "GET"
        attempt = 0
        backoff = self.first_backoff
        while True:
            attempt += 1
            last = attempt > self._max_retries
            await self.limiter.acquire()
            try:
                response = await self._http.request(method, url, params=params, json=json_body)
            except httpx.HTTPError as e:
                if read and not last:
                    backoff = await self._pause(backoff)
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
                wait = self.retry_wait(response, backoff)
                backoff *= 2
                if last:
                    raise BrokerUnavailable(
                        f"{self.name}: {method} {url}: rate limited (429) {attempt} times; not sent, try again later"
                    )
                self.retries += 1
                log.info("%s: 429 on %s %s; waiting %.2fs for the rate limit", self.name, method, url, wait)
                self.limiter.blocked_until = max(self.limiter.blocked_until, time.monotonic() + wait)
                continue
            if status >= 500:
                if read and not last:
                    backoff = await self._pause(backoff)
                    continue
                raise BrokerUnavailable(
                    f"{self.name}: {method} {url}: {status} {response.text[:200]!r}; the outcome is unknown"
                )
            self.refused(method, url, response)

    async def _pause(self, backoff: float) -> float:
        self.retries += 1
        await asyncio.sleep(min(backoff, self._max_backoff))
        return backoff * 2

    def retry_wait(self, response: httpx.Response, backoff: float) -> float:
        """How long to wait after this 429 (``Retry-After`` when the broker sends it, else ``backoff``), capped."""
        retry_after = response.headers.get("Retry-After")
        if retry_after is not None:
            try:
                return min(max(float(retry_after), 0.05), self._max_backoff)
            except ValueError:
                pass
        return min(backoff, self._max_backoff)

    def refused(self, method: str, url: str, response: httpx.Response) -> NoReturn:
        """Raise for a 4xx answer other than 429: the broker's refusal, or ``BrokerUnavailable`` (credentials)."""
        raise NotImplementedError

    @staticmethod
    def error_body(response: httpx.Response) -> dict[str, Any]:
        """The answer's JSON object, or ``{}``."""
        try:
            body = response.json()
        except ValueError:
            return {}
        return body if isinstance(body, dict) else {}
