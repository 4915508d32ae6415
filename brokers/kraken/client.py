"""A thin async client of Kraken's spot REST API (httpx): signing, nonces, call counters, error classes.

Signing (Kraken's "spot REST authentication" guide, BROKERS.md §3): the body is form-encoded with ``nonce`` in
it; ``API-Sign`` is ``base64(HMAC-SHA512(base64decode(secret), path + SHA256(nonce + body)))`` over the exact
bytes sent, with ``path`` = ``/0/private/<Method>``. The nonce strictly increases per key, across restarts too
(``NonceSource``); requests of one client are sent one at a time so that they reach Kraken in nonce order.

Kraken answers ``{"error": [...], "result": ...}``, errors as strings and often with HTTP 200, so answers are
classified on the strings, never the status. Every call ends in one of three ways:

* the ``result`` of an answer without errors;
* ``KrakenError`` for a definite refusal (``EOrder:Insufficient funds``, ``EGeneral:Invalid arguments``,
  ``EOrder:Unknown order``...): nothing happened;
* ``BrokerUnavailable`` when the outcome is unknown or Kraken could not be asked: a timeout, a dropped
  connection, an HTTP 5xx (a 502 has been seen while the order **was** executed), ``EService:Unavailable``,
  ``EService:Busy``, ``EGeneral:Internal error``, a throttle that outlasted the retries, a wrong key.

Retries inside one call: a throttle (``EAPI:Rate limit exceeded``, ``EOrder:Rate limit exceeded``,
``EService:Throttled: <ts>``) and ``EAPI:Invalid nonce`` are answered before anything is done, so every method is
retried after a wait (a read's nonce error with a new nonce; a write's is ``NonceRefused``, which the adapter
looks up before anything is sent again); a 5xx, a transport error, ``EService:*`` and
``EGeneral:Internal error`` are retried only for reads. A write whose outcome is unknown is never sent again
here: the adapter looks the order up by ``cl_ord_id`` first. Local call counters (``CallCounter``) keep the
client under Kraken's counters, so throttles stay rare.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Final
from urllib.parse import urlencode

import httpx

from brokers.http import loads, rest_client
from core.errors import BrokerUnavailable
from core.settings import KrakenSettings

__all__ = [
    "READS",
    "TIERS",
    "CallCounter",
    "KrakenError",
    "KrakenRest",
    "NonceRefused",
    "NonceSource",
    "classify",
    "sign",
]

log = logging.getLogger(__name__)

#: Tier -> ((call counter max, decay per second), (trading counter threshold per pair, decay per second)).
TIERS: Final = {
    "starter": ((15.0, 0.33), (60.0, 1.0)),
    "intermediate": ((20.0, 0.5), (125.0, 2.34)),
    "pro": ((20.0, 1.0), (180.0, 3.75)),
}

#: Private methods that only read (retried on a 5xx or a transport error; everything else writes).
READS: Final = frozenset(
    {"Balance", "OpenOrders", "ClosedOrders", "QueryOrders", "OrderAmends", "TradesHistory", "QueryTrades"}
)
#: Cost on the REST call counter (AddOrder, AmendOrder and CancelOrder count on the trading counter instead).
_COST: Final = {"TradesHistory": 2.0, "QueryTrades": 2.0, "Ledgers": 2.0, "QueryLedgers": 2.0}
_TRADING: Final = frozenset({"AddOrder", "AmendOrder", "EditOrder", "CancelOrder"})


def sign(path: str, body: str, nonce: int | str, secret: str) -> str:
    """Kraken's ``API-Sign`` of ``body`` (the exact form-encoded bytes, ``nonce`` included) sent to ``path``."""
    digest = hashlib.sha256((str(nonce) + body).encode()).digest()
    mac = hmac.new(base64.b64decode(secret), path.encode() + digest, hashlib.sha512)
    return base64.b64encode(mac.digest()).decode()


@dataclass
class KrakenError(Exception):
    """A definite refusal: Kraken's error strings (nothing happened)."""

    method: str
    errors: list[str]

    def __str__(self) -> str:
        return f"{self.method}: {', '.join(self.errors)}"

    def has(self, *prefixes: str) -> bool:
        """Whether one of the errors starts with one of ``prefixes``."""
        return any(e.startswith(p) for e in self.errors for p in prefixes)


#: Error classes, by prefix. "throttle" and "nonce": refused before anything happened, retry after a wait;
#: "unknown": the outcome is unknown (retry reads, look writes up); "auth": the key is wrong (unavailable).
_CLASSES: Final = (
    ("EAPI:Rate limit exceeded", "throttle"),
    ("EOrder:Rate limit exceeded", "throttle"),
    ("EService:Throttled", "throttle"),
    ("EAPI:Invalid nonce", "nonce"),
    ("EService:Unavailable", "unknown"),
    ("EService:Busy", "unknown"),
    ("EGeneral:Internal error", "unknown"),
    ("EAPI:Invalid key", "auth"),
    ("EAPI:Invalid signature", "auth"),
    ("EAPI:Bad request", "auth"),
    ("EGeneral:Permission denied", "auth"),
    ("EGeneral:Temporary lockout", "auth"),
)


def classify(errors: list[str]) -> str:
    """``throttle``, ``nonce``, ``unknown``, ``auth`` or ``refused`` (a definite answer) for Kraken's errors."""
    for error in errors:
        for prefix, kind in _CLASSES:
            if error.startswith(prefix):
                return kind
    return "refused"


def _throttled_until(errors: list[str]) -> float | None:
    """The epoch second ``EService:Throttled: <ts>`` names, if any."""
    for error in errors:
        if error.startswith("EService:Throttled"):
            try:
                return float(error.rsplit(":", 1)[1].strip())
            except (IndexError, ValueError):
                return None
    return None


class NonceRefused(BrokerUnavailable):
    """A write answered ``EAPI:Invalid nonce``: unknown until looked up (the adapter asks before any resend)."""


class NonceSource:
    """Strictly increasing nonces (microseconds since the epoch, or the last one plus one), across restarts.

    ``reserve(upto)`` persists a ceiling (the adapter's store): a new process starts above the last ceiling, so a
    clock that went back, or a restart within the same microsecond, never reuses a nonce. Ceilings are reserved a
    block ahead, so the store is written once per ``block`` microseconds of nonces, not per request.
    """

    def __init__(
        self,
        *,
        floor: int = 0,
        reserve: Callable[[int], Awaitable[int]] | None = None,
        block: int = 60_000_000,
        clock: Callable[[], int] = lambda: time.time_ns() // 1000,
    ) -> None:
        """Nonces above ``floor``; ``reserve(n)`` persists n and returns the persisted ceiling (at least n)."""
        self._last = floor
        self._ceiling = floor if reserve is not None else None
        self._reserve = reserve
        self._block = block
        self._clock = clock

    async def next(self) -> int:
        """The next nonce (call under the client's send lock)."""
        nonce = max(self._clock(), self._last + 1)
        if self._ceiling is not None and self._reserve is not None and nonce >= self._ceiling:
            self._ceiling = await self._reserve(nonce + self._block)
            nonce = max(nonce, self._last + 1)
        self._last = nonce
        return nonce

    @property
    def last(self) -> int:
        """The last nonce handed out."""
        return self._last


class CallCounter:
    """A decaying counter like Kraken's: a call adds its cost, the counter decays at ``decay`` per second."""

    def __init__(self, limit: float, decay: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        """At most ``limit``, decaying at ``decay`` per second."""
        self.limit = limit
        self.decay = decay
        self._clock = clock
        self._value = 0.0
        self._at = clock()
        #: Nothing is sent before this (monotonic) time (set by a throttle answer).
        self.blocked_until = 0.0

    def value(self) -> float:
        """The counter now."""
        now = self._clock()
        self._value = max(self._value - (now - self._at) * self.decay, 0.0)
        self._at = now
        return self._value

    def wait_for(self, cost: float) -> float:
        """Seconds to wait before a call of ``cost`` fits (0: now)."""
        wait = self.blocked_until - self._clock()
        over = self.value() + cost - self.limit
        if over > 0 and self.decay > 0:
            wait = max(wait, over / self.decay)
        return max(wait, 0.0)

    def add(self, cost: float) -> None:
        """Count a call (it may go above the limit: a cancel penalty)."""
        self._value = self.value() + cost

    async def take(self, cost: float) -> None:
        """Wait until a call of ``cost`` fits, then count it."""
        while (wait := self.wait_for(cost)) > 0:
            await asyncio.sleep(min(wait, 1.0))
        self.add(cost)


class KrakenRest:
    """Calls to one Kraken REST host (``/0/public/*`` and signed ``/0/private/*``)."""

    def __init__(
        self,
        settings: KrakenSettings,
        *,
        name: str = "kraken",
        nonces: NonceSource | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        event_hooks: dict[str, list[Any]] | None = None,
    ) -> None:
        """A client of ``settings.base_url`` with its keys, timeouts and tier (hooks: tests)."""
        self.name = name
        self._settings = settings
        self._key = settings.api_key.get_secret_value() if settings.api_key else ""
        self._secret = settings.api_secret.get_secret_value() if settings.api_secret else ""
        self._http = rest_client(
            settings.base_url,
            headers={"User-Agent": "exodus-kraken/1"},
            timeout=settings.request_timeout_seconds,
            transport=transport,
            event_hooks=event_hooks,
        )
        self.nonces = nonces or NonceSource()
        (calls, decay), (trading, trading_decay) = TIERS[settings.tier]
        self.calls = CallCounter(settings.call_counter_limit or calls, settings.call_counter_decay or decay)
        self._trading_limit = (trading, trading_decay)
        #: Per pair (altname): the trading counter (AddOrder +1, AmendOrder +1, CancelOrder a penalty by age).
        self.trading: dict[str, CallCounter] = {}
        #: Private requests go one at a time, in nonce order.
        self._send = asyncio.Lock()
        #: Throttle answers seen, nonce errors seen, and retries made (diagnostics and tests).
        self.throttled = 0
        self.nonce_errors = 0
        self.retries = 0
        #: When a call last got an answer without errors: the broker-health page's "last successful call".
        self.last_ok_at: datetime | None = None

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._http.aclose()

    def trading_counter(self, pair: str) -> CallCounter:
        """The local trading counter of ``pair``."""
        counter = self.trading.get(pair)
        if counter is None:
            counter = self.trading[pair] = CallCounter(*self._trading_limit)
        return counter

    async def public(self, method: str, params: dict[str, Any] | None = None) -> Any:
        """``GET /0/public/<method>`` (retried on transport errors, 5xx and EService errors)."""
        return await self._call(method, params or {}, private=False)

    async def private(
        self, method: str, params: dict[str, Any] | None = None, *, pair: str | None = None, trading_cost: float = 1.0
    ) -> Any:
        """``POST /0/private/<method>``, signed; ``pair``: the trading counter a trading call counts on."""
        return await self._call(method, params or {}, private=True, pair=pair, trading_cost=trading_cost)

    async def _call(
        self,
        method: str,
        params: dict[str, Any],
        *,
        private: bool,
        pair: str | None = None,
        trading_cost: float = 1.0,
    ) -> Any:
        s = self._settings
        read = not private or method in READS
        attempt = 0
        backoff = 0.25
        while True:
            attempt += 1
            last = attempt > s.max_retries
            if method in _TRADING:
                if pair is not None:
                    await self.trading_counter(pair).take(trading_cost)
            else:
                await self.calls.take(_COST.get(method, 1.0))
            try:
                response = await (self._post(method, params) if private else self._get(method, params))
            except httpx.HTTPError as e:
                if read and not last:
                    self.retries += 1
                    await asyncio.sleep(min(backoff, s.max_backoff_seconds))
                    backoff *= 2
                    continue
                what = "no answer" if isinstance(e, httpx.TimeoutException) else "the connection failed"
                raise BrokerUnavailable(
                    f"{self.name}: {method}: {what} ({type(e).__name__}: {e}); the outcome is unknown"
                ) from e
            body: Any = None
            try:
                body = loads(response.content) if response.content else None
            except ValueError:
                body = None
            errors = [str(e) for e in body.get("error") or []] if isinstance(body, dict) else []
            if response.status_code >= 500 or (body is None and not errors) or not isinstance(body, dict):
                if read and not last:
                    self.retries += 1
                    await asyncio.sleep(min(backoff, s.max_backoff_seconds))
                    backoff *= 2
                    continue
                raise BrokerUnavailable(
                    f"{self.name}: {method}: HTTP {response.status_code} {response.text[:120]!r}; outcome unknown"
                )
            if not errors:
                if response.status_code >= 400:
                    raise BrokerUnavailable(f"{self.name}: {method}: HTTP {response.status_code} without an error")
                self.last_ok_at = datetime.now(UTC)
                return body.get("result")
            kind = classify(errors)
            if kind == "nonce" and not read:
                self.nonce_errors += 1
                raise NonceRefused(f"{self.name}: {method}: {', '.join(errors)}; look the order up before resending")
            if kind in ("throttle", "nonce"):
                if kind == "throttle":
                    self.throttled += 1
                    until = _throttled_until(errors)
                    wait = (
                        min(max(until - time.time(), 0.05), s.max_backoff_seconds)
                        if until
                        else min(backoff, s.max_backoff_seconds)
                    )
                    counter = self.trading_counter(pair) if (method in _TRADING and pair) else self.calls
                    counter.blocked_until = max(counter.blocked_until, time.monotonic() + wait)
                else:
                    self.nonce_errors += 1
                    wait = 0.0
                backoff *= 2
                if last:
                    raise BrokerUnavailable(
                        f"{self.name}: {method}: {', '.join(errors)} {attempt} times; not done, try again later"
                    )
                self.retries += 1
                log.info("%s: %s answered %s; retrying in %.2fs", self.name, method, errors, wait)
                if wait:
                    await asyncio.sleep(wait)
                continue
            if kind == "unknown":
                if read and not last:
                    self.retries += 1
                    await asyncio.sleep(min(backoff, s.max_backoff_seconds))
                    backoff *= 2
                    continue
                raise BrokerUnavailable(f"{self.name}: {method}: {', '.join(errors)}; the outcome is unknown")
            if kind == "auth":
                log.error("%s: %s refused: %s (check the API key, secret and permissions)", self.name, method, errors)
                raise BrokerUnavailable(f"{self.name}: not authorized ({', '.join(errors)}); check the API key")
            raise KrakenError(method, errors)

    async def _get(self, method: str, params: dict[str, Any]) -> httpx.Response:
        return await self._http.get(f"/0/public/{method}", params=params)

    async def _post(self, method: str, params: dict[str, Any]) -> httpx.Response:
        path = f"/0/private/{method}"
        async with self._send:
            nonce = await self.nonces.next()
            fields = {"nonce": str(nonce), **{k: _text(v) for k, v in params.items() if v is not None}}
            if self._settings.otp is not None:
                fields["otp"] = self._settings.otp.get_secret_value()
            body = urlencode(fields)
            headers = {
                "API-Key": self._key,
                "API-Sign": sign(path, body, nonce, self._secret),
                "Content-Type": "application/x-www-form-urlencoded; charset=utf-8",
            }
            return await self._http.post(path, content=body.encode(), headers=headers)


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Decimal):
        return f"{value.normalize():f}"
    return str(value)
