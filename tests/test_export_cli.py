"""`funnelbot export` and `funnelbot migrate` (SPEC §6), run as a user runs them: a
subprocess on this test's database. The data is made through Slack first. Every test
runs on SQLite and PostgreSQL.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import re
from decimal import Decimal

import sqlalchemy as sa
from helpers import create_deal, run_command

DEAL_COLUMNS = [
    "id", "name", "amount", "owner", "stage", "status", "source", "lost_reason",
    "expected_close", "created_at", "updated_at",
]  # fmt: skip
HISTORY_COLUMNS = ["deal_id", "from_stage", "to_stage", "at", "by"]
NOTE_COLUMNS = ["deal_id", "author", "text", "at"]

# ISO 8601 with at least milliseconds and an explicit UTC offset (Z or ±hh:mm).
TIMESTAMP = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3,}(Z|[+-]\d{2}:\d{2})")


def _export(run_cli, db_url: str, kind: str, fmt: str, team: str = "T0TEST") -> str:
    proc = run_cli(
        ["export", kind, "--format", fmt, "--team", team], {"DATABASE_URL": db_url}, check=True
    )
    return proc.stdout


def _timestamp(value: str) -> dt.datetime:
    assert TIMESTAMP.fullmatch(value), value
    parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    assert parsed.utcoffset() is not None
    return parsed


def _make_data(app) -> None:
    create_deal(app, '"Acme Corp" 50k <@U2|bob> source:web close:2026-12-31', user="U1")  # 1
    create_deal(app, '"华为 云计算" 1.5亿 stage:proposal', user="U3")  # 2
    run_command(app, "advance #1", user="U2")
    run_command(app, 'note #2 first call, "quoted", comma', user="U3")
    run_command(app, "move #1 negotiation", user="U2")
    run_command(app, "lost #2 price, too high", user="U3")
    run_command(app, "won #1", user="U2")
    run_command(app, "note #1 signed!", user="U2")
    run_command(app, "reopen #2", user="U3")
    run_command(app, "move #2 lead", user="U3")


def test_export_deals_json_and_csv(app_server, run_cli, db_url) -> None:
    _make_data(app_server)
    deals = json.loads(_export(run_cli, db_url, "deals", "json"))
    assert isinstance(deals, list) and len(deals) == 2
    for row in deals:
        assert set(row) == set(DEAL_COLUMNS)
    one, two = sorted(deals, key=lambda d: d["id"])
    assert one["id"] == 1 and two["id"] == 2
    assert (one["name"], one["owner"], one["stage"], one["status"]) == (
        "Acme Corp",
        "U2",
        "won",
        "won",
    )
    assert Decimal(str(one["amount"])) == Decimal("50000")
    assert (one["source"], one["lost_reason"], one["expected_close"]) == ("web", None, "2026-12-31")
    assert (two["name"], two["stage"], two["status"]) == ("华为 云计算", "lead", "open")
    assert Decimal(str(two["amount"])) == Decimal("150000000")
    assert two["expected_close"] is None
    for row in deals:
        created, updated = _timestamp(row["created_at"]), _timestamp(row["updated_at"])
        assert updated > created

    text = _export(run_cli, db_url, "deals", "csv")
    reader = csv.DictReader(io.StringIO(text))
    assert reader.fieldnames == DEAL_COLUMNS
    rows = sorted(reader, key=lambda r: int(r["id"]))
    assert [r["name"] for r in rows] == ["Acme Corp", "华为 云计算"]
    assert Decimal(rows[1]["amount"]) == Decimal("150000000")
    assert rows[1]["expected_close"] == "" and rows[0]["lost_reason"] == ""
    for r in rows:
        _timestamp(r["created_at"])
        _timestamp(r["updated_at"])


def test_export_history_in_commit_order(app_server, run_cli, db_url) -> None:
    _make_data(app_server)
    history = json.loads(_export(run_cli, db_url, "history", "json"))
    for row in history:
        assert set(row) == set(HISTORY_COLUMNS)
    by_deal: dict[int, list[dict]] = {}
    for row in history:
        by_deal.setdefault(row["deal_id"], []).append(row)
    assert [(r["from_stage"], r["to_stage"], r["by"]) for r in by_deal[1]] == [
        (None, "lead", "U1"),
        ("lead", "interest", "U2"),
        ("interest", "negotiation", "U2"),
        ("negotiation", "won", "U2"),
    ]
    assert [(r["from_stage"], r["to_stage"], r["by"]) for r in by_deal[2]] == [
        (None, "proposal", "U3"),
        ("proposal", "lost", "U3"),
        ("lost", "proposal", "U3"),
        ("proposal", "lead", "U3"),
    ]
    for rows in by_deal.values():
        times = [_timestamp(r["at"]) for r in rows]
        assert times == sorted(times) and len(set(times)) == len(times)
    # each deal's rows come together
    ids = [r["deal_id"] for r in history]
    assert ids == sorted(ids)

    reader = csv.DictReader(io.StringIO(_export(run_cli, db_url, "history", "csv")))
    assert reader.fieldnames == HISTORY_COLUMNS
    rows = list(reader)
    assert len(rows) == 8
    first = next(r for r in rows if r["deal_id"] == "1")
    assert first["from_stage"] == "" and first["to_stage"] == "lead"


def test_export_notes(app_server, run_cli, db_url) -> None:
    _make_data(app_server)
    notes = json.loads(_export(run_cli, db_url, "notes", "json"))
    assert [set(n) for n in notes] == [set(NOTE_COLUMNS)] * 2
    assert [(n["deal_id"], n["author"], n["text"]) for n in notes] == [
        (1, "U2", "signed!"),
        (2, "U3", 'first call, "quoted", comma'),
    ]
    for n in notes:
        _timestamp(n["at"])
    reader = csv.DictReader(io.StringIO(_export(run_cli, db_url, "notes", "csv")))
    assert reader.fieldnames == NOTE_COLUMNS
    assert [r["text"] for r in reader] == ["signed!", 'first call, "quoted", comma']


def test_export_of_an_unknown_team_fails_cleanly(app_server, run_cli, db_url) -> None:
    _make_data(app_server)
    proc = run_cli(
        ["export", "deals", "--format", "json", "--team", "TNOPE"], {"DATABASE_URL": db_url}
    )
    assert proc.returncode != 0
    assert "TNOPE" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stdout.strip() == ""


def test_migrate_is_idempotent(empty_db_url, run_cli) -> None:
    env = {"DATABASE_URL": empty_db_url}
    first = run_cli(["migrate"], env)
    assert first.returncode == 0, first.stderr
    second = run_cli(["migrate"], env)
    assert second.returncode == 0, second.stderr
    engine = sa.create_engine(empty_db_url.replace("postgresql://", "postgresql+psycopg://"))
    try:
        with engine.connect() as conn:
            versions = conn.execute(sa.text("SELECT version_num FROM alembic_version")).all()
            stages = conn.execute(
                sa.text("SELECT key, count(*) FROM stages GROUP BY key ORDER BY key")
            ).all()
    finally:
        engine.dispose()
    assert len(versions) == 1
    # the default stages are seeded once, not once per run
    assert {key: n for key, n in stages} == {
        "interest": 1,
        "lead": 1,
        "lost": 1,
        "negotiation": 1,
        "proposal": 1,
        "won": 1,
    }
