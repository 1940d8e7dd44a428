"""The in-process scheduler (SPEC §4): one leader among replicas on PostgreSQL (always the
leader on SQLite), a missed weekly report caught up once on start, and new weekly times
taking effect without a restart. Every scheduler a test starts is stopped at its end.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from jobkit import Clock, new_deal, posts, slack_api_calls, utc

REPORT_CHANNEL = "CREPORT"
MONDAY_SLOT = utc(2026, 11, 30, 9, 0)
TUESDAY_10 = utc(2026, 12, 1, 10, 0)  # 25 h after Monday's 09:00 slot
LOCK_HI, LOCK_LO = 0x4655, 0x4E4E4C44  # the two halves of the leader lock id "FUNNLD"


# --- leadership ----------------------------------------------------------------------------


@pytest.fixture
def pg_url(pg_databases: Any, pg_template: str) -> Iterator[str]:
    """A fresh, migrated PostgreSQL database (not parametrized: PostgreSQL only)."""
    name = pg_databases.new_name()
    url = pg_databases.create(name, template=pg_template)
    try:
        yield url
    finally:
        pg_databases.drop(name)


def lock_holders(admin: sa.Engine) -> list[int]:
    """Backend pids holding the leader advisory lock in the current database."""
    with admin.connect() as conn:
        return list(
            conn.execute(
                sa.text(
                    "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted "
                    "AND classid = :hi AND objid = :lo "
                    "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
                ),
                {"hi": LOCK_HI, "lo": LOCK_LO},
            ).scalars()
        )


def backend_state(admin: sa.Engine, pid: int) -> str | None:
    with admin.connect() as conn:
        return conn.execute(
            sa.text("SELECT state FROM pg_stat_activity WHERE pid = :pid"), {"pid": pid}
        ).scalar()


@pytest.mark.postgresql
def test_leadership_on_postgresql_one_leader_and_failover(pg_url: str) -> None:
    from funnelbot import db
    from funnelbot.scheduler import Leadership

    engines = [db.make_engine(pg_url) for _ in range(3)]
    admin = engines[2]
    a, b = Leadership(engines[0]), Leadership(engines[1])
    try:
        assert a.is_leader() is True
        assert b.is_leader() is False
        # Asking again changes nothing: still exactly one leader.
        assert [a.is_leader(), b.is_leader(), a.is_leader(), b.is_leader()] == [True, False] * 2
        [holder] = lock_holders(admin)
        # the leader's connection keeps the lock without holding a transaction open
        assert backend_state(admin, holder) == "idle"

        # The leader steps down (shutdown): the other takes over on its next question.
        a.release()
        assert b.is_leader() is True
        assert a.is_leader() is False
        assert len(lock_holders(admin)) == 1

        # The leader's connection dies (its replica crashed, the network dropped it).
        [holder] = lock_holders(admin)
        with admin.connect() as conn:
            # With a timeout it waits until the backend is gone (else it only signals it).
            conn.execute(sa.text("SELECT pg_terminate_backend(:pid, 10000)"), {"pid": holder})
            conn.commit()
        assert lock_holders(admin) == []
        assert a.is_leader() is True
        assert b.is_leader() is False  # notices its connection is gone, and is not leader
        assert len(lock_holders(admin)) == 1

        # The whole engine of the leader goes away (Runtime.close: release, then dispose).
        a.release()
        engines[0].dispose()
        assert b.is_leader() is True
    finally:
        a.release()
        b.release()
        for e in engines:
            e.dispose()


def test_leadership_on_sqlite_is_always_leader(tmp_path: Path) -> None:
    from funnelbot import db
    from funnelbot.scheduler import Leadership

    engine = db.make_engine(f"sqlite:///{tmp_path}/one.db")
    try:
        first, second = Leadership(engine), Leadership(engine)
        assert first.is_leader() and second.is_leader()
        first.release()
        assert first.is_leader() and second.is_leader()
    finally:
        engine.dispose()


# --- the scheduler ------------------------------------------------------------------------


class JobEvents:
    """APScheduler job events, for waiting on a job without sleeping."""

    def __init__(self) -> None:
        self.added: list[str] = []
        self.executed: list[str] = []
        self._cond = threading.Condition()

    def __call__(self, event: Any) -> None:
        from apscheduler.events import EVENT_JOB_ADDED

        with self._cond:
            if event.code == EVENT_JOB_ADDED:
                self.added.append(event.job_id)
            else:
                self.executed.append(event.job_id)
            self._cond.notify_all()

    def wait_executed(self, *job_ids: str, timeout: float = 60) -> None:
        with self._cond:
            done = self._cond.wait_for(
                lambda: all(j in self.executed for j in job_ids), timeout=timeout
            )
        assert done, f"jobs {job_ids} did not run; ran: {self.executed}"


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {"report_channel": REPORT_CHANNEL}


@pytest.fixture
def schedulers() -> Iterator[list[Any]]:
    """Schedulers started by the test; each is stopped at its end, whatever happens."""
    started: list[Any] = []
    try:
        yield started
    finally:
        for scheduler in started:
            scheduler.stop()


def start_scheduler(app: Any, clock: Clock, started: list[Any]) -> tuple[Any, JobEvents]:
    from apscheduler.events import EVENT_JOB_ADDED, EVENT_JOB_ERROR, EVENT_JOB_EXECUTED

    from funnelbot.scheduler import Scheduler

    scheduler = Scheduler(app.runtime.jobs, app.runtime.engine, clock=clock)
    events = JobEvents()
    scheduler.scheduler.add_listener(events, EVENT_JOB_ADDED | EVENT_JOB_EXECUTED | EVENT_JOB_ERROR)
    started.append(scheduler)
    scheduler.start()
    return scheduler, events


def weekly(app: Any, now: dt.datetime) -> list[str]:
    from funnelbot.jobs import run_job

    return run_job(app.runtime.jobs, "weekly-report", now)


def test_missed_weekly_report_is_caught_up_once_on_start(app_server, schedulers) -> None:
    app = app_server
    new_deal(app, "Acme", "U1", utc(2026, 11, 25, 10), amount=5000)  # new last week
    scheduler, events = start_scheduler(app, Clock(TUESDAY_10), schedulers)
    assert "catch-up-weekly-report" in events.added
    events.wait_executed("catch-up-weekly-report", "catch-up-reminders", "catch-up-stalled-nudges")
    scheduler.stop()

    [report] = posts(app.fake, REPORT_CHANNEL, thread=False)
    assert "2026-W48" in report.params["text"]
    [reply] = posts(app.fake, REPORT_CHANNEL, thread=True)
    assert reply.params["thread_ts"] == report.response["ts"]
    assert len(app.fake.calls_to("files.completeUploadExternal")) == 1
    # It is in the ledger: running the job again for that week posts nothing.
    assert weekly(app, TUESDAY_10) == ["T0TEST: weekly report 2026-W48 was already posted"]
    assert len(posts(app.fake, REPORT_CHANNEL)) == 2


def test_report_already_in_the_ledger_is_not_posted_again(app_server, schedulers) -> None:
    app = app_server
    new_deal(app, "Acme", "U1", utc(2026, 11, 25, 10), amount=5000)
    assert weekly(app, MONDAY_SLOT) == ["T0TEST: weekly report 2026-W48 posted to CREPORT"]
    app.fake.reset()

    scheduler, events = start_scheduler(app, Clock(TUESDAY_10), schedulers)
    events.wait_executed("catch-up-weekly-report", "catch-up-reminders", "catch-up-stalled-nudges")
    scheduler.stop()
    assert posts(app.fake, REPORT_CHANNEL) == []
    assert [c for c in slack_api_calls(app.fake) if c.method.startswith("files.")] == []


def test_no_catch_up_before_this_weeks_slot(app_server, schedulers) -> None:
    # Monday 08:00: last Monday's slot belongs to another week (its report, on the week
    # before last, can no longer be made); this week's comes at 09:00.
    app = app_server
    new_deal(app, "Acme", "U1", utc(2026, 11, 25, 10), amount=5000)
    scheduler, events = start_scheduler(app, Clock(MONDAY_SLOT - dt.timedelta(hours=1)), schedulers)
    assert "catch-up-weekly-report" not in events.added
    events.wait_executed("catch-up-reminders", "catch-up-stalled-nudges")
    scheduler.stop()
    assert posts(app.fake, REPORT_CHANNEL) == []


def next_weekly(now: dt.datetime, weekday: int, hh: int, mm: int, zone: dt.tzinfo) -> dt.datetime:
    """The first `weekday` hh:mm in `zone` strictly after `now` (computed by hand)."""
    local = now.astimezone(zone)
    day = local.date() + dt.timedelta(days=(weekday - local.weekday()) % 7)
    slot = dt.datetime.combine(day, dt.time(hh, mm), zone)
    if slot <= local:
        slot += dt.timedelta(days=7)
    return slot


def test_reschedule_moves_the_weekly_report(app_server, schedulers) -> None:
    from zoneinfo import ZoneInfo

    app = app_server
    scheduler, _ = start_scheduler(app, Clock(TUESDAY_10), schedulers)
    before = dt.datetime.now(dt.UTC)
    runs = scheduler.next_runs()
    assert {"weekly-report", "stalled-nudges", "reminders"} <= set(runs)
    after = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=1)
    assert runs["weekly-report"] in {next_weekly(t, 0, 9, 0, dt.UTC) for t in (before, after)}

    before = dt.datetime.now(dt.UTC)
    scheduler.reschedule(weekly_day="fri", weekly_time="16:30")
    runs = scheduler.next_runs()
    after = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=1)
    weekly_run = runs["weekly-report"]
    assert weekly_run in {next_weekly(t, 4, 16, 30, dt.UTC) for t in (before, after)}
    assert (weekly_run.weekday(), weekly_run.hour, weekly_run.minute) == (4, 16, 30)
    # the other jobs keep their rhythm
    assert runs["reminders"] - before <= dt.timedelta(seconds=61)
    assert runs["stalled-nudges"].minute == 0

    shanghai = ZoneInfo("Asia/Shanghai")
    before = dt.datetime.now(dt.UTC)
    scheduler.reschedule(timezone="Asia/Shanghai")
    after = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=1)
    weekly_run = scheduler.next_runs()["weekly-report"]
    assert weekly_run in {next_weekly(t, 4, 16, 30, shanghai) for t in (before, after)}
    assert weekly_run.astimezone(dt.UTC).hour == 8  # 16:30 in Shanghai
    scheduler.stop()
    assert not scheduler.scheduler.running
