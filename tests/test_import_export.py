"""`funnelbot import` and `funnelbot export` (SPEC §6) through the real command line, on
SQLite and PostgreSQL: history columns, the workspace time zone, all-or-nothing imports
with errors by line number, owner emails looked up in (fake) Slack, and a round trip."""

from __future__ import annotations

import csv
import datetime as dt
import json
import re
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from pathlib import Path

import sqlalchemy as sa
from helpers import deal_count, deal_row, history_rows, snapshot

from funnelbot import deals as domain
from funnelbot.db import make_session_factory
from funnelbot.models import StageChange

UTC = dt.UTC
HEADER = [
    "name",
    "amount",
    "owner",
    "source",
    "stage",
    "status",
    "lost_reason",
    "created_at",
    "closed_at",
    "expected_close",
    "entered:lead",
    "entered:interest",
    "entered:proposal",
    "entered:negotiation",
    "entered:won",
    "entered:lost",
]
DEAL_KEYS = [
    "id",
    "name",
    "amount",
    "owner",
    "stage",
    "status",
    "source",
    "lost_reason",
    "expected_close",
    "created_at",
    "updated_at",
]
ISO_WITH_OFFSET = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3,}(Z|[+-]\d\d:\d\d)$")


def write_csv(path: Path, rows: list[dict[str, str]], header: list[str] = HEADER) -> Path:
    with path.open("w", encoding="utf-8", newline="") as out:
        writer = csv.DictWriter(out, fieldnames=header, lineterminator="\n")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: row.get(k, "") for k in header})
    return path


def utc(*args: int) -> dt.datetime:
    return dt.datetime(*args, tzinfo=UTC)


def changes(engine: sa.Engine) -> int:
    with engine.connect() as conn:
        return conn.execute(sa.select(sa.func.count()).select_from(StageChange)).scalar_one()


GOOD = [
    {
        "name": "Acme",
        "amount": "50,000",
        "owner": "U1",
        "source": "web",
        "stage": "won",
        "status": "won",
        "created_at": "2026-01-05",
        "closed_at": "2026-02-20T10:30:00+08:00",
        "entered:lead": "2026-01-05",
        "entered:interest": "2026-01-10",
        # interest -> negotiation skips proposal
        "entered:negotiation": "2026-02-01T09:00:00Z",
        "entered:won": "2026-02-20T10:30:00+08:00",
    },
    {
        "name": "华为 云计算",
        "amount": "5万",
        "owner": "U2",
        "source": "referral",
        "stage": "lost",
        "status": "lost",
        "lost_reason": "price, and timing",
        "created_at": "2026-01-06T08:00:00",  # naive: Shanghai time
        "closed_at": "2026-03-01",
        "entered:lead": "2026-01-06T08:00:00",
        "entered:proposal": "2026-01-20",
        "entered:lost": "2026-03-01",
    },
    {
        "name": 'Globex "Labs", Inc.',
        "amount": "1234.56",
        "owner": "U1",
        "stage": "proposal",
        "status": "open",
        "created_at": "2026-02-01",
        "expected_close": "2026-06-30",
        "entered:lead": "2026-02-01",
        "entered:interest": "2026-02-03T12:00:00.250000+08:00",
        "entered:proposal": "2026-02-10",
    },
    {
        # no status (open), no history columns: created in its stage
        "name": "Initech",
        "amount": "",
        "owner": "U3",
        "source": "event",
        "stage": "lead",
        "created_at": "2026-02-02T23:30:00Z",
    },
]


def csv_from_export(deals: list[dict], history: list[dict]) -> list[dict[str, str]]:
    """An import file rebuilt from `export deals` and `export history` (JSON)."""
    rows = []
    for deal in deals:
        mine = [h for h in history if h["deal_id"] == deal["id"]]
        row = {
            "name": deal["name"],
            "amount": deal["amount"],
            "owner": deal["owner"],
            "source": deal["source"] or "",
            "stage": deal["stage"],
            "status": deal["status"],
            "lost_reason": deal["lost_reason"] or "",
            "created_at": deal["created_at"],
            "closed_at": mine[-1]["at"] if deal["status"] != "open" else "",
            "expected_close": deal["expected_close"] or "",
        }
        for h in mine:
            assert f"entered:{h['to_stage']}" not in row  # one entry per stage in this file
            row[f"entered:{h['to_stage']}"] = h["at"]
        rows.append(row)
    return rows


def exports(run_cli, env, team: str) -> tuple[list[dict], list[dict]]:
    """`export deals` and `export history` as JSON (two read-only runs side by side)."""

    def export(kind: str) -> list[dict]:
        proc = run_cli(["export", kind, "--format", "json", "--team", team], env)
        assert proc.returncode == 0, proc.stderr
        return json.loads(proc.stdout)

    with ThreadPoolExecutor(max_workers=2) as pool:
        deals, history = pool.map(export, ("deals", "history"))
    return deals, history


def test_import_with_history_and_export_round_trip(db_engine, cli_env, run_cli, tmp_path) -> None:
    env = {**cli_env, "FUNNELBOT_TIMEZONE": "Asia/Shanghai"}
    path = write_csv(tmp_path / "deals.csv", GOOD)
    # --dry-run validates and reports, and writes nothing (not even the workspace)
    before = snapshot(db_engine)
    proc = run_cli(["import", str(path), "--team", "TIMP", "--dry-run"], env)
    assert proc.returncode == 0, proc.stderr
    assert "would import 4 deals with 11 history rows" in proc.stderr
    assert snapshot(db_engine) == before

    proc = run_cli(["import", str(path), "--team", "TIMP"], env)
    assert proc.returncode == 0, proc.stderr
    assert "imported 4 deals with 11 history rows" in proc.stderr
    assert deal_count(db_engine, "TIMP") == 4

    acme = deal_row(db_engine, 1, "TIMP")
    assert (acme["name"], acme["amount"], acme["owner_id"], acme["source"]) == (
        "Acme",
        Decimal("50000"),
        "U1",
        "web",
    )
    assert (acme["stage"], acme["status"]) == ("won", "won")
    assert acme["created_at"] == utc(2026, 1, 4, 16)  # 2026-01-05 00:00 in Shanghai
    assert acme["closed_at"] == utc(2026, 2, 20, 2, 30)
    assert acme["last_activity_at"] == utc(2026, 2, 20, 2, 30)  # its latest history date
    assert [
        (h["from_stage"], h["to_stage"], h["at"]) for h in history_rows(db_engine, 1, "TIMP")
    ] == [
        (None, "lead", utc(2026, 1, 4, 16)),
        ("lead", "interest", utc(2026, 1, 9, 16)),
        ("interest", "negotiation", utc(2026, 2, 1, 9)),
        ("negotiation", "won", utc(2026, 2, 20, 2, 30)),
    ]

    huawei = deal_row(db_engine, 2, "TIMP")
    assert (huawei["name"], huawei["amount"], huawei["status"]) == (
        "华为 云计算",
        Decimal("50000"),
        "lost",
    )
    assert huawei["lost_reason"] == "price, and timing"
    assert huawei["created_at"] == utc(2026, 1, 6, 0)
    assert huawei["closed_at"] == utc(2026, 2, 28, 16)
    assert [(h["from_stage"], h["to_stage"]) for h in history_rows(db_engine, 2, "TIMP")] == [
        (None, "lead"),
        ("lead", "proposal"),
        ("proposal", "lost"),
    ]

    globex = deal_row(db_engine, 3, "TIMP")
    assert globex["name"] == 'Globex "Labs", Inc.'
    assert (globex["stage"], globex["status"], globex["closed_at"]) == ("proposal", "open", None)
    assert globex["expected_close"] == dt.date(2026, 6, 30)
    assert globex["amount"] == Decimal("1234.56")
    assert [h["at"] for h in history_rows(db_engine, 3, "TIMP")][1] == utc(
        2026, 2, 3, 4, 0, 0, 250000
    )

    initech = deal_row(db_engine, 4, "TIMP")
    assert (initech["stage"], initech["status"], initech["amount"]) == (
        "lead",
        "open",
        Decimal("0"),
    )
    assert initech["source"] == "event" and initech["owner_id"] == "U3"
    assert [
        (h["from_stage"], h["to_stage"], h["at"]) for h in history_rows(db_engine, 4, "TIMP")
    ] == [
        (None, "lead", utc(2026, 2, 2, 23, 30)),
    ]

    # export, rebuild an import file from the export, import it into a second workspace,
    # export again: the same deals and the same history (stages, timestamps, order)
    deals, history = exports(run_cli, env, "TIMP")

    # the export's own shape (SPEC §6)
    assert [list(d) for d in deals] == [DEAL_KEYS] * 4
    assert [d["id"] for d in deals] == [1, 2, 3, 4]
    assert all(list(h) == ["deal_id", "from_stage", "to_stage", "at", "by"] for h in history)
    assert len(history) == 11
    for deal_id in (1, 2, 3, 4):
        mine = [h for h in history if h["deal_id"] == deal_id]
        assert mine[0]["from_stage"] is None
        assert all(a["to_stage"] == b["from_stage"] for a, b in zip(mine, mine[1:], strict=False))
        assert [h["at"] for h in mine] == sorted(h["at"] for h in mine)
    for stamp in (
        [h["at"] for h in history]
        + [d["created_at"] for d in deals]
        + [d["updated_at"] for d in deals]
    ):
        assert ISO_WITH_OFFSET.match(stamp), stamp
    assert deals[0]["amount"] == "50000.00" and deals[2]["expected_close"] == "2026-06-30"

    rebuilt = write_csv(tmp_path / "b.csv", csv_from_export(deals, history))
    proc = run_cli(["import", str(rebuilt), "--team", "TB"], env)
    assert proc.returncode == 0, proc.stderr
    assert exports(run_cli, env, "TB") == (deals, history)


def test_bad_rows_are_reported_by_line_and_nothing_is_kept(
    db_engine, cli_env, run_cli, tmp_path
) -> None:
    # a deal already there must survive a failed import
    sessions = make_session_factory(db_engine)
    with sessions.begin() as session:
        now = dt.datetime(2026, 1, 2, tzinfo=UTC)
        domain.ensure_workspace(session, "TIMP", now)
        domain.create_deal(session, "TIMP", domain.Actor("U1"), name="Existing", now=now)
    deals, history = deal_count(db_engine, "TIMP"), changes(db_engine)
    before = snapshot(db_engine)

    good = {
        "name": "Fine",
        "amount": "10",
        "owner": "U1",
        "stage": "lead",
        "created_at": "2026-03-01",
    }
    rows = [
        good,  # line 2
        {**good, "name": "Unknown stage", "stage": "sample"},  # line 3
        {**good, "name": "Bad amount", "amount": "lots"},  # line 4
        {**good, "name": "Bad date", "created_at": "2026-13-45"},  # line 5
        {**good, "name": "Won, undated", "stage": "won", "status": "won"},  # line 6
        good,  # line 7
        {**good, "name": "Bad history date", "entered:interest": "someday"},  # line 8
        {**good, "name": "Negative", "amount": "-5"},  # line 9
        {**good, "name": "Open but won", "stage": "won"},  # line 10
        {**good, "owner": ""},  # line 11
        {**good, "name": "Two\nlines"},  # lines 12-13, fine
        {**good, "name": "After two lines", "amount": "bad1"},  # line 14
        {**good, "name": "Bad\r\nstart", "amount": "bad2"},  # lines 15-16
    ]
    path = write_csv(tmp_path / "bad.csv", rows)
    with path.open("a", encoding="utf-8", newline="") as out:
        # a blank line 17 (skipped), then line 18
        out.write("\nBlank before,bad3,U1,,lead,,,2026-03-01,,,,,,,,\n")
    proc = run_cli(["import", str(path), "--team", "TIMP"], cli_env)
    assert proc.returncode == 1
    assert proc.stdout == ""
    lines = {int(m.group(1)): m.group(2) for m in re.finditer(r"line (\d+): (.*)", proc.stderr)}
    # a record is reported by the line it starts on
    assert sorted(lines) == [3, 4, 5, 6, 8, 9, 10, 11, 14, 15, 18], proc.stderr
    assert "bad1" in lines[14] and "bad2" in lines[15] and "bad3" in lines[18]
    assert "sample" in lines[3]
    assert "lots" in lines[4]
    assert "2026-13-45" in lines[5]
    assert "closed_at" in lines[6]
    assert "someday" in lines[8]
    assert "-5" in lines[9]
    assert "won" in lines[10]
    assert "owner" in lines[11]
    assert "nothing was imported" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert deal_count(db_engine, "TIMP") == deals == 1 and changes(db_engine) == history == 1
    assert snapshot(db_engine) == before

    # a bad header is line 1: a missing column, a history column of no stage
    header = [c for c in HEADER if c != "status"]
    proc = run_cli(
        ["import", str(write_csv(tmp_path / "h.csv", GOOD, header)), "--team", "TIMP"], cli_env
    )
    assert proc.returncode == 1
    assert re.search(r"line 1: .*status", proc.stderr), proc.stderr
    header = [*HEADER, "entered:sample"]
    proc = run_cli(
        ["import", str(write_csv(tmp_path / "s.csv", GOOD, header)), "--team", "TIMP"], cli_env
    )
    assert proc.returncode == 1
    assert re.search(r"line 1: .*entered:sample", proc.stderr), proc.stderr
    assert snapshot(db_engine) == before


def test_owner_emails_are_looked_up_in_slack(
    db_engine, cli_env, run_cli, fake_slack, tmp_path
) -> None:
    fake_slack.users["U777"] = {"profile": {"email": "alice@example.com"}}
    row = {
        "name": "Mail",
        "amount": "1",
        "owner": "alice@example.com",
        "stage": "lead",
        "created_at": "2026-03-01",
    }
    path = write_csv(tmp_path / "m.csv", [row, {**row, "name": "Mail 2"}])
    proc = run_cli(["import", str(path), "--team", "TIMP"], cli_env)
    assert proc.returncode == 0, proc.stderr
    assert deal_row(db_engine, 1, "TIMP")["owner_id"] == "U777"
    assert deal_row(db_engine, 2, "TIMP")["owner_id"] == "U777"
    lookups = fake_slack.calls_to("users.lookupByEmail")
    assert [c.params["email"] for c in lookups] == ["alice@example.com"]  # asked once
    assert all(c.token == cli_env["SLACK_BOT_TOKEN"] for c in lookups)

    # an email Slack does not know, and any email without a token to ask with
    before = snapshot(db_engine)
    path = write_csv(tmp_path / "u.csv", [row, {**row, "owner": "nobody@example.com"}])
    proc = run_cli(["import", str(path), "--team", "TNEW"], cli_env)  # not even TNEW is kept
    assert proc.returncode == 1
    assert re.search(r"line 3: .*nobody@example\.com", proc.stderr), proc.stderr
    assert "line 2" not in proc.stderr
    proc = run_cli(
        ["import", str(write_csv(tmp_path / "n.csv", [row])), "--team", "TIMP"],
        {**cli_env, "SLACK_BOT_TOKEN": None},
    )
    assert proc.returncode == 1
    assert re.search(r"line 2: .*alice@example\.com", proc.stderr), proc.stderr
    assert snapshot(db_engine) == before
