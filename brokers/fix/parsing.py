"""Domain <-> FIX: tag numbers, ``MAP_*`` code tables and value formats (no quickfix import).

Codes are those of QuickFIX's FIX42.xml / FIX44.xml / FIX50SP2.xml. Where versions differ the table says so:
FIX 4.2 reports fills as ExecType 1/2 with ExecTransType (20), and answers status requests with
ExecTransType 3; FIX 4.4 and later report fills as ExecType F and status answers as ExecType I.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Final, TypeVar

from core.domain import OrderSide, OrderStatus, OrderType, PegType, ReportKind, TimeInForce

__all__ = [
    "CANCEL_ID_MARKER",
    "MAP_CXL_REJ_REASON",
    "MAP_EXEC_TYPE",
    "MAP_EXEC_TYPE_42",
    "MAP_EXEC_TYPE_ANY",
    "EXEC_TYPE_CORRECTIONS",
    "EXEC_TYPE_INFORMATIONAL",
    "MAP_ORDER_STATUS",
    "MAP_ORD_REJ_REASON",
    "MAP_ORD_STATUS",
    "MAP_ORD_TYPE",
    "MAP_PEG_EXEC_INST",
    "MAP_SIDE",
    "MAP_SIDE_IN",
    "MAP_TIF",
    "ORD_REJ_DUPLICATE",
    "ORD_REJ_UNKNOWN_ORDER",
    "CXL_REJ_UNKNOWN_ORDER",
    "Tag",
    "fix_decimal",
    "fix_timestamp",
    "is_cancel_id",
    "order_status_of",
    "parse_decimal",
    "parse_timestamp",
    "reverse",
]


K = TypeVar("K")


class Tag:
    """Tag numbers used by Exodus (names as in FIX 4.4)."""

    ACCOUNT = 1
    AVG_PX = 6
    BEGIN_STRING = 8
    CL_ORD_ID = 11
    CUM_QTY = 14
    EXEC_ID = 17
    EXEC_INST = 18
    EXEC_TRANS_TYPE = 20  # FIX 4.2 only
    HANDL_INST = 21
    LAST_PX = 31
    LAST_QTY = 32
    MSG_SEQ_NUM = 34
    MSG_TYPE = 35
    ORDER_ID = 37
    ORDER_QTY = 38
    ORD_STATUS = 39
    ORD_TYPE = 40
    ORIG_CL_ORD_ID = 41
    POSS_DUP_FLAG = 43
    PRICE = 44
    REF_SEQ_NUM = 45
    SENDING_TIME = 52
    SIDE = 54
    SYMBOL = 55
    TEXT = 58
    TIME_IN_FORCE = 59
    TRANSACT_TIME = 60
    STOP_PX = 99
    CXL_REJ_REASON = 102
    ORD_REJ_REASON = 103
    ORIG_SENDING_TIME = 122
    EXPIRE_TIME = 126
    NO_RELATED_SYM = 146
    EXEC_TYPE = 150
    LEAVES_QTY = 151
    PEG_OFFSET_VALUE = 211  # PegDifference in FIX 4.2
    MD_REQ_ID = 262
    SUBSCRIPTION_REQUEST_TYPE = 263
    MARKET_DEPTH = 264
    MD_UPDATE_TYPE = 265
    NO_MD_ENTRY_TYPES = 267
    NO_MD_ENTRIES = 268
    MD_ENTRY_TYPE = 269
    MD_ENTRY_PX = 270
    MD_ENTRY_SIZE = 271
    MD_ENTRY_DATE = 272
    MD_ENTRY_TIME = 273
    MD_UPDATE_ACTION = 279
    MD_REQ_REJ_REASON = 281
    REF_MSG_TYPE = 372
    SESSION_REJECT_REASON = 373
    BUSINESS_REJECT_REF_ID = 379
    BUSINESS_REJECT_REASON = 380
    CXL_REJ_RESPONSE_TO = 434
    USERNAME = 553
    PASSWORD = 554
    MASS_STATUS_REQ_ID = 584  # FIX 4.3+
    MASS_STATUS_REQ_TYPE = 585  # FIX 4.3+
    LAST_UPDATE_TIME = 779  # FIX 4.4+
    ORD_STATUS_REQ_ID = 790  # FIX 4.4+
    TOT_NUM_REPORTS = 911  # FIX 4.4+
    LAST_RPT_REQUESTED = 912  # FIX 4.4+
    MD_PRICE_LEVEL = 1023  # FIX 4.4+


MAP_SIDE: Final[dict[OrderSide, str]] = {OrderSide.BUY: "1", OrderSide.SELL: "2"}
#: Incoming sides: sell short (5) and sell short exempt (6) are sells.
MAP_SIDE_IN: Final[dict[str, OrderSide]] = {
    "1": OrderSide.BUY,
    "2": OrderSide.SELL,
    "5": OrderSide.SELL,
    "6": OrderSide.SELL,
}

MAP_ORD_TYPE: Final[dict[OrderType, str]] = {
    OrderType.MARKET: "1",
    OrderType.LIMIT: "2",
    OrderType.STOP: "3",
    OrderType.STOP_LIMIT: "4",
    OrderType.PEGGED: "P",
}

MAP_TIF: Final[dict[TimeInForce, str]] = {
    TimeInForce.DAY: "0",
    TimeInForce.GTC: "1",
    TimeInForce.IOC: "3",
    TimeInForce.FOK: "4",
    TimeInForce.GTD: "6",
}

#: A pegged order is OrdType P plus one of these ExecInst (18) values, with PegOffsetValue (211).
MAP_PEG_EXEC_INST: Final[dict[PegType, str]] = {PegType.MARKET: "P", PegType.PRIMARY: "R", PegType.MIDPOINT: "M"}

#: ExecType (150) -> report kind, FIX 4.4 and later. Absent codes are informational (pending new/cancel/replace,
#: done for day, restated, order status) or not representable (trade cancel/correct): never delivered.
MAP_EXEC_TYPE: Final[dict[str, ReportKind]] = {
    "0": ReportKind.ACCEPTED,
    "F": ReportKind.FILL,
    "4": ReportKind.CANCELED,
    "5": ReportKind.REPLACED,
    "8": ReportKind.REJECTED,
    "C": ReportKind.EXPIRED,
    "L": ReportKind.TRIGGERED,  # FIX 5.0 "triggered or activated by system"
}
#: FIX 4.2 adds partial fill (1) and fill (2); it has no F.
MAP_EXEC_TYPE_42: Final[dict[str, ReportKind]] = {
    **{k: v for k, v in MAP_EXEC_TYPE.items() if k not in ("F", "L")},
    "1": ReportKind.FILL,
    "2": ReportKind.FILL,
}
#: What the adapter accepts on any session: every version's codes (counterparties mix them; 150=2 on a 4.4
#: session is a fill). Done for day (3) and restated (D) are judged with the order and OrdStatus.
MAP_EXEC_TYPE_ANY: Final[dict[str, ReportKind]] = {**MAP_EXEC_TYPE, **MAP_EXEC_TYPE_42}
#: ExecTypes that say something happened without changing what Exodus tracks: pending new (A), pending
#: cancel (6), pending replace (E), stopped (7: a guaranteed price, the fill follows), suspended (9),
#: calculated (B).
EXEC_TYPE_INFORMATIONAL: Final = frozenset({"A", "6", "E", "7", "9", "B"})
#: Trade bust (H) and correction (G); FIX 4.2 says it with ExecTransType (20) 1 and 2.
EXEC_TYPE_CORRECTIONS: Final = frozenset({"G", "H"})

#: OrdStatus (39) -> order status. 3 (done for day), 5 (replaced, 4.2), 7 (stopped), 9 (suspended), B and D
#: mean "still working": ``order_status_of`` decides by the filled quantity.
MAP_ORD_STATUS: Final[dict[str, OrderStatus]] = {
    "0": OrderStatus.ACCEPTED,
    "1": OrderStatus.PARTIALLY_FILLED,
    "2": OrderStatus.FILLED,
    "4": OrderStatus.CANCELED,
    "6": OrderStatus.PENDING_CANCEL,
    "8": OrderStatus.REJECTED,
    "A": OrderStatus.SUBMITTED,
    "C": OrderStatus.EXPIRED,
    "E": OrderStatus.PENDING_UPDATE,
}
#: Order status -> OrdStatus (39), for the venue.
MAP_ORDER_STATUS: Final[dict[OrderStatus, str]] = {
    OrderStatus.SUBMITTED: "A",
    OrderStatus.ACCEPTED: "0",
    OrderStatus.TRIGGERED: "0",
    OrderStatus.PARTIALLY_FILLED: "1",
    OrderStatus.FILLED: "2",
    OrderStatus.CANCELED: "4",
    OrderStatus.PENDING_CANCEL: "6",
    OrderStatus.REJECTED: "8",
    OrderStatus.EXPIRED: "C",
    OrderStatus.PENDING_UPDATE: "E",
}

ORD_REJ_UNKNOWN_ORDER: Final = "5"
ORD_REJ_DUPLICATE: Final = "6"
CXL_REJ_UNKNOWN_ORDER: Final = "1"

#: The simulated venue's reason prefixes (``sim.matching.RejectReason``) -> OrdRejReason (103), per version.
#: FIX 4.2 knows only 0-8, so what it lacks is 0 (broker option) with the reason in Text (58).
MAP_ORD_REJ_REASON: Final[dict[str, dict[str, str]]] = {
    "UNKNOWN_SYMBOL": {"FIX.4.2": "1", "default": "1"},
    "INCORRECT_QUANTITY": {"FIX.4.2": "0", "default": "13"},
    "INVALID_PRICE": {"FIX.4.2": "0", "default": "99"},
    "DUPLICATE_CLIENT_ORDER_ID": {"FIX.4.2": "6", "default": "6"},
    "UNSUPPORTED_ORDER_CHARACTERISTIC": {"FIX.4.2": "0", "default": "11"},
    "INJECTED_REJECT": {"FIX.4.2": "0", "default": "0"},
    "TOO_LATE": {"FIX.4.2": "4", "default": "4"},
    "UNKNOWN_ORDER": {"FIX.4.2": "5", "default": "5"},
}
#: The same for CxlRejReason (102); FIX 4.2 knows 0-3.
MAP_CXL_REJ_REASON: Final[dict[str, dict[str, str]]] = {
    "TOO_LATE": {"FIX.4.2": "0", "default": "0"},
    "UNKNOWN_ORDER": {"FIX.4.2": "1", "default": "1"},
    "DUPLICATE_CLIENT_ORDER_ID": {"FIX.4.2": "2", "default": "6"},
    "INCORRECT_QUANTITY": {"FIX.4.2": "2", "default": "99"},
    "INVALID_PRICE": {"FIX.4.2": "2", "default": "99"},
}

#: Cancel requests get ClOrdIDs ``{client order id}.C{token}``; ``base_order_id`` still maps them to the order.
CANCEL_ID_MARKER: Final = ".C"


def is_cancel_id(cl_ord_id: str) -> bool:
    """Whether a ClOrdID is one Exodus gave a cancel request."""
    return CANCEL_ID_MARKER in cl_ord_id


def reverse(table: Mapping[K, str]) -> dict[str, K]:
    """Invert a ``MAP_*`` table."""
    return {v: k for k, v in table.items()}


def order_status_of(ord_status: str, *, cum_qty: Decimal, qty: Decimal | None) -> OrderStatus:
    """The order status an OrdStatus (39) stands for; codes meaning "working" are told apart by the fills."""
    status = MAP_ORD_STATUS.get(ord_status)
    if status is not None:
        return status
    if qty is not None and cum_qty >= qty > 0:
        return OrderStatus.FILLED
    return OrderStatus.PARTIALLY_FILLED if cum_qty > 0 else OrderStatus.ACCEPTED


def fix_decimal(value: Decimal) -> str:
    """A Decimal as FIX writes numbers: plain digits, no exponent, no trailing zeros.

    ``ValueError`` for what FIX cannot carry (NaN, infinity).
    """
    if not value.is_finite():
        raise ValueError(f"{value} is not a number FIX can carry")
    text = format(value.normalize(), "f")
    return text


def parse_decimal(text: str | None) -> Decimal | None:
    """A FIX number as Decimal (None when absent or malformed)."""
    if text is None or text == "":
        return None
    try:
        return Decimal(text)
    except InvalidOperation:
        return None


def fix_timestamp(at: datetime) -> str:
    """UTCTimestamp with milliseconds: ``YYYYMMDD-HH:MM:SS.sss``.

    ``ValueError`` for a time that has no UTCTimestamp (its UTC year is outside 1..9999, such as 9999-12-31
    23:00 at UTC-05:00).
    """
    try:
        at = at.astimezone(UTC)
    except (OverflowError, ValueError) as e:
        raise ValueError(f"{at.isoformat()} has no UTC time FIX can write (year out of range)") from e
    return f"{at.year:04d}" + at.strftime("%m%d-%H:%M:%S.") + f"{at.microsecond // 1000:03d}"


def parse_timestamp(text: str | None) -> datetime | None:
    """Parse a UTCTimestamp (seconds, milli-, micro- or nanoseconds); None when absent or malformed."""
    if not text:
        return None
    head, _, frac = text.partition(".")
    try:
        at = datetime.strptime(head, "%Y%m%d-%H:%M:%S").replace(tzinfo=UTC)
    except ValueError:
        return None
    if frac.isdigit():
        at = at.replace(microsecond=int((frac + "000000")[:6]))
    return at
