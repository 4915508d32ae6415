"""The stream's engine in each API process: one reader of the table, fanned out to bounded per-client buffers.

``StreamHub`` (one per app) holds a connection that LISTENs on ``exodus_stream``; a notification (or, failing
one, every ``stream.poll_seconds``) makes it read the rows after the last one it read, once for all its clients,
and offer each row to every subscription that selects it. The table (``store/stream.py``) is the source of
truth and its numbers are in commit order, so a process that reads "after N" misses nothing, whichever process
booked the rows, and any process can serve any client.

A client (``StreamSession``) starts at ``since`` (or at the head: live only). It first catches up from the table
in pages, with its selection in SQL, until it reaches the hub's position; then, with no await in between, it
subscribes, and the hub's next rows come through its buffer. Rows at or below the client's own position are
skipped, so a client resuming here with a number another process served it (one this process has not read yet)
gets no duplicate.

A slow client slows no one: the hub only appends to its buffer (``stream.client_buffer`` events). When that is
full the client is marked as lagging, and its transport stops waiting on the socket, sends a ``lagging`` message
with the position to resume from (best effort) and closes. Heartbeats carry the position too (the last number
the client has been sent everything up to), so a filtered client resumes from there, not from its last event.
A client whose connection takes no message for ``stream.send_timeout_seconds`` is cut off the same way, whether
it is live or still catching up from the table (where no buffer fills: the page waits in the session).

Rows older than ``stream.retention_hours`` are pruned (``prune_forever``, one API process at a time). A client
that asks for a pruned position is refused at connect (410, ``api/routes/stream.py``); one that the pruning
overtakes while it catches up gets a ``reset`` message naming its position and the first one it can resume
from, and is disconnected: never silently moved ahead.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections import deque
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from psycopg.rows import dict_row

from api.schemas import Reason
from core.auth import Scope
from core.domain import OrderEventKind, TimelineKind
from core.metrics import STREAM_LAGGING
from core.settings import StreamSettings
from store import Pool
from store import stream as store_stream
from store.stream import Selection, StreamRow

__all__ = [
    "KINDS",
    "MAX_SEQ",
    "StreamHub",
    "StreamRequest",
    "StreamSession",
    "Subscription",
    "event_message",
    "parse_request",
    "prune_forever",
    "pruned_message",
]

log = logging.getLogger(__name__)

#: Kinds the stream's triggers give rows that are not order events (migration 0021).
_OTHER_KINDS = frozenset(
    {
        "TRADING_STATE",
        "CIRCUIT_BREAKER",
        "BREAK",
        "BREAK_ACKNOWLEDGED",
        "BREAK_RESOLVED",
        "UNMATCHED_REPORT",
        "UNMATCHED_RESOLVED",
    }
)
#: Every kind a client may filter on: every kind of an order's timeline (``EventKind``: the transitions and the
#: entries that leave the status as it is), and the other rows' kinds.
KINDS: frozenset[str] = frozenset(k.value for k in (*OrderEventKind, *TimelineKind)) | _OTHER_KINDS
#: Largest ``since`` (Postgres bigint).
MAX_SEQ = 2**63 - 1

_NAME = re.compile(r"^[A-Za-z0-9._:@/\-]{1,64}$")
_MAX_NAMES = 50


@dataclass(frozen=True)
class StreamRequest:
    """A client's parameters, checked: where to start (None: live only) and what to select."""

    since: int | None
    accounts: frozenset[str] | None
    symbols: frozenset[str] | None
    clients: frozenset[str] | None
    kinds: frozenset[str] | None

    def selection(self, scope: Scope) -> Selection:
        """The rows this request selects inside ``scope``."""
        return Selection(
            scope=scope, accounts=self.accounts, symbols=self.symbols, clients=self.clients, kinds=self.kinds
        )


def _printable(value: str) -> str:
    return value.encode("unicode_escape", "backslashreplace").decode("ascii")[:80]


def _names(field: str, raw: str | None, reasons: list[Reason], *, known: frozenset[str] | None = None) -> Any:
    if raw is None:
        return None
    names = [n.strip() for n in raw.split(",")]
    bad = [n for n in names if not _NAME.match(n)]
    if bad or not names:
        reasons.append(
            Reason(
                code="INVALID_FIELD",
                field=field,
                message=f"{field}: {_printable(bad[0]) if bad else ''!r} is not a name"
                " (1 to 64 of A-Z a-z 0-9 . _ : @ / -, comma-separated)",
            )
        )
        return None
    if len(names) > _MAX_NAMES:
        reasons.append(Reason(code="INVALID_FIELD", field=field, message=f"{field}: at most {_MAX_NAMES} names"))
        return None
    if known is not None:
        unknown = sorted(set(names) - known)
        if unknown:
            reasons.append(
                Reason(
                    code="INVALID_FIELD",
                    field=field,
                    message=f"{field}: unknown kind(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}",
                )
            )
            return None
    return frozenset(names)


def parse_request(params: Mapping[str, str], *, last_event_id: str | None = None) -> StreamRequest | list[Reason]:
    """Check a client's query parameters (``since``, ``account``, ``symbol``, ``client``, ``kinds``).

    ``since`` is a whole number from 0 (everything) to 2^63-1; without it, ``Last-Event-ID`` (the SSE resume
    header) stands in; without either, the client gets live events only. Returns the reasons naming each field
    at fault instead when anything is wrong.
    """
    reasons: list[Reason] = []
    since: int | None = None
    field, raw = ("since", params.get("since")) if "since" in params else ("Last-Event-ID", last_event_id)
    if raw is not None and (raw != "" or field == "since"):
        text = raw.strip()
        if not re.fullmatch(r"[0-9]{1,19}", text) or int(text) > MAX_SEQ:
            reasons.append(
                Reason(
                    code="INVALID_FIELD",
                    field=field,
                    message=f"{field}: {_printable(raw)!r} is not a stream position"
                    f" (a whole number from 0 to {MAX_SEQ})",
                )
            )
        else:
            since = int(text)
    accounts = _names("account", params.get("account"), reasons)
    symbols = _names("symbol", params.get("symbol"), reasons)
    clients = _names("client", params.get("client"), reasons)
    kinds = _names("kinds", params.get("kinds"), reasons, known=KINDS)
    unknown = sorted(set(params) - {"since", "account", "symbol", "client", "kinds"})
    for name in unknown:
        reasons.append(
            Reason(
                code="INVALID_FIELD",
                field=_printable(name),
                message=f"{_printable(name)}: unknown parameter (since, account, symbol, client, kinds)",
            )
        )
    if reasons:
        return reasons
    return StreamRequest(since=since, accounts=accounts, symbols=symbols, clients=clients, kinds=kinds)


def _iso(at: datetime) -> str:
    return at.astimezone(UTC).isoformat().replace("+00:00", "Z")


def event_message(row: StreamRow) -> dict[str, Any]:
    """A row as the client receives it."""
    return {
        "type": "event",
        "seq": row["seq"],
        "bookedAt": _iso(row["booked_at"]),
        "topic": row["topic"],
        "kind": row["kind"],
        "orderId": row["order_id"],
        "clientId": row["client_id"],
        "account": row["account"],
        "symbol": row["symbol"],
        "broker": row["broker"],
        "data": row["data"],
    }


class Subscription:
    """One client's live feed: a bounded buffer the hub appends to, never waits on."""

    def __init__(self, selection: Selection, *, after: int, capacity: int) -> None:
        """Rows after ``after`` that ``selection`` selects; at most ``capacity`` waiting."""
        self.selection = selection
        self.after = after
        self.capacity = capacity
        self.buffer: deque[StreamRow] = deque()
        #: The hub has read everything up to here (what is selected of it is in the buffer or was sent).
        self.scanned = after
        self.lagging = False
        self.ready = asyncio.Event()

    def offer(self, row: StreamRow) -> None:
        """Take a row if selected (and new to this client); a full buffer marks the client as lagging."""
        if self.lagging or row["seq"] <= self.after or not self.selection.matches(row):
            return
        if len(self.buffer) >= self.capacity:
            self.lagging = True
            self.buffer.clear()
            self.ready.set()
            return
        self.buffer.append(row)
        self.ready.set()

    def advance(self, seq: int) -> None:
        """The hub has read up to ``seq``."""
        if seq > self.scanned:
            self.scanned = seq
            self.ready.set()


class StreamHub:
    """One per API process: the LISTEN connection, the reader of the table, the subscriptions."""

    def __init__(self, pool: Pool, database_url: str, settings: StreamSettings) -> None:
        """Read with ``pool``; LISTEN on a connection of its own to ``database_url``."""
        self.pool = pool
        self._url = database_url
        self.settings = settings
        #: The last number this process has read (everything up to it is committed and was offered).
        self.position = 0
        self._subscriptions: set[Subscription] = set()
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._started = asyncio.Event()
        #: Set while the LISTEN connection is up (tests and the health of the stream).
        self.listening = asyncio.Event()

    @property
    def clients(self) -> int:
        """How many subscriptions are live."""
        return len(self._subscriptions)

    async def start(self) -> None:
        """Start at the table's last committed number; run the listener and the reader."""
        async with self.pool.connection() as conn:
            self.position = await store_stream.last_seq(conn)
        self._tasks = [
            asyncio.create_task(self._listen(), name="stream-listen"),
            asyncio.create_task(self._read(), name="stream-read"),
        ]
        self._started.set()

    async def stop(self) -> None:
        """Stop both tasks (subscriptions end with their connections)."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks = []

    def wake(self) -> None:
        """Read the table now (a notification arrived, or a test says so)."""
        self._wake.set()

    def subscribe(self, selection: Selection, *, after: int) -> Subscription:
        """A live feed of the rows after ``after`` (call with no await since checking ``position``)."""
        sub = Subscription(selection, after=after, capacity=self.settings.client_buffer)
        sub.advance(self.position)
        self._subscriptions.add(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        """Stop feeding ``sub``."""
        self._subscriptions.discard(sub)

    async def _listen(self) -> None:
        backoff = 0.2
        while True:
            try:
                conn = await psycopg.AsyncConnection.connect(self._url, autocommit=True, row_factory=dict_row)
                async with conn:
                    await store_stream.listen(conn)
                    self.listening.set()
                    backoff = 0.2
                    self.wake()  # whatever was booked while no one listened
                    async for _ in conn.notifies():
                        self.wake()
            except asyncio.CancelledError:
                raise
            except Exception as e:
                log.warning(
                    "stream listener lost its connection (%s: %s); the hub polls meanwhile", type(e).__name__, e
                )
            finally:
                self.listening.clear()
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 5.0)

    async def _read(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.settings.poll_seconds):
                    await self._wake.wait()
            self._wake.clear()
            try:
                await self._read_new()
            except asyncio.CancelledError:
                raise
            except Exception as e:
                log.warning("stream reader failed (%s: %s); retrying", type(e).__name__, e)
                await asyncio.sleep(0.5)
                self._wake.set()

    async def _read_new(self) -> None:
        page = max(self.settings.page_size, 100)
        while True:
            async with self.pool.connection() as conn:
                rows = await store_stream.read_after(conn, self.position, limit=page)
            for row in rows:
                self.position = row["seq"]
                for sub in list(self._subscriptions):
                    sub.offer(row)
            for sub in list(self._subscriptions):
                sub.advance(self.position)
            if len(rows) < page:
                return


class StreamSession:
    """One client's messages, from ``since`` to live: ``hello``, ``event``s, ``heartbeat``s, ``lagging`` last."""

    def __init__(self, hub: StreamHub, request: StreamRequest, scope: Scope) -> None:
        """Serve ``request`` inside ``scope``."""
        self.hub = hub
        self.request = request
        self.selection = request.selection(scope)
        #: Everything selected up to here has been handed out.
        self.position = hub.position if request.since is None else request.since
        self.sub: Subscription | None = None
        #: Set when the client was cut off for taking no message (``pump``), live or catching up.
        self.cut_off = False
        #: Set when the pruning overtook the client while it caught up (the session ended with ``reset``).
        self.reset = False

    async def messages(self) -> AsyncGenerator[dict[str, Any]]:
        """The client's messages; after ``lagging`` or ``reset`` the session is over."""
        settings = self.hub.settings
        yield {"type": "hello", "seq": self.position, "heartbeatSeconds": settings.heartbeat_seconds}
        try:
            # Catch up from the table until the hub's position, then subscribe without awaiting in between.
            while self.position < self.hub.position:
                upto = self.hub.position
                async with self.hub.pool.connection() as conn:
                    pruned, rows = await store_stream.read_page(
                        conn, self.position, limit=settings.page_size, upto=upto, selection=self.selection
                    )
                if pruned > self.position:
                    self.reset = True
                    yield pruned_message(self.position, pruned)
                    return
                for row in rows:
                    yield event_message(row)
                    self.position = row["seq"]
                if len(rows) < settings.page_size:
                    self.position = max(self.position, upto)
            self.sub = sub = self.hub.subscribe(self.selection, after=self.position)
            loop = asyncio.get_running_loop()
            last_sent = loop.time()
            while True:
                if not sub.buffer and not sub.lagging:
                    # Everything selected up to what the hub has read was handed out.
                    self.position = max(self.position, sub.scanned)
                    remaining = settings.heartbeat_seconds - (loop.time() - last_sent)
                    if remaining <= 0:
                        yield {"type": "heartbeat", "seq": self.position, "at": _iso(datetime.now(UTC))}
                        last_sent = loop.time()
                        continue
                    sub.ready.clear()
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(remaining):
                            await sub.ready.wait()
                    continue
                if sub.lagging:
                    yield self.lagging_message()
                    return
                while sub.buffer and not sub.lagging:
                    row = sub.buffer.popleft()
                    self.position = row["seq"]
                    yield event_message(row)
                    last_sent = loop.time()
        finally:
            if self.sub is not None:
                self.hub.unsubscribe(self.sub)

    def lagging_message(self) -> dict[str, Any]:
        """What a client that fell behind is told before it is disconnected."""
        if self.cut_off:
            why = f"this client took no message for {self.hub.settings.send_timeout_seconds:g} s"
        else:
            why = f"more than {self.hub.settings.client_buffer} events waiting for this client"
        return {
            "type": "lagging",
            "seq": self.position,
            "message": f"{why}: disconnected; reconnect with since={self.position}",
        }

    @property
    def lagging(self) -> bool:
        """Whether the client was cut off: the hub marked it as lagging, or its connection took nothing."""
        return self.cut_off or (self.sub is not None and self.sub.lagging)


def pruned_message(since: int, floor: int) -> dict[str, Any]:
    """What a client is told when the events after ``since`` were pruned (up to ``floor``)."""
    return {
        "type": "reset",
        "since": since,
        "seq": floor,
        "message": f"since: events after {since} up to {floor} were pruned (the stream keeps"
        " EXODUS_STREAM__RETENTION_HOURS); reload what you show from the REST API, then resume with"
        f" since={floor}",
    }


async def prune_forever(pool: Pool, settings: StreamSettings, *, batch: int = 5000) -> None:
    """Prune ``stream_events`` every ``settings.prune_seconds`` (nothing when ``retention_hours`` is 0)."""
    if settings.retention_hours <= 0:
        return
    older_than = timedelta(hours=settings.retention_hours)
    while True:
        try:
            while True:
                async with pool.connection() as conn, conn.transaction():
                    deleted = await store_stream.prune(conn, older_than=older_than, batch=batch)
                if deleted is not None and deleted > 0:
                    log.info("stream: pruned %d events older than %g h", deleted, settings.retention_hours)
                if deleted is None or deleted < batch:
                    break
        except asyncio.CancelledError:
            raise
        except Exception as e:
            log.warning("stream pruning failed (%s: %s); trying again later", type(e).__name__, e)
        await asyncio.sleep(settings.prune_seconds)


async def pump(
    session: StreamSession, send: Callable[[dict[str, Any]], Awaitable[None]], *, lagging_send_timeout: float = 1.0
) -> None:
    """Send the session's messages with ``send``; a send still blocked when the client lags is abandoned.

    A send blocked for ``stream.send_timeout_seconds`` (catching up or live) cuts the client off as lagging.
    Ends after ``lagging`` or ``reset`` (sent within ``lagging_send_timeout`` if the socket takes it) or when
    ``send`` fails.
    """
    async with contextlib.aclosing(session.messages()) as messages:
        await _pump(session, messages, send, lagging_send_timeout)


async def _pump(
    session: StreamSession,
    messages: AsyncIterator[dict[str, Any]],
    send: Callable[[dict[str, Any]], Awaitable[None]],
    lagging_send_timeout: float,
) -> None:
    send_timeout = session.hub.settings.send_timeout_seconds
    async for message in messages:
        if message["type"] in ("lagging", "reset"):
            if message["type"] == "lagging":
                STREAM_LAGGING.inc()
            with contextlib.suppress(Exception):
                async with asyncio.timeout(lagging_send_timeout):
                    await send(message)
            return
        sending = asyncio.ensure_future(send(message))
        # Live, the hub may mark the client as lagging while the send waits; catching up, only the timeout.
        watch = asyncio.ensure_future(_lagging(session)) if session.sub is not None else None
        try:
            done, _ = await asyncio.wait(
                {sending} if watch is None else {sending, watch},
                timeout=send_timeout,
                return_when=asyncio.FIRST_COMPLETED,
            )
        finally:
            if watch is not None:
                watch.cancel()
        if sending not in done:
            if not (session.sub is not None and session.sub.lagging):
                session.cut_off = True
            STREAM_LAGGING.inc()
            sending.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await sending
            with contextlib.suppress(Exception):
                async with asyncio.timeout(lagging_send_timeout):
                    await send(session.lagging_message())
            return
        sending.result()


async def _lagging(session: StreamSession) -> None:
    sub = session.sub
    assert sub is not None
    while not sub.lagging:
        sub.ready.clear()
        await sub.ready.wait()
