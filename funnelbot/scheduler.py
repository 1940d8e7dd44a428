"""APScheduler 3 inside the bot process: cron triggers in the workspace time zone.

With several replicas on PostgreSQL only the leader runs jobs: leadership is a session
advisory lock held on a dedicated connection, so it moves to another replica as soon as
the leader's connection dies. The job-run ledger (funnelbot.jobs) still guards every
send, so even two schedulers racing never post twice. Missed runs are coalesced: on
start every job runs once, and each job catches up on its own period.
https://apscheduler.readthedocs.io/en/3.x/userguide.html
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import threading
from collections.abc import Callable

import sqlalchemy as sa
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.cron import CronTrigger

from funnelbot import jobs
from funnelbot.deals import utcnow

logger = logging.getLogger(__name__)
LEADER_LOCK_ID = 0x46554E4E4C44  # "FUNNLD"
MISFIRE_GRACE = 6 * 3600


class Leadership:
    """Am I the replica that runs the jobs? Always yes on SQLite (one process owns it)."""

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine
        self._conn: sa.Connection | None = None
        self._lock = threading.Lock()

    def is_leader(self) -> bool:
        if self.engine.dialect.name != "postgresql":
            return True
        with self._lock:
            try:
                if self._conn is not None:
                    self._conn.exec_driver_sql("SELECT 1")
                    # End the implicit transaction: the session-level advisory lock stays,
                    # and the connection does not sit "idle in transaction" for days.
                    self._conn.rollback()
                    return True
            except sa.exc.SQLAlchemyError:
                self._drop()
            conn = None
            try:
                conn = self.engine.connect()
                got = conn.exec_driver_sql(
                    f"SELECT pg_try_advisory_lock({LEADER_LOCK_ID})"
                ).scalar()
                conn.commit()
            except sa.exc.DBAPIError as exc:
                logger.warning("cannot reach the database to elect a scheduler leader: %s", exc)
                if conn is not None:
                    with contextlib.suppress(sa.exc.SQLAlchemyError):
                        conn.close()
                return False
            if got:
                self._conn = conn
                logger.info("this replica is now the scheduler leader")
                return True
            conn.close()
            return False

    def _drop(self) -> None:
        if self._conn is not None:
            # close() alone would return the connection to the pool with the session, and
            # so the advisory lock, still alive: nobody could lead until the pool let go of
            # it. Discard it instead; the server ends the session and frees the lock.
            with contextlib.suppress(sa.exc.SQLAlchemyError):
                # Unlock first, synchronously, so another replica can lead at once.
                self._conn.exec_driver_sql(f"SELECT pg_advisory_unlock({LEADER_LOCK_ID})")
                self._conn.commit()
            with contextlib.suppress(sa.exc.SQLAlchemyError):
                self._conn.invalidate()
            with contextlib.suppress(sa.exc.SQLAlchemyError):
                self._conn.close()
            self._conn = None

    def release(self) -> None:
        with self._lock:
            self._drop()


class Scheduler:
    def __init__(
        self,
        context: jobs.JobContext,
        engine: sa.Engine,
        *,
        clock: Callable[[], dt.datetime] = utcnow,
        weekly_day: str = "mon",
        weekly_time: str = "09:00",
    ) -> None:
        self.context = context
        self.clock = clock
        self.leadership = Leadership(engine)
        self.timezone = context.settings.timezone
        self.scheduler = BackgroundScheduler(
            timezone=self.timezone,
            job_defaults={
                "coalesce": True,
                "max_instances": 1,
                "misfire_grace_time": MISFIRE_GRACE,
            },
        )
        self.weekly_day = weekly_day
        self.weekly_time = weekly_time

    def triggers(self) -> dict[str, CronTrigger]:
        hour, minute = (int(x) for x in self.weekly_time.split(":"))
        return {
            # Hourly, because each rep is nudged from 09:00 in their own time zone.
            "stalled-nudges": CronTrigger(minute=0, timezone=self.timezone),
            "weekly-report": CronTrigger(
                day_of_week=self.weekly_day, hour=hour, minute=minute, timezone=self.timezone
            ),
            "reminders": CronTrigger(minute="*", timezone=self.timezone),
        }

    def run(self, name: str) -> None:
        if not self.leadership.is_leader():
            return
        try:
            for line in jobs.run_job(self.context, name, self.clock()):
                logger.info("%s: %s", name, line)
        except Exception:  # noqa: BLE001 - a failed run is logged; the next one tries again
            logger.exception("job %s failed", name)

    def start(self) -> None:
        # A single workspace's stored settings decide the weekly slot (several workspaces
        # share the environment's defaults).
        team_ids = jobs.teams(self.context)
        if len(team_ids) == 1:
            config = self.context.config(team_ids[0])
            self.weekly_day, self.weekly_time, self.timezone = (
                config.weekly_day,
                config.weekly_time,
                config.timezone,
            )
        for name, trigger in self.triggers().items():
            self.scheduler.add_job(self.run, trigger, args=[name], id=name, replace_existing=True)
        self.scheduler.start()
        # Catch up once on start: nudges and reminders due now, and last week's report if
        # it was missed while the bot was down (the ledger keeps it from posting twice).
        for name in ("reminders", "stalled-nudges"):
            self.scheduler.add_job(self.run, args=[name], id=f"catch-up-{name}")
        if self._weekly_report_due():
            self.scheduler.add_job(self.run, args=["weekly-report"], id="catch-up-weekly-report")

    def _weekly_report_due(self) -> bool:
        """Whether this week's report slot has passed and its report can still be made.

        The grace period runs to the end of the slot's ISO week (workspace time): until
        then the job, run now, reports on the same previous ISO week the slot would have.
        Tuesday 10:00 after a Monday 09:00 slot catches up; the next Monday does not (that
        week's own slot reports on the week that just ended instead).
        """
        trigger = self.triggers()["weekly-report"]
        now = self.clock().astimezone(trigger.timezone)
        last_week = now - dt.timedelta(days=7)
        slot = trigger.get_next_fire_time(None, last_week)
        return slot is not None and slot <= now and slot.isocalendar()[:2] == now.isocalendar()[:2]

    def reschedule(
        self,
        *,
        weekly_day: str | None = None,
        weekly_time: str | None = None,
        timezone: str | None = None,
    ) -> None:
        """New times from /funnel settings take effect without a restart."""
        self.weekly_day = weekly_day or self.weekly_day
        self.weekly_time = weekly_time or self.weekly_time
        self.timezone = timezone or self.timezone
        if not self.scheduler.running:
            return
        for name, trigger in self.triggers().items():
            self.scheduler.reschedule_job(name, trigger=trigger)

    def next_runs(self) -> dict[str, dt.datetime | None]:
        return {job.id: job.next_run_time for job in self.scheduler.get_jobs()}

    def stop(self) -> None:
        if self.scheduler.running:
            self.scheduler.shutdown(wait=False)
        self.leadership.release()
