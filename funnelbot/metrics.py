"""Funnel metrics: read-only SQL aggregations over the stage history -> plain dataclasses.

Normative definitions are SPEC §5. Rules this module adds where the spec is silent:
- A deal *reached* stage k if any history row entered k, a later open stage or `won`,
  judged by today's stage order (skips count as passing through). A deal moved back
  keeps what it reached: the furthest point it ever got to counts.
- Removed stages keep their rows (history points at them) and take the position of the
  nearest surviving stage before them, so a deal that was in a removed stage counts as
  having reached that neighbour; they are not listed. A renamed stage is listed by its
  new name, old periods included.
- Stay lengths are measured between consecutive history rows of a deal.
Queries run unchanged on SQLite and PostgreSQL; Python only sums a handful of grouped rows.
Conversion reads facts the domain writes with every stage change (models.Deal's furthest
and lost-from stages, each history row's stay length and deal creation time), so a year
of a million deals is one pass over the cohort's deals plus index walks for the stays.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy import orm as so

from funnelbot import deals as domain
from funnelbot.models import LOST, OPEN, WON, WON_RANK, Deal, Stage, StageChange
from funnelbot.periods import Period

Z95 = 1.96
FORECAST_MIN_SAMPLE = 20
FORECAST_RUNS = 10_000
FORECAST_SEED = 20261128


# --- small helpers --------------------------------------------------------------------


def wilson(successes: int, trials: int, z: float = Z95) -> tuple[float | None, float | None]:
    """95 % Wilson score interval for a proportion; (None, None) with no trials."""
    if trials <= 0:
        return None, None
    p = successes / trials
    denom = 1 + z * z / trials
    centre = (p + z * z / (2 * trials)) / denom
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def ratio(num: int, den: int) -> float | None:
    return num / den if den else None


@dataclass(frozen=True)
class Filters:
    owner: str | None = None
    source: str | None = None


def _cohort_filter(filters: Filters) -> list[sa.ColumnElement[bool]]:
    """The cohort (SPEC §5): the team's deals created in [start, end), filtered; the values
    are bound at execution (`_cohort_params`), so the statement can be built once."""
    where = [
        Deal.team_id == sa.bindparam("team"),
        Deal.created_at >= sa.bindparam("start"),
        Deal.created_at < sa.bindparam("end"),
    ]
    if filters.owner:
        where.append(Deal.owner_id == sa.bindparam("owner"))
    if filters.source:
        where.append(sa.func.lower(Deal.source) == sa.bindparam("source"))
    return where


def _cohort_params(
    team_id: str, start: dt.datetime, end: dt.datetime, filters: Filters
) -> dict[str, Any]:
    return {
        "team": team_id,
        "start": start,
        "end": end,
        "owner": filters.owner,
        "source": (filters.source or "").lower(),
    }


@dataclass(frozen=True)
class _ConversionQueries:
    """The statements of `conversion` for one team's stages and one shape of filters."""

    cohort: sa.Select[Any]  # every cohort figure as a column of one row
    stays: sa.Select[Any]  # (from stage, ended stays, their average) per open stage
    middles: sa.CompoundSelect | None  # (stage, days): each open stage's middle stays
    stage_ids: tuple[int, ...]  # the open stages, whose middles take_<id>/skip_<id> bind


def _conversion_queries(
    team: domain.TeamStages, dialect: str, filters: Filters
) -> _ConversionQueries:
    """Built once per stages revision and filter shape: a statement used again skips
    SQLAlchemy's construction and cache-key work."""

    def build(_team: domain.TeamStages) -> _ConversionQueries:
        cohort = _cohort_filter(filters)
        is_won, is_open, is_lost = Deal.status == WON, Deal.status == OPEN, Deal.status == LOST
        count = sa.func.count
        totals = [
            count(),
            count().filter(is_won),
            count().filter(is_lost),
            sa.func.sum(Deal.amount).filter(is_won),
            sa.func.sum(domain.days_between(dialect, Deal.created_at, Deal.closed_at)).filter(
                is_won
            ),
        ]
        reached_at = [count().filter(Deal.furthest_stage_id == stage_id) for stage_id in team.ranks]
        per_stage = [
            column
            for stage in team.open
            for column in (
                count().filter(is_open, Deal.stage_id == stage.id),
                count().filter(is_lost, Deal.lost_from_stage_id == stage.id),
            )
        ]

        def ended(*columns: sa.ColumnElement[Any]) -> sa.Select[Any]:
            """Stays that ended, of cohort deals (history rows carry their deal's birth)."""
            query = sa.select(*columns).where(
                StageChange.team_id == sa.bindparam("team"),
                StageChange.deal_created_at >= sa.bindparam("start"),
                StageChange.deal_created_at < sa.bindparam("end"),
                StageChange.stay_days.is_not(None),
            )
            if filters.owner or filters.source:
                query = query.join(Deal, Deal.id == StageChange.deal_id).where(*cohort)
            return query

        middles = []
        for stage in team.open:
            middle = (
                ended(StageChange.stay_days.label("days"))
                .where(StageChange.from_stage_id == stage.id)
                .order_by(StageChange.stay_days)
                .limit(sa.bindparam(f"take_{stage.id}"))
                .offset(sa.bindparam(f"skip_{stage.id}"))
                .subquery()
            )
            middles.append(
                sa.select(sa.literal(stage.id).label("stage_id"), middle.c.days).select_from(middle)
            )
        return _ConversionQueries(
            cohort=sa.select(*totals, *reached_at, *per_stage).where(*cohort),
            stays=ended(
                StageChange.from_stage_id, sa.func.count(), sa.func.avg(StageChange.stay_days)
            )
            .where(StageChange.from_stage_id.in_([stage.id for stage in team.open]))
            .group_by(StageChange.from_stage_id),
            middles=sa.union_all(*middles) if middles else None,
            stage_ids=tuple(stage.id for stage in team.open),
        )

    shape = f"metrics.conversion:{dialect}:{bool(filters.owner)}:{bool(filters.source)}"
    return team.view(shape, build)


def _stays(
    session: so.Session, queries: _ConversionQueries, params: dict[str, Any]
) -> tuple[dict[int, float], dict[int, float]]:
    """Average and median ended stay per stage, for cohort deals.

    Each history row carries the length of the stay it ended and its deal's creation time,
    and an index holds them per stage in order: a median is an OFFSET into that, not a sort.
    """
    totals = session.execute(queries.stays, params).all()
    averages = {stage_id: float(avg) for stage_id, _n, avg in totals}
    counts = {stage_id: n for stage_id, n, _avg in totals}
    if not counts or queries.middles is None:
        return averages, {}
    # Every stage's middle one or two stays, all in one statement (none for empty stages).
    middle = dict(params)
    for stage_id in queries.stage_ids:
        n = counts.get(stage_id, 0)
        middle[f"take_{stage_id}"] = 2 - n % 2 if n else 0
        middle[f"skip_{stage_id}"] = (n - 1) // 2 if n else 0
    found: dict[int, list[float]] = {}
    for stage_id, days in session.execute(queries.middles, middle):
        found.setdefault(stage_id, []).append(float(days))
    medians = {stage_id: sum(days) / len(days) for stage_id, days in found.items()}
    return averages, medians


# --- conversion -----------------------------------------------------------------------


@dataclass(frozen=True)
class StageMetrics:
    key: str
    name: str
    name_zh: str
    reached: int
    advanced: int
    conversion: float | None
    conversion_low: float | None
    conversion_high: float | None
    open: int
    lost: int
    avg_days: float | None
    median_days: float | None


@dataclass(frozen=True)
class Conversion:
    period: Period
    stages: list[StageMetrics]
    won: int
    lost: int
    win_rate: float | None
    win_rate_low: float | None
    win_rate_high: float | None
    cycle_days_avg: float | None
    created: int = 0
    won_amount: Decimal = Decimal(0)

    def bottleneck(self, min_reached: int = 5) -> StageMetrics | None:
        """The stage with the lowest conversion among those at least `min_reached` deals reached."""
        candidates = [
            s for s in self.stages if s.conversion is not None and s.reached >= min_reached
        ]
        return min(candidates, key=lambda s: s.conversion or 0.0) if candidates else None

    def as_json(self) -> dict[str, object]:
        return {
            "period": {
                "since": self.period.since.isoformat(),
                "until": self.period.until.isoformat(),
            },
            "stages": [
                {
                    "key": s.key,
                    "name": s.name,
                    "reached": s.reached,
                    "advanced": s.advanced,
                    "conversion": s.conversion,
                    "conversion_low": s.conversion_low,
                    "conversion_high": s.conversion_high,
                    "open": s.open,
                    "lost": s.lost,
                    "avg_days": s.avg_days,
                    "median_days": s.median_days,
                }
                for s in self.stages
            ],
            "won": self.won,
            "lost": self.lost,
            "win_rate": self.win_rate,
            "win_rate_low": self.win_rate_low,
            "win_rate_high": self.win_rate_high,
            "cycle_days_avg": self.cycle_days_avg,
        }


def conversion(
    session: so.Session,
    team_id: str,
    period: Period,
    *,
    tz: str = "UTC",
    filters: Filters = Filters(),
    stays: bool = True,
) -> Conversion:
    """The cohort's conversion (SPEC §5). `stays=False` leaves avg/median days None and
    skips the two statements that measure them, for answers that do not show them."""
    dialect = session.get_bind().dialect.name
    start, end = period.bounds(tz)
    team = domain.team_stages(session, team_id)
    stages, ranks = team.open, team.ranks
    queries = _conversion_queries(team, dialect, filters)
    params = _cohort_params(team_id, start, end, filters)

    # One pass over the cohort's deals, every figure a column of one row (a GROUP BY would
    # sort them): each deal keeps its furthest stage and, when lost, the stage it was lost
    # from (see Deal), so no history is read for these.
    row = list(session.execute(queries.cohort, params).one())
    created, won, lost, won_sum, cycle_sum = row[:5]
    furthest_counts = dict(zip(ranks, row[5 : 5 + len(ranks)], strict=True))
    stage_counts = row[5 + len(ranks) :]
    open_by_stage = {stage.id: stage_counts[2 * i] for i, stage in enumerate(stages)}
    lost_from = {stage.id: stage_counts[2 * i + 1] for i, stage in enumerate(stages)}
    won_amount = Decimal(won_sum or 0)
    cycle = float(cycle_sum) / won if won else None

    def reached_rank(rank: int) -> int:
        return sum(n for stage_id, n in furthest_counts.items() if ranks[stage_id] >= rank)

    avg_days, median_days = _stays(session, queries, params) if stays else ({}, {})
    result: list[StageMetrics] = []
    for i, stage in enumerate(stages):
        reached = reached_rank(stage.position)
        next_rank = stages[i + 1].position if i + 1 < len(stages) else WON_RANK
        advanced = reached_rank(next_rank)
        low, high = wilson(advanced, reached)
        result.append(
            StageMetrics(
                key=stage.key,
                name=stage.name_en,
                name_zh=stage.name_zh,
                reached=reached,
                advanced=advanced,
                conversion=ratio(advanced, reached),
                conversion_low=low,
                conversion_high=high,
                open=int(open_by_stage.get(stage.id, 0)),
                lost=int(lost_from.get(stage.id, 0)),
                avg_days=_float(avg_days.get(stage.id)),
                median_days=_float(median_days.get(stage.id)),
            )
        )
    win_low, win_high = wilson(won, won + lost)
    return Conversion(
        period=period,
        stages=result,
        won=int(won),
        lost=int(lost),
        win_rate=ratio(won, won + lost),
        win_rate_low=win_low,
        win_rate_high=win_high,
        cycle_days_avg=_float(cycle),
        created=int(created),
        won_amount=Decimal(won_amount),
    )


def _float(value: object) -> float | None:
    return None if value is None else float(value)  # type: ignore[arg-type]


# --- forecast -------------------------------------------------------------------------


@dataclass(frozen=True)
class StageProbability:
    key: str
    name: str
    name_zh: str
    p_win: float
    p_win_default: float
    sample: int
    learned: bool


@dataclass(frozen=True)
class Forecast:
    period: Period
    as_of: dt.date
    deals: int
    amount_open: Decimal
    weighted: Decimal
    p10: Decimal
    p50: Decimal
    p90: Decimal
    undated_deals: int
    undated_amount: Decimal
    undated_weighted: Decimal
    stages: list[StageProbability] = field(default_factory=list)

    def as_json(self) -> dict[str, object]:
        return {
            "period": {
                "since": self.period.since.isoformat(),
                "until": self.period.until.isoformat(),
            },
            "as_of": self.as_of.isoformat(),
            "deals": self.deals,
            "amount_open": float(self.amount_open),
            "weighted": float(self.weighted),
            "p10": float(self.p10),
            "p50": float(self.p50),
            "p90": float(self.p90),
            "undated": {
                "deals": self.undated_deals,
                "amount_open": float(self.undated_amount),
                "weighted": float(self.undated_weighted),
            },
            "stages": [
                {
                    "key": s.key,
                    "p_win": s.p_win,
                    "p_win_default": s.p_win_default,
                    "sample": s.sample,
                }
                for s in self.stages
            ],
        }


def win_probabilities(
    session: so.Session, team_id: str, as_of_end: dt.datetime, *, owner: str | None = None
) -> list[StageProbability]:
    """P(win | reached k) from deals closed in the 365 days up to `as_of_end` (SPEC §5)."""
    furthest = so.aliased(Stage)
    query = (
        sa.select(furthest.rank, Deal.status, sa.func.count())
        .join(furthest, furthest.id == Deal.furthest_stage_id)
        .where(
            Deal.team_id == team_id,
            Deal.status.in_((WON, LOST)),
            Deal.closed_at >= as_of_end - dt.timedelta(days=365),
            Deal.closed_at < as_of_end,
        )
        .group_by(furthest.rank, Deal.status)
    )
    if owner:
        query = query.where(Deal.owner_id == owner)
    rows = session.execute(query).all()
    result = []
    for stage in domain.team_stages(session, team_id).open:
        sample = sum(n for rank, _status, n in rows if rank >= stage.position)
        wins = sum(n for rank, status, n in rows if rank >= stage.position and status == WON)
        default = float(stage.probability)
        learned = sample >= FORECAST_MIN_SAMPLE
        result.append(
            StageProbability(
                key=stage.key,
                name=stage.name_en,
                name_zh=stage.name_zh,
                p_win=wins / sample if learned else default,
                p_win_default=default,
                sample=sample,
                learned=learned,
            )
        )
    return result


def simulate(
    amounts: Sequence[float],
    probabilities: Sequence[float],
    *,
    runs: int = FORECAST_RUNS,
    seed: int = FORECAST_SEED,
) -> tuple[float, float, float]:
    """P10/P50/P90 of the won amount, each deal an independent win (seeded Monte Carlo)."""
    import numpy as np

    if not amounts:
        return 0.0, 0.0, 0.0
    rng = np.random.default_rng(seed)
    value = np.asarray(amounts, dtype=float)
    p = np.asarray(probabilities, dtype=float)
    totals = np.empty(runs)
    chunk = max(1, 2_000_000 // len(value))  # bound memory: runs x deals booleans per chunk
    for first in range(0, runs, chunk):
        n = min(chunk, runs - first)
        totals[first : first + n] = (rng.random((n, len(value))) < p) @ value
    p10, p50, p90 = np.percentile(totals, [10, 50, 90])
    return float(p10), float(p50), float(p90)


def forecast(
    session: so.Session,
    team_id: str,
    period: Period,
    as_of: dt.date,
    *,
    tz: str = "UTC",
    owner: str | None = None,
) -> Forecast:
    _, as_of_end = Period(as_of, as_of).bounds(tz)
    probabilities = win_probabilities(session, team_id, as_of_end, owner=owner)
    by_key = {p.key: p for p in probabilities}
    # The pipeline as it stood at the end of day T: each deal's last stage change before
    # then says whether it was open, and in which stage (amounts and dates are today's).
    last_change = (
        sa.select(StageChange.deal_id, sa.func.max(StageChange.id).label("id"))
        .where(StageChange.team_id == team_id, StageChange.at < as_of_end)
        .group_by(StageChange.deal_id)
        .subquery()
    )
    query = (
        sa.select(Stage.key, Deal.amount, Deal.expected_close)
        .join(last_change, last_change.c.deal_id == Deal.id)
        .join(StageChange, StageChange.id == last_change.c.id)
        .join(Stage, Stage.id == StageChange.to_stage_id)
        .where(Deal.team_id == team_id, Stage.kind == OPEN)
        .where(
            sa.or_(
                Deal.expected_close.is_(None),
                Deal.expected_close.between(period.since, period.until),
            )
        )
    )
    if owner:
        query = query.where(Deal.owner_id == owner)
    amounts: list[float] = []
    probs: list[float] = []
    dated_total = weighted = Decimal(0)
    undated = [0, Decimal(0), Decimal(0)]
    for key, amount, close in session.execute(query):
        p = by_key[key].p_win if key in by_key else 0.0
        if close is None:
            undated[0] += 1
            undated[1] += amount
            undated[2] += amount * Decimal(str(p))
            continue
        amounts.append(float(amount))
        probs.append(p)
        dated_total += amount
        weighted += amount * Decimal(str(p))
    p10, p50, p90 = simulate(amounts, probs)
    cents = Decimal("0.01")
    return Forecast(
        period=period,
        as_of=as_of,
        deals=len(amounts),
        amount_open=dated_total,
        weighted=weighted.quantize(cents),
        p10=Decimal(str(p10)).quantize(cents),
        p50=Decimal(str(p50)).quantize(cents),
        p90=Decimal(str(p90)).quantize(cents),
        undated_deals=int(undated[0]),
        undated_amount=Decimal(undated[1]),
        undated_weighted=Decimal(undated[2]).quantize(cents),
        stages=probabilities,
    )


# --- the summary, stalled deals and breakdowns -----------------------------------------


@dataclass(frozen=True)
class StageLoad:
    key: str
    name: str
    name_zh: str
    deals: int
    amount: Decimal


# Open deals and their value per stage; names and funnel order come from the stage cache,
# checked against the stages revision each row also carries (no separate read for it).
_OPEN_LOADS = (
    sa.select(
        Deal.stage_id,
        sa.func.count(),
        sa.func.coalesce(sa.func.sum(Deal.amount), 0),
        domain.TEAM_STAGES_REVISION,
    )
    .where(Deal.team_id == sa.bindparam("team"), Deal.status == OPEN)
    .group_by(Deal.stage_id)
)
_OPEN_LOADS_OF_OWNER = _OPEN_LOADS.where(Deal.owner_id == sa.bindparam("owner"))


def open_by_stage(session: so.Session, team_id: str, owner: str | None = None) -> list[StageLoad]:
    """Open deals and their value in each open stage, in funnel order."""
    query = _OPEN_LOADS_OF_OWNER if owner else _OPEN_LOADS
    rows = session.execute(query, {"team": team_id, "owner": owner}).all()
    if rows:
        domain.note_revision(session, team_id, rows[0][3])
    loads = {stage_id: (int(n), Decimal(amount)) for stage_id, n, amount, _ in rows}
    return [
        StageLoad(stage.key, stage.name_en, stage.name_zh, *loads.get(stage.id, (0, Decimal(0))))
        for stage in domain.team_stages(session, team_id).open
    ]


def _stalled_condition(
    team: domain.TeamStages,
) -> tuple[sa.ColumnElement[bool], tuple[tuple[int, int], ...]]:
    """The stalled-deal condition for these stages, values left as bind parameters, and the
    (stage id, stall days) its `idle_before_<id>` parameters stand for."""
    stalling = tuple((stage.id, stage.stall_days) for stage in team.open if stage.stall_days)
    idle = [
        sa.and_(
            Deal.stage_id == stage_id,
            Deal.last_activity_at < sa.bindparam(f"idle_before_{stage_id}"),
        )
        for stage_id, _days in stalling
    ]
    overdue = sa.and_(
        Deal.next_step_due.is_not(None), Deal.next_step_due < sa.bindparam("stalled_today")
    )
    condition = sa.and_(
        Deal.team_id == sa.bindparam("stalled_team"), Deal.status == OPEN, sa.or_(overdue, *idle)
    )
    return condition, stalling


def stalled_condition(
    session: so.Session, team_id: str, now: dt.datetime, today: dt.date
) -> tuple[sa.ColumnElement[bool], dict[str, Any]]:
    """Open deals idle longer than their stage's stall days, or with a next step past due:
    the condition (built once per stages revision) and the values to execute it with."""
    team = domain.team_stages(session, team_id)
    condition, stalling = team.view("stalled-condition", _stalled_condition)
    params: dict[str, Any] = {"stalled_team": team_id, "stalled_today": today}
    for stage_id, days in stalling:
        params[f"idle_before_{stage_id}"] = now - dt.timedelta(days=days)
    return condition, params


def stalled_deals(
    session: so.Session,
    team_id: str,
    now: dt.datetime,
    today: dt.date,
    *,
    owner: str | None = None,
    limit: int | None = 50,
) -> tuple[list[Deal], int]:
    """The first `limit` stalled deals, longest idle first (all with None, none with 0),
    and how many there are."""
    condition, params = stalled_condition(session, team_id, now, today)
    if owner:
        condition = sa.and_(condition, Deal.owner_id == owner)
    counted = sa.select(sa.func.count()).select_from(Deal).where(condition)
    total = session.execute(counted, params).scalar() or 0
    if limit == 0:  # only the count was asked for
        return [], total
    query = sa.select(Deal).where(condition).order_by(Deal.last_activity_at)
    if limit:
        query = query.limit(limit)
    return list(session.scalars(query, params)), total


@dataclass(frozen=True)
class Breakdown:
    """One row of a by-rep or by-source table."""

    key: str | None
    created: int
    won: int
    lost: int
    open: int
    won_amount: Decimal
    open_amount: Decimal

    @property
    def win_rate(self) -> float | None:
        return ratio(self.won, self.won + self.lost)

    @property
    def win_interval(self) -> tuple[float | None, float | None]:
        return wilson(self.won, self.won + self.lost)


def breakdown(
    session: so.Session, team_id: str, period: Period, by: str, *, tz: str = "UTC"
) -> list[Breakdown]:
    """Cohort outcomes grouped by `owner` or `source`."""
    start, end = period.bounds(tz)
    column = Deal.owner_id if by == "owner" else Deal.source
    zero = sa.literal(0)
    query = (
        sa.select(
            column,
            sa.func.count(),
            sa.func.count().filter(Deal.status == WON),
            sa.func.count().filter(Deal.status == LOST),
            sa.func.count().filter(Deal.status == OPEN),
            sa.func.coalesce(sa.func.sum(Deal.amount).filter(Deal.status == WON), zero),
            sa.func.coalesce(sa.func.sum(Deal.amount).filter(Deal.status == OPEN), zero),
        )
        .where(Deal.team_id == team_id, Deal.created_at >= start, Deal.created_at < end)
        .group_by(column)
        .order_by(sa.func.count().desc())
    )
    return [
        Breakdown(key, int(c), int(w), int(lo), int(o), Decimal(wa), Decimal(oa))
        for key, c, w, lo, o, wa, oa in session.execute(query)
    ]


@dataclass(frozen=True)
class LostReason:
    reason: str | None
    deals: int
    amount: Decimal


def lost_reasons(
    session: so.Session, team_id: str, period: Period, *, tz: str = "UTC"
) -> list[LostReason]:
    """Deals lost (closed) in the period, grouped by reason."""
    start, end = period.bounds(tz)
    query = (
        sa.select(Deal.lost_reason, sa.func.count(), sa.func.coalesce(sa.func.sum(Deal.amount), 0))
        .where(
            Deal.team_id == team_id,
            Deal.status == LOST,
            Deal.closed_at >= start,
            Deal.closed_at < end,
        )
        .group_by(Deal.lost_reason)
        .order_by(sa.func.count().desc())
    )
    return [LostReason(r, int(n), Decimal(a)) for r, n, a in session.execute(query)]


@dataclass(frozen=True)
class Velocity:
    conversion: Conversion
    open_deals: int
    avg_won_amount: Decimal | None

    @property
    def per_day(self) -> Decimal | None:
        """Pipeline velocity: open deals × average won deal × win rate ÷ sales cycle (days)."""
        c = self.conversion
        # A cycle under a day (deals won the day they were logged) says nothing about speed.
        if (
            not c.win_rate
            or not c.cycle_days_avg
            or c.cycle_days_avg < 1
            or self.avg_won_amount is None
        ):
            return None
        value = self.open_deals * float(self.avg_won_amount) * c.win_rate / c.cycle_days_avg
        return Decimal(str(round(value, 2)))


def velocity(session: so.Session, team_id: str, period: Period, *, tz: str = "UTC") -> Velocity:
    conv = conversion(session, team_id, period, tz=tz)
    open_deals = (
        session.scalar(
            sa.select(sa.func.count())
            .select_from(Deal)
            .where(Deal.team_id == team_id, Deal.status == OPEN)
        )
        or 0
    )
    avg_won = conv.won_amount / conv.won if conv.won else None
    return Velocity(conv, int(open_deals), avg_won)


def pipeline_as_of(
    session: so.Session, team_id: str, at: dt.datetime
) -> dict[int, tuple[int, Decimal]]:
    """Per stage id, the deals that stood in it at instant `at` (from the history, not
    today's state) and their amount."""
    latest = (
        sa.select(
            StageChange.deal_id,
            StageChange.to_stage_id.label("stage_id"),
            sa.func.row_number()
            .over(partition_by=StageChange.deal_id, order_by=StageChange.id.desc())
            .label("rn"),
        )
        .where(StageChange.team_id == team_id, StageChange.at < at)
        .subquery()
    )
    rows = session.execute(
        sa.select(latest.c.stage_id, sa.func.count(), sa.func.coalesce(sa.func.sum(Deal.amount), 0))
        .join(Deal, Deal.id == latest.c.deal_id)
        .where(latest.c.rn == 1)
        .group_by(latest.c.stage_id)
    ).all()
    return {stage_id: (int(n), Decimal(amount)) for stage_id, n, amount in rows}


def created_between(
    session: so.Session, team_id: str, start: dt.datetime, end: dt.datetime
) -> tuple[int, Decimal]:
    count, amount = session.execute(
        sa.select(sa.func.count(), sa.func.coalesce(sa.func.sum(Deal.amount), 0)).where(
            Deal.team_id == team_id, Deal.created_at >= start, Deal.created_at < end
        )
    ).one()
    return int(count), Decimal(amount)


def closed_between(
    session: so.Session, team_id: str, status: str, start: dt.datetime, end: dt.datetime
) -> list[Deal]:
    return list(
        session.scalars(
            sa.select(Deal)
            .where(
                Deal.team_id == team_id,
                Deal.status == status,
                Deal.closed_at >= start,
                Deal.closed_at < end,
            )
            .order_by(Deal.amount.desc())
        )
    )
