"""`funnelbot jobs run …` (SPEC §6): a job run once as of --now, through the same ledger as
the scheduler, so re-running a report that was already posted posts nothing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from jobkit import new_deal, posts, slack_api_calls, utc, win

REPORT_CHANNEL = "CREPORT"


def env_for(cli_env: dict[str, str]) -> dict[str, str]:
    return {**cli_env, "FUNNELBOT_REPORT_CHANNEL": REPORT_CHANNEL}


def test_jobs_run_weekly_report_posts_once(db_engine, cli_env, fake_slack, run_cli) -> None:
    new_deal(db_engine, "Acme", "U1", utc(2026, 11, 24, 10), amount=5000)
    new_deal(db_engine, "Globex", "U2", utc(2026, 11, 2, 10), stage="negotiation", amount=9000)
    win(db_engine, 2, utc(2026, 11, 26, 15))
    args = ["jobs", "run", "weekly-report", "--now", "2026-11-30T09:00"]

    first = run_cli(args, env_for(cli_env))
    assert first.returncode == 0, first.stderr
    assert "weekly report 2026-W48 posted to CREPORT" in first.stdout
    [report] = posts(fake_slack, REPORT_CHANNEL, thread=False)
    assert "2026-W48" in report.params["text"]
    fields = "\n".join(f["text"] for b in report.params["blocks"] for f in b.get("fields", []))
    assert "*New*\n1 · $5,000" in fields and "*Won*\n1 · $9,000" in fields
    assert len(posts(fake_slack, REPORT_CHANNEL, thread=True)) == 1
    [completed] = fake_slack.calls_to("files.completeUploadExternal")
    assert completed.params["channel_id"] == REPORT_CHANNEL
    calls_after_first = len(slack_api_calls(fake_slack))

    second = run_cli(args, env_for(cli_env))
    assert second.returncode == 0, second.stderr
    assert "already posted" in second.stdout
    assert "posted to" not in second.stdout
    new_calls = slack_api_calls(fake_slack)[calls_after_first:]
    assert [c.method for c in new_calls] == []
    assert len(posts(fake_slack, REPORT_CHANNEL)) == 2


def test_jobs_run_without_a_token_explains(run_cli, tmp_path: Path) -> None:
    env: dict[str, Any] = {"DATABASE_URL": f"sqlite:///{tmp_path}/x.db", "SLACK_BOT_TOKEN": None}
    proc = run_cli(["jobs", "run", "reminders"], env)
    assert proc.returncode != 0
    assert "SLACK_BOT_TOKEN" in proc.stderr
    assert "Traceback" not in proc.stderr
