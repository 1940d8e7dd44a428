"""A realistic sample team for first runs and demos (`funnelbot demo`, `:demo` in the shell).

Five reps and two managers; about 400 deals created over the six months before `now`,
each taken through its stages with the domain functions of `funnelbot.deals` at explicit,
increasing timestamps, so the stage history, notes and next steps are exactly what the
product would have recorded. Fewer deals reach each later stage; lost reasons and lead
sources vary; some deals went quiet weeks ago (stalled); amounts are log-normal around
$20k. Deterministic for a given `seed` and `now`.

Idempotent: a workspace that already has deals is left alone (it is either the demo,
seeded before, or someone's real data).
"""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal

import sqlalchemy as sa
from sqlalchemy import orm as so

from funnelbot import deals as domain
from funnelbot.config import Settings
from funnelbot.models import LOST, OPEN, WON, Deal, Stage, Workspace

TEAM_ID = "T_LOCAL"
DEMO_DEALS = 400
DEMO_DAYS = 182


@dataclass(frozen=True)
class DemoUser:
    user_id: str
    name: str
    handle: str
    role: str  # "rep" or "manager"
    # How a rep plays: >1 converts better / moves faster.
    skill: float = 1.0
    pace: float = 1.0


REPS = (
    DemoUser("UALICE", "Alice Chen", "alice", "rep", skill=1.15, pace=0.9),
    DemoUser("UBRUNO", "Bruno Silva", "bruno", "rep", skill=0.9, pace=1.1),
    DemoUser("UCHLOE", "Chloé Martin", "chloe", "rep", skill=1.0, pace=1.0),
    DemoUser("UDEV", "Dev Patel", "dev", "rep", skill=1.2, pace=0.8),
    DemoUser("UEMI", "Emi Tanaka", "emi", "rep", skill=0.8, pace=1.25),
)
MANAGERS = (
    DemoUser("UMAYA", "Maya Okafor", "maya", "manager"),
    DemoUser("UWANG", "王磊 Wang Lei", "wanglei", "manager"),
)
USERS = REPS + MANAGERS
MANAGER_IDS = frozenset(u.user_id for u in MANAGERS)

# Lead source -> (weight, conversion multiplier, amount multiplier)
SOURCES = {
    "Website": (26, 1.0, 0.9),
    "Referral": (14, 1.35, 1.1),
    "Outbound": (20, 0.75, 1.2),
    "Trade show": (10, 0.85, 1.0),
    "Partner": (10, 1.2, 1.4),
    "LinkedIn": (12, 0.9, 0.8),
    "Webinar": (8, 1.05, 0.85),
}

# Open stage key -> (advance, lost, go quiet) before skill/source, mean days in stage.
FLOW = {
    "lead": ((0.58, 0.37, 0.05), 5.0),
    "interest": ((0.60, 0.35, 0.05), 9.0),
    "proposal": ((0.57, 0.39, 0.04), 12.0),
    "negotiation": ((0.62, 0.35, 0.03), 10.0),
}

LOST_REASONS = {
    "lead": ["No budget this year", "Not a fit for our product", "No response after 3 follow-ups"],
    "interest": [
        "No budget this year",
        "Timing: revisit next quarter",
        "Went with a competitor",
        "Chose to build in-house",
    ],
    "proposal": [
        "Price too high",
        "Went with a competitor",
        "Missing integration with their ERP",
        "Timing: revisit next quarter",
    ],
    "negotiation": [
        "Lost to a competitor on price",
        "Procurement froze all new spend",
        "Champion left the company",
        "Legal could not agree on terms",
    ],
}

NOTES = {
    "lead": [
        "Intro call booked",
        "Inbound request via website form",
        "Met at the booth, wants a demo",
    ],
    "interest": [
        "Demo went well, they want pricing",
        "Technical call with their IT lead",
        "Sent case study and references",
    ],
    "proposal": [
        "Proposal sent, walking through it on Thursday",
        "They asked for a 3-year option",
        "Security questionnaire returned",
    ],
    "negotiation": [
        "Legal reviewing the MSA",
        "Asked for 12% discount, countered at 6%",
        "Procurement wants net-60 payment terms",
    ],
}

NEXT_STEPS = {
    "lead": ["Qualify budget and timeline", "Book a discovery call"],
    "interest": ["Run the product demo", "Intro to the decision maker"],
    "proposal": ["Walk through the proposal", "Send revised pricing"],
    "negotiation": ["Get the signed order form", "Redline call with legal"],
}

_PREFIXES = [
    "Acme",
    "Northwind",
    "Blue Harbor",
    "Summit",
    "Redwood",
    "Silverline",
    "Brightpath",
    "Ironclad",
    "Evergreen",
    "Lakeside",
    "Pioneer",
    "Crescent",
    "Granite",
    "Harborview",
    "Maple",
    "Orion",
    "Pinnacle",
    "Riverbend",
    "Sterling",
    "Vantage",
    "Keystone",
    "Atlas",
    "Beacon",
    "Cobalt",
    "Driftwood",
    "Falcon",
    "Helix",
    "Juniper",
    "Meridian",
    "Nimbus",
]
_INDUSTRIES = [
    "Logistics",
    "Foods",
    "Hotels",
    "Health",
    "Robotics",
    "Retail",
    "Energy",
    "Labs",
    "Insurance",
    "Manufacturing",
    "Media",
    "Pharma",
    "Telecom",
    "Analytics",
    "Motors",
    "Apparel",
    "Bank",
    "Foods Group",
    "Software",
    "Freight",
]
_CN_CITIES = ["上海", "深圳", "杭州", "北京", "成都", "苏州", "广州", "南京"]
_CN_BRANDS = ["星辰", "华锐", "云帆", "智源", "天府", "蓝海", "长城", "东方", "金桥", "新元"]
_CN_INDUSTRIES = ["科技", "电子", "物流", "医疗", "食品", "制造", "零售", "能源"]
_PROJECTS = [
    "50 seats",
    "pilot",
    "annual plan",
    "expansion",
    "EU rollout",
    "renewal",
    "200 seats",
    "analytics add-on",
    "phase 2",
    "APAC team",
]
_CN_PROJECTS = ["试点", "年度合同", "二期", "全员上线", "续约"]


@dataclass
class DemoResult:
    team_id: str
    seeded: bool
    deals: int
    users: tuple[DemoUser, ...] = field(default=USERS)


def _weighted(rng: random.Random, table: dict[str, tuple[float, float, float]]) -> str:
    keys = list(table)
    return rng.choices(keys, weights=[table[k][0] for k in keys])[0]


def _business_time(rng: random.Random, at: dt.datetime) -> dt.datetime:
    """`at`, or the next weekday working-hours moment after it (never earlier)."""
    if at.hour < 9:
        at = at.replace(hour=9, minute=rng.randrange(60))
    elif at.hour >= 18:
        at = (at + dt.timedelta(days=1)).replace(hour=9, minute=rng.randrange(60))
    while at.weekday() >= 5:
        at = (at + dt.timedelta(days=1)).replace(hour=9, minute=rng.randrange(60))
    return at


def _deal_name(rng: random.Random, taken: set[str]) -> str:
    for _ in range(50):
        if rng.random() < 0.15:
            base = rng.choice(_CN_CITIES) + rng.choice(_CN_BRANDS) + rng.choice(_CN_INDUSTRIES)
            name = base + ("（" + rng.choice(_CN_PROJECTS) + "）" if rng.random() < 0.5 else "")
        else:
            base = f"{rng.choice(_PREFIXES)} {rng.choice(_INDUSTRIES)}"
            name = base + (f" – {rng.choice(_PROJECTS)}" if rng.random() < 0.5 else "")
        if name not in taken:
            taken.add(name)
            return name
    name = f"{base} #{len(taken) + 1}"
    taken.add(name)
    return name


def _amount(rng: random.Random, source: str) -> Decimal | None:
    if rng.random() < 0.04:
        return None  # not sized yet
    value = rng.lognormvariate(9.9, 0.75) * SOURCES[source][2]  # median ~ $20k
    step = 100 if value < 5000 else 500 if value < 50_000 else 1000
    value = min(max(value, 1500), 400_000)
    return Decimal(int(round(value / step)) * step)


class _Seeder:
    def __init__(self, session: so.Session, team_id: str, now: dt.datetime, rng: random.Random):
        self.session = session
        self.team_id = team_id
        self.now = now
        self.rng = rng
        stages = domain.open_stages(session, team_id)
        self.by_key: dict[str, Stage] = {s.key: s for s in stages}
        self.order = [s.key for s in stages]

    def actor(self, rep: DemoUser, manager_chance: float = 0.0) -> domain.Actor:
        if manager_chance and self.rng.random() < manager_chance:
            manager = self.rng.choice(MANAGERS)
            return domain.Actor(manager.user_id, is_manager=True)
        return domain.Actor(rep.user_id)

    def later(self, at: dt.datetime, mean_days: float, pace: float) -> dt.datetime:
        days = 0.5 + self.rng.expovariate(1.0 / (mean_days * pace))
        return _business_time(self.rng, at + dt.timedelta(days=days, hours=self.rng.uniform(0, 6)))

    def deal(self, created: dt.datetime, rep: DemoUser, taken: set[str]) -> None:
        rng = self.rng
        source = _weighted(rng, SOURCES)
        boost = rep.skill * SOURCES[source][1]
        start = "lead"
        if source in ("Referral", "Partner") and rng.random() < 0.25:
            start = "interest"  # warm introductions skip qualification
        expected = None
        if rng.random() < 0.75:
            expected = (created + dt.timedelta(days=rng.randint(35, 120))).date()
        deal = domain.create_deal(
            self.session,
            self.team_id,
            self.actor(rep, manager_chance=0.08),
            name=_deal_name(rng, taken),
            amount=_amount(rng, source),
            owner_id=rep.user_id,
            stage=self.by_key.get(start),
            source=source,
            expected_close=expected,
            now=created,
        )
        at = created
        went_back = False
        while deal.status == OPEN:
            key = deal.stage.key
            (p_adv, p_lost, p_quiet), mean_days = FLOW.get(key, ((0.55, 0.35, 0.10), 10.0))
            p_adv = min(0.9, p_adv * boost)
            roll = rng.random() * (p_adv + p_lost + p_quiet)
            outcome = "advance" if roll < p_adv else "lost" if roll < p_adv + p_lost else "quiet"
            step = self.later(at, mean_days * (1.4 if outcome == "lost" else 1.0), rep.pace)
            if outcome == "quiet" or step >= self.now:
                self.finish_open(deal, rep, at, quiet=outcome == "quiet")
                return
            if rng.random() < 0.4:  # a note on the way
                note_at = at + (step - at) * rng.uniform(0.3, 0.8)
                domain.add_note(
                    self.session,
                    deal,
                    self.actor(rep),
                    rng.choice(NOTES.get(key, ["Call"])),
                    now=note_at,
                )
            at = step
            if outcome == "lost":
                reason = rng.choice(LOST_REASONS.get(key, ["No decision"]))
                if rng.random() < 0.1:
                    reason = None  # closed in a hurry, no reason given
                domain.lose(self.session, deal, self.actor(rep, 0.1), reason, now=at)
            elif key == self.order[-1]:
                domain.win(self.session, deal, self.actor(rep, 0.15), now=at)
            elif not went_back and key in ("proposal", "negotiation") and rng.random() < 0.05:
                went_back = True  # the customer re-scoped: one step back
                back = self.by_key[self.order[self.order.index(key) - 1]]
                domain.move(self.session, deal, self.actor(rep), back, now=at)
            else:
                domain.advance(self.session, deal, self.actor(rep), now=at)

    def finish_open(self, deal: Deal, rep: DemoUser, at: dt.datetime, *, quiet: bool) -> None:
        """A deal still open: usually a next step; a quiet one's is long overdue."""
        rng = self.rng
        if not quiet:
            # Work in progress: the rep was on it within the last few days.
            limit = deal.stage.stall_days or 7
            touched = self.now - dt.timedelta(days=rng.uniform(0.2, 0.6 * limit))
            if touched > at:
                note = rng.choice(NOTES.get(deal.stage.key, ["Call"]))
                domain.add_note(self.session, deal, self.actor(rep), note, now=touched)
                at = touched
        if rng.random() > (0.85 if not quiet else 0.6):
            return
        text = rng.choice(NEXT_STEPS.get(deal.stage.key, ["Follow up"]))
        set_at = at + dt.timedelta(hours=rng.uniform(0.5, 4))
        if set_at >= self.now:
            return
        if quiet:
            due = (set_at + dt.timedelta(days=rng.randint(2, 7))).date()
        else:
            due = (self.now + dt.timedelta(days=rng.randint(-4, 12))).date()
        domain.set_next_step(self.session, deal, self.actor(rep), text, due, now=set_at)


def has_deals(session: so.Session, team_id: str) -> bool:
    return session.scalar(sa.select(Deal.id).where(Deal.team_id == team_id).limit(1)) is not None


def seed_demo(
    session_factory: Callable[[], so.Session],
    team_id: str = TEAM_ID,
    now: dt.datetime | None = None,
    seed: int = 42,
    *,
    deals: int = DEMO_DEALS,
) -> DemoResult:
    """Fill `team_id` with the sample team, in one transaction; no-op if it has deals."""
    now = (now or domain.utcnow()).astimezone(dt.UTC)
    rng = random.Random(seed)
    first = now - dt.timedelta(days=DEMO_DAYS)
    with session_factory() as session, session.begin():
        domain.ensure_workspace(session, team_id, first)
        # Lock the workspace row so two seeders cannot both find it empty (PostgreSQL).
        session.execute(
            sa.select(Workspace.team_id).where(Workspace.team_id == team_id).with_for_update()
        )
        if has_deals(session, team_id):
            count = session.scalar(
                sa.select(sa.func.count()).select_from(Deal).where(Deal.team_id == team_id)
            )
            return DemoResult(team_id, seeded=False, deals=int(count or 0))
        seeder = _Seeder(session, team_id, now, rng)
        latest = now - dt.timedelta(hours=2)
        created = sorted(
            _business_time(rng, first + dt.timedelta(seconds=rng.uniform(0, DEMO_DAYS * 86400)))
            for _ in range(deals)
        )
        taken: set[str] = set()
        reps = list(REPS)
        count = 0
        for at in created:
            if at >= latest:
                continue
            seeder.deal(at, rng.choice(reps), taken)
            count += 1
    return DemoResult(team_id, seeded=True, deals=count)


# --- what a user would see -----------------------------------------------------------------


@dataclass
class StageLine:
    key: str
    name_en: str
    name_zh: str
    open_deals: int
    open_value: Decimal


@dataclass
class FunnelSummary:
    stages: list[StageLine]
    won: int
    won_value: Decimal
    lost: int
    stalled: int
    total: int


def funnel_summary(
    session: so.Session, team_id: str, now: dt.datetime | None = None, *, tz: str = "UTC"
) -> FunnelSummary:
    """Open deals and value per stage, won/lost counts and stalled deals, right now."""
    from zoneinfo import ZoneInfo

    from funnelbot import metrics

    now = now or domain.utcnow()
    stages = [
        StageLine(s.key, s.name, s.name_zh, s.deals, s.amount)
        for s in metrics.open_by_stage(session, team_id)
    ]
    rows = session.execute(
        sa.select(Deal.status, sa.func.count(), sa.func.coalesce(sa.func.sum(Deal.amount), 0))
        .where(Deal.team_id == team_id)
        .group_by(Deal.status)
    ).all()
    by_status = {status: (int(n), Decimal(str(v))) for status, n, v in rows}
    today = now.astimezone(ZoneInfo(tz)).date()
    _, stalled = metrics.stalled_deals(session, team_id, now, today, limit=0)
    won, won_value = by_status.get(WON, (0, Decimal(0)))
    return FunnelSummary(
        stages=stages,
        won=won,
        won_value=won_value,
        lost=by_status.get(LOST, (0, Decimal(0)))[0],
        stalled=stalled,
        total=sum(n for n, _ in by_status.values()),
    )


def summary_text(summary: FunnelSummary, money: Callable[[Decimal], str], lang: str = "en") -> str:
    """The summary as a small table for a terminal."""
    zh = lang.startswith("zh")
    width = (
        max(
            [len("Open total")]
            + [len(s.name_zh if zh else s.name_en) * (2 if zh else 1) for s in summary.stages]
        )
        + 2
    )
    lines = [f"{'Stage':<{width}}{'Open':>6}  {'Value':>14}"]
    for s in summary.stages:
        name = s.name_zh if zh else s.name_en
        lines.append(
            f"{name}{' ' * (width - len(name) * (2 if zh else 1))}{s.open_deals:>6}  {money(s.open_value):>14}"
        )
    open_deals = sum(s.open_deals for s in summary.stages)
    open_value = sum((s.open_value for s in summary.stages), Decimal(0))
    lines.append(f"{'Open total':<{width}}{open_deals:>6}  {money(open_value):>14}")
    lines.append(f"{'Won':<{width}}{summary.won:>6}  {money(summary.won_value):>14}")
    lines.append(f"{'Lost':<{width}}{summary.lost:>6}")
    lines.append(
        f"Stalled: {summary.stalled} open deals idle past their stage's limit or with a next step overdue"
    )
    return "\n".join(lines)


def run_demo(
    session_factory: Callable[[], so.Session],
    settings: Settings,
    team_id: str = TEAM_ID,
    *,
    seed: int = 42,
    now: dt.datetime | None = None,
) -> str:
    """`funnelbot demo`: seed (once) and say what there is and what to try next."""
    from funnelbot.i18n import translator

    now = now or domain.utcnow()
    result = seed_demo(session_factory, team_id, now, seed=seed)
    with session_factory() as session:
        summary = funnel_summary(session, team_id, now, tz=settings.timezone)
    tr = translator(settings.language, settings.currency)
    if result.seeded:
        head = (
            f"Added the demo team to workspace {team_id}: {result.deals} deals over the last "
            f"six months, {len(REPS)} reps and {len(MANAGERS)} managers."
        )
    else:
        head = f"Workspace {team_id} already has {result.deals} deals; nothing was added."
    reps = ", ".join(f"{u.name} ({u.user_id})" for u in REPS)
    managers = ", ".join(f"{u.name} ({u.user_id})" for u in MANAGERS)
    shell = "funnelbot shell" + ("" if team_id == TEAM_ID else f" --team {team_id}")
    return f"""{head}

{summary_text(summary, tr.money, tr.lang)}

Reps: {reps}
Managers: {managers}

Try it in the local console, no Slack needed:
  {shell:<26} (or python bot.py while .env has no Slack tokens)
  /deal list all             the team's open deals
  :as UALICE                 act as Alice; /deal list, then :click a button
  /deal new Acme 50k         log a deal; /deal opens the form instead
  /funnel                    the funnel; /funnel conversion, /funnel stalled
  :run stalled-nudges        the DMs reps get about neglected deals
  :help                      everything else"""
