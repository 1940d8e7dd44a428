"""The weekly report and the funnel picture: metrics gathered into plain data.

Shared by the `weekly-report` job, `/funnel chart` and `funnelbot chart`, so the three
always draw the same funnel.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from decimal import Decimal

import sqlalchemy as sa
from sqlalchemy import orm as so

from funnelbot import charts, metrics
from funnelbot import deals as domain
from funnelbot.i18n import Translator
from funnelbot.models import OPEN, Deal, Stage, StageChange
from funnelbot.periods import Period, unit_period

CONVERSION_WINDOW_DAYS = 90
BOTTLENECK_MIN_REACHED = 5
TOP_OF_FUNNEL_RATIO = 0.7
BIG_ADVANCE_STEPS = 2


def previous_iso_week(today: dt.date) -> Period:
    return unit_period("week", today, -1)


def chart_data(
    session: so.Session, team_id: str, period: Period, tr: Translator, *, tz: str
) -> charts.FunnelChart:
    """Open deals per stage at the period's end, against the end of the period before it."""
    stages = domain.open_stages(session, team_id)
    _, end = period.bounds(tz)
    _, previous_end = period.previous().bounds(tz)
    # Counts and values of the same deals, as they stood at each end.
    now = metrics.pipeline_as_of(session, team_id, end)
    before = metrics.pipeline_as_of(session, team_id, previous_end)
    nothing = (0, Decimal(0))
    conv = metrics.conversion(
        session,
        team_id,
        Period(period.until - dt.timedelta(days=CONVERSION_WINDOW_DAYS - 1), period.until),
        tz=tz,
        stays=False,
    )
    bars = [
        charts.FunnelBar(
            label=s.name(tr.lang),
            deals=now.get(s.id, nothing)[0],
            amount=tr.money(now.get(s.id, nothing)[1]),
            previous=before.get(s.id, nothing)[0],
        )
        for s in stages
    ]
    conversions = [tr.percent(st.conversion) for st in conv.stages[:-1]]
    return charts.FunnelChart(
        title=tr("report.chart_title"),
        subtitle=tr("report.chart_subtitle", period=period.label()),
        bars=bars,
        conversions=conversions,
        previous_label=tr("report.previous_short"),
    )


@dataclass(frozen=True)
class Mover:
    number: int
    name: str
    owner_id: str
    amount: Decimal
    detail: str


@dataclass
class WeeklyReport:
    week: Period
    iso_week: str
    new_count: int
    new_amount: Decimal
    won_count: int
    won_amount: Decimal
    lost_count: int
    lost_amount: Decimal
    conversion: metrics.Conversion
    previous_conversion: metrics.Conversion
    bottleneck: metrics.StageMetrics | None
    top_of_funnel_warning: bool
    prior_weeks_avg_new: float
    stalled: int
    forecast: metrics.Forecast
    won: list[Mover] = field(default_factory=list)
    lost: list[Mover] = field(default_factory=list)
    advances: list[Mover] = field(default_factory=list)
    slipped: list[Mover] = field(default_factory=list)


def weekly_report(
    session: so.Session, team_id: str, today: dt.date, now: dt.datetime, tr: Translator, *, tz: str
) -> WeeklyReport:
    week = previous_iso_week(today)
    start, end = week.bounds(tz)
    new_count, new_amount = metrics.created_between(session, team_id, start, end)
    won = metrics.closed_between(session, team_id, "won", start, end)
    lost = metrics.closed_between(session, team_id, "lost", start, end)
    window = dt.timedelta(days=CONVERSION_WINDOW_DAYS - 1)
    conv = metrics.conversion(
        session, team_id, Period(week.until - window, week.until), tz=tz, stays=False
    )
    previous_until = week.until - dt.timedelta(days=7)
    previous_conv = metrics.conversion(
        session, team_id, Period(previous_until - window, previous_until), tz=tz, stays=False
    )
    prior = []
    for weeks_back in range(1, 5):
        s, e = Period(
            week.since - dt.timedelta(weeks=weeks_back), week.until - dt.timedelta(weeks=weeks_back)
        ).bounds(tz)
        prior.append(metrics.created_between(session, team_id, s, e)[0])
    prior_avg = sum(prior) / len(prior)
    _, stalled = metrics.stalled_deals(session, team_id, now, today, limit=0)
    forecast = metrics.forecast(session, team_id, unit_period("quarter", today, 0), today, tz=tz)

    def mover(deal: Deal, detail: str) -> Mover:
        return Mover(deal.number, deal.name, deal.owner_id, deal.amount, detail)

    return WeeklyReport(
        week=week,
        iso_week=f"{week.since.isocalendar().year}-W{week.since.isocalendar().week:02d}",
        new_count=new_count,
        new_amount=new_amount,
        won_count=len(won),
        won_amount=sum((d.amount for d in won), Decimal(0)),
        lost_count=len(lost),
        lost_amount=sum((d.amount for d in lost), Decimal(0)),
        conversion=conv,
        previous_conversion=previous_conv,
        bottleneck=conv.bottleneck(BOTTLENECK_MIN_REACHED),
        top_of_funnel_warning=prior_avg > 0 and new_count < TOP_OF_FUNNEL_RATIO * prior_avg,
        prior_weeks_avg_new=prior_avg,
        stalled=stalled,
        forecast=forecast,
        won=[mover(d, tr("status.won")) for d in won[:10]],
        lost=[mover(d, d.lost_reason or tr("status.lost")) for d in lost[:10]],
        advances=_big_advances(session, team_id, start, end, tr),
        slipped=[
            mover(d, tr("report.slipped_detail", date=tr.date(d.expected_close)))
            for d in session.scalars(
                sa.select(Deal)
                .where(
                    Deal.team_id == team_id,
                    Deal.status == OPEN,
                    Deal.expected_close.is_not(None),
                    Deal.expected_close <= week.until,
                )
                .order_by(Deal.amount.desc())
                .limit(10)
            )
        ],
    )


def _big_advances(
    session: so.Session, team_id: str, start: dt.datetime, end: dt.datetime, tr: Translator
) -> list[Mover]:
    """Open deals that moved forward two or more open stages within the week."""
    from_stage = so.aliased(Stage)
    to_stage = so.aliased(Stage)
    rows = session.execute(
        sa.select(StageChange.deal_id, from_stage.position, to_stage.position, StageChange.id)
        .join(from_stage, from_stage.id == StageChange.from_stage_id)
        .join(to_stage, to_stage.id == StageChange.to_stage_id)
        .where(
            StageChange.team_id == team_id,
            StageChange.at >= start,
            StageChange.at < end,
            from_stage.kind == OPEN,
            to_stage.kind == OPEN,
        )
        .order_by(StageChange.deal_id, StageChange.id)
    ).all()
    first: dict[int, int] = {}
    last: dict[int, int] = {}
    for deal_id, src, dst, _ in rows:
        first.setdefault(deal_id, src)
        last[deal_id] = dst
    positions = {s.position: i for i, s in enumerate(domain.open_stages(session, team_id))}
    movers = []
    for deal_id, src in first.items():
        steps = positions.get(last[deal_id], 0) - positions.get(src, 0)
        if steps >= BIG_ADVANCE_STEPS:
            deal = session.get(Deal, deal_id)
            if deal is not None and deal.status == OPEN:
                movers.append(
                    Mover(
                        deal.number,
                        deal.name,
                        deal.owner_id,
                        deal.amount,
                        tr("report.advanced_detail", steps=steps, stage=deal.stage.name(tr.lang)),
                    )
                )
    return sorted(movers, key=lambda m: m.amount, reverse=True)[:10]
