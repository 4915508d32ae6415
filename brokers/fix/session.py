"""One QuickFIX session (initiator or acceptor) bridged to asyncio; used by the adapter and the local venue.

QuickFIX runs its own threads and calls the ``Application`` from them. This module keeps the rules that,
when broken, crash or hang the process:

* Every callback catches every exception. The binding turns only the exceptions QuickFIX declares
  (``DoNotSend``, ``RejectLogon``, ``FieldNotFound``, ``IncorrectTagValue``, ``UnsupportedMessageType``, ...)
  into C++ exceptions; any other Python exception makes it call ``Py_Exit(1)``.
* QuickFIX calls ``toApp``, ``toAdmin`` and ``onLogout`` while holding the session lock; those callbacks never
  wait for the event loop. Only ``fromApp``/``fromAdmin`` may (the adapter waits there until a report is
  persisted, so the sequence number does not advance past a message that was not stored).
* A message QuickFIX hands to ``fromApp`` counts as processed (its sequence number is taken) as soon as
  ``fromApp`` returns, and raising one of the exceptions the binding passes on does not help: QuickFIX then
  sends a Reject, and generating it takes the sequence number too. So when the handler fails (the report could
  not be stored) or does not finish in time, ``fromApp`` drops the connection and sets the next expected
  sequence number back by one before it returns: QuickFIX's own increment then leaves it at the failed
  message, and after the reconnect QuickFIX asks the counterparty to resend from there. Nothing is lost.
* Values are written as they are given except for control characters, which become spaces: a value can
  never carry a SOH and with it tags of its own.
* QuickFIX's message log goes through ``MaskingLogFactory``, which masks passwords (553/554/925) in every
  line; with ``persist_messages`` off (the adapter) the store keeps sequence numbers only, no messages.
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
import re
import threading
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import IO, Any

import quickfix as fix  # type: ignore[import-untyped]  # SWIG binding, no stubs

from brokers.fix.config import SessionConfig
from core.errors import BrokerUnavailable, ConfigError
from core.tasks import stop_tasks

__all__ = [
    "FieldValue",
    "FixConnector",
    "FixMessage",
    "MaskingLogFactory",
    "clean_value",
    "map_quickfix_errors",
    "mask",
]

log = logging.getLogger(__name__)

_SOH = "\x01"
_CONTROL = re.compile("[\x00-\x1f\x7f]")
#: Password (554), NewPassword (925); a Username (553) is not a secret.
_SECRET = re.compile("(^|\x01)(554|925)=[^\x01]*")
_MSG_TYPE = re.compile("\x0135=([^\x01]*)\x01")
_SEQ_NUM = re.compile("\x0134=([0-9]+)\x01")


def clean_value(value: str) -> str:
    """A value fit for a tag: every control character (SOH included) becomes a space."""
    return _CONTROL.sub(" ", value)


def mask(text: str) -> str:
    """A FIX message (or a log line holding one) with its passwords replaced by ``********``."""
    return _SECRET.sub(lambda m: f"{m.group(1)}{m.group(2)}=********", text)


#: A field's value: text (None: left out), or the entries of a repeating group (its count tag is the field's).
FieldValue = str | None | Sequence[Sequence[tuple[int, str | None]]]


@dataclass(frozen=True, slots=True)
class FixMessage:
    """A received message as plain data: its type and its fields by tag (header, body and trailer together).

    Repeating groups are flattened (the last instance of a tag wins); Exodus reads no field inside a group.
    """

    msg_type: str
    fields: dict[int, str]
    #: Every field in the order it came, repeating groups included (``fields`` keeps the last of each tag).
    pairs: tuple[tuple[int, str], ...] = ()

    @classmethod
    def parse(cls, raw: str) -> FixMessage:
        """Parse the tag=value text of a message; control characters inside values become ``?``."""
        pairs: list[tuple[int, str]] = []
        for part in raw.split(_SOH):
            tag, sep, value = part.partition("=")
            if sep and tag.isdigit():
                pairs.append((int(tag), _CONTROL.sub("?", value)))
        fields = dict(pairs)
        return cls(msg_type=fields.get(35, ""), fields=fields, pairs=tuple(pairs))

    def groups(self, count_tag: int) -> list[dict[int, str]]:
        """The entries of the repeating group counted by ``count_tag``, each starting at the group's first tag.

        An entry runs to the next entry or to the trailer, so fields that follow the group in the body land
        in its last entry (QuickFIX writes a group where its count tag falls in the body); read only the
        tags that belong to the group.
        """
        entries: list[dict[int, str]] = []
        inside = False
        delimiter = 0
        for tag, value in self.pairs:
            if tag == count_tag:
                inside, entries, delimiter = True, [], 0
                continue
            if not inside:
                continue
            if tag in (10, 93, 89):  # the trailer
                break
            if delimiter == 0:
                delimiter = tag
            if tag == delimiter:
                entries.append({})
            entries[-1][tag] = value
        return entries

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
        """``35=8|11=...`` for logs (passwords masked)."""
        pairs = self.pairs or tuple(self.fields.items())
        return "|".join(f"{k}={'********' if k in (554, 925) else v}" for k, v in pairs if k not in (8, 9, 10))


class _Log(fix.Log):  # type: ignore[misc]
    """A QuickFIX log that masks passwords before QuickFIX's own file log writes a line."""

    def __init__(self, inner: Any, owner: FixConnector | None) -> None:
        super().__init__()
        self._inner = inner
        self._owner = owner

    def close(self) -> None:
        """Let go of the file log (its files close)."""
        self._inner = None
        self._owner = None

    def clear(self) -> None:
        try:
            if self._inner is not None:
                self._inner.clear()
        except Exception:
            log.exception("QuickFIX log: clear failed")

    def backup(self) -> None:
        try:
            if self._inner is not None:
                self._inner.backup()
        except Exception:
            log.exception("QuickFIX log: backup failed")

    def onIncoming(self, text: str) -> None:  # noqa: N802
        try:
            if self._inner is not None:
                self._inner.onIncoming(mask(text))
            if self._owner is not None:
                self._owner._log_incoming(text)
        except Exception:
            log.exception("QuickFIX log: incoming line failed")

    def onOutgoing(self, text: str) -> None:  # noqa: N802
        try:
            if self._inner is not None:
                self._inner.onOutgoing(mask(text))
            if self._owner is not None:
                self._owner._log_outgoing(text)
        except Exception:
            log.exception("QuickFIX log: outgoing line failed")

    def onEvent(self, text: str) -> None:  # noqa: N802
        try:
            if self._inner is not None:
                self._inner.onEvent(mask(text))
        except Exception:
            log.exception("QuickFIX log: event line failed")


class MaskingLogFactory(fix.LogFactory):  # type: ignore[misc]
    """QuickFIX's ``FileLog`` files, written through ``_Log`` (passwords masked).

    Ownership, found by trying (SWIG directors): a log handed to QuickFIX is disowned (``__disown__``), so the
    C++ side holds it and Python never frees it under QuickFIX's feet. QuickFIX never deletes it either (its
    ``destroy`` is ours), so ``destroy`` closes the files and the small Python shell is left to the process.
    """

    def __init__(self, path: str, owner: FixConnector | None = None) -> None:
        super().__init__()
        self._path = path
        self._owner = owner
        self._logs: dict[int, _Log] = {}

    def create(self, *args: Any) -> _Log:
        """A log for the session given (QuickFIX's global log without one)."""
        try:
            inner = fix.FileLog(self._path, *args)
        except Exception:
            log.exception("QuickFIX log: cannot open a file log under %s; not logging", self._path)
            inner = None
        made = _Log(inner, self._owner if args else None)
        made.__disown__()
        self._logs[int(made.this)] = made
        return made

    def destroy(self, made: Any) -> None:
        """Close the log's files (QuickFIX calls this when it is done with the log)."""
        try:
            found = self._logs.pop(int(made.this), None)
            if found is not None:
                found.close()
        except Exception:
            log.exception("QuickFIX log: destroy failed")


OnMessage = Callable[[FixMessage], Awaitable[None]]
OnEvent = Callable[[], Awaitable[None] | None]
LogonCheck = Callable[[FixMessage], str | None]
#: Called with an application message QuickFIX refused at the session level itself (None: no longer known)
#: and QuickFIX's Reject of it.
OnRefused = Callable[[FixMessage | None, FixMessage], Awaitable[None]]


@dataclass
class _Handled:
    """Whether the loop handled a message QuickFIX's thread is waiting on."""

    event: threading.Event = field(default_factory=threading.Event)
    ok: bool = False


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
                # The request's id: ClOrdID, or MassStatusReqID for an OrderMassStatusRequest (35=AF).
                cl_ord_id = message.getField(11) if message.isSetField(11) else ""
                if not cl_ord_id and message.isSetField(584):
                    cl_ord_id = message.getField(584)
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
            elif not self._owner._receive(msg, wait=msg.msg_type not in self._owner.no_wait_types):
                self._owner._not_processed(sessionID, msg)
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
        no_wait_types: Iterable[str] = (),
        on_refused: OnRefused | None = None,
        watch_refused: Iterable[str] = ("8", "9"),
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
                number counts as processed). A handler that raises or does not finish in time leaves the
                message unprocessed: the connection is dropped and the message asked for again after the
                reconnect (see the module docstring).
            suppress_resends: Answer the counterparty's ResendRequest for our application messages with a
                gap fill instead of sending stale orders again.
            logon_fields: Fields added to our Logon (Username/Password).
            logon_check: Acceptor: refuse a Logon by returning a reason (runs on QuickFIX's thread).
            accept_types: Application message types handled; others are refused with a business reject.
            forward_admin: Admin message types also passed to ``on_message`` (3 = session-level Reject).
            no_wait_types: Application message types QuickFIX's thread does not wait for (market data).
            on_refused: Called when QuickFIX itself refused an incoming message of ``watch_refused`` types
                (a session-level Reject it generated), with the message as it arrived.
            watch_refused: The message types ``on_refused`` is about.
        """
        self.config = config
        self.name = name
        self.logon_fields = list(logon_fields)
        self.logon_check = logon_check
        self.accept_types = None if accept_types is None else frozenset(accept_types)
        self.forward_admin = frozenset(forward_admin)
        self.no_wait_types = frozenset(no_wait_types)
        self.suppress_resends = suppress_resends
        self._on_refused = on_refused
        self._watch_refused = frozenset(watch_refused)
        #: Recent incoming application messages by MsgSeqNum, as they arrived (for ``on_refused``).
        self._incoming: OrderedDict[int, str] = OrderedDict()
        #: Messages whose handling failed and that were left for the counterparty to resend.
        self.unprocessed = 0
        self._tasks: set[asyncio.Future[None]] = set()
        self._on_message = on_message
        self._on_logon = on_logon
        self._on_logout = on_logout
        self._wait = wait_for_handler
        self._loop: asyncio.AbstractEventLoop | None = None
        self._inbox: asyncio.Queue[tuple[FixMessage, _Handled | None]] = asyncio.Queue()
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
        try:
            cfg.write_dictionaries()
        except (OSError, ValueError, SyntaxError) as e:  # ElementTree's ParseError is a SyntaxError
            self._release_store()
            raise ConfigError(f"{self.name}: cannot prepare the data dictionary: {e}") from e
        cfg_file.write_text(cfg.render())
        self._executor = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"{self.name}-io")
        self._consumer = asyncio.create_task(self._consume(), name=f"{self.name}-inbox")
        try:
            with map_quickfix_errors(self.name, f"starting {cfg.key}"):
                settings = fix.SessionSettings(str(cfg_file))
                self._app = _Application(self)
                store = fix.FileStoreFactory(settings)
                logs = MaskingLogFactory(str(cfg.log_path), self)
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
            consumer, self._consumer = self._consumer, None
            await stop_tasks([consumer], what=f"{self.name} inbox")
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None
        self._set_logged_on(False)
        self._release_store()

    def _release_store(self) -> None:
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
        """(MsgType, ClOrdID) of an application message we sent with ``seq_num`` (recent ones only).

        The id of an OrderMassStatusRequest (35=AF) is its MassStatusReqID.
        """
        with self._sent_lock:
            return self._sent.get(seq_num)

    # -- actions -----------------------------------------------------------------------------------------

    def build(self, msg_type: str, fields: Iterable[tuple[int, FieldValue]]) -> Any:
        """A QuickFIX message of ``msg_type`` with ``fields`` (None values are left out).

        A value that is a list of entries is a repeating group counted by the field's tag. Control characters
        in values become spaces (``clean_value``), so no value can add tags of its own.
        """
        message = fix.Message()
        header = message.getHeader()
        header.setField(8, self.config.begin_string)
        header.setField(35, msg_type)
        for tag, value in fields:
            if value is None:
                continue
            if isinstance(value, str):
                message.setField(tag, clean_value(value))
                continue
            for entry in value:
                present = [(t, v) for t, v in entry if v is not None]
                if not present:
                    continue
                group = fix.Group(tag, present[0][0])
                for entry_tag, entry_value in present:
                    group.setField(entry_tag, clean_value(entry_value))
                message.addGroup(group)
        return message

    def send_nowait(self, msg_type: str, fields: Iterable[tuple[int, FieldValue]]) -> concurrent.futures.Future[Any]:
        """Queue a message for sending (messages go out in the order they were queued)."""
        message = self.build(msg_type, list(fields))
        executor = self._require_executor()
        session_id = self._require_session()
        return executor.submit(fix.Session.sendToTarget, message, session_id)

    async def send(self, msg_type: str, fields: Iterable[tuple[int, FieldValue]]) -> bool:
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

    def _receive(self, msg: FixMessage, *, wait: bool = True) -> bool:
        """Hand a message to the loop; with waiting, whether its handler succeeded in time."""
        handled = _Handled() if self._wait > 0 and wait else None
        if not self._post(self._inbox.put_nowait, (msg, handled)):
            log.error("%s: event loop gone; message %s not handled", self.name, msg.text())
            return handled is None
        if handled is None:
            return True
        if not handled.event.wait(self._wait):
            log.warning("%s: handling %s took more than %.1fs", self.name, msg.text(), self._wait)
            return False
        return handled.ok

    def _not_processed(self, session_id: Any, msg: FixMessage) -> None:
        """Runs in ``fromApp`` (QuickFIX's thread): leave ``msg`` for the counterparty to send again.

        QuickFIX adds one to the next expected sequence number when ``fromApp`` returns; setting it one back
        first leaves it at this message. The connection is dropped before, so no later message is taken in
        the meantime (QuickFIX refuses messages on a session that is not logged on), and after the reconnect
        the counterparty's higher sequence number makes QuickFIX ask for a resend from this message on.
        """
        session = fix.Session.lookupSession(session_id)
        if session is None:
            log.error("%s: session gone; message %s may be lost", self.name, msg.text())
            return
        expected = int(session.getExpectedTargetNum())
        self.unprocessed += 1
        log.warning(
            "%s: message %d (%s) was not processed; dropping the connection so that the counterparty resends it",
            self.name,
            expected,
            msg.text(),
        )
        session.disconnect()
        if expected > 1:
            session.setNextTargetMsgSeqNum(expected - 1)

    def _log_incoming(self, text: str) -> None:
        # QuickFIX's thread: remember recent application messages, in case QuickFIX refuses one itself.
        if self._on_refused is None:
            return
        msg_type = _MSG_TYPE.search(text)
        seq = _SEQ_NUM.search(text)
        if msg_type is not None and seq is not None and msg_type.group(1) in self._watch_refused:
            self._incoming[int(seq.group(1))] = text
            while len(self._incoming) > 1000:
                self._incoming.popitem(last=False)

    def _log_outgoing(self, text: str) -> None:
        # QuickFIX's thread: a Reject QuickFIX generated for a message of a watched type means it was dropped.
        if self._on_refused is None or ("\x0135=3\x01" not in text and "\x0135=j\x01" not in text):
            return
        reject = FixMessage.parse(text)
        ref = reject.get(45) or ""
        if reject.get(372) not in self._watch_refused or not ref.isdigit():
            return
        raw = self._incoming.get(int(ref))
        original = FixMessage.parse(raw) if raw is not None else None
        if original is not None and original.msg_type != reject.get(372):
            original = None
        self._post(self._refused, original, reject)

    def _refused(self, original: FixMessage | None, reject: FixMessage) -> None:
        if self._on_refused is None:
            return
        task = asyncio.ensure_future(self._on_refused(original, reject))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

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
            msg, handled = await self._inbox.get()
            ok = False
            try:
                await self._on_message(msg)
                ok = True
            except BrokerUnavailable as e:  # expected (storage down): one line, no traceback
                log.warning("%s: handling %s failed: %s", self.name, msg.text(), e)
            except Exception:
                log.exception("%s: handling %s failed", self.name, msg.text())
            finally:
                if handled is not None:
                    handled.ok = ok
                    handled.event.set()
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
