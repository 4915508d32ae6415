"""The audit trail's checkpoints, its verifier and its export (``python -m core.audit``), against a real Postgres."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row

from core.audit import read_checkpoints, sign_checkpoint, take_checkpoint, verify_trail
from core.audit_cli import run
from core.settings import AuditSettings, Settings
from store.audit import append_audit, verify_chain
from tests.conftest import create_database

pytestmark = pytest.mark.asyncio

KEY = "checkpoint-test-key"


async def _db(postgres_admin_url: str, rows: int) -> str:
    url = await create_database(postgres_admin_url, "exodus_trail")
    async with await psycopg.AsyncConnection.connect(url, autocommit=True, row_factory=dict_row) as conn:
        for i in range(rows):
            await append_audit(conn, actor="ops", action="TEST", subject=f"s{i}", detail={"i": i})
    return url


async def _as_owner(url: str, statement: str) -> None:
    # What only an owner or a superuser can do: get past the append-only trigger.
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        await conn.execute("SET session_replication_role = replica")
        await conn.execute(statement)


def _settings(url: str, path: Path, key: str | None = KEY) -> Settings:
    return Settings(database_url=url, audit=AuditSettings(checkpoint_file=path, checkpoint_key=key))


async def test_deleting_the_newest_rows_is_caught_by_a_checkpoint(postgres_admin_url: str, tmp_path: Path) -> None:
    url = await _db(postgres_admin_url, 5)
    path = tmp_path / "checkpoints.jsonl"
    async with await psycopg.AsyncConnection.connect(url, autocommit=True, row_factory=dict_row) as conn:
        cp = await take_checkpoint(conn, path, KEY)
        assert cp["count"] == 5 and cp["sig"]
        report = await verify_trail(conn, read_checkpoints(path), KEY)
        assert report.ok and report.rows == 5 and report.checkpoints == 1, report.as_dict()
        await append_audit(conn, actor="ops", action="TEST", subject="s5")  # newer than the checkpoint: fine
        assert (await verify_trail(conn, read_checkpoints(path), KEY)).ok
    await _as_owner(url, "DELETE FROM audit_log WHERE id >= (SELECT max(id) - 2 FROM audit_log)")
    async with await psycopg.AsyncConnection.connect(url, autocommit=True, row_factory=dict_row) as conn:
        # The rows left still chain: the chain alone cannot tell.
        assert await verify_chain(conn) == (True, 3)
        report = await verify_trail(conn, read_checkpoints(path), KEY)
    assert not report.ok
    assert "the newest rows were deleted" in report.problems[0], report.problems


async def test_a_forged_or_unsigned_checkpoint_is_a_problem(postgres_admin_url: str, tmp_path: Path) -> None:
    url = await _db(postgres_admin_url, 3)
    path = tmp_path / "checkpoints.jsonl"
    async with await psycopg.AsyncConnection.connect(url, autocommit=True, row_factory=dict_row) as conn:
        cp = await take_checkpoint(conn, path, KEY)
        forged = {**cp, "count": 2}
        unsigned = sign_checkpoint(cp, None)
        other_key = sign_checkpoint(cp, "another key")
        report = await verify_trail(conn, [forged, unsigned, other_key], KEY)  # type: ignore[list-item]
        assert len(report.problems) == 3, report.problems
        assert "signature is wrong" in report.problems[0] and "not signed" in report.problems[1]
        # Without a key the signatures cannot be checked: said as a warning, the heads are still checked.
        report = await verify_trail(conn, [unsigned], None)
        assert report.ok and report.warnings
        report = await verify_trail(conn, [{**unsigned, "head": "f" * 64}], None)  # type: ignore[list-item]
        assert "rewritten" in report.problems[0]


async def test_an_edit_in_the_middle_is_named_by_row(postgres_admin_url: str, tmp_path: Path) -> None:
    url = await _db(postgres_admin_url, 4)
    await _as_owner(url, "UPDATE audit_log SET detail = '{\"i\": 99}' WHERE subject = 's1'")
    async with await psycopg.AsyncConnection.connect(url, autocommit=True, row_factory=dict_row) as conn:
        report = await verify_trail(conn, [], None)
    assert not report.ok and report.rows == 1 and "was edited" in report.problems[0]


async def test_the_command_verifies_and_exits_non_zero_on_a_break(
    postgres_admin_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = await _db(postgres_admin_url, 3)
    path = tmp_path / "audit" / "checkpoints.jsonl"
    settings = _settings(url, path)
    assert await run(["checkpoint"], url=url, settings=settings) == 0
    assert json.loads(capsys.readouterr().out)["count"] == 3
    assert await run(["verify"], url=url, settings=settings) == 0
    assert capsys.readouterr().out.startswith("OK: 3 rows")
    await _as_owner(url, "DELETE FROM audit_log WHERE id = (SELECT max(id) FROM audit_log)")
    assert await run(["verify", "--json"], url=url, settings=settings) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] is False and report["rows"] == 2
    path.write_text(path.read_text() + "not json\n")
    assert await run(["verify"], url=url, settings=settings) == 1
    assert "not a checkpoint" in capsys.readouterr().err


async def test_export_streams_a_period_in_pages_as_csv_and_json_lines(
    postgres_admin_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = await create_database(postgres_admin_url, "exodus_trail")
    day = datetime(2026, 3, 2, tzinfo=UTC)
    async with await psycopg.AsyncConnection.connect(url, autocommit=True, row_factory=dict_row) as conn:
        for i in range(5):
            await append_audit(conn, actor="ops", action="TEST", subject=f"in{i}", at=day + timedelta(hours=i))
        await append_audit(conn, actor="risk", action="RISK_DENIED", subject="r1", at=day + timedelta(hours=6))
        await append_audit(conn, actor="cro", action="TRADING_STATE_SET", subject="GLOBAL", at=day)
        await append_audit(conn, actor="ops", action="TEST", subject="before", at=day - timedelta(seconds=1))
        await append_audit(conn, actor="ops", action="TEST", subject="after", at=day + timedelta(days=1))
    settings = _settings(url, tmp_path / "cp.jsonl")
    argv = ["export", "--from", "2026-03-02", "--to", "2026-03-03"]
    assert await run(argv, url=url, settings=settings) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [r["subject"] for r in rows] == ["in0", "in1", "in2", "in3", "in4", "r1", "GLOBAL"]
    assert json.loads(rows[0]["detail"]) == {} and len(rows[0]["hash"]) == 64
    assert await run([*argv, "--kind", "risk", "--format", "jsonl"], url=url, settings=settings) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(r["record"], r["subject"]) for r in lines] == [("risk", "r1")]
    assert await run([*argv, "--kind", "operator", "--out", str(tmp_path / "ops.csv")], url=url, settings=settings) == 0
    assert [r["action"] for r in csv.DictReader((tmp_path / "ops.csv").open())] == ["TRADING_STATE_SET"]
    assert await run(["export", "--from", "yesterday", "--to", "2026-03-03"], url=url, settings=settings) == 2
    assert "--from" in capsys.readouterr().err


async def test_export_pages_do_not_skip_or_repeat_rows(postgres_admin_url: str) -> None:
    from contextlib import asynccontextmanager

    from core.export import export_lines

    url = await _db(postgres_admin_url, 7)

    @asynccontextmanager
    async def connection() -> Any:
        async with await psycopg.AsyncConnection.connect(url, autocommit=True, row_factory=dict_row) as conn:
            yield conn

    start, end = datetime(2000, 1, 1, tzinfo=UTC), datetime(2200, 1, 1, tzinfo=UTC)
    lines = [line async for line in export_lines(connection, "audit", "jsonl", start=start, end=end, page=3)]
    assert [json.loads(line)["subject"] for line in lines] == [f"s{i}" for i in range(7)]
