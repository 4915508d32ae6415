"""One QuickFIX session (initiator or acceptor) bridged to asyncio; used by the adapter and the local venue.

QuickFIX runs its own threads and calls the ``Application`` from them. This module keeps the rules that,
when broken, crash or hang the process:

* Every callback catches every exception. The binding turns only the exceptions QuickFIX declares
  (``DoNotSend``, ``RejectLogon``, ``FieldNotFound``, ``IncorrectTagValue``, ``UnsupportedMessageType``, ...)
  into C++ exceptions; any other Python exception makes it call ``Py_Exit(1)``.
* QuickFIX calls ``toApp``, ``toAdmin`` and ``onLogout`` while holding the session lock; those callbacks never
  wait for the event loop. Only ``fromApp``/``fromAdmin`` may (the adapter waits there until a report is
  persisted, so the sequence number does not advance past a message that was not stored).
* Messages are handed to the loop with ``loop.call_soon_threadsafe`` and processed by one task, in arrival
  order. The loop never calls QuickFIX itself: sends, disconnects and stops go through one worker thread, in
  the order they were asked for.
* The Application, the store and the log factories stay referenced for as long as the connector exists
  (temporaries crash at exit), and the connector is deleted before another one for the same session is made
  (QuickFIX refuses duplicate sessions in one process).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import fcntl
import logging
import threading
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import IO, Any

import quickfix as fix  # type: ignore[import-untyped]  # SWIG binding, no stubs

from brokers.fix.config import SessionConfig
from core.errors import BrokerUnavailable, ConfigError

__all__ = ["FixConnector", "FixMessage", "map_quickfix_errors"]

log = logging.getLogger(__name__)

_SOH = "\x01"


@dataclass(frozen=True, slots=True)
class FixMessage:
    """A received message as plain data: its type and its fields by tag (header, body and trailer together).

    Repeating groups are flattened (the last instance of a tag wins); Exodus reads no field inside a group.
    """

    msg_type: str
    fields: dict[int, str]

    @classmethod
    def parse(cls, raw: str) -> FixMessage:
        """Parse the tag=value text of a message."""
        fields: dict[int, str] = {}
        for part in raw.split(_SOH):
            tag, sep, value = part.partition("=")
            if sep and tag.isdigit():
                fields[int(tag)] = value
        return cls(msg_type=fields.get(35, ""), fields=fields)

    def get(self, tag: int, default: str | None = None) -> str | None:
        """A field's value, or ``default``."""
        return self.fields.get(tag, default)

    def __getitem__(self, tag: int) -> str:
        return self.fields[tag]

    def __contains__(self, tag: object) -> bool:
        return tag in self.fields

    @property
    def seq_num(self) -> int:
        """MsgSeqNum (34)."""
        return int(self.fields.get(34, "0"))

    @property
    def poss_dup(self) -> bool:
        """PossDupFlag (43): a resend."""
        return self.fields.get(43) == "Y"

    def text(self) -> str:
        """``35=8|11=...`` for logs."""
        return "|".join(f"{k}={v}" for k, v in self.fields.items() if k not in (8, 9, 10))


OnMessage = Callable[[FixMessage], Awaitable[None]]
OnEvent = Callable[[], Awaitable[None] | None]
LogonCheck = Callable[[FixMessage], str | None]


class _Application(fix.Application):  # type: ignore[misc]
    """QuickFIX callbacks; each hands over to the connector and swallows every unexpected error."""

    def __init__(self, owner: FixConnector) -> None:
        super().__init__()
        self._owner = owner

    def onCreate(self, sessionID: Any) -> None:  # noqa: N802, N803
        try:
            self._owner._session_id = sessionID
        except Exception:
            log.exception("onCreate failed")

    def onLogon(self, sessionID: Any) -> None:  # noqa: N802, N803
        try:
            self._owner._post(self._owner._logged_on_changed, True)
        except Exception:
            log.exception("onLogon failed")

    def onLogout(self, sessionID: Any) -> None:  # noqa: N802, N803
        try:
            self._owner._post(self._owner._logged_on_changed, False)
        except Exception:
            log.exception("onLogout failed")

    def toAdmin(self, message: Any, sessionID: Any) -> None:  # noqa: N802, N803
        try:
            if message.getHeader().getField(35) == "A":
                for tag, value in self._owner.logon_fields:
                    message.setField(tag, value)
        except Exception:
            log.exception("toAdmin failed")

    def fromAdmin(self, message: Any, sessionID: Any) -> None:  # noqa: N802, N803
        reason: str | None = None
        try:
            msg = FixMessage.parse(message.toString())
            if msg.msg_type == "A" and self._owner.logon_check is not None:
                reason = self._owner.logon_check(msg)
            elif msg.msg_type == "5" and msg.get(58):
                log.info("%s: logout from the counterparty: %s", self._owner.name, msg.get(58))
            if msg.msg_type in self._owner.forward_admin and reason is None:
                self._owner._receive(msg)
        except Exception:
            log.exception("fromAdmin failed")
        if reason is not None:
            raise fix.RejectLogon(reason)

    def toApp(self, message: Any, sessionID: Any) -> None:  # noqa: N802, N803
        suppress = False
        try:
            header = message.getHeader()
            resend = header.isSetField(43) and header.getField(43) == "Y"
            if resend and self._owner.suppress_resends:
                suppress = True
                log.info("%s: not resending %s (gap-filled instead)", self._owner.name, _short(message.toString()))
            else:
                cl_ord_id = message.getField(11) if message.isSetField(11) else ""
                self._owner._note_sent(int(header.getField(34)), header.getField(35), cl_ord_id)
        except Exception:
            log.exception("toApp failed")
        if suppress:
            raise fix.DoNotSend()

    def fromApp(self, message: Any, sessionID: Any) -> None:  # noqa: N802, N803
        unsupported = False
        try:
            msg = FixMessage.parse(message.toString())
            if self._owner.accept_types is not None and msg.msg_type not in self._owner.accept_types:
                unsupported = True
            else:
                self._owner._receive(msg)
        except Exception:
            log.exception("fromApp failed")
        if unsupported:
            raise fix.UnsupportedMessageType()


def _short(raw: str) -> str:
    return raw.replace(_SOH, "|")[:200]


@contextlib.contextmanager
def map_quickfix_errors(name: str, what: str) -> Iterator[None]:
    """The one boundary where QuickFIX exceptions become ``core.errors``.

    Configuration problems are ``ConfigError`` (fail fast); anything else QuickFIX raises while running a
    session (socket errors, a session that is gone) is ``BrokerUnavailable``: the outcome is unknown.
    """
    try:
        yield
    except fix.ConfigError as e:
        raise ConfigError(f"{name}: {what} failed: QuickFIX configuration error, was {e}") from e
    except fix.FIXException as e:
        raise BrokerUnavailable(f"{name}: {what} failed, was {type(e).__name__}: {e}") from e


class FixConnector:
    """One FIX session run by QuickFIX (a ``SocketInitiator`` or a ``SocketAcceptor``), seen from asyncio."""

    def __init__(
        self,
        config: SessionConfig,
        *,
        on_message: OnMessage,
        on_logon: OnEvent | None = None,
        on_logout: OnEvent | None = None,
        name: str = "fix",
        wait_for_handler: float = 0.0,
        suppress_resends: bool = False,
        logon_fields: Iterable[tuple[int, str]] = (),
        logon_check: LogonCheck | None = None,
        accept_types: Iterable[str] | None = None,
        forward_admin: Iterable[str] = ("3",),
    ) -> None:
        """Prepare the session; ``start()`` connects (initiator) or listens (acceptor).

        Args:
            config: The session's configuration.
            on_message: Called on the loop with every application message (and the admin types in
                ``forward_admin``), one at a time, in arrival order.
            on_logon: Called on the loop after each logon.
            on_logout: Called on the loop after each logout or disconnect.
            name: For logs.
            wait_for_handler: When positive, QuickFIX's thread waits up to this many seconds for ``on_message``
                to finish before it takes the next message (so the message is stored before its sequence
                number counts as processed).
            suppress_resends: Answer the counterparty's ResendRequest for our application messages with a
                gap fill instead of sending stale orders again.
            logon_fields: Fields added to our Logon (Username/Password).
            logon_check: Acceptor: refuse a Logon by returning a reason (runs on QuickFIX's thread).
            accept_types: Application message types handled; others are refused with a business reject.
            forward_admin: Admin message types also passed to ``on_message`` (3 = session-level Reject).
        """
        self.config = config
        self.name = name
        self.logon_fields = list(logon_fields)
        self.logon_check = logon_check
        self.accept_types = None if accept_types is None else frozenset(accept_types)
        self.forward_admin = frozenset(forward_admin)
        self.suppress_resends = suppress_resends
        self._on_message = on_message
        self._on_logon = on_logon
        self._on_logout = on_logout
        self._wait = wait_for_handler
        self._loop: asyncio.AbstractEventLoop | None = None
        self._inbox: asyncio.Queue[tuple[FixMessage, threading.Event | None]] = asyncio.Queue()
        self._consumer: asyncio.Task[None] | None = None
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        self._session_id: Any = None
        self._connector: Any = None
        self._app: _Application | None = None
        self._factories: tuple[Any, ...] = ()
        self._lock_file: IO[str] | None = None
        self._logged_on = False
        self._logon_event = asyncio.Event()
        self._logout_event = asyncio.Event()
        self._logout_event.set()
        self._sent: OrderedDict[int, tuple[str, str]] = OrderedDict()
        self._sent_lock = threading.Lock()
        self.logons = 0

    # -- lifecycle ---------------------------------------------------------------------------------------

    async def start(self) -> None:
        """Lock the session's store, create the QuickFIX connector and start it."""
        self._loop = asyncio.get_running_loop()
        cfg = self.config
        for path in (cfg.directory, cfg.store_path, cfg.log_path):
            path.mkdir(parents=True, exist_ok=True)
        self._lock_store()
        cfg_file = cfg.directory / f"{cfg.file_stem}.{cfg.connection_type}.cfg"
        cfg_file.write_text(cfg.render())
        self._executor = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"{self.name}-io")
        self._consumer = asyncio.create_task(self._consume(), name=f"{self.name}-inbox")
        try:
            with map_quickfix_errors(self.name, f"starting {cfg.key}"):
                settings = fix.SessionSettings(str(cfg_file))
                self._app = _Application(self)
                store = fix.FileStoreFactory(settings)
                logs = fix.FileLogFactory(settings)
                self._factories = (settings, store, logs)
                # SocketAcceptor.stop() closes its server socket from the calling thread while the acceptor's
                # own thread may be deleting it (a segfault seen in tests); the threaded acceptor's stop is
                # guarded by a mutex.
                kind = fix.ThreadedSocketAcceptor if cfg.connection_type == "acceptor" else fix.SocketInitiator
                self._connector = kind(self._app, store, settings, logs)
            await self._call(self._connector.start, "start")
        except (BrokerUnavailable, ConfigError) as e:
            await self._teardown()
            # A port in use or an unreadable store is a start-up problem, not a transient one.
            raise ConfigError(f"{self.name}: QuickFIX could not start the session {cfg.key}: {e}") from e
        log.info(
            "%s: %s %s started (port %d, store %s)", self.name, cfg.connection_type, cfg.key, cfg.port, cfg.store_path
        )

    async def stop(self) -> None:
        """Log out, stop QuickFIX, release the store.

        QuickFIX's thread sends the Logout at its next timer tick (within a second) and then waits (up to 5 s)
        for the counterparty's answer before it ends; ``stop(force=True)`` only skips QuickFIX's own
        one-second polling for that answer.
        """
        if self._connector is None:
            return
        connector, session_id = self._connector, self._session_id
        acceptor = self.config.connection_type == "acceptor"
        if acceptor and self._logged_on:
            # The threaded acceptor's stop() spins while a session is logged on: log out and wait for it first.
            await self.logout("session stopped")
            with contextlib.suppress(TimeoutError):
                await self.wait_logged_out(2.5)

        def go() -> None:
            session = fix.Session.lookupSession(session_id) if session_id is not None else None
            if session is not None and session.isLoggedOn():
                if acceptor:
                    session.disconnect()
                else:
                    session.logout("session stopped")
            connector.stop(True)

        await self._call(go, "stop")
        await self._teardown()
        log.info("%s: %s stopped", self.name, self.config.key)

    async def _teardown(self) -> None:
        # Delete the connector first (its sessions unregister), then what it referenced.
        self._connector = None
        self._factories = ()
        self._app = None
        if self._consumer is not None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(5):
                    await self._inbox.join()
            self._consumer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._consumer
            self._consumer = None
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None
        self._set_logged_on(False)
        if self._lock_file is not None:
            self._lock_file.close()
            self._lock_file = None

    def _lock_store(self) -> None:
        path = self.config.store_path / f"{self.config.file_stem}.lock"
        handle = path.open("w")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            handle.close()
            raise ConfigError(
                f"{self.name}: the FIX session {self.config.key} is already run by another process "
                f"(its store {self.config.store_path} is locked); only one process may own a session"
            ) from e
        self._lock_file = handle

    # -- state -------------------------------------------------------------------------------------------

    @property
    def logged_on(self) -> bool:
        """Whether the session is logged on (as last reported by QuickFIX)."""
        return self._logged_on

    @property
    def running(self) -> bool:
        """Whether the connector runs."""
        return self._connector is not None

    async def wait_logged_on(self, timeout: float) -> None:
        """Wait until the session is logged on; ``TimeoutError`` after ``timeout`` seconds."""
        async with asyncio.timeout(timeout):
            await self._logon_event.wait()

    async def wait_logged_out(self, timeout: float) -> None:
        """Wait until the session is logged out; ``TimeoutError`` after ``timeout`` seconds."""
        async with asyncio.timeout(timeout):
            await self._logout_event.wait()

    async def sequence_numbers(self) -> tuple[int, int]:
        """(next sequence number we send, next one we expect to receive), from the message store."""

        def read() -> tuple[int, int]:
            session = fix.Session.lookupSession(self._require_session())
            if session is None:
                raise BrokerUnavailable(f"{self.name}: no QuickFIX session {self.config.key}")
            return int(session.getExpectedSenderNum()), int(session.getExpectedTargetNum())

        numbers: tuple[int, int] = await self._call(read, "reading sequence numbers")
        return numbers

    def sent_message(self, seq_num: int) -> tuple[str, str] | None:
        """(MsgType, ClOrdID) of an application message we sent with ``seq_num`` (recent ones only)."""
        with self._sent_lock:
            return self._sent.get(seq_num)

    # -- actions -----------------------------------------------------------------------------------------

    def build(self, msg_type: str, fields: Iterable[tuple[int, str | None]]) -> Any:
        """A QuickFIX message of ``msg_type`` with ``fields`` (None values are left out), in the given order."""
        message = fix.Message()
        header = message.getHeader()
        header.setField(8, self.config.begin_string)
        header.setField(35, msg_type)
        for tag, value in fields:
            if value is not None:
                message.setField(tag, value)
        return message

    def send_nowait(self, msg_type: str, fields: Iterable[tuple[int, str | None]]) -> concurrent.futures.Future[Any]:
        """Queue a message for sending (messages go out in the order they were queued)."""
        message = self.build(msg_type, list(fields))
        executor = self._require_executor()
        session_id = self._require_session()
        return executor.submit(fix.Session.sendToTarget, message, session_id)

    async def send(self, msg_type: str, fields: Iterable[tuple[int, str | None]]) -> bool:
        """Send a message; False when QuickFIX refused to send it.

        While the session is logged out QuickFIX still stores the message under the next sequence number (it
        is offered again when the counterparty asks for a resend); callers that must not queue orders check
        ``logged_on`` first.
        """
        future = self.send_nowait(msg_type, fields)
        with map_quickfix_errors(self.name, f"sending {msg_type}"):
            return bool(await asyncio.wrap_future(future))

    async def logout(self, reason: str = "") -> None:
        """Send a Logout (the counterparty answers and the connection closes)."""

        def go() -> None:
            session = fix.Session.lookupSession(self._require_session())
            if session is not None:
                session.logout(reason)

        await self._call(go, "logout")

    async def disconnect(self) -> None:
        """Drop the connection without a Logout (a network failure, for tests and fault injection)."""

        def go() -> None:
            session = fix.Session.lookupSession(self._require_session())
            if session is not None:
                session.disconnect()

        await self._call(go, "disconnect")

    # -- QuickFIX thread -> loop -------------------------------------------------------------------------

    def _post(self, callback: Callable[..., object], *args: object) -> bool:
        loop = self._loop
        if loop is None or loop.is_closed():
            return False
        try:
            loop.call_soon_threadsafe(callback, *args)
        except RuntimeError:  # the loop closed meanwhile
            return False
        return True

    def _receive(self, msg: FixMessage) -> None:
        done = threading.Event() if self._wait > 0 else None
        if not self._post(self._inbox.put_nowait, (msg, done)):
            log.error("%s: event loop gone; message %s not handled", self.name, msg.text())
            return
        if done is not None and not done.wait(self._wait):
            log.warning(
                "%s: handling %s took more than %.1fs; taking the next message", self.name, msg.text(), self._wait
            )

    def _note_sent(self, seq_num: int, msg_type: str, cl_ord_id: str) -> None:
        with self._sent_lock:
            self._sent[seq_num] = (msg_type, cl_ord_id)
            while len(self._sent) > 10_000:
                self._sent.popitem(last=False)

    def _logged_on_changed(self, value: bool) -> None:
        if value == self._logged_on:
            return
        self._set_logged_on(value)
        if value:
            self.logons += 1
        log.info("%s: %s %s", self.name, self.config.key, "logged on" if value else "logged out")
        callback = self._on_logon if value else self._on_logout
        if callback is not None:
            result = callback()
            if result is not None:
                asyncio.ensure_future(result)

    def _set_logged_on(self, value: bool) -> None:
        self._logged_on = value
        if value:
            self._logout_event.clear()
            self._logon_event.set()
        else:
            self._logon_event.clear()
            self._logout_event.set()

    async def _consume(self) -> None:
        while True:
            msg, done = await self._inbox.get()
            try:
                await self._on_message(msg)
            except Exception:
                log.exception("%s: handling %s failed", self.name, msg.text())
            finally:
                if done is not None:
                    done.set()
                self._inbox.task_done()

    # -- helpers -----------------------------------------------------------------------------------------

    def _require_session(self) -> Any:
        if self._session_id is None:
            raise BrokerUnavailable(f"{self.name}: the FIX session is not running")
        return self._session_id

    def _require_executor(self) -> concurrent.futures.ThreadPoolExecutor:
        if self._executor is None:
            raise BrokerUnavailable(f"{self.name}: the FIX session is not running")
        return self._executor

    async def _call(self, fn: Callable[[], Any], what: str) -> Any:
        future = self._require_executor().submit(fn)
        with map_quickfix_errors(self.name, what):
            return await asyncio.wrap_future(future)
