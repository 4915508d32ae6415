"""The TWS API socket protocol as the local TWS venue speaks it: framing, the handshake, message ids, encoders.

Written from the protocol's description (BROKERS.md §4, the official client's message layouts as ``ib_async``'s
decoder reads them), not from any client's code:

* the client opens with ``API`` and a NUL, then one framed text ``v<min>..<max>[ <options>]``; the server
  answers one frame with two fields, the server version it chose and its connection time, and from then on every
  message both ways is a frame;
* a frame is a 4-byte big-endian length and that many bytes: fields, each ended by a NUL;
* the client's first message is ``startApi`` (71): its client id; the server answers ``nextValidId`` and
  ``managedAccounts``, and the session is up.

The venue serves server versions ``MIN_SERVER_VERSION``..``MAX_SERVER_VERSION``: below 201, where the protocol
carries no protobuf; ``ib_async`` 2.x asks for 157..178. Field layouts that differ within that range are chosen
by the negotiated version (``faProfile`` before 177, ``pendingPriceRevision`` from 178).
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Final

__all__ = [
    "IN",
    "MAX_SERVER_VERSION",
    "MIN_SERVER_VERSION",
    "OUT",
    "Handshake",
    "ProtocolError",
    "frame",
    "ib_time",
    "negotiate",
    "num",
    "read_frame",
    "read_handshake",
]

#: The server versions this venue can speak (the layouts below exist from 170; protobuf starts at 201).
MIN_SERVER_VERSION: Final = 170
MAX_SERVER_VERSION: Final = 178

#: Longest frame accepted (TWS refuses larger ones too).
MAX_FRAME: Final = 1 << 24


class IN:
    """Ids of the client's messages the venue serves."""

    REQ_MKT_DATA: Final = 1
    CANCEL_MKT_DATA: Final = 2
    PLACE_ORDER: Final = 3
    CANCEL_ORDER: Final = 4
    REQ_OPEN_ORDERS: Final = 5
    REQ_ACCOUNT_UPDATES: Final = 6
    REQ_EXECUTIONS: Final = 7
    REQ_IDS: Final = 8
    REQ_CONTRACT_DETAILS: Final = 9
    REQ_AUTO_OPEN_ORDERS: Final = 15
    REQ_ALL_OPEN_ORDERS: Final = 16
    REQ_MANAGED_ACCTS: Final = 17
    REQ_CURRENT_TIME: Final = 49
    REQ_GLOBAL_CANCEL: Final = 58
    REQ_MARKET_DATA_TYPE: Final = 59
    REQ_POSITIONS: Final = 61
    REQ_ACCOUNT_SUMMARY: Final = 62
    CANCEL_ACCOUNT_SUMMARY: Final = 63
    CANCEL_POSITIONS: Final = 64
    START_API: Final = 71
    REQ_ACCOUNT_UPDATES_MULTI: Final = 76
    CANCEL_ACCOUNT_UPDATES_MULTI: Final = 77
    REQ_COMPLETED_ORDERS: Final = 99


class OUT:
    """Ids of the venue's messages."""

    TICK_PRICE: Final = 1
    TICK_SIZE: Final = 2
    ORDER_STATUS: Final = 3
    ERR_MSG: Final = 4
    OPEN_ORDER: Final = 5
    ACCT_VALUE: Final = 6
    PORTFOLIO_VALUE: Final = 7
    ACCT_UPDATE_TIME: Final = 8
    NEXT_VALID_ID: Final = 9
    CONTRACT_DATA: Final = 10
    EXECUTION_DATA: Final = 11
    MANAGED_ACCTS: Final = 15
    CURRENT_TIME: Final = 49
    CONTRACT_DATA_END: Final = 52
    OPEN_ORDER_END: Final = 53
    ACCT_DOWNLOAD_END: Final = 54
    EXECUTION_DATA_END: Final = 55
    TICK_SNAPSHOT_END: Final = 57
    MARKET_DATA_TYPE: Final = 58
    COMMISSION_REPORT: Final = 59
    POSITION_DATA: Final = 61
    POSITION_END: Final = 62
    ACCOUNT_SUMMARY: Final = 63
    ACCOUNT_SUMMARY_END: Final = 64
    ACCOUNT_UPDATE_MULTI: Final = 73
    ACCOUNT_UPDATE_MULTI_END: Final = 74
    COMPLETED_ORDER: Final = 101
    COMPLETED_ORDERS_END: Final = 102


class ProtocolError(Exception):
    """The peer does not speak the protocol (the venue closes the connection)."""


@dataclass(frozen=True)
class Handshake:
    """What the client offered: its version range and connect options."""

    min_version: int
    max_version: int
    options: str


def num(value: Decimal | int | float | None) -> str:
    """A number as the wire carries it ("" for none; no exponent, no trailing zeros)."""
    if value is None:
        return ""
    if isinstance(value, Decimal):
        text = f"{value.normalize():f}"
        return text
    return str(value)


def frame(fields: Iterable[object]) -> bytes:
    """One framed message: each field as text ended by NUL, prefixed by the length."""
    parts: list[str] = []
    for f in fields:
        if f is None:
            parts.append("")
        elif isinstance(f, bool):
            parts.append("1" if f else "0")
        elif isinstance(f, Decimal | int | float):
            parts.append(num(f))
        else:
            parts.append(str(f))
    body = ("\0".join(parts) + "\0").encode()
    return struct.pack(">I", len(body)) + body


async def read_frame(reader: asyncio.StreamReader) -> list[str]:
    """The fields of the next frame (``asyncio.IncompleteReadError`` at the end of the stream)."""
    size = struct.unpack(">I", await reader.readexactly(4))[0]
    if size > MAX_FRAME:
        raise ProtocolError(f"a frame of {size} bytes")
    body = (await reader.readexactly(size)).decode(errors="replace")
    fields = body.split("\0")
    if fields and fields[-1] == "":
        fields.pop()
    return fields


async def read_handshake(reader: asyncio.StreamReader) -> Handshake:
    """The ``API`` + NUL prefix and the client's version range."""
    prefix = await reader.readexactly(4)
    if prefix != b"API\0":
        raise ProtocolError(f"the connection did not start with API\\0 but {prefix!r}")
    size = struct.unpack(">I", await reader.readexactly(4))[0]
    if size > 1024:
        raise ProtocolError(f"a version offer of {size} bytes")
    text = (await reader.readexactly(size)).decode(errors="replace")
    if not text.startswith("v"):
        raise ProtocolError(f"a version offer that is not v<min>..<max>: {text!r}")
    versions, _, options = text[1:].partition(" ")
    low, sep, high = versions.partition("..")
    try:
        lo = int(low)
        hi = int(high) if sep else lo
    except ValueError as e:
        raise ProtocolError(f"a version offer that is not v<min>..<max>: {text!r}") from e
    return Handshake(lo, hi, options.strip())


def negotiate(offer: Handshake) -> int | None:
    """The server version to speak with a client offering ``offer`` (None: no version both speak)."""
    version = min(offer.max_version, MAX_SERVER_VERSION)
    if version < max(offer.min_version, MIN_SERVER_VERSION):
        return None
    return version


def ib_time(at: datetime) -> str:
    """A time as TWS writes it on executions and the handshake: ``YYYYMMDD HH:MM:SS UTC``."""
    return at.strftime("%Y%m%d %H:%M:%S") + " UTC"
