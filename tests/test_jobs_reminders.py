"""`/deal remind` (SPEC §3) and the `reminders` job (SPEC §4): a reminder is due at 09:00
workspace time on the day asked for, is sent exactly once when due (never before), and a
rate-limited or refused post loses nothing. Every test runs on SQLite and PostgreSQL.

The workspace is in Asia/Shanghai and the clock at 01:30 there (17:30 UTC the day
before), so "tomorrow" only comes out right when it is read in workspace time.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
import sqlalchemy as sa
from helpers import all_text, create_deal, run_command
from jobkit import Clock, posts, slack_api_calls, utc

NOW = utc(2026, 11, 10, 17, 30)  # Wed 11 Nov 2026, 01:30 in Shanghai
SHANGHAI = dt.timezone(dt.timedelta(hours=8))  # no DST in China


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {"timezone": "Asia/Shanghai"}


@pytest.fixture
def clock() -> Clock:
    return Clock(NOW)


@pytest.fixture
def runtime_options(clock: Clock) -> dict[str, Any]:
    return {"clock": clock}


def nine_am(day: dt.date) -> dt.datetime:
    """09:00 workspace time on `day`, as a UTC instant (computed without zoneinfo)."""
    return dt.datetime.combine(day, dt.time(9), SHANGHAI).astimezone(dt.UTC)


def reminder_rows(app: Any) -> list[dict[str, Any]]:
    from funnelbot.models import Reminder

    table = Reminder.__table__
    with app.runtime.engine.connect() as conn:
        rows = conn.execute(sa.select(table).order_by(table.c.id)).mappings().all()
    return [dict(r) for r in rows]


def remind_job(app: Any, now: dt.datetime) -> list[str]:
    from funnelbot.jobs import run_job

    return run_job(app.runtime.jobs, "reminders", now)


def dm_texts(app: Any, user: str = "U1") -> list[str]:
    return [c.params["text"] for c in posts(app.fake, "D" + user)]


def test_remind_stores_reminders_at_nine_workspace_time(app_server) -> None:
    app = app_server
    create_deal(app, "Acme", "U1")
    local_today = (NOW + dt.timedelta(hours=8)).date()  # 2026-11-11 in Shanghai
    assert local_today == dt.date(2026, 11, 11)

    answers = [
        run_command(app, "remind #1 tomorrow call back"),
        run_command(app, 'remind #1 "in 3 days" send quote'),
        run_command(app, "remind #1 明天 回电话"),
    ]
    tomorrow = local_today + dt.timedelta(days=1)
    in_three = local_today + dt.timedelta(days=3)
    assert "Thu 12 Nov 2026" in all_text(answers[0])
    assert "Sat 14 Nov 2026" in all_text(answers[1])
    assert "#1" in all_text(answers[2])

    rows = reminder_rows(app)
    got = [(r["user_id"], r["text"], r["due_at"], r["sent_at"]) for r in rows]
    assert got == [
        ("U1", "call back", nine_am(tomorrow), None),
        ("U1", "send quote", nine_am(in_three), None),
        ("U1", "回电话", nine_am(tomorrow), None),
    ]
    assert nine_am(tomorrow) == utc(2026, 11, 12, 1, 0)


def test_reminders_are_sent_once_when_due(app_server) -> None:
    app = app_server
    create_deal(app, "Acme", "U1")
    run_command(app, "remind #1 tomorrow call back")
    run_command(app, 'remind #1 "in 3 days" send quote')
    run_command(app, "remind #1 明天 回电话")
    first = utc(2026, 11, 12, 1, 0)
    second = utc(2026, 11, 14, 1, 0)
    app.fake.reset()

    # A minute early: nothing.
    assert remind_job(app, first - dt.timedelta(minutes=1)) == []
    assert slack_api_calls(app.fake) == []

    # Run 1, when the two "tomorrow" reminders are due: both, each once, by DM.
    lines = remind_job(app, first)
    assert len(lines) == 2, lines
    texts = dm_texts(app)
    assert len(texts) == 2
    assert sum("call back" in t for t in texts) == 1
    assert sum("回电话" in t for t in texts) == 1
    assert all("#1" in t for t in texts)
    assert [c.params["users"] for c in app.fake.calls_to("conversations.open")] == ["U1", "U1"]
    sent = {r["text"]: r["sent_at"] for r in reminder_rows(app)}
    assert sent == {"call back": first, "send quote": None, "回电话": first}

    # The next minutes: nothing again, and not the later one before its time.
    app.fake.reset()
    assert remind_job(app, first + dt.timedelta(minutes=1)) == []
    assert remind_job(app, second - dt.timedelta(minutes=1)) == []
    assert slack_api_calls(app.fake) == []

    # Run 2, a little late: the "in 3 days" one, once.
    late = second + dt.timedelta(minutes=7)
    assert len(remind_job(app, late)) == 1
    assert len(dm_texts(app)) == 1 and "send quote" in dm_texts(app)[0]
    assert remind_job(app, late + dt.timedelta(minutes=1)) == []
    assert len(dm_texts(app)) == 1
    assert all(r["sent_at"] is not None for r in reminder_rows(app))


def test_rate_limited_post_is_retried_and_delivered_once(app_server) -> None:
    app = app_server
    create_deal(app, "Acme", "U1")
    run_command(app, "remind #1 tomorrow call back")
    due = utc(2026, 11, 12, 1, 0)
    app.fake.reset()

    app.fake.fail_next("chat.postMessage", status=429, retry_after=1)
    lines = remind_job(app, due)
    assert len(lines) == 1, lines
    attempts = app.fake.calls_to("chat.postMessage")
    assert [(c.status, c.ok) for c in attempts] == [(429, False), (200, True)]
    assert attempts[1].at - attempts[0].at >= 0.9  # the client waited for Retry-After
    assert len(dm_texts(app)) == 1 and "call back" in dm_texts(app)[0]
    assert reminder_rows(app)[0]["sent_at"] == due

    assert remind_job(app, due + dt.timedelta(minutes=1)) == []
    assert len(dm_texts(app)) == 1


def test_refused_post_keeps_the_reminder_and_the_others_still_go(app_server) -> None:
    app = app_server
    create_deal(app, "Acme", "U1")
    run_command(app, "remind #1 today call back")  # U1's, due first (09:00 today)
    create_deal(app, "Globex", "U2")
    run_command(app, "remind #2 tomorrow send the deck", "U2")
    due = utc(2026, 11, 12, 1, 0)  # both are due by then
    app.fake.reset()

    # U1's DM is refused (not a rate limit: no retry helps): U2's still goes out.
    app.fake.fail_next("chat.postMessage", error="internal_error")
    lines = remind_job(app, due)
    assert any(line.startswith("could not remind U1") for line in lines), lines
    assert dm_texts(app, "U1") == []
    assert len(dm_texts(app, "U2")) == 1 and "send the deck" in dm_texts(app, "U2")[0]
    sent = {r["user_id"]: r["sent_at"] for r in reminder_rows(app)}
    assert sent == {"U1": None, "U2": due}  # U1's is not lost

    later = due + dt.timedelta(minutes=1)
    assert remind_job(app, later) == ["reminded U1 (reminder 1)"]
    assert len(dm_texts(app)) == 1 and "call back" in dm_texts(app)[0]
    assert reminder_rows(app)[0]["sent_at"] == later
    assert remind_job(app, later + dt.timedelta(minutes=1)) == []
    assert len(dm_texts(app, "U1")) == 1 and len(dm_texts(app, "U2")) == 1


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("remind #1 someday call back", "someday"),
        ('remind #1 "a week from never" call back', "a week from never"),
        ("remind #1 2026-02-30 call back", "2026-02-30"),
    ],
)
def test_bad_when_is_named_and_nothing_is_stored(app_server, text: str, named: str) -> None:
    app = app_server
    create_deal(app, "Acme", "U1")
    answer = run_command(app, text)
    assert answer.get("response_type", "ephemeral") == "ephemeral"
    shown = all_text(answer)
    assert named in shown, shown
    assert "date" in shown.lower()
    assert reminder_rows(app) == []


def test_past_or_incomplete_reminders_are_refused(app_server) -> None:
    app = app_server
    create_deal(app, "Acme", "U1")
    past = run_command(app, "remind #1 2026-01-05 call back")
    assert "already passed" in all_text(past)
    # "today" at 01:30 in Shanghai: 09:00 today is still ahead, so it is accepted
    ok = run_command(app, "remind #1 today call back")
    assert "#1" in all_text(ok)
    missing = run_command(app, "remind #1 tomorrow")
    assert "Usage" in all_text(missing)
    unknown = run_command(app, "remind #99 tomorrow call back")
    assert "#99" in all_text(unknown)
    rows = reminder_rows(app)
    assert [(r["text"], r["due_at"]) for r in rows] == [
        ("call back", nine_am(dt.date(2026, 11, 11)))
    ]
