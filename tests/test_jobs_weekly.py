"""The `weekly-report` job (SPEC §4) over a generated team history: the funnel PNG
uploaded to the report channel, the previous ISO week's numbers (new / won / lost, the
bottleneck, the top-of-funnel warning, stalled deals) in a post, the movers in a thread
reply; once per week, also with two replicas racing. Every test runs on SQLite and
PostgreSQL.

Expected numbers are computed here from the plan the history was built from, never from
funnelbot.metrics.
"""

from __future__ import annotations

import datetime as dt
import random
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import pytest
from helpers import TEAM
from jobkit import actor, decode_png, posts, slack_api_calls, texts, utc

REPORT_CHANNEL = "CREPORT"
REPORT_NOW = utc(2026, 11, 30, 9, 0)  # a Monday, 09:00 UTC (the workspace zone)
# The previous ISO week, worked out by hand: Monday 23 to Sunday 29 November 2026.
WEEK_START = utc(2026, 11, 23)
WEEK_END = utc(2026, 11, 30)
ISO_WEEK = "2026-W48"
WINDOW_START = utc(2026, 9, 1)  # 90 days ending Sunday 29 November, inclusive
STAGES = ("lead", "interest", "proposal", "negotiation")
NAMES = {
    "lead": "Lead",
    "interest": "Interest",
    "proposal": "Proposal",
    "negotiation": "Negotiation",
}
STALL_DAYS = {"lead": 7, "interest": 14, "proposal": 14, "negotiation": 10}
DAY = dt.timedelta(days=1)


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {"report_channel": REPORT_CHANNEL}


# --- the plan of a team's history ---------------------------------------------------------


@dataclass
class Plan:
    name: str
    owner: str
    amount: int
    created: dt.datetime
    start: str = "lead"
    events: list[tuple[str, dt.datetime]] = field(default_factory=list)  # (stage|won|lost, at)
    expected_close: dt.date | None = None
    number: int = 0

    @property
    def status(self) -> str:
        if self.events and self.events[-1][0] in ("won", "lost"):
            return self.events[-1][0]
        return "open"

    @property
    def closed_at(self) -> dt.datetime | None:
        return self.events[-1][1] if self.status != "open" else None

    @property
    def stage(self) -> str:
        """The current stage (for an open deal)."""
        opens = [s for s, _ in self.events if s in STAGES]
        return opens[-1] if opens else self.start

    @property
    def last_activity(self) -> dt.datetime:
        return self.events[-1][1] if self.events else self.created

    @property
    def furthest(self) -> int:
        """Index of the furthest stage reached (4 = won), skips counting as passing."""
        got = [STAGES.index(self.start)]
        for kind, _ in self.events:
            if kind in STAGES:
                got.append(STAGES.index(kind))
            elif kind == "won":
                got.append(len(STAGES))
        return max(got)


def generated(rng: random.Random, week_start: dt.datetime, n: int) -> list[Plan]:
    """`n` deals created in the week from `week_start`, each moving forward, getting lost
    or sitting still at random, never past the report's instant."""
    owners = ("U1", "U2", "U3")
    advance = {"lead": 0.75, "interest": 0.6, "proposal": 0.08}
    plans = []
    for _ in range(n):
        created = week_start + dt.timedelta(
            days=rng.randrange(7), hours=rng.randrange(8, 19), minutes=rng.randrange(60)
        )
        plan = Plan(
            name=f"Deal {created:%m%d%H%M}",
            owner=rng.choice(owners),
            amount=rng.randrange(1, 40) * 500,
            created=created,
        )
        at, index = created, 0
        while True:
            at = at + dt.timedelta(days=rng.uniform(1, 9))
            if at >= REPORT_NOW - dt.timedelta(hours=2):
                break
            stage = STAGES[index]
            if index < 3 and rng.random() < advance[stage]:
                index += 1
                plan.events.append((STAGES[index], at))
                continue
            if rng.random() < 0.5:
                plan.events.append(("lost", at))
            break
        plans.append(plan)
    return plans


def team_history(last_week_new: int, seed: int = 3) -> list[Plan]:
    rng = random.Random(seed)
    plans: list[Plan] = []
    counts = [9, 10, 8, 11, 10, 9, 12, 10, 9, 11, 10]  # weeks from Monday 7 September
    for week, n in enumerate(counts):
        plans += generated(rng, utc(2026, 9, 7) + dt.timedelta(weeks=week), n)
    # Old deals (created before the 90-day window) closed around the report week.
    old = dt.datetime(2026, 7, 1, 10, tzinfo=dt.UTC)

    def closed(
        name: str, amount: int, kind: str, at: dt.datetime, start: str = "negotiation"
    ) -> Plan:
        return Plan(name, "U2", amount, old, start=start, events=[(kind, at)])

    plans += [
        closed("Old win A", 42000, "won", utc(2026, 11, 24, 15)),
        closed("Old win B", 7500, "won", utc(2026, 11, 27, 11)),
        closed("Old win C", 13000, "won", WEEK_START + dt.timedelta(seconds=1)),
        closed("Old loss D", 9000, "lost", utc(2026, 11, 29, 23, 59), start="proposal"),
        closed("Old win E (week before)", 5000, "won", utc(2026, 11, 22, 23, 59)),
        closed("Old win F (this week)", 6000, "won", utc(2026, 11, 30, 8)),
        closed("Old loss G (week before)", 4000, "lost", utc(2026, 11, 20, 9), start="lead"),
        Plan("Old stale lead", "U3", 2500, old),
        Plan("Old stale proposal", "U1", 3500, old, start="proposal"),
    ]
    # Close dates: two open deals slipped (one due on the week's last day), one is due
    # later, one that slipped is closed anyway.
    plans += [
        Plan(
            "Slipped A",
            "U1",
            21000,
            utc(2026, 10, 20, 10),
            start="proposal",
            expected_close=dt.date(2026, 11, 20),
        ),
        Plan("Slipped B", "U2", 8000, utc(2026, 11, 2, 10), expected_close=dt.date(2026, 11, 29)),
        Plan(
            "Due later",
            "U3",
            30000,
            utc(2026, 11, 5, 10),
            start="interest",
            expected_close=dt.date(2026, 12, 15),
        ),
        Plan(
            "Lost before close",
            "U3",
            11000,
            utc(2026, 10, 1, 10),
            expected_close=dt.date(2026, 10, 10),
            events=[("lost", utc(2026, 10, 15, 10))],
        ),
    ]
    # Movers: a jump of two stages within the week, and a single step.
    plans += [
        Plan(
            "Jumper",
            "U1",
            17000,
            utc(2026, 11, 10, 10),
            events=[("proposal", utc(2026, 11, 24, 10))],
        ),
        Plan(
            "Stepper",
            "U2",
            16000,
            utc(2026, 11, 10, 11),
            events=[("interest", utc(2026, 11, 25, 10))],
        ),
    ]
    # The report week itself: the first and the last instant of it, then random ones;
    # and a deal from this week, after the report week.
    plans += [
        Plan("First of week", "U1", 1500, WEEK_START),
        Plan("Last of week", "U2", 2000, WEEK_END - dt.timedelta(seconds=1)),
    ]
    plans += generated(rng, WEEK_START, last_week_new - 2)
    plans.append(Plan("Monday early", "U3", 99000, utc(2026, 11, 30, 7)))
    return plans


def build(sessions: Any, plans: list[Plan]) -> None:
    """Write the plan through the domain, in creation order, in one transaction."""
    from funnelbot import deals

    with sessions.begin() as session:
        deals.ensure_workspace(session, TEAM, utc(2026, 1, 1))
        stage_of = {s.key: s for s in deals.funnel_stages(session, TEAM)}
        for plan in sorted(plans, key=lambda p: p.created):
            who = actor(plan.owner)
            deal = deals.create_deal(
                session,
                TEAM,
                who,
                name=plan.name,
                amount=Decimal(plan.amount),
                owner_id=plan.owner,
                stage=stage_of[plan.start],
                expected_close=plan.expected_close,
                now=plan.created,
            )
            plan.number = deal.number
            for kind, at in plan.events:
                if kind == "won":
                    deals.win(session, deal, who, now=at)
                elif kind == "lost":
                    deals.lose(session, deal, who, "too expensive", now=at)
                else:
                    deals.move(session, deal, who, stage_of[kind], now=at)


# --- what the report should say, computed from the plan ----------------------------------


def in_week(at: dt.datetime | None) -> bool:
    return at is not None and WEEK_START <= at < WEEK_END


@dataclass
class Expected:
    new: list[Plan]
    won: list[Plan]
    lost: list[Plan]
    prior_avg: float
    warning: bool
    bottleneck: tuple[str, int, int] | None  # key, advanced, reached
    lowest_overall: str
    stalled: int
    big_advances: list[Plan]
    slipped: list[Plan]


def expected(plans: list[Plan]) -> Expected:
    new = [p for p in plans if in_week(p.created)]
    prior = [
        sum(1 for p in plans if WEEK_START - k * 7 * DAY <= p.created < WEEK_END - k * 7 * DAY)
        for k in range(1, 5)
    ]
    prior_avg = sum(prior) / 4
    cohort = [p for p in plans if WINDOW_START <= p.created < WEEK_END]
    rates = []
    for i, key in enumerate(STAGES):
        reached = sum(1 for p in cohort if p.furthest >= i)
        advanced = sum(1 for p in cohort if p.furthest >= i + 1)
        if reached:
            rates.append((advanced / reached, key, advanced, reached))
    eligible = [r for r in rates if r[3] >= 5]
    best = min(eligible) if eligible else None
    stalled = sum(
        1
        for p in plans
        if p.status == "open"
        and p.created < REPORT_NOW
        and p.last_activity < REPORT_NOW - STALL_DAYS[p.stage] * DAY
    )
    big = []
    for p in plans:
        moves = [(s, at) for s, at in p.events if s in STAGES]
        before = [p.start] + [s for s, _ in moves]
        steps_in_week = [(before[i], s) for i, (s, at) in enumerate(moves) if in_week(at)]
        if p.status == "open" and steps_in_week:
            first, last = steps_in_week[0][0], steps_in_week[-1][1]
            if STAGES.index(last) - STAGES.index(first) >= 2:
                big.append(p)
    return Expected(
        new=new,
        won=[p for p in plans if p.status == "won" and in_week(p.closed_at)],
        lost=[p for p in plans if p.status == "lost" and in_week(p.closed_at)],
        prior_avg=prior_avg,
        warning=len(new) < 0.7 * prior_avg,
        bottleneck=(best[1], best[2], best[3]) if best else None,
        lowest_overall=min(rates)[1],
        stalled=stalled,
        big_advances=big,
        slipped=[
            p
            for p in plans
            if p.status == "open" and p.expected_close and p.expected_close <= dt.date(2026, 11, 29)
        ],
    )


def money(amount: int) -> str:
    return f"${amount:,}"


# --- reading the report ---------------------------------------------------------------------


def fields_of(params: dict[str, Any]) -> dict[str, str]:
    """The report's number fields: label -> value ("*New*\\n3 · $4,500" -> New: 3 · $4,500)."""
    out = {}
    for block in params["blocks"]:
        for f in block.get("fields") or []:
            label, _, value = f["text"].partition("\n")
            out[label.strip("*")] = value
    return out


def thread_sections(params: dict[str, Any]) -> dict[str, list[int]]:
    """Thread reply sections: heading -> the deal numbers listed under it, in order."""
    out: dict[str, list[int]] = {}
    heading = None
    for block in params["blocks"]:
        text = block.get("text") or {}
        if text.get("type") == "mrkdwn":
            heading = text["text"].strip("*")
        elif text.get("type") == "plain_text" and heading is not None:
            out[heading] = [int(line.split(" ", 1)[0][1:]) for line in text["text"].splitlines()]
            heading = None
    return out


def weekly(ctx: Any, now: dt.datetime = REPORT_NOW) -> list[str]:
    from funnelbot.jobs import run_job

    return run_job(ctx, "weekly-report", now)


@pytest.fixture(params=["thin", "normal"])
def history(request: pytest.FixtureRequest, app_server) -> Iterator[tuple[list[Plan], Expected]]:
    plans = team_history(3 if request.param == "thin" else 10)
    build(app_server.runtime.sessions, plans)
    want = expected(plans)
    # The history must exercise what the test is about.
    assert want.warning == (request.param == "thin"), (len(want.new), want.prior_avg)
    assert want.bottleneck is not None and want.lowest_overall != want.bottleneck[0]
    assert len(want.won) >= 3 and 1 <= len(want.lost) <= 10 and len(want.big_advances) >= 1
    yield plans, want


def test_weekly_report_posts_chart_numbers_and_thread_once(app_server, history) -> None:
    app = app_server
    fake = app.fake
    plans, want = history
    lines = weekly(app.runtime.jobs)
    assert lines == [f"{TEAM}: weekly report {ISO_WEEK} posted to {REPORT_CHANNEL}"]

    # The funnel PNG: URL, bytes, completion in the report channel, in that order.
    calls = slack_api_calls(fake)
    methods = [c.method for c in calls]
    get_url = methods.index("files.getUploadURLExternal")
    sent = methods.index("upload")
    completed = methods.index("files.completeUploadExternal")
    assert get_url < sent < completed
    assert methods.count("upload") == 1
    assert calls[completed].params["channel_id"] == REPORT_CHANNEL
    png = calls[sent].params["bytes"]
    assert int(calls[get_url].params["length"]) == len(png)
    assert decode_png(png).shape[:2] == (1000, 1600)

    # The post: the previous ISO week's numbers.
    [report] = posts(fake, REPORT_CHANNEL, thread=False)
    message = report.params
    assert ISO_WEEK in message["text"]
    numbers = fields_of(message)
    assert numbers["New"] == f"{len(want.new)} · {money(sum(p.amount for p in want.new))}"
    assert numbers["Won"] == f"{len(want.won)} · {money(sum(p.amount for p in want.won))}"
    assert numbers["Lost"] == f"{len(want.lost)} · {money(sum(p.amount for p in want.lost))}"
    assert numbers["Stalled now"] == str(want.stalled)
    body = texts(message)
    assert "2026-11-23..2026-11-29" in body
    for name in NAMES.values():  # stage conversion, one line per open stage
        assert f"*{name}*" in body
    assert "Forecast 2026-10-01..2026-12-31" in body  # the current quarter
    key, advanced, reached = want.bottleneck
    assert f"Bottleneck: {NAMES[key]} converts {advanced}/{reached} (" in body, body
    if want.warning:
        assert "Top of funnel is thin" in body
        assert f"{len(want.new)} new deals" in body and f"{want.prior_avg:.1f}" in body
    else:
        assert "Top of funnel" not in body

    # The thread reply: the week's movers and slipped deals.
    [reply] = posts(fake, REPORT_CHANNEL, thread=True)
    assert reply.params["thread_ts"] == report.response["ts"]
    sections = thread_sections(reply.params)
    assert sorted(sections["Won"]) == sorted(p.number for p in want.won)
    assert sorted(sections["Lost"]) == sorted(p.number for p in want.lost)
    assert sorted(sections["Big advances"]) == sorted(p.number for p in want.big_advances)
    assert sorted(sections["Expected close date passed, still open"]) == sorted(
        p.number for p in want.slipped
    )
    assert {p.name for p in want.slipped} == {"Slipped A", "Slipped B"}
    assert "Jumper" in {p.name for p in want.big_advances}
    reply_text = texts(reply.params)
    for p in want.won + want.lost:
        assert f"#{p.number} {p.name} · {money(p.amount)}" in reply_text

    # The same week again (later that day, or on Tuesday): nothing is posted.
    fake.reset()
    for now in (REPORT_NOW + dt.timedelta(hours=3), REPORT_NOW + DAY):
        assert weekly(app.runtime.jobs, now) == [
            f"{TEAM}: weekly report {ISO_WEEK} was already posted"
        ]
    assert [c.method for c in slack_api_calls(fake)] == []


def test_no_report_channel_posts_nothing(app_server) -> None:
    import dataclasses

    from funnelbot.jobs import JobContext

    app = app_server
    build(app.runtime.sessions, [Plan("Lonely", "U1", 100, utc(2026, 11, 24, 10))])
    runtime = app.runtime
    settings = dataclasses.replace(runtime.settings, report_channel=None)
    ctx = JobContext(settings, runtime.sessions, runtime.bolt.client)
    assert weekly(ctx) == [f"{TEAM}: no report channel set, nothing posted"]
    assert slack_api_calls(app.fake) == []
    # ...and it was not marked as done: with a channel it is posted.
    assert weekly(runtime.jobs) == [f"{TEAM}: weekly report {ISO_WEEK} posted to {REPORT_CHANNEL}"]


def test_failed_upload_posts_nothing_and_a_rerun_posts_once(app_server) -> None:
    from slack_sdk.errors import SlackApiError

    app = app_server
    build(app.runtime.sessions, [Plan("Acme", "U1", 1000, utc(2026, 11, 24, 10))])
    app.fake.fail_next("files.getUploadURLExternal", error="not_in_channel")
    with pytest.raises(SlackApiError):
        weekly(app.runtime.jobs)
    assert posts(app.fake, REPORT_CHANNEL) == []
    # The bot is invited; the operator re-runs it at once: it is posted, once.
    assert weekly(app.runtime.jobs, REPORT_NOW + dt.timedelta(minutes=5)) == [
        f"{TEAM}: weekly report {ISO_WEEK} posted to {REPORT_CHANNEL}"
    ]
    assert len(posts(app.fake, REPORT_CHANNEL, thread=False)) == 1
    assert len(posts(app.fake, REPORT_CHANNEL, thread=True)) == 1
    assert weekly(app.runtime.jobs, REPORT_NOW + dt.timedelta(minutes=6)) == [
        f"{TEAM}: weekly report {ISO_WEEK} was already posted"
    ]


def test_replicas_racing_post_one_report(app_server, db_url: str) -> None:
    from funnelbot import db
    from funnelbot.app import make_client
    from funnelbot.jobs import JobContext

    app = app_server
    plans = [
        Plan("Race A", "U1", 1000, utc(2026, 11, 24, 10)),
        Plan("Race B", "U2", 2000, utc(2026, 11, 20, 10), events=[("won", utc(2026, 11, 26, 10))]),
    ]
    build(app.runtime.sessions, plans)

    engines = [db.make_engine(db_url) for _ in range(3)]  # three replicas, one database
    try:
        contexts = [
            JobContext(
                app.settings,
                db.make_session_factory(e),
                make_client(app.settings, token=app.settings.slack_bot_token),
            )
            for e in engines
        ]
        barrier = threading.Barrier(len(contexts))
        results: dict[int, list[str] | BaseException] = {}

        def replica(i: int) -> None:
            try:
                barrier.wait(timeout=30)
                results[i] = weekly(contexts[i])
            except BaseException as exc:  # noqa: BLE001 - reported below
                results[i] = exc

        threads = [threading.Thread(target=replica, args=(i,)) for i in range(len(contexts))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
    finally:
        for e in engines:
            e.dispose()

    posted = [f"{TEAM}: weekly report {ISO_WEEK} posted to {REPORT_CHANNEL}"]
    skipped = [f"{TEAM}: weekly report {ISO_WEEK} was already posted"]
    outcomes = [results.get(i) for i in range(len(contexts))]
    assert sorted(map(str, outcomes)) == sorted(map(str, [posted, skipped, skipped])), outcomes
    assert len(posts(app.fake, REPORT_CHANNEL, thread=False)) == 1
    assert len(posts(app.fake, REPORT_CHANNEL, thread=True)) == 1
    assert len(app.fake.calls_to("files.completeUploadExternal")) == 1
    [report] = posts(app.fake, REPORT_CHANNEL, thread=False)
    numbers = fields_of(report.params)
    assert numbers["New"] == "1 · $1,000"
    assert numbers["Won"] == "1 · $2,000"
