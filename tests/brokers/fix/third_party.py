"""A minimal third-party FIX acceptor, written straight against ``quickfix`` (none of Exodus' FIX code).

It plays the kind of counterparty the adapter meets in the wild, in the manner of QuickFIX's own executor
example: a plain, strict QuickFIX acceptor (the package's data dictionary, QuickFIX's default validation)
that

* fills every LIMIT NewOrderSingle at once at its limit price, with the FIX 4.2 way of saying so whatever
  the session's version: ExecType 150=2 ("fill", gone since 4.3), LastShares 32, and on request ExecTransType
  20=0 (not a 4.4 field at all); no ExecType 0 acknowledgement first unless asked for;
* refuses other order types with a session-level Reject (IncorrectTagValue on OrdType 40);
* rests orders for symbols in ``rest_symbols`` (an acknowledgement 150=0, never a fill), and holds back
  the answer to orders for ``silent_symbols`` until ``release()``;
* supports neither OrderStatusRequest (H) nor OrderCancelRequest (F) nor anything else: with
  ``refuse="business"`` it answers them with a BusinessMessageReject (35=j, 380=3 unsupported message type),
  with ``refuse="session"`` its data dictionary lacks them, so QuickFIX refuses them with a session-level
  Reject (35=3, 373=11 invalid MsgType), and with ``refuse="field"`` it reads them as orders, as QuickFIX's
  executor example does, and QuickFIX refuses them for a missing OrdType (35=j, 380=5).
"""

from __future__ import annotations

import itertools
import threading
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

import quickfix as fix  # type: ignore[import-untyped]

from brokers.fix.config import data_dictionary_dir

__all__ = ["MinimalAcceptor"]

_SOH = "\x01"


def _fields(raw: str) -> dict[int, str]:
    out: dict[int, str] = {}
    for part in raw.split(_SOH):
        tag, sep, value = part.partition("=")
        if sep and tag.isdigit():
            out[int(tag)] = value
    return out


@dataclass
class _Seen:
    """What the acceptor received and sent (MsgType and fields), for the tests' assertions."""

    received: list[tuple[str, dict[int, str]]] = field(default_factory=list)
    sent: list[tuple[str, dict[int, str]]] = field(default_factory=list)

    def received_types(self) -> list[str]:
        return [t for t, _ in self.received]


class _App(fix.Application):  # type: ignore[misc]
    def __init__(self, owner: MinimalAcceptor) -> None:
        super().__init__()
        self.owner = owner

    def onCreate(self, sessionID):  # noqa: N802, N803, ANN001, ANN201
        self.owner.session_id = sessionID

    def onLogon(self, sessionID):  # noqa: N802, N803, ANN001, ANN201
        self.owner.logged_on.set()

    def onLogout(self, sessionID):  # noqa: N802, N803, ANN001, ANN201
        self.owner.logged_on.clear()

    def toAdmin(self, message, sessionID):  # noqa: N802, N803, ANN001, ANN201
        pass

    def fromAdmin(self, message, sessionID):  # noqa: N802, N803, ANN001, ANN201
        pass

    def toApp(self, message, sessionID):  # noqa: N802, N803, ANN001, ANN201
        pass

    def fromApp(self, message, sessionID):  # noqa: N802, N803, ANN001, ANN201
        raw = message.toString()
        fields = _fields(raw)
        msg_type = fields.get(35, "")
        self.owner.seen.received.append((msg_type, fields))
        if msg_type != "D":
            if self.owner.refuse == "field":
                # As QuickFIX's executor example does: it reads every message as an order, misses OrdType and
                # QuickFIX answers with a BusinessMessageReject "conditionally required field missing" (380=5).
                raise fix.FieldNotFound(40)
            raise fix.UnsupportedMessageType()
        if fields.get(40) != "2":
            raise fix.IncorrectTagValue(40)
        self.owner._execute(fields, sessionID)


class MinimalAcceptor:
    """A QuickFIX acceptor that fills limit orders at once, 4.2-style, and supports nothing else."""

    def __init__(
        self,
        directory: Path,
        *,
        port: int,
        begin_string: str = "FIX.4.4",
        sender_comp_id: str = "THIRDPARTY",
        target_comp_id: str = "EXODUS",
        refuse: str = "business",
        rest_symbols: tuple[str, ...] = (),
        silent_symbols: tuple[str, ...] = (),
        ack_first: bool = False,
        exec_trans_type: bool = False,
    ) -> None:
        self.directory = directory
        self.port = port
        self.begin_string = begin_string
        self.sender_comp_id = sender_comp_id
        self.target_comp_id = target_comp_id
        self.refuse = refuse
        self.rest_symbols = set(rest_symbols)
        self.silent_symbols = set(silent_symbols)
        self._held: list[tuple[dict[int, str], object]] = []
        self.ack_first = ack_first
        self.exec_trans_type = exec_trans_type
        self.seen = _Seen()
        self.session_id = None
        self.logged_on = threading.Event()
        self._ids = itertools.count(1)
        self._app: _App | None = None
        self._acceptor = None
        self._factories: tuple[object, ...] = ()

    # -- lifecycle ---------------------------------------------------------------------------------------

    def _dictionary(self) -> Path:
        name = {"FIX.4.2": "FIX42.xml", "FIX.4.4": "FIX44.xml"}[self.begin_string]
        source = data_dictionary_dir() / name
        if self.refuse != "session":
            return source
        # A venue whose dictionary has no OrderStatusRequest and no OrderCancelRequest.
        tree = ET.parse(source)
        messages = tree.getroot().find("messages")
        assert messages is not None
        for message in list(messages):
            if message.get("msgtype") in ("H", "F", "G", "V", "AF"):
                messages.remove(message)
        target = self.directory / f"{name}.without-H-F.xml"
        tree.write(target)
        return target

    def start(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        cfg = self.directory / "acceptor.cfg"
        cfg.write_text(
            "\n".join(
                [
                    "[DEFAULT]",
                    "ConnectionType=acceptor",
                    f"SocketAcceptPort={self.port}",
                    "SocketReuseAddress=Y",
                    "AllowedRemoteAddresses=127.0.0.1",
                    "StartTime=00:00:00",
                    "EndTime=00:00:00",
                    "NonStopSession=Y",
                    f"FileStorePath={self.directory / 'store'}",
                    f"FileLogPath={self.directory / 'log'}",
                    "UseDataDictionary=Y",
                    f"DataDictionary={self._dictionary()}",
                    "",
                    "[SESSION]",
                    f"BeginString={self.begin_string}",
                    f"SenderCompID={self.sender_comp_id}",
                    f"TargetCompID={self.target_comp_id}",
                    "",
                ]
            )
        )
        settings = fix.SessionSettings(str(cfg))
        self._app = _App(self)
        store = fix.FileStoreFactory(settings)
        logs = fix.FileLogFactory(settings)
        self._factories = (settings, store, logs)
        self._acceptor = fix.ThreadedSocketAcceptor(self._app, store, settings, logs)
        self._acceptor.start()

    def stop(self) -> None:
        if self._acceptor is None:
            return
        session = fix.Session.lookupSession(self.session_id) if self.session_id is not None else None
        if session is not None and session.isLoggedOn():
            session.logout("acceptor stopping")
            deadline = time.monotonic() + 3
            while session.isLoggedOn() and time.monotonic() < deadline:
                time.sleep(0.05)
            if session.isLoggedOn():
                session.disconnect()
        self._acceptor.stop(True)
        self._acceptor = None
        self._factories = ()
        self._app = None

    # -- orders ------------------------------------------------------------------------------------------

    def release(self) -> None:
        """Execute the orders held back for ``silent_symbols`` (their answers were never sent)."""
        held, self._held = self._held, []
        for order, session_id in held:
            self.silent_symbols.discard(order.get(55, ""))
            self._execute(order, session_id)

    def _execute(self, order: dict[int, str], session_id: object) -> None:
        if order.get(55) in self.silent_symbols:
            self._held.append((order, session_id))
            return
        order_id = f"TP-{next(self._ids)}"
        qty = Decimal(order[38])
        price = Decimal(order[44])
        if self.ack_first or order.get(55) in self.rest_symbols:
            self._send(session_id, order, order_id, exec_type="0", ord_status="0", cum=Decimal(0), last=None)
        if order.get(55) in self.rest_symbols:
            return
        self._send(session_id, order, order_id, exec_type="2", ord_status="2", cum=qty, last=(qty, price))

    def _send(
        self,
        session_id: object,
        order: dict[int, str],
        order_id: str,
        *,
        exec_type: str,
        ord_status: str,
        cum: Decimal,
        last: tuple[Decimal, Decimal] | None,
    ) -> None:
        report = fix.Message()
        header = report.getHeader()
        header.setField(fix.BeginString(self.begin_string))
        header.setField(fix.MsgType(fix.MsgType_ExecutionReport))
        qty = Decimal(order[38])
        values: list[tuple[int, str]] = [
            (37, order_id),
            (11, order[11]),
            (17, f"{order_id}-E{next(self._ids)}"),
            (150, exec_type),
            (39, ord_status),
            (55, order[55]),
            (54, order[54]),
            (38, order[38]),
            (14, str(cum)),
            (151, str(qty - cum)),
            (6, str(last[1]) if last else "0"),
        ]
        if self.exec_trans_type:
            values.append((20, "0"))
        if last is not None:
            values += [(32, str(last[0])), (31, str(last[1]))]
        for tag, value in values:
            report.setField(tag, value)
        self.seen.sent.append(("8", dict(values)))
        fix.Session.sendToTarget(report, session_id)
