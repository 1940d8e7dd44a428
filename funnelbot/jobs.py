"""Scheduled jobs (SPEC §4): stalled-deal nudges, reminders, the weekly report.

Each job runs "as of" an instant handed in (the scheduler passes the clock; `funnelbot
jobs run --now` any time). Every send is first claimed in the job-run ledger — a unique
(team, job, period) row committed before Slack is called — so two schedulers racing, a
re-run or a restart never post twice. A claim whose runner died (no finish after
CLAIM_LEASE) may be taken over, so nothing is lost either.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import socket
import threading
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from sqlalchemy import exc as sa_exc
from sqlalchemy import orm as so

from funnelbot import blocks, charts, metrics, presenters, reports
from funnelbot import deals as domain
from funnelbot.config import Settings
from funnelbot.i18n import Translator, language_of, translator
from funnelbot.middleware import prune_seen
from funnelbot.models import OPEN, Deal, JobRun, Nudge, Reminder, Workspace
from funnelbot.teamconfig import ConfigCache, TeamConfig

if TYPE_CHECKING:
    from funnelbot.listeners.context import UserDirectory

logger = logging.getLogger(__name__)

JOB_NAMES = ("stalled-nudges", "weekly-report", "reminders")
CLAIM_LEASE = dt.timedelta(minutes=15)
QUIET_PERIOD = dt.timedelta(hours=72)
ESCALATE_AT = 3


def _user_directory() -> UserDirectory:
    # Imported here: funnelbot.listeners imports this module (App Home), so importing it
    # at the top made `import funnelbot.jobs` (as `funnelbot jobs run` does) circular.
    from funnelbot.listeners.context import UserDirectory

    return UserDirectory()


def claimer_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{threading.get_ident()}"[:100]


@dataclass
class JobContext:
    """What a job needs: settings, sessions, a Slack client and per-user caches."""

    settings: Settings
    sessions: so.sessionmaker[so.Session]
    client: WebClient
    locales: UserDirectory = field(default_factory=_user_directory)
    configs: ConfigCache | None = None
    # With OAuth installs each workspace has its own bot token (slack_sdk InstallationStore).
    installations: Any = None

    def __post_init__(self) -> None:
        if self.configs is None:
            self.configs = ConfigCache(self.settings, self.sessions)

    def slack(self, team_id: str) -> WebClient:
        """The Web API client for a workspace: its installed bot's token, or the one token."""
        if self.installations is None:
            return self.client
        bot = self.installations.find_bot(enterprise_id=None, team_id=team_id)
        if bot is None:
            raise LookupError(f"funnelbot is not installed in {team_id}")
        return WebClient(
            token=bot.bot_token,
            base_url=self.client.base_url,
            timeout=self.client.timeout,
            retry_handlers=self.client.retry_handlers,
        )

    def config(self, team_id: str) -> TeamConfig:
        assert self.configs is not None
        return self.configs.get(team_id)

    def workspace_zone(self, team_id: str) -> ZoneInfo:
        return ZoneInfo(self.config(team_id).timezone)

    def user_zone(self, team_id: str, user_id: str) -> ZoneInfo:
        """The rep's own time zone from users.info (cached), else the workspace's."""
        zone = self.locales.user(self.slack(team_id), team_id, user_id).get("tz")
        try:
            return ZoneInfo(zone) if zone else self.workspace_zone(team_id)
        except (ValueError, KeyError):
            return self.workspace_zone(team_id)

    def translator_for(self, team_id: str, user_id: str) -> Translator:
        config = self.config(team_id)
        locale = self.locales.locale(self.slack(team_id), team_id, user_id)
        return translator(language_of(locale, config.language), config.currency)

    def workspace_translator(self, team_id: str) -> Translator:
        config = self.config(team_id)
        return translator(config.language, config.currency)

    def managers(self, team_id: str) -> frozenset[str]:
        config = self.config(team_id)
        group = (
            self.locales.group_members(self.slack(team_id), team_id, config.manager_group)
            if config.manager_group
            else frozenset()
        )
        return config.managers | group

    def dm(self, team_id: str, user_id: str, message: blocks.Message) -> str:
        client = self.slack(team_id)
        channel = client.conversations_open(users=user_id)["channel"]["id"]
        client.chat_postMessage(channel=channel, **message, unfurl_links=False, unfurl_media=False)
        return channel


def _slack_error(exc: SlackApiError) -> str:
    response = getattr(exc, "response", None)
    return str(response.get("error") if response is not None else exc)


# --- the ledger -----------------------------------------------------------------------


def claim(ctx: JobContext, team_id: str, job: str, period_key: str, now: dt.datetime) -> int | None:
    """Claim (team, job, period) for this runner; None when someone else has it or had it."""
    me = claimer_id()
    try:
        with ctx.sessions.begin() as session:
            run = JobRun(
                team_id=team_id, job=job, period_key=period_key, claimed_by=me, started_at=now
            )
            session.add(run)
            session.flush()
            return run.id
    except sa_exc.IntegrityError:
        pass
    with ctx.sessions.begin() as session:
        # Take over a claim whose runner died before finishing.
        taken = session.execute(
            sa.update(JobRun)
            .where(
                JobRun.team_id == team_id,
                JobRun.job == job,
                JobRun.period_key == period_key,
                JobRun.finished_at.is_(None),
                JobRun.started_at < now - CLAIM_LEASE,
            )
            .values(claimed_by=me, started_at=now)
            .returning(JobRun.id)
        ).scalar_one_or_none()
    return taken


def finish(ctx: JobContext, run_id: int, outcome: str, now: dt.datetime) -> None:
    with ctx.sessions.begin() as session:
        session.execute(
            sa.update(JobRun)
            .where(JobRun.id == run_id)
            .values(finished_at=now, outcome=outcome[:1000])
        )


def teams(ctx: JobContext) -> list[str]:
    with ctx.sessions() as session:
        return [
            t
            for (t,) in session.execute(
                sa.select(Workspace.team_id)
                .where(Workspace.team_id != domain.TEMPLATE_TEAM)
                .order_by(Workspace.team_id)
            )
        ]


# --- stalled-deal nudges ----------------------------------------------------------------


def _why(tr: Translator, deal: Deal, now: dt.datetime, today: dt.date) -> str:
    if deal.next_step_due is not None and deal.next_step_due < today:
        return tr("nudge.overdue", date=tr.date(deal.next_step_due))
    return tr("nudge.idle", days=(now - deal.last_activity_at).days)


def _candidates(
    session: so.Session, team_id: str, now: dt.datetime, today: dt.date
) -> sa.Select[Any]:
    """Stalled open deals, minus snoozed ones and those nudged in the last 72 h."""
    recently = (
        sa.select(Nudge.id).where(Nudge.deal_id == Deal.id, Nudge.at > now - QUIET_PERIOD).exists()
    )
    return (
        sa.select(Deal)
        .where(metrics.stalled_condition(session, team_id, now, today))
        .where(sa.or_(Deal.snoozed_until.is_(None), Deal.snoozed_until <= today))
        .where(~recently)
    )


def nudge_owners(
    session: so.Session, team_id: str, now: dt.datetime, today: dt.date
) -> dict[str, list[int]]:
    """The deals to nudge (ids) per rep, from one scan of the team's open deals."""
    query = _candidates(session, team_id, now, today).with_only_columns(Deal.owner_id, Deal.id)
    by_owner: dict[str, list[int]] = defaultdict(list)
    for owner, deal_id in session.execute(query):
        by_owner[owner].append(deal_id)
    return dict(sorted(by_owner.items()))


def owner_deals(session: so.Session, deal_ids: list[int]) -> list[Deal]:
    """Those deals, still open, oldest activity first."""
    return list(
        session.scalars(
            sa.select(Deal)
            .where(Deal.id.in_(deal_ids), Deal.status == OPEN)
            .order_by(Deal.last_activity_at)
        )
    )


def nudges_since_change(session: so.Session, deals: list[Deal]) -> dict[int, int]:
    """How often each deal was nudged at its current version (i.e. with no change since)."""
    if not deals:
        return {}
    rows = session.execute(
        sa.select(Nudge.deal_id, sa.func.count())
        .join(Deal, sa.and_(Deal.id == Nudge.deal_id, Deal.version == Nudge.deal_version))
        .where(Nudge.deal_id.in_([d.id for d in deals]))
        .group_by(Nudge.deal_id)
    ).all()
    return {deal_id: int(n) for deal_id, n in rows}


def stalled_nudges(ctx: JobContext, now: dt.datetime) -> list[str]:
    """One DM per rep, once per rep-local day, from NUDGE_HOUR on in the rep's time zone."""
    done: list[str] = []
    for team_id in teams(ctx):
        today = now.astimezone(ctx.workspace_zone(team_id)).date()
        nudge_hour = ctx.config(team_id).nudge_hour
        with ctx.sessions() as session:
            candidates = nudge_owners(session, team_id, now, today)
        escalations: list[tuple[presenters.DealInfo, str]] = []
        for owner, deal_ids in candidates.items():
            local = now.astimezone(ctx.user_zone(team_id, owner))
            if local.hour < nudge_hour:
                continue
            run_id = claim(
                ctx, team_id, "stalled-nudges", f"{local.date().isoformat()}:{owner}", now
            )
            if run_id is None:
                continue
            tr = ctx.translator_for(team_id, owner)
            owner_escalations: list[tuple[presenters.DealInfo, str]] = []
            with ctx.sessions.begin() as session:
                deals = owner_deals(session, deal_ids)
                earlier_by_deal = nudges_since_change(session, deals)
                escalate = {d.id for d in deals if earlier_by_deal.get(d.id, 0) + 1 == ESCALATE_AT}
                # Only what the DM lists (and what goes to the managers) is drawn.
                listed = deals[: blocks.NUDGE_LISTED]
                items = list(
                    zip(
                        presenters.deal_infos(session, team_id, listed),
                        [_why(tr, deal, now, local.date()) for deal in listed],
                        strict=True,
                    )
                )
                escalated = [d for d in deals if d.id in escalate]
                owner_escalations = list(
                    zip(
                        presenters.deal_infos(session, team_id, escalated),
                        [
                            _why(ctx.workspace_translator(team_id), d, now, local.date())
                            for d in escalated
                        ],
                        strict=True,
                    )
                )
                if deals:
                    session.execute(
                        sa.insert(Nudge),
                        [
                            {
                                "team_id": team_id,
                                "deal_id": d.id,
                                "user_id": owner,
                                "at": now,
                                "deal_version": d.version,
                                "escalated": d.id in escalate,
                            }
                            for d in deals
                        ],
                    )
            if items:
                try:
                    ctx.dm(team_id, owner, blocks.nudge_dm(tr, items, len(deals)))
                except SlackApiError as exc:
                    # Not delivered: forget this run's nudges and its claim, so the next
                    # run tries again, and go on with the other reps.
                    logger.warning("%s: could not nudge %s: %s", team_id, owner, exc)
                    with ctx.sessions.begin() as session:
                        session.execute(
                            sa.delete(Nudge).where(
                                Nudge.team_id == team_id, Nudge.user_id == owner, Nudge.at == now
                            )
                        )
                        session.execute(sa.delete(JobRun).where(JobRun.id == run_id))
                    done.append(f"{team_id}: could not nudge {owner} ({_slack_error(exc)})")
                    continue
            escalations += owner_escalations
            finish(ctx, run_id, f"nudged {len(deals)} deals", now)
            done.append(f"{team_id}: nudged {owner} about {len(deals)} deals")
        if escalations:
            managers = ctx.managers(team_id)
            for manager in sorted(managers):
                try:
                    ctx.dm(
                        team_id,
                        manager,
                        blocks.escalation_dm(ctx.translator_for(team_id, manager), escalations),
                    )
                except SlackApiError as exc:  # one unreachable manager must not stop the rest
                    logger.warning("%s: could not escalate to %s: %s", team_id, manager, exc)
                    done.append(f"{team_id}: could not escalate to {manager} ({_slack_error(exc)})")
            done.append(
                f"{team_id}: escalated {len(escalations)} deals to {len(managers)} managers"
            )
    return done


# --- reminders ------------------------------------------------------------------------


def reminders(ctx: JobContext, now: dt.datetime) -> list[str]:
    """Send every due reminder once: it is marked sent (claimed) before the DM goes out."""
    done: list[str] = []
    with ctx.sessions.begin() as session:
        prune_seen(session, now)  # housekeeping that needs a minutely tick
    with ctx.sessions() as session:
        due = (
            session.execute(
                sa.select(Reminder.id)
                .where(Reminder.sent_at.is_(None), Reminder.due_at <= now)
                .order_by(Reminder.due_at)
            )
            .scalars()
            .all()
        )
    for reminder_id in due:
        with ctx.sessions.begin() as session:
            claimed = session.execute(
                sa.update(Reminder)
                .where(Reminder.id == reminder_id, Reminder.sent_at.is_(None))
                .values(sent_at=now)
            ).rowcount
            if not claimed:
                continue
            reminder = session.get(Reminder, reminder_id)
            assert reminder is not None
            deal = session.get(Deal, reminder.deal_id)
            assert deal is not None
            tr = ctx.translator_for(reminder.team_id, reminder.user_id)
            message = blocks.reminder_dm(
                tr, presenters.deal_infos(session, deal.team_id, [deal])[0], reminder.text
            )
            user_id, team_id = reminder.user_id, reminder.team_id
        try:
            ctx.dm(team_id, user_id, message)
        except SlackApiError as exc:
            # Put it back so the next run tries again rather than losing it, and go on:
            # one undeliverable reminder (a deactivated user) must not hold up the others.
            logger.warning("could not send reminder %s to %s: %s", reminder_id, user_id, exc)
            with ctx.sessions.begin() as session:
                session.execute(
                    sa.update(Reminder).where(Reminder.id == reminder_id).values(sent_at=None)
                )
            done.append(f"could not remind {user_id} (reminder {reminder_id}): {_slack_error(exc)}")
            continue
        done.append(f"reminded {user_id} (reminder {reminder_id})")
    return done


# --- weekly report --------------------------------------------------------------------


def weekly_report(ctx: JobContext, now: dt.datetime) -> list[str]:
    done: list[str] = []
    for team_id in teams(ctx):
        config = ctx.config(team_id)
        tz = config.timezone
        today = config.today(now)
        tr = ctx.workspace_translator(team_id)
        channel = config.report_channel
        with ctx.sessions() as session:
            if not channel:
                logger.warning("%s: %s", team_id, tr("report.no_channel"))
                done.append(f"{team_id}: no report channel set, nothing posted")
                continue
            report = reports.weekly_report(session, team_id, today, now, tr, tz=tz)
            png = charts.render_funnel(reports.chart_data(session, team_id, report.week, tr, tz=tz))
        run_id = claim(ctx, team_id, "weekly-report", report.iso_week, now)
        if run_id is None:
            done.append(f"{team_id}: weekly report {report.iso_week} was already posted")
            continue
        try:
            ctx.slack(team_id).files_upload_v2(
                channel=channel,
                content=png,
                filename=f"funnel-{report.iso_week}.png",
                title=tr("report.title", week=report.iso_week),
            )
            posted = ctx.slack(team_id).chat_postMessage(
                channel=channel, **blocks.weekly_report_message(tr, report), unfurl_links=False
            )
        except Exception:
            # The report is not out: give the week back, so a re-run (`funnelbot jobs run
            # weekly-report`) posts it now instead of saying it was already posted.
            with ctx.sessions.begin() as session:
                session.execute(sa.delete(JobRun).where(JobRun.id == run_id))
            raise
        try:
            ctx.slack(team_id).chat_postMessage(
                channel=channel,
                thread_ts=posted["ts"],
                **blocks.weekly_thread(tr, report),
                unfurl_links=False,
            )
        except SlackApiError as exc:  # the report itself is posted: do not post it twice
            logger.warning("%s: the weekly report's thread reply failed: %s", team_id, exc)
        _remember_report_link(ctx, team_id, channel, posted["ts"])
        finish(ctx, run_id, f"posted to {channel}", now)
        done.append(f"{team_id}: weekly report {report.iso_week} posted to {channel}")
    return done


def _remember_report_link(ctx: JobContext, team_id: str, channel: str, ts: str) -> None:
    """Keep the latest report's permalink for managers' App Home (best effort)."""
    try:
        link = ctx.slack(team_id).chat_getPermalink(channel=channel, message_ts=ts).get("permalink")
    except SlackApiError as exc:
        logger.info("no permalink for the weekly report: %s", exc)
        return
    if not link:
        return
    with ctx.sessions.begin() as session:
        workspace = session.get(Workspace, team_id, with_for_update=True)
        if workspace is not None:
            workspace.settings = {**(workspace.settings or {}), "last_report_link": link}


JOBS: dict[str, Callable[[JobContext, dt.datetime], list[str]]] = {
    "stalled-nudges": stalled_nudges,
    "weekly-report": weekly_report,
    "reminders": reminders,
}


def run_job(ctx: JobContext, name: str, now: dt.datetime) -> list[str]:
    logger.info("running %s as of %s", name, now.isoformat())
    return JOBS[name](ctx, now)
