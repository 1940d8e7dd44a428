"""An independent model of SPEC §5 for the metrics tests.

Deal histories are *planned* here in plain Python (a seeded generator, or a hand-written
list), inserted through the deal domain (`funnelbot.deals`, explicit `now=`), and every
metric is then recomputed from the planned event list alone: never from the database and
never through `funnelbot.metrics`. The model knows the default funnel of SPEC §2.
"""

from __future__ import annotations

import datetime as dt
import math
import random
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from zoneinfo import ZoneInfo

OPEN_KEYS = ("lead", "interest", "proposal", "negotiation")
NAMES = {
    "lead": "Lead",
    "interest": "Interest",
    "proposal": "Proposal",
    "negotiation": "Negotiation",
}
DEFAULT_P = {"lead": 0.10, "interest": 0.20, "proposal": 0.40, "negotiation": 0.70}
STALL_DAYS = {"lead": 7, "interest": 14, "proposal": 14, "negotiation": 10}
# Funnel order: skipping counts as passing through; `lost` is off the funnel.
RANK = {key: i for i, key in enumerate(OPEN_KEYS)} | {"won": len(OPEN_KEYS), "lost": -1}
Z = 1.96
DAY = 86400.0
UTC = dt.UTC


# --- plans ------------------------------------------------------------------------------


@dataclass
class Step:
    action: str  # advance | move | win | lose | reopen
    at: dt.datetime
    target: str | None = None  # move: the stage key; lose: the reason


@dataclass
class Plan:
    name: str
    owner: str
    source: str | None
    amount: Decimal
    expected_close: dt.date | None
    created_at: dt.datetime
    start: str
    steps: list[Step] = field(default_factory=list)
    next_step_due: dt.date | None = None

    # --- what the plan leads to, derived from the steps alone ---
    @property
    def events(self) -> list[tuple[dt.datetime, str]]:
        """(at, stage entered) for the creation and every stage change, in order."""
        out = [(self.created_at, self.start)]
        for step in self.steps:
            out.append((step.at, self._target(out, step)))
        return out

    @staticmethod
    def _target(events: list[tuple[dt.datetime, str]], step: Step) -> str:
        current = events[-1][1]
        if step.action == "advance":
            return OPEN_KEYS[OPEN_KEYS.index(current) + 1]
        if step.action == "move":
            assert step.target is not None
            return step.target
        if step.action == "win":
            return "won"
        if step.action == "lose":
            return "lost"
        if step.action == "reopen":
            return events[-2][1]  # back to the stage it was closed from
        raise ValueError(step.action)

    @property
    def stage(self) -> str:
        return self.events[-1][1]

    @property
    def status(self) -> str:
        return self.stage if self.stage in ("won", "lost") else "open"

    @property
    def closed_at(self) -> dt.datetime | None:
        return self.events[-1][0] if self.status != "open" else None

    @property
    def last_activity(self) -> dt.datetime:
        return self.events[-1][0]

    @property
    def lost_reason(self) -> str | None:
        if self.status != "lost":
            return None
        last = self.steps[-1]
        return last.target if last.action == "lose" else None

    @property
    def furthest(self) -> int:
        return max(RANK[stage] for _, stage in self.events)

    def lost_from(self) -> str | None:
        """The last open stage before `lost`, for a deal that is lost now."""
        return self.events[-2][1] if self.status == "lost" else None

    def stays(self) -> list[tuple[str, float]]:
        """Every ended stay: (stage, fractional days from entering it to the next change)."""
        ev = self.events
        return [
            (ev[i][1], (ev[i + 1][0] - ev[i][0]).total_seconds() / DAY) for i in range(len(ev) - 1)
        ]


def valid_actions(events: list[tuple[dt.datetime, str]]) -> list[str]:
    current = events[-1][1]
    if current in ("won", "lost"):
        return ["reopen"]
    actions = ["move", "win", "lose"]
    if current != OPEN_KEYS[-1]:
        actions.append("advance")
    return actions


def random_plans(
    rnd: random.Random,
    count: int,
    *,
    first: dt.datetime,
    last: dt.datetime,
    horizon: dt.datetime,
    owners: Sequence[str] = ("U1", "U2", "U3"),
    sources: Sequence[str | None] = ("web", "referral", "partner", "event", None),
    reasons: Sequence[str | None] = ("price", "competitor", "no budget", "timing", None),
    close_range: tuple[dt.date, dt.date] = (dt.date(2026, 6, 1), dt.date(2026, 11, 30)),
) -> list[Plan]:
    """`count` deals created between `first` and `last`, with changes up to `horizon`.

    Timestamps fall on whole seconds (SQLite's julianday() keeps milliseconds only)."""
    span = int((last - first).total_seconds())
    close_days = (close_range[1] - close_range[0]).days
    plans = []
    for n in range(count):
        created = first + dt.timedelta(seconds=rnd.randrange(span))
        plan = Plan(
            name=f"Deal {n + 1}",
            owner=rnd.choice(owners),
            source=rnd.choice(sources),
            amount=Decimal(rnd.randrange(0, 10_000_000)) / 100,
            expected_close=(
                None
                if rnd.random() < 0.2
                else close_range[0] + dt.timedelta(days=rnd.randint(0, close_days))
            ),
            created_at=created,
            start=rnd.choices(OPEN_KEYS, weights=(6, 2, 2, 1))[0],
        )
        at = created
        for _ in range(rnd.choice((0, 1, 2, 3, 4, 5, 6, 8))):
            at = at + dt.timedelta(seconds=rnd.randint(3600, 25 * 86400))
            if at > horizon:
                break
            events = plan.events
            action = rnd.choice(valid_actions(events))
            if action == "reopen" and rnd.random() < 0.6:
                break  # most closed deals stay closed
            current = events[-1][1]
            if action == "move":
                # a skip forward, a move back, or straight to won/lost through `move`
                choices = [k for k in OPEN_KEYS if k != current] + ["won", "lost"]
                target = rnd.choice(choices)
                step = Step("move", at, target)
            elif action == "lose":
                step = Step("lose", at, rnd.choice(reasons))
            else:
                step = Step(action, at)
            plan.steps.append(step)
        plans.append(plan)
    return plans


# --- into the database, through the domain -----------------------------------------------


def insert(session, team_id: str, plans: Iterable[Plan], *, actor_id: str = "UADMIN") -> list:
    """Replay the plans through funnelbot.deals (each change with its own `now`)."""
    from funnelbot import deals as domain

    plans = list(plans)
    earliest = min((p.created_at for p in plans), default=dt.datetime(2020, 1, 1, tzinfo=UTC))
    domain.ensure_workspace(session, team_id, earliest)
    stages = {s.key: s for s in domain.funnel_stages(session, team_id)}
    actor = domain.Actor(actor_id, is_admin=True)
    made = []
    for plan in plans:
        deal = domain.create_deal(
            session,
            team_id,
            actor,
            name=plan.name,
            amount=plan.amount,
            owner_id=plan.owner,
            stage=stages[plan.start],
            source=plan.source,
            expected_close=plan.expected_close,
            now=plan.created_at,
        )
        for step in plan.steps:
            if step.action == "advance":
                domain.advance(session, deal, actor, now=step.at)
            elif step.action == "move":
                domain.move(session, deal, actor, stages[step.target], now=step.at, reason=None)
            elif step.action == "win":
                domain.win(session, deal, actor, now=step.at)
            elif step.action == "lose":
                domain.lose(session, deal, actor, step.target, now=step.at)
            elif step.action == "reopen":
                domain.reopen(session, deal, actor, now=step.at)
        if plan.next_step_due is not None:
            deal.next_step = "follow up"
            deal.next_step_due = plan.next_step_due
            session.flush()
        made.append(deal)
    return made


# --- SPEC §5, recomputed ------------------------------------------------------------------


def wilson(successes: int, trials: int, z: float = Z) -> tuple[float | None, float | None]:
    """The Wilson score interval as the two roots π of (p̂ − π)² = z²·π(1 − π)/n."""
    if trials == 0:
        return None, None
    p = successes / trials
    # π²(1 + z²/n) − π(2p̂ + z²/n) + p̂² = 0
    a = 1 + z * z / trials
    b = -(2 * p + z * z / trials)
    c = p * p
    root = math.sqrt(max(0.0, b * b - 4 * a * c))
    return (-b - root) / (2 * a), (-b + root) / (2 * a)


def local_date(at: dt.datetime, tz: str) -> dt.date:
    return at.astimezone(ZoneInfo(tz)).date()


def cohort(
    plans: Iterable[Plan],
    since: dt.date,
    until: dt.date,
    tz: str,
    owner: str | None = None,
    source: str | None = None,
) -> list[Plan]:
    return [
        p
        for p in plans
        if since <= local_date(p.created_at, tz) <= until
        and (owner is None or p.owner == owner)
        and (source is None or p.source == source)
    ]


def mean(values: Sequence[float]) -> float | None:
    return sum(values) / len(values) if values else None


def expected_conversion(
    plans: Iterable[Plan],
    since: dt.date,
    until: dt.date,
    tz: str,
    owner: str | None = None,
    source: str | None = None,
) -> dict:
    """The `metrics conversion --json` document of SPEC §6 for these plans."""
    deals = cohort(plans, since, until, tz, owner, source)
    stays: dict[str, list[float]] = {}
    for deal in deals:
        for stage, days in deal.stays():
            stays.setdefault(stage, []).append(days)
    stages = []
    for i, key in enumerate(OPEN_KEYS):
        reached = sum(1 for d in deals if d.furthest >= RANK[key])
        nxt = OPEN_KEYS[i + 1] if i + 1 < len(OPEN_KEYS) else "won"
        advanced = sum(1 for d in deals if d.furthest >= RANK[nxt])
        low, high = wilson(advanced, reached)
        here = stays.get(key, [])
        stages.append(
            {
                "key": key,
                "name": NAMES[key],
                "reached": reached,
                "advanced": advanced,
                "conversion": advanced / reached if reached else None,
                "conversion_low": low,
                "conversion_high": high,
                "open": sum(1 for d in deals if d.status == "open" and d.stage == key),
                "lost": sum(1 for d in deals if d.lost_from() == key),
                "avg_days": mean(here),
                "median_days": statistics.median(here) if here else None,
            }
        )
    won = [d for d in deals if d.status == "won"]
    lost = [d for d in deals if d.status == "lost"]
    low, high = wilson(len(won), len(won) + len(lost))
    return {
        "period": {"since": since.isoformat(), "until": until.isoformat()},
        "stages": stages,
        "won": len(won),
        "lost": len(lost),
        "win_rate": len(won) / (len(won) + len(lost)) if won or lost else None,
        "win_rate_low": low,
        "win_rate_high": high,
        "cycle_days_avg": mean(
            [(d.closed_at - d.created_at).total_seconds() / DAY for d in won]  # type: ignore[operator]
        ),
    }


def expected_win_probabilities(
    plans: Iterable[Plan], as_of: dt.date, tz: str, owner: str | None = None, min_sample: int = 20
) -> dict[str, dict]:
    """P(win | reached k) over deals closed in the 365 days up to and including `as_of`."""
    first_day = as_of - dt.timedelta(days=364)
    closed = [
        p
        for p in plans
        if p.status != "open"
        and first_day <= local_date(p.closed_at, tz) <= as_of  # type: ignore[arg-type]
        and (owner is None or p.owner == owner)
    ]
    out = {}
    for key in OPEN_KEYS:
        informing = [p for p in closed if p.furthest >= RANK[key]]
        wins = sum(1 for p in informing if p.status == "won")
        learned = len(informing) >= min_sample
        out[key] = {
            "key": key,
            "p_win": wins / len(informing) if learned else DEFAULT_P[key],
            "p_win_default": DEFAULT_P[key],
            "sample": len(informing),
        }
    return out


def end_of_day(day: dt.date, tz: str) -> dt.datetime:
    """The first instant after `day` in the time zone `tz`."""
    return dt.datetime.combine(day + dt.timedelta(days=1), dt.time(), ZoneInfo(tz))


def stage_at(plan: Plan, instant: dt.datetime) -> str | None:
    """The deal's stage just before `instant` (None: it did not exist yet)."""
    before = [stage for at, stage in plan.events if at < instant]
    return before[-1] if before else None


def expected_pipeline(
    plans: Iterable[Plan],
    since: dt.date,
    until: dt.date,
    probabilities: dict[str, dict],
    *,
    as_of: dt.date,
    tz: str,
    owner: str | None = None,
) -> dict:
    """Deals open at the end of `as_of`, by expected close: in the period (both ends
    inclusive), and undated."""
    instant = end_of_day(as_of, tz)
    open_then = [
        (p, stage_at(p, instant))
        for p in plans
        if stage_at(p, instant) in OPEN_KEYS and (owner is None or p.owner == owner)
    ]
    dated = [
        (p, s) for p, s in open_then if p.expected_close and since <= p.expected_close <= until
    ]
    undated = [(p, s) for p, s in open_then if p.expected_close is None]

    def weighted(deals: list[tuple[Plan, str]]) -> float:
        return sum(float(p.amount) * probabilities[s]["p_win"] for p, s in deals)

    return {
        "deals": len(dated),
        "amount_open": float(sum((p.amount for p, _ in dated), Decimal(0))),
        "weighted": weighted(dated),
        "amounts": [float(p.amount) for p, _ in dated],
        "probabilities": [probabilities[s]["p_win"] for _, s in dated],
        "undated": {
            "deals": len(undated),
            "amount_open": float(sum((p.amount for p, _ in undated), Decimal(0))),
            "weighted": weighted(undated),
        },
    }
