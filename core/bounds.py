"""Bounds on what Exodus accepts from outside: text, numbers and times the domain can carry.

Every value a client sends is checked against these before anything starts, so nothing downstream (risk math,
Postgres, Temporal payloads, FIX tag values, the paper venue) meets a value it cannot hold:

* **Text** has a maximum length and no control characters: no C0 (U+0000-U+001F, which includes NUL, SOH,
  tab and newline), no DEL or C1 (U+007F-U+009F), and no lone surrogates (U+D800-U+DFFF, which cannot be
  encoded as UTF-8). Postgres ``text`` cannot hold NUL, and SOH is the FIX field separator.
* **Decimals** are finite and have a magnitude and a scale (digits after the point) small enough that every
  figure the risk check forms stays within the default 28-digit ``decimal`` context, so ``quantize`` never
  raises: 10^11 units x 10^8 per unit is a notional of 10^19; times a quote-currency rate (below 100) and
  divided by the smallest leverage a policy can state (10^-4) that is a margin below 10^25, which still
  has room for the 2 decimal places of money (``tests/core/test_bounds.py`` runs the risk check at every
  extreme).
* **Times** are timezone-aware, between 1970 and 2200, and normalized to UTC (so ``9999-12-31T23:00-05:00``,
  which is year 10000 in UTC, is refused instead of stored).

The annotated types (``Qty``, ``Price``, ``PegOffset``, ``Amount``, ``UtcTime``, ``Text``) carry the bounds
into pydantic models; the functions (``text_problem``, ``decimal_problem``, ``json_problems``) check plain values.
This module imports only the standard library and pydantic.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated, Any, Final

from pydantic import AfterValidator, BaseModel, BeforeValidator, Field

__all__ = [
    "AMOUNT_SCALE",
    "MAX_AMOUNT",
    "MAX_INT",
    "MAX_JSON_DEPTH",
    "MAX_JSON_STRING",
    "MAX_OFFSET",
    "MAX_PEG_OFFSET",
    "MAX_POLICY_VALUE",
    "MAX_PRICE",
    "MAX_QTY",
    "MAX_TEXT",
    "MAX_TIME",
    "MIN_TIME",
    "POLICY_SCALE",
    "PRICE_SCALE",
    "QTY_SCALE",
    "Amount",
    "PegOffset",
    "Price",
    "Qty",
    "Text",
    "TrailPercent",
    "policy_problems",
    "UtcTime",
    "check_text",
    "check_time",
    "control_character",
    "decimal_problem",
    "json_problems",
    "scale_of",
    "text_problem",
]

#: Largest order quantity (units), and its most digits after the point.
MAX_QTY: Final = Decimal("1e11")
QTY_SCALE: Final = 10
#: Largest price (quote currency per unit), and its most digits after the point.
MAX_PRICE: Final = Decimal("1e8")
PRICE_SCALE: Final = 10
#: Largest magnitude of a pegged order's offset from its peg (the risk check also keeps it inside the band).
MAX_PEG_OFFSET: Final = MAX_PRICE
#: Largest magnitude of a money amount or a reported figure (the MT5 bridge's account, deals), and its scale.
MAX_AMOUNT: Final = Decimal("1e15")
AMOUNT_SCALE: Final = 10
#: Values of risk policy documents (limits, percentages, leverage): magnitude and scale. The scale keeps a
#: divisor such as leverage at 10^-4 or more, so nothing divided by it outgrows the decimal context.
MAX_POLICY_VALUE: Final = MAX_AMOUNT
POLICY_SCALE: Final = 4
#: Largest magnitude of any JSON integer (a signed 64-bit integer: Postgres ``bigint``, MT5 tickets).
MAX_INT: Final = 2**63 - 1
#: Any JSON number that is not an integer: largest magnitude and scale (the typed fields are tighter).
_MAX_JSON_NUMBER: Final = Decimal(MAX_INT)
_MAX_JSON_SCALE: Final = 18
#: Longest free-text field (reasons, comments) and longest string of any kind anywhere in a body.
MAX_TEXT: Final = 500
MAX_JSON_STRING: Final = 4096
#: Deepest nesting of objects and arrays in a body.
MAX_JSON_DEPTH: Final = 32
#: Largest ``offset`` of a paginated list.
MAX_OFFSET: Final = 10**9
#: The window every timestamp must fall in (UTC).
MIN_TIME: Final = datetime(1970, 1, 1, tzinfo=UTC)
MAX_TIME: Final = datetime(2200, 1, 1, tzinfo=UTC)


# ------------------------------------------------------------------------------------------------ text


def control_character(value: str) -> str | None:
    """The first control character or lone surrogate in ``value`` (None when there is none)."""
    for ch in value:
        code = ord(ch)
        if code < 0x20 or 0x7F <= code <= 0x9F or 0xD800 <= code <= 0xDFFF:
            return ch
    return None


def text_problem(value: str, *, max_length: int = MAX_JSON_STRING) -> str | None:
    """Why ``value`` is not acceptable text (None when it is)."""
    ch = control_character(value)
    if ch is not None:
        return f"contains a control character (U+{ord(ch):04X}); control characters are not allowed"
    if len(value) > max_length:
        return f"at most {max_length} characters (got {len(value)})"
    return None


def check_text(value: str) -> str:
    """Pydantic validator: refuse control characters and lone surrogates."""
    ch = control_character(value)
    if ch is not None:
        raise ValueError(f"contains a control character (U+{ord(ch):04X}); control characters are not allowed")
    return value


#: A ``str`` without control characters; add a length with ``Annotated[Text, StringConstraints(max_length=...)]``.
Text = Annotated[str, AfterValidator(check_text)]


# ------------------------------------------------------------------------------------------------ numbers


def scale_of(value: Decimal) -> int:
    """Digits after the point that ``value`` needs (trailing zeros do not count; 0 for integers)."""
    exponent = value.normalize().as_tuple().exponent
    return -exponent if isinstance(exponent, int) and exponent < 0 else 0


def decimal_problem(value: Decimal, *, max_abs: Decimal, max_scale: int) -> str | None:
    """Why ``value`` is out of bounds (None when it is within them)."""
    if not value.is_finite():
        return "must be a finite number"
    if abs(value) > max_abs:
        return f"magnitude at most {max_abs:E} (got {value:.6E})"
    # Checked after the magnitude, so normalize() never meets a number it cannot represent.
    if scale_of(value) > max_scale:
        return f"at most {max_scale} digits after the decimal point"
    return None


def _scale_validator(max_scale: int) -> Any:
    def check(value: Decimal) -> Decimal:
        if scale_of(value) > max_scale:
            raise ValueError(f"at most {max_scale} digits after the decimal point")
        return value

    return AfterValidator(check)


#: An order quantity: positive, at most ``MAX_QTY``, at most ``QTY_SCALE`` decimal places.
Qty = Annotated[Decimal, Field(gt=0, le=MAX_QTY, allow_inf_nan=False), _scale_validator(QTY_SCALE)]
#: A limit or stop price: positive, at most ``MAX_PRICE``, at most ``PRICE_SCALE`` decimal places.
Price = Annotated[Decimal, Field(gt=0, le=MAX_PRICE, allow_inf_nan=False), _scale_validator(PRICE_SCALE)]
#: A trailing stop's trail in percent of the best price: above 0 and below 100, at most 4 decimal places.
TrailPercent = Annotated[Decimal, Field(gt=0, lt=100, allow_inf_nan=False), _scale_validator(4)]
#: A pegged order's offset: either sign, magnitude at most ``MAX_PEG_OFFSET``.
PegOffset = Annotated[
    Decimal,
    Field(ge=-MAX_PEG_OFFSET, le=MAX_PEG_OFFSET, allow_inf_nan=False),
    _scale_validator(PRICE_SCALE),
]
#: A money amount or limit: either sign, magnitude at most ``MAX_AMOUNT``.
Amount = Annotated[Decimal, Field(ge=-MAX_AMOUNT, le=MAX_AMOUNT, allow_inf_nan=False), _scale_validator(AMOUNT_SCALE)]


def policy_problems(doc: Any, path: tuple[str | int, ...] = ()) -> list[tuple[tuple[str | int, ...], str]]:
    """Every ``Decimal`` inside a model, dict or list beyond the policy bounds: ``[(path, problem)]``.

    For documents whose models carry no bounds of their own (risk policies and their overrides).
    """
    out: list[tuple[tuple[str | int, ...], str]] = []
    stack: list[tuple[tuple[str | int, ...], Any]] = [(path, doc)]
    while stack:
        where, value = stack.pop()
        if isinstance(value, BaseModel):
            stack.extend(((*where, name), getattr(value, name)) for name in type(value).model_fields)
        elif isinstance(value, dict):
            stack.extend(((*where, str(key)), item) for key, item in value.items())
        elif isinstance(value, (list, tuple)):
            stack.extend(((*where, i), item) for i, item in enumerate(value))
        elif isinstance(value, Decimal):
            problem = decimal_problem(value, max_abs=MAX_POLICY_VALUE, max_scale=POLICY_SCALE)
            if problem:
                out.append((where, problem))
    return sorted(out, key=lambda p: str(p[0]))


# ------------------------------------------------------------------------------------------------ times


def check_time(value: datetime) -> datetime:
    """Pydantic validator: an aware time between ``MIN_TIME`` and ``MAX_TIME``, returned in UTC."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError("must include a timezone, e.g. 2026-12-01T16:00:00Z")
    try:
        inside = MIN_TIME <= value < MAX_TIME
        utc = value.astimezone(UTC) if inside else None
    except (OverflowError, ValueError):
        inside, utc = False, None
    if not inside or utc is None:
        raise ValueError(f"must be between {MIN_TIME:%Y-%m-%d} and {MAX_TIME:%Y-%m-%d} (UTC)")
    return utc


def _no_number_times(value: Any) -> Any:
    # pydantic also reads Unix seconds or milliseconds from a number; the API's times are ISO 8601 text.
    if isinstance(value, (int, float, Decimal)) and not isinstance(value, bool):
        raise ValueError("must be an ISO 8601 time with a timezone, e.g. 2026-12-01T16:00:00Z")
    return value


#: A timestamp from a client: ISO 8601 with a timezone, 1970-2200, normalized to UTC.
UtcTime = Annotated[datetime, BeforeValidator(_no_number_times), AfterValidator(check_time)]


# ------------------------------------------------------------------------------------------------ JSON


def _walk(doc: Any) -> Iterator[tuple[tuple[str | int, ...], Any, bool]]:
    # Iterative (a hostile body may nest deeply): yields (path, value, is_key).
    stack: list[tuple[tuple[str | int, ...], Any]] = [((), doc)]
    while stack:
        path, value = stack.pop()
        yield path, value, False
        if isinstance(value, dict):
            for key, item in value.items():
                yield (*path, key), key, True
                stack.append(((*path, key), item))
        elif isinstance(value, list):
            for i, item in enumerate(value):
                stack.append(((*path, i), item))


def json_problems(doc: Any) -> list[tuple[tuple[str | int, ...], str]]:
    """Generic bounds on a decoded JSON document (numbers as ``int``/``Decimal``): ``[(path, problem)]``.

    Every string and key: no control characters, at most ``MAX_JSON_STRING`` characters. Every number: an
    integer within a signed 64-bit range, or a finite decimal within the same magnitude and at most 18 digits
    after the point. Nesting: at most ``MAX_JSON_DEPTH`` levels. The typed fields of each body are tighter.
    """
    problems: list[tuple[tuple[str | int, ...], str]] = []
    for path, value, is_key in _walk(doc):
        problem: str | None = None
        if len(path) > MAX_JSON_DEPTH:
            problems.append(((), f"nested more than {MAX_JSON_DEPTH} levels deep"))
            break
        if isinstance(value, str):
            problem = text_problem(value)
            if problem and is_key:
                problem = f"field name {problem}"
        elif isinstance(value, bool) or value is None:
            continue
        elif isinstance(value, int):
            if abs(value) > MAX_INT:
                problem = f"integer magnitude at most {MAX_INT}"
        elif isinstance(value, (Decimal, float)):
            problem = decimal_problem(Decimal(value), max_abs=_MAX_JSON_NUMBER, max_scale=_MAX_JSON_SCALE)
        if problem:
            problems.append((path, problem))
    return problems
