"""The audit log's chain: each entry hashed with the previous entry's hash; its checkpoints; its verifier.

``hash = sha256(prev_hash | at | actor | action | subject | canonical JSON of detail)``. Appends take a
transaction-level advisory lock so the chain has exactly one successor per row; ``store.audit.verify_chain``
recomputes every hash with ``digest``, so an edited or deleted row is detected. An append is one call of the
SQL function ``audit_append()`` (migration 0011), which takes the lock, reads the previous hash and hashes in
Postgres; ``audit_entry`` prepares its arguments. The SQL is in ``store/audit.py``.

The database refuses UPDATE, DELETE and TRUNCATE of the log, and the application's role cannot disable that
(migration 0022). What the chain cannot show is the newest rows deleted by someone who can (an owner): the rows
left still chain. **Checkpoints** catch that: the chain's head (its id and hash) and row count, at a time, signed
with ``audit.checkpoint_key`` (HMAC-SHA256) and written outside the database (a JSON line in
``audit.checkpoint_file`` and a log line). ``verify_trail`` recomputes the chain and checks every checkpoint
against it: a checkpoint's row must still be there, with the same hash and the same number of rows up to it.

``python -m core.audit verify`` runs it (exit status 1 on any break), ``checkpoint`` writes one, ``export``
streams orders, fills, risk decisions, operator actions or audit rows of a period as CSV or JSON lines
(``core/export.py``), and ``order-history <id>`` tells one order's life from Postgres alone.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypedDict

from core.domain import utcnow

if TYPE_CHECKING:
    from store import Conn

__all__ = [
    "GENESIS_HASH",
    "AuditEntry",
    "Checkpoint",
    "TrailReport",
    "append_checkpoint",
    "audit_entry",
    "digest",
    "read_checkpoints",
    "sign_checkpoint",
    "take_checkpoint",
    "verify_trail",
]

log = logging.getLogger(__name__)

GENESIS_HASH = "0" * 64


class AuditEntry(TypedDict):
    """The arguments of ``audit_append()`` for one entry (``rest``: what the hash covers after ``prev_hash``)."""

    at: datetime
    actor: str
    action: str
    subject: str
    detail: dict[str, Any]
    rest: str


def _canonical(detail: dict[str, Any]) -> str:
    return json.dumps(detail, sort_keys=True, separators=(",", ":"), default=str)


def digest(prev_hash: str, at: datetime, actor: str, action: str, subject: str, detail: dict[str, Any]) -> str:
    """The hash of one entry chained to ``prev_hash``."""
    text = "|".join([prev_hash, at.astimezone(UTC).isoformat(), actor, action, subject, _canonical(detail)])
    return hashlib.sha256(text.encode()).hexdigest()


def audit_entry(
    *, actor: str, action: str, subject: str = "", detail: dict[str, Any] | None = None, at: datetime | None = None
) -> AuditEntry:
    """The arguments of ``audit_append()`` (the SQL function that appends to the chain) for one entry.

    ``rest`` is everything the hash covers after the previous hash; Postgres prepends the chain's head.
    """
    at = at or utcnow()
    plain: dict[str, Any] = json.loads(json.dumps(detail or {}, default=str))
    rest = "|".join([at.astimezone(UTC).isoformat(), actor, action, subject, _canonical(plain)])
    return {"at": at, "actor": actor, "action": action, "subject": subject, "detail": plain, "rest": rest}


# ------------------------------------------------------------------------------------------------ checkpoints


class Checkpoint(TypedDict):
    """The chain's head at a time, kept outside the database: ``sig`` signs every other field."""

    at: str
    last_id: int
    head: str
    count: int
    sig: str | None


def _signed_text(cp: Checkpoint) -> bytes:
    body = {"at": cp["at"], "last_id": cp["last_id"], "head": cp["head"], "count": cp["count"]}
    return json.dumps(body, sort_keys=True, separators=(",", ":")).encode()


def sign_checkpoint(cp: Checkpoint, key: str | None) -> Checkpoint:
    """``cp`` with its signature (none without a key)."""
    sig = hmac.new(key.encode(), _signed_text(cp), hashlib.sha256).hexdigest() if key else None
    return {**cp, "sig": sig}


def append_checkpoint(path: Path, cp: Checkpoint) -> None:
    """Append one checkpoint as a JSON line (flushed to disk) and log it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    line = json.dumps(cp, sort_keys=True, separators=(",", ":")) + "\n"
    with path.open("a", encoding="utf-8") as f:
        f.write(line)
        f.flush()
        os.fsync(f.fileno())
    log.info(
        "audit checkpoint: row %d, %d rows, head %s, signed %s",
        cp["last_id"],
        cp["count"],
        cp["head"],
        "yes" if cp["sig"] else "no",
        extra={"audit_checkpoint": cp},
    )


def read_checkpoints(path: Path) -> list[Checkpoint]:
    """The checkpoints of a file (none if it does not exist); a line that is not one is a ``ValueError``."""
    if not path.exists():
        return []
    found: list[Checkpoint] = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            raw = json.loads(line)
            found.append(
                {
                    "at": str(raw["at"]),
                    "last_id": int(raw["last_id"]),
                    "head": str(raw["head"]),
                    "count": int(raw["count"]),
                    "sig": None if raw.get("sig") is None else str(raw["sig"]),
                }
            )
        except (ValueError, KeyError, TypeError) as e:
            raise ValueError(f"{path}:{number}: not a checkpoint ({e})") from e
    return found


async def take_checkpoint(conn: Conn, path: Path, key: str | None) -> Checkpoint:
    """Read the chain's head, sign it and append it to ``path`` (and the log)."""
    from store.audit import chain_head  # store imports this module

    head = await chain_head(conn)
    unsigned: Checkpoint = {
        "at": utcnow().isoformat(),
        "last_id": head["last_id"],
        "head": head["head"],
        "count": head["count"],
        "sig": None,
    }
    cp = sign_checkpoint(unsigned, key)
    append_checkpoint(path, cp)
    return cp


# ------------------------------------------------------------------------------------------------ verification


@dataclass
class TrailReport:
    """What ``verify_trail`` found: ``ok`` only if the chain and every checkpoint hold."""

    rows: int = 0
    last_id: int = 0
    head: str = GENESIS_HASH
    checkpoints: int = 0
    signed: int = 0
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Whether nothing is broken."""
        return not self.problems

    def as_dict(self) -> dict[str, Any]:
        """The report as JSON (the API's answer, the command's ``--json``)."""
        return {
            "ok": self.ok,
            "rows": self.rows,
            "lastId": self.last_id,
            "head": self.head,
            "checkpoints": self.checkpoints,
            "signedCheckpoints": self.signed,
            "problems": self.problems,
            "warnings": self.warnings,
        }


async def verify_trail(conn: Conn, checkpoints: Iterable[Checkpoint], key: str | None) -> TrailReport:
    """Recompute the whole chain (a page at a time) and check every checkpoint against it.

    A problem: a row whose hash or link is wrong (edited, inserted or deleted in the middle), a checkpoint whose
    row is gone or differs (the newest rows deleted, or the chain rewritten), a checkpoint whose count differs
    (rows deleted before its row), a checkpoint whose signature is wrong (forged) or missing while a key is
    configured. Without a key, signatures cannot be checked: a warning.
    """
    from store.audit import chain_rows  # store imports this module

    report = TrailReport()
    cps = list(checkpoints)
    report.checkpoints = len(cps)
    wanted = {cp["last_id"] for cp in cps}
    seen: dict[int, tuple[str, int]] = {0: (GENESIS_HASH, 0)}
    prev = GENESIS_HASH
    last = 0
    broken = False
    while not broken and (page := await chain_rows(conn, after_id=last)):
        for row in page:
            if row["prev_hash"] != prev:
                report.problems.append(
                    f"row {row['id']}: its previous hash is not row {last or 'genesis'}'s: "
                    "a row before it was deleted, or it was inserted"
                )
                broken = True
                break
            if row["hash"] != digest(
                row["prev_hash"], row["at"], row["actor"], row["action"], row["subject"], row["detail"]
            ):
                report.problems.append(f"row {row['id']}: its content does not match its hash: it was edited")
                broken = True
                break
            prev = row["hash"]
            last = row["id"]
            report.rows += 1
            if last in wanted:
                seen[last] = (prev, report.rows)
    report.last_id, report.head = last, prev
    if key is None and cps:
        report.warnings.append("no audit.checkpoint_key is configured: the checkpoints' signatures were not checked")
    for cp in cps:
        what = f"checkpoint of {cp['at']} (row {cp['last_id']}, {cp['count']} rows)"
        if cp["sig"]:
            report.signed += 1
        if key is not None:
            expected = sign_checkpoint(cp, key)["sig"]
            if cp["sig"] is None:
                report.problems.append(f"{what}: not signed although a key is configured")
                continue
            if not hmac.compare_digest(cp["sig"], expected or ""):
                report.problems.append(f"{what}: its signature is wrong (forged, or signed with another key)")
                continue
        if cp["last_id"] not in seen:
            if broken:
                continue  # the chain's break is reported already; rows after it were not walked
            if cp["last_id"] > last:
                report.problems.append(
                    f"{what}: its row is gone; the newest row is now {last}: the newest rows were deleted"
                )
            else:
                report.problems.append(f"{what}: its row is gone from the chain")
            continue
        head, count = seen[cp["last_id"]]
        if head != cp["head"]:
            report.problems.append(f"{what}: the row's hash differs from the checkpoint's: the chain was rewritten")
        elif count != cp["count"]:
            report.problems.append(
                f"{what}: {count} rows up to it now, {cp['count']} then: rows were deleted or inserted"
            )
    return report


if __name__ == "__main__":
    import sys

    from core.audit_cli import main

    sys.exit(main())
