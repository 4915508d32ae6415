"""Logs: one JSON object per line (or a readable line on a terminal), with the ids of what is being done.

Every line carries ``time``, ``level``, ``logger``, ``message`` and the ids in context: ``request_id``,
``principal``, ``order_id``, ``client_order_id`` (the client's id), ``cl_ord_id`` (the id the broker knows the
order by), ``workflow_id``, ``broker``, ``broker_order_id``, ``exec_id`` (and ``activity``). They come from
``bind(...)`` (a context variable: the API binds the request id and the principal per request,
``core.propagation`` binds the workflow's and activity's ids in the worker), from a log call's ``extra={...}``,
and from the Temporal SDK's own ``temporal_workflow``/``temporal_activity`` extras.

``EXODUS_LOG__FORMAT``: ``auto`` (default: readable on a TTY, JSON otherwise: files, containers, pipes),
``json`` or ``text``. ``python -m core.logs`` turns JSON lines back into readable ones
(``tail -f data/logs/worker.log | .venv/bin/python -m core.logs``); ``make run`` shows its children's lines so.
Secrets never reach a line: every message and value passes ``redact`` (API keys, JWTs,
bearer credentials, FIX passwords, ``password=``/``secret=``/``token=`` pairs, URLs' passwords).
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import sys
from collections.abc import Iterator, Mapping
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any, Literal, TextIO

__all__ = [
    "CONTEXT_FIELDS",
    "JsonFormatter",
    "TextFormatter",
    "bind",
    "bind_now",
    "bound",
    "redact",
    "readable",
    "setup_logging",
]

#: The ids a line may carry, in the order a readable line shows them.
CONTEXT_FIELDS = (
    "request_id",
    "principal",
    "order_id",
    "client_order_id",
    "cl_ord_id",
    "workflow_id",
    "broker",
    "broker_order_id",
    "exec_id",
    "activity",
)

_CONTEXT: ContextVar[Mapping[str, str]] = ContextVar("exodus_log_context", default={})  # noqa: B039  # never mutated

_SECRETS = [
    # Exodus API keys: exo_<key id>_<secret>
    (re.compile(r"\bexo_[A-Za-z0-9]+_[A-Za-z0-9_\-]{8,}"), "exo_***"),
    # JWTs (header.payload.signature, base64url)
    (re.compile(r"\beyJ[A-Za-z0-9_\-]{5,}\.[A-Za-z0-9_\-]{5,}\.[A-Za-z0-9_\-]*"), "<jwt>"),
    (re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=\-]{6,}"), r"\1 ***"),
    # FIX Password (554) and NewPassword (925), any delimiter
    (re.compile(r"\b(554|925)=[^\x01|^ ]*"), r"\1=***"),
    # key=value and "key": "value" pairs whose name says secret
    (
        re.compile(
            r"(?i)((?:password|passwd|secret|token|api[_-]?key|secret[_-]?key|authorization|apca-api-secret-key)"
            r"[\"']?\s*[:=]\s*[\"']?)([^\"'\s,;&}]+)"
        ),
        r"\1***",
    ),
    # passwords in URLs: scheme://user:password@host
    (re.compile(r"(://[^/\s:@]+:)[^@\s/]+@"), r"\1***@"),
]


def redact(text: str) -> str:
    """``text`` with every credential it holds replaced."""
    for pattern, replacement in _SECRETS:
        text = pattern.sub(replacement, text)
    return text


def bound() -> Mapping[str, str]:
    """The ids bound in the current context."""
    return _CONTEXT.get()


@contextlib.contextmanager
def bind(**ids: object) -> Iterator[None]:
    """Add ids to the context of every line logged inside the block (``None`` values are left out)."""
    token = _CONTEXT.set({**_CONTEXT.get(), **{k: str(v) for k, v in ids.items() if v is not None and v != ""}})
    try:
        yield
    finally:
        # A generator holding the block may be closed from another context (finalized by the event loop or the
        # garbage collector): the token is not that context's, and the context it was set in is gone with it.
        with contextlib.suppress(ValueError):
            _CONTEXT.reset(token)


def bind_now(**ids: object) -> None:
    """Add ids to the current context until it ends (a request's task: the API binds the principal so)."""
    _CONTEXT.set({**_CONTEXT.get(), **{k: str(v) for k, v in ids.items() if v is not None and v != ""}})


def _temporal_ids(record: logging.LogRecord) -> dict[str, str]:
    ids: dict[str, str] = {}
    for attr in ("temporal_workflow", "temporal_activity"):
        details = getattr(record, attr, None)
        if isinstance(details, Mapping):
            if details.get("workflow_id"):
                ids["workflow_id"] = str(details["workflow_id"])
            if attr == "temporal_activity" and details.get("activity_type"):
                ids["activity"] = str(details["activity_type"])
    return ids


def _ids(record: logging.LogRecord) -> dict[str, str]:
    ids = _temporal_ids(record)
    ids.update(_CONTEXT.get())
    for name in CONTEXT_FIELDS:
        value = getattr(record, name, None)
        if value is not None and value != "":
            ids[name] = str(value)
    workflow_id = ids.get("workflow_id", "")
    if "order_id" not in ids and workflow_id.startswith("order-"):
        ids["order_id"] = workflow_id.removeprefix("order-")
    return {k: redact(v) for k, v in ids.items()}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, the ids in context, ``exc`` when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        """The record as one line of JSON."""
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": redact(record.getMessage()),
        }
        line.update(_ids(record))
        if record.exc_info:
            line["exc"] = redact(self.formatException(record.exc_info))
        return json.dumps(line, ensure_ascii=False, default=str)


class TextFormatter(logging.Formatter):
    """A readable line: time, level, logger, message, then the ids as ``key=value``."""

    def format(self, record: logging.LogRecord) -> str:
        """The record as a readable line."""
        when = datetime.fromtimestamp(record.created).strftime("%H:%M:%S.%f")[:-3]
        ids = _ids(record)
        tail = " ".join(f"{k}={ids[k]}" for k in CONTEXT_FIELDS if k in ids)
        text = f"{when} {record.levelname:<7} {record.name}: {redact(record.getMessage())}"
        if tail:
            text += f"  [{tail}]"
        if record.exc_info:
            text += "\n" + redact(self.formatException(record.exc_info))
        return text


def setup_logging(
    *, fmt: Literal["auto", "json", "text"] = "auto", level: str = "INFO", stream: TextIO | None = None
) -> logging.Handler:
    """Send the root logger's lines to ``stream`` (stderr) as JSON or readable text; returns the handler."""
    stream = stream or sys.stderr
    if fmt == "auto":
        fmt = "text" if stream.isatty() else "json"
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    return handler


def readable(line: str) -> str:
    """A JSON log line as a readable one (any other line as it is)."""
    try:
        entry = json.loads(line)
    except ValueError:
        return line
    if not isinstance(entry, dict) or "message" not in entry or "level" not in entry:
        return line
    when = str(entry.get("time", ""))[11:23]
    ids = " ".join(f"{k}={entry[k]}" for k in CONTEXT_FIELDS if k in entry)
    text = f"{when} {entry['level']:<7} {entry.get('logger', '')}: {entry['message']}"
    if ids:
        text += f"  [{ids}]"
    if entry.get("exc"):
        text += "\n" + str(entry["exc"])
    return text


if __name__ == "__main__":
    for raw in sys.stdin:
        print(readable(raw.rstrip("\n")), flush=True)
