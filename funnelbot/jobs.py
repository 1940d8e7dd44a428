"""Scheduled jobs (SPEC §4): stalled-deal nudges, reminders, the weekly report.

Each job runs "as of" an instant handed in (the scheduler passes the clock; `funnelbot
jobs run --now` any time). Every send is first claimed in the job-run ledger — a unique
(team, job, period) row committed before Slack is called — so two schedulers racing, a
re-run or a restart never post twice. A claim whose runner died (no finish after
CLAIM_LEASE) may be taken over, so nothing is lost either.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import socket
import threading
from collections import defaultdict
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from sqlalchemy import orm as so
from sqlalchemy.dialects import postgresql, sqlite

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


def claim_all(
    session: so.Session, team_id: str, job: str, period_keys: list[str], now: dt.datetime
) -> dict[str, int]:
    """Claim these (team, job, period)s in this transaction: period key -> run id, for those
    nobody else has or had. One insert for all, a key taken already skipped (not an error
    that would undo the rest), then one take-over of claims whose runner died."""
    if not period_keys:
        return {}
    me = claimer_id()
    dialect = session.get_bind().dialect.name
    insert = (postgresql.insert if dialect == "postgresql" else sqlite.insert)(JobRun)
    rows = [
        {"team_id": team_id, "job": job, "period_key": key, "claimed_by": me, "started_at": now}
        for key in period_keys
    ]
    claimed = dict(
        session.execute(
            insert.values(rows).on_conflict_do_nothing().returning(JobRun.period_key, JobRun.id)
        ).all()
    )
    taken = [key for key in period_keys if key not in claimed]
    if taken:
        claimed |= dict(
            session.execute(
                sa.update(JobRun)
                .where(
                    JobRun.team_id == team_id,
                    JobRun.job == job,
                    JobRun.period_key.in_(taken),
                    JobRun.finished_at.is_(None),
                    JobRun.started_at < now - CLAIM_LEASE,
                )
                .values(claimed_by=me, started_at=now)
                .returning(JobRun.period_key, JobRun.id)
            ).all()
        )
    return claimed


def claim(ctx: JobContext, team_id: str, job: str, period_key: str, now: dt.datetime) -> int | None:
    """Claim (team, job, period) for this runner, committed before anything is sent; None
    when someone else has it or had it."""
    with ctx.sessions.begin() as session:
        return claim_all(session, team_id, job, [period_key], now).get(period_key)


def finish_in(session: so.Session, outcomes: dict[int, str], now: dt.datetime) -> None:
    """Mark these claims done (run id: outcome), in one executemany however many."""
    if outcomes:
        session.execute(
            sa.update(JobRun),
            [
                {"id": run_id, "finished_at": now, "outcome": outcome[:1000]}
                for run_id, outcome in outcomes.items()
            ],
        )


def finish(ctx: JobContext, run_id: int, outcome: str, now: dt.datetime) -> None:
    with ctx.sessions.begin() as session:
        finish_in(session, {run_id: outcome}, now)


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

# Reps claimed, with their nudges recorded, per transaction: a transaction per rep (each
# rewriting much of the nudge index) cost more than the rest of the job put together. The
# price: a runner that dies between that commit and the DMs leaves up to this many reps
# without that day's DM (their deals then count as nudged for 72 h).
NUDGE_BATCH = 50


@dataclass
class Stalled:
    """A rep's deals to nudge, oldest activity first, and those this nudge escalates (their
    third with no change since the first)."""

    deal_ids: list[int] = field(default_factory=list)
    escalating: set[int] = field(default_factory=set)

    def only(self, deal_ids: set[int]) -> Stalled:
        return Stalled([i for i in self.deal_ids if i in deal_ids], self.escalating & deal_ids)


class RepNudge(NamedTuple):
    owner: str
    day: dt.date  # the rep's own date: one DM per rep and day
    stalled: Stalled


def _among(session: so.Session, column: Any, ids: Collection[int]) -> sa.ColumnElement[bool]:
    """`column IN ids`, the ids bound as one value (a JSON array on SQLite, an array on
    PostgreSQL): a bind parameter per id cost more than the query, and drivers cap them."""
    if session.get_bind().dialect.name == "postgresql":
        return column == sa.any_(sa.literal(list(ids), postgresql.ARRAY(sa.Integer)))
    listed = sa.func.json_each(sa.literal(json.dumps(list(ids)))).table_valued("value")
    return column.in_(sa.select(listed.c.value))


def _why(tr: Translator, deal: presenters.DealInfo, now: dt.datetime, today: dt.date) -> str:
    if deal.next_step_due is not None and deal.next_step_due < today:
        return tr("nudge.overdue", date=tr.date(deal.next_step_due))
    return tr("nudge.idle", days=(now - deal.last_activity_at).days)


def _candidates(
    session: so.Session, team_id: str, now: dt.datetime, today: dt.date
) -> tuple[sa.Select[Any], dict[str, Any]]:
    """Stalled open deals, minus snoozed ones and those nudged in the last 72 h (the
    statement and the values it binds)."""
    recently = (
        sa.select(Nudge.id).where(Nudge.deal_id == Deal.id, Nudge.at > now - QUIET_PERIOD).exists()
    )
    stalled, params = metrics.stalled_condition(session, team_id, now, today)
    query = (
        sa.select(Deal)
        .where(stalled)
        .where(sa.or_(Deal.snoozed_until.is_(None), Deal.snoozed_until <= today))
        .where(~recently)
    )
    return query, params


def stalled_by_owner(
    session: so.Session, team_id: str, now: dt.datetime, today: dt.date
) -> dict[str, Stalled]:
    """Each rep's deals to nudge, from one scan of the team's open deals that also counts
    each one's nudges since its last change (no query per rep). Plain rows through the
    connection: the ORM's result layer cost as much again as the scan's Python side."""
    earlier = (
        sa.select(sa.func.count())
        .where(Nudge.deal_id == Deal.id, Nudge.deal_version == Deal.version)
        .correlate(Deal)
        .scalar_subquery()
    )
    candidates, params = _candidates(session, team_id, now, today)
    query = candidates.with_only_columns(Deal.owner_id, Deal.id, earlier).order_by(
        Deal.last_activity_at, Deal.id
    )
    by_owner: dict[str, Stalled] = defaultdict(Stalled)
    for owner, deal_id, nudged in session.connection().execute(query, params).all():
        stalled = by_owner[owner]
        stalled.deal_ids.append(deal_id)
        if nudged + 1 == ESCALATE_AT:
            stalled.escalating.add(deal_id)
    return dict(sorted(by_owner.items()))


def record_nudges(
    session: so.Session, team_id: str, stalled: list[Stalled], now: dt.datetime
) -> set[int]:
    """Record a nudge of each deal still open, for its owner at the version it has now, and
    return those deals. One INSERT … SELECT for them all: rows sent one by one, or a
    statement per rep, cost more than the rest of the job."""
    nudges = Nudge.__table__
    deal_ids = [i for s in stalled for i in s.deal_ids]
    rows = sa.select(
        sa.literal(team_id, nudges.c.team_id.type),
        Deal.id,
        Deal.owner_id,
        sa.literal(now, nudges.c.at.type),
        Deal.version,
        _among(session, Deal.id, set().union(*(s.escalating for s in stalled))),
    ).where(_among(session, Deal.id, deal_ids), Deal.status == OPEN)
    columns = ["team_id", "deal_id", "user_id", "at", "deal_version", "escalated"]
    inserted = session.execute(sa.insert(nudges).from_select(columns, rows)).rowcount
    if inserted == len(deal_ids):  # as good as always: RETURNING them all cost a third more
        return set(deal_ids)
    recorded = sa.select(nudges.c.deal_id).where(
        _among(session, nudges.c.deal_id, deal_ids), nudges.c.at == now
    )
    return set(session.scalars(recorded))


def deal_infos_by_id(
    session: so.Session, team_id: str, deal_ids: list[int]
) -> dict[int, presenters.DealInfo]:
    """Just the deals a DM draws, in one read: most stalled deals are only counted."""
    deals = session.scalars(sa.select(Deal).where(_among(session, Deal.id, deal_ids))).all()
    return dict(
        zip([d.id for d in deals], presenters.deal_infos(session, team_id, deals), strict=True)
    )


def stalled_nudges(ctx: JobContext, now: dt.datetime) -> list[str]:
    """One DM per rep, once per rep-local day, from NUDGE_HOUR on in the rep's time zone."""
    done: list[str] = []
    for team_id in teams(ctx):
        done += _nudge_team(ctx, team_id, now)
    return done


def _nudge_team(ctx: JobContext, team_id: str, now: dt.datetime) -> list[str]:
    """One scan for the team, the reps in batches, then one DM per manager about the deals
    escalated."""
    today = now.astimezone(ctx.workspace_zone(team_id)).date()
    nudge_hour = ctx.config(team_id).nudge_hour
    with ctx.sessions() as session:
        candidates = stalled_by_owner(session, team_id, now, today)
    due: list[RepNudge] = []
    for owner, stalled in candidates.items():
        # Outside any transaction: the rep's time zone may come from Slack (users.info).
        local = now.astimezone(ctx.user_zone(team_id, owner))
        if local.hour >= nudge_hour:
            due.append(RepNudge(owner, local.date(), stalled))
    done: list[str] = []
    escalations: list[tuple[presenters.DealInfo, str]] = []
    for first in range(0, len(due), NUDGE_BATCH):
        lines, escalated = _nudge_reps(ctx, team_id, due[first : first + NUDGE_BATCH], now)
        done += lines
        escalations += escalated
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
        done.append(f"{team_id}: escalated {len(escalations)} deals to {len(managers)} managers")
    return done


def _nudge_reps(
    ctx: JobContext, team_id: str, reps: list[RepNudge], now: dt.datetime
) -> tuple[list[str], list[tuple[presenters.DealInfo, str]]]:
    """Claim the reps, record their nudges and read what their DMs draw in one transaction;
    DM each rep; then, in one more, finish the claims of those reached and take back the
    nudges and claims of the others. Returns what was done and, for the managers, the
    reached reps' escalated deals."""
    with ctx.sessions.begin() as session:
        keys = {rep.owner: f"{rep.day.isoformat()}:{rep.owner}" for rep in reps}
        claims = claim_all(session, team_id, "stalled-nudges", list(keys.values()), now)
        runs = {owner: claims[key] for owner, key in keys.items() if key in claims}
        claimed = [rep for rep in reps if rep.owner in runs]
        recorded = record_nudges(session, team_id, [rep.stalled for rep in claimed], now)
        claimed = [rep._replace(stalled=rep.stalled.only(recorded)) for rep in claimed]
        # Only what a DM lists, and what goes to the managers, is drawn.
        drawn = {
            deal_id
            for rep in claimed
            for deal_id in (*rep.stalled.deal_ids[: blocks.NUDGE_LISTED], *rep.stalled.escalating)
        }
        infos = deal_infos_by_id(session, team_id, sorted(drawn))

    done: list[str] = []
    escalations: list[tuple[presenters.DealInfo, str]] = []
    delivered: dict[int, str] = {}
    undelivered: list[RepNudge] = []
    for rep in claimed:
        deal_ids = rep.stalled.deal_ids
        tr = ctx.translator_for(team_id, rep.owner)
        listed = deal_ids[: blocks.NUDGE_LISTED]
        items = [(infos[i], _why(tr, infos[i], now, rep.day)) for i in listed]
        if items:
            try:
                ctx.dm(team_id, rep.owner, blocks.nudge_dm(tr, items, len(deal_ids)))
            except SlackApiError as exc:  # go on with the other reps
                logger.warning("%s: could not nudge %s: %s", team_id, rep.owner, exc)
                undelivered.append(rep)
                done.append(f"{team_id}: could not nudge {rep.owner} ({_slack_error(exc)})")
                continue
        workspace_tr = ctx.workspace_translator(team_id)
        escalations += [
            (infos[i], _why(workspace_tr, infos[i], now, rep.day))
            for i in deal_ids
            if i in rep.stalled.escalating
        ]
        delivered[runs[rep.owner]] = f"nudged {len(deal_ids)} deals"
        done.append(f"{team_id}: nudged {rep.owner} about {len(deal_ids)} deals")
    with ctx.sessions.begin() as session:
        finish_in(session, delivered, now)
        if undelivered:  # forget their nudges and claims, so the next run tries them again
            taken_back = [i for rep in undelivered for i in rep.stalled.deal_ids]
            session.execute(
                sa.delete(Nudge).where(_among(session, Nudge.deal_id, taken_back), Nudge.at == now)
            )
            session.execute(
                sa.delete(JobRun).where(JobRun.id.in_([runs[rep.owner] for rep in undelivered]))
            )
    return done, escalations


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
