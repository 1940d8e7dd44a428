"""funnelbot.metrics against SPEC §5, on SQLite and PostgreSQL.

Histories are generated with a fixed seed (tests/metrics_model.py) — stage skips,
back-moves, losses at every stage, wins, reopened deals, several owners and sources,
deals created in and out of the period — replayed through the deal domain with explicit
`now`, and every number is recomputed in plain Python from the generated events. The
workspace time zone is Asia/Shanghai (UTC+8): a deal created 2026-03-31T17:00Z was
created on 2026-04-01 there.
"""

from __future__ import annotations

import datetime as dt
import functools
import math
import random
from collections import Counter
from decimal import Decimal

import numpy as np
import pytest
import sqlalchemy as sa
from metrics_model import (
    OPEN_KEYS,
    RANK,
    STALL_DAYS,
    Plan,
    Step,
    cohort,
    expected_conversion,
    expected_pipeline,
    expected_win_probabilities,
    insert,
    local_date,
    random_plans,
    wilson,
)

from funnelbot import metrics
from funnelbot.db import make_engine, make_session_factory, upgrade
from funnelbot.deals import stages_changed
from funnelbot.models import Stage
from funnelbot.periods import Period

TEAM = "TMETRICS"
TZ = "Asia/Shanghai"
SEED = 20260415
UTC = dt.UTC
NOW = dt.datetime(2026, 8, 31, 12, 0, tzinfo=UTC)  # 20:00 on 2026-08-31 in Shanghai
AS_OF = dt.date(2026, 8, 31)
Q2 = (dt.date(2026, 4, 1), dt.date(2026, 6, 30))
Q3 = (dt.date(2026, 7, 1), dt.date(2026, 9, 30))


def at(text: str) -> dt.datetime:
    """An aware UTC instant from 'YYYY-MM-DDTHH:MM:SS' (UTC)."""
    return dt.datetime.fromisoformat(text).replace(tzinfo=UTC)


def days(n: float) -> dt.timedelta:
    return dt.timedelta(days=n)


def edge_plans() -> list[Plan]:
    """Hand-made deals on the period edges and for each rule the random ones may miss."""
    plans = []

    def plan(
        name, created, start="lead", steps=(), owner="U1", source="web", amount="1000", close=None
    ):
        p = Plan(
            name=name,
            owner=owner,
            source=source,
            amount=Decimal(amount),
            expected_close=close,
            created_at=created,
            start=start,
        )
        p.steps = [Step(a, t, x) for a, t, x in steps]
        plans.append(p)
        return p

    # created 2026-04-01 01:00 in Shanghai (in Q2), skips lead -> proposal, then won
    c = at("2026-03-31T17:00:00")
    plan("edge in", c, steps=[("move", c + days(2), "proposal"), ("win", c + days(9.5), None)])
    # 2026-03-31 23:59:59 in Shanghai: not in Q2 (but in Q2 for a UTC workspace)
    c = at("2026-03-31T15:59:59")
    plan("edge before", c, steps=[("lose", c + days(1), "price")], owner="U2")
    # 2026-06-30 23:59:59 in Shanghai: the last second of Q2
    c = at("2026-06-30T15:59:59")
    plan(
        "edge last", c, start="interest", source="referral", steps=[("advance", c + days(3), None)]
    )
    # 2026-07-01 00:00 in Shanghai: Q3
    c = at("2026-06-30T16:00:00")
    plan("edge after", c, steps=[("win", c + days(4), None)], owner="U3")
    # a back-move negotiation -> interest, then lost in interest
    c = at("2026-04-10T03:00:00")
    plan(
        "back and lost",
        c,
        steps=[
            ("move", c + days(1), "negotiation"),
            ("move", c + days(6.25), "interest"),
            ("lose", c + days(20), "competitor"),
        ],
        owner="U2",
        source="partner",
    )
    # lost at every open stage
    for i, key in enumerate(OPEN_KEYS):
        c = at(f"2026-05-0{i + 1}T08:30:00")
        plan(f"lost in {key}", c, start=key, steps=[("lose", c + days(3 + i), None)], owner="U3")
    # won, reopened, won again; lost, reopened, still open
    c = at("2026-05-20T09:00:00")
    plan(
        "won twice",
        c,
        start="proposal",
        steps=[
            ("win", c + days(5), None),
            ("reopen", c + days(7), None),
            ("win", c + days(12), None),
        ],
    )
    plan(
        "lost then reopened",
        c + days(1),
        start="negotiation",
        steps=[("lose", c + days(2), "timing"), ("reopen", c + days(4), None)],
        source=None,
        close=dt.date(2026, 9, 30),
    )
    # open deals on the edges of the Q3 forecast period (expected close inclusive)
    for close in (
        dt.date(2026, 6, 30),
        dt.date(2026, 7, 1),
        dt.date(2026, 9, 30),
        dt.date(2026, 10, 1),
    ):
        plan(
            f"closes {close}",
            at("2026-08-01T00:00:00"),
            start="proposal",
            close=close,
            amount="777.77",
        )
    # the 365-day window of closed deals as of 2026-08-31: 2025-09-01 .. 2026-08-31 local
    c = at("2025-07-01T00:00:00")
    plan("closed before window", c, steps=[("win", at("2025-08-31T15:59:59"), None)])
    plan("closed at window start", c, steps=[("win", at("2025-08-31T16:00:00"), None)])
    return plans


def dataset() -> list[Plan]:
    rnd = random.Random(SEED)
    plans = random_plans(
        rnd,
        160,
        first=at("2025-05-01T00:00:00"),
        last=at("2026-08-20T00:00:00"),
        horizon=NOW,
    )
    return plans + edge_plans()


@pytest.fixture(
    scope="module",
    params=[
        pytest.param("sqlite", id="sqlite"),
        pytest.param("postgresql", id="postgresql", marks=pytest.mark.postgresql),
    ],
)
def loaded(request, tmp_path_factory):
    """The generated dataset, inserted once per backend for the read-only tests below."""
    name = None
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('metrics')}/funnelbot.db"
    else:
        dbs = request.getfixturevalue("pg_databases")
        template = request.getfixturevalue("pg_template")
        name = dbs.new_name()
        url = dbs.create(name, template=template)
    engine = make_engine(url)
    try:
        upgrade(engine)
        plans = dataset()
        sessions = make_session_factory(engine)
        with sessions.begin() as session:
            insert(session, TEAM, plans)
        yield sessions, plans
    finally:
        engine.dispose()
        if name is not None:
            dbs.drop(name)


def assert_matches(actual, expected, path="$"):
    """Counts exactly, floats within 1e-9, the same keys and nulls."""
    if isinstance(expected, dict):
        assert isinstance(actual, dict), path
        assert set(actual) == set(expected), (path, set(actual) ^ set(expected))
        for key in expected:
            assert_matches(actual[key], expected[key], f"{path}.{key}")
    elif isinstance(expected, list):
        assert isinstance(actual, list) and len(actual) == len(expected), path
        for i, (a, e) in enumerate(zip(actual, expected, strict=True)):
            assert_matches(a, e, f"{path}[{i}]")
    elif isinstance(expected, bool) or expected is None or isinstance(expected, str):
        assert actual == expected, (path, actual, expected)
    elif isinstance(expected, int):
        assert isinstance(actual, int) and actual == expected, (path, actual, expected)
    else:
        assert actual is not None, (path, actual, expected)
        assert math.isclose(actual, expected, rel_tol=1e-9, abs_tol=1e-9), (path, actual, expected)


# --- the generated data covers what it should ----------------------------------------------


def test_generated_histories_cover_every_rule() -> None:
    plans = dataset()
    assert plans == dataset()  # the seed makes it reproducible
    q2 = cohort(plans, *Q2, TZ)
    assert 30 <= len(q2) < len(plans)

    def has(pred) -> int:
        return sum(1 for p in q2 if pred(p))

    def skips(p: Plan) -> bool:
        return any(
            b in OPEN_KEYS and a in OPEN_KEYS and RANK[b] > RANK[a] + 1
            for (_, a), (_, b) in zip(p.events, p.events[1:], strict=False)
        )

    def back_moves(p: Plan) -> bool:
        return any(
            a in OPEN_KEYS and b in OPEN_KEYS and RANK[b] < RANK[a]
            for (_, a), (_, b) in zip(p.events, p.events[1:], strict=False)
        )

    assert has(skips) and has(back_moves)
    assert has(lambda p: any(s.action == "reopen" for s in p.steps))
    assert has(lambda p: p.status == "won") and has(lambda p: p.status == "open")
    assert {p.lost_from() for p in q2} >= set(OPEN_KEYS)
    assert len({p.owner for p in q2}) == 3 and len({p.source for p in q2}) == 5
    assert has(lambda p: p.start != "lead")


# --- conversion ------------------------------------------------------------------------------


CASES = [
    # since, until, owner, source, tz
    (*Q2, None, None, TZ),
    (*Q2, "U1", None, TZ),
    (*Q2, "U2", None, TZ),
    (*Q2, None, "web", TZ),
    (*Q2, "U3", "referral", TZ),
    (*Q2, None, None, "UTC"),  # the edge deals fall the other way
    (dt.date(2025, 5, 1), dt.date(2026, 8, 31), None, None, TZ),  # everything
    (dt.date(2026, 4, 1), dt.date(2026, 4, 1), None, None, TZ),  # one day
    (dt.date(2026, 7, 1), dt.date(2026, 9, 30), None, "partner", TZ),
    (dt.date(2025, 1, 1), dt.date(2025, 1, 31), None, None, TZ),  # empty
    (*Q2, "U404", None, TZ),  # nobody
]


def test_conversion_matches_the_spec_computed_independently(loaded) -> None:
    sessions, plans = loaded
    with sessions() as session:
        for since, until, owner, source, tz in CASES:
            conversion = functools.partial(
                metrics.conversion,
                session,
                TEAM,
                Period(since, until),
                tz=tz,
                filters=metrics.Filters(owner=owner, source=source),
            )
            result = conversion()
            expected = expected_conversion(plans, since, until, tz, owner, source)
            assert_matches(result.as_json(), expected, f"{since}..{until} {owner} {source} {tz}")
            deals = cohort(plans, since, until, tz, owner, source)
            assert result.created == len(deals)
            assert result.won_amount == sum(
                (p.amount for p in deals if p.status == "won"), Decimal(0)
            )
            # Without the stays: the same figures, no days (answers that show none).
            quick = conversion(stays=False)
            for stage in expected["stages"]:
                stage["avg_days"] = stage["median_days"] = None
            assert_matches(quick.as_json(), expected, f"no stays {since}..{until}")


def test_period_edges_in_the_workspace_time_zone(loaded) -> None:
    sessions, plans = loaded
    with sessions() as session:
        first_day = metrics.conversion(
            session, TEAM, Period(dt.date(2026, 4, 1), dt.date(2026, 4, 1)), tz=TZ
        )
        # "edge in" (2026-03-31T17:00Z) is the only deal created on 2026-04-01 in Shanghai
        mine = [p.name for p in cohort(plans, dt.date(2026, 4, 1), dt.date(2026, 4, 1), TZ)]
        assert "edge in" in mine and "edge before" not in mine
        assert first_day.created == len(mine)
        last_day = metrics.conversion(
            session, TEAM, Period(dt.date(2026, 6, 30), dt.date(2026, 6, 30)), tz=TZ
        )
        mine = [p.name for p in cohort(plans, dt.date(2026, 6, 30), dt.date(2026, 6, 30), TZ)]
        assert "edge last" in mine and "edge after" not in mine
        assert last_day.created == len(mine)


def test_empty_period_is_all_zero_and_null(loaded) -> None:
    sessions, _ = loaded
    with sessions() as session:
        result = metrics.conversion(
            session, TEAM, Period(dt.date(2024, 1, 1), dt.date(2024, 12, 31)), tz=TZ
        ).as_json()
    assert [s["key"] for s in result["stages"]] == list(OPEN_KEYS)
    for stage in result["stages"]:
        assert (stage["reached"], stage["advanced"], stage["open"], stage["lost"]) == (0, 0, 0, 0)
        for key in ("conversion", "conversion_low", "conversion_high", "avg_days", "median_days"):
            assert stage[key] is None, key
    assert (result["won"], result["lost"]) == (0, 0)
    for key in ("win_rate", "win_rate_low", "win_rate_high", "cycle_days_avg"):
        assert result[key] is None


def test_wilson_interval_known_values() -> None:
    # the test's own Wilson formula against published values, and the module's against it
    low, high = wilson(0, 10)
    assert low == pytest.approx(0, abs=1e-12) and high == pytest.approx(0.2775, abs=1e-4)
    low, high = wilson(1, 2)
    assert (low, high) == (pytest.approx(0.0945, abs=1e-4), pytest.approx(0.9055, abs=1e-4))
    for k, n in [(0, 1), (1, 1), (3, 7), (50, 100), (99, 100), (0, 500)]:
        mine = wilson(k, n)
        theirs = metrics.wilson(k, n)
        assert theirs[0] == pytest.approx(mine[0], abs=1e-12)
        assert theirs[1] == pytest.approx(mine[1], abs=1e-12)
    assert metrics.wilson(0, 0) == (None, None)


# --- forecast ---------------------------------------------------------------------------------


def check_forecast(result: metrics.Forecast, plans, since, until, as_of, owner=None) -> None:
    probabilities = expected_win_probabilities(plans, as_of, TZ, owner)
    got = {s.key: s for s in result.stages}
    assert list(got) == list(OPEN_KEYS)
    for key, want in probabilities.items():
        s = got[key]
        assert s.sample == want["sample"], key
        assert s.p_win_default == pytest.approx(want["p_win_default"], abs=1e-12), key
        assert math.isclose(s.p_win, want["p_win"], rel_tol=1e-9, abs_tol=1e-9), key
        assert s.learned == (want["sample"] >= 20), key
    pipe = expected_pipeline(plans, since, until, probabilities, as_of=as_of, tz=TZ, owner=owner)
    assert result.deals == pipe["deals"]
    assert float(result.amount_open) == pytest.approx(pipe["amount_open"], abs=1e-6)
    assert abs(float(result.weighted) - pipe["weighted"]) <= 0.005 + 1e-6  # cents
    assert result.undated_deals == pipe["undated"]["deals"]
    assert float(result.undated_amount) == pytest.approx(pipe["undated"]["amount_open"], abs=1e-6)
    assert abs(float(result.undated_weighted) - pipe["undated"]["weighted"]) <= 0.005 + 1e-6
    assert 0 <= result.p10 <= result.p50 <= result.p90 <= result.amount_open
    doc = result.as_json()
    assert doc["period"] == {"since": since.isoformat(), "until": until.isoformat()}
    assert doc["as_of"] == as_of.isoformat()
    assert doc["stages"] == [
        {"key": s.key, "p_win": s.p_win, "p_win_default": s.p_win_default, "sample": s.sample}
        for s in result.stages
    ]


def test_forecast_matches_the_spec_computed_independently(loaded) -> None:
    sessions, plans = loaded
    assert all(p.created_at < NOW for p in plans if p.status == "open")
    with sessions() as session:
        result = metrics.forecast(session, TEAM, Period(*Q3), AS_OF, tz=TZ)
        check_forecast(result, plans, *Q3, AS_OF)
        learned = [s.learned for s in result.stages]
        assert any(learned), "the dataset should teach at least the first stage"
        # the edges of the period and of the 365-day window
        names = {p.name for p in plans if p.status == "open" and p.expected_close}
        assert {"closes 2026-07-01", "closes 2026-09-30"} <= names
        for owner in ("U1", "U2", "U3"):
            check_forecast(
                metrics.forecast(session, TEAM, Period(*Q3), AS_OF, tz=TZ, owner=owner),
                plans,
                *Q3,
                AS_OF,
                owner,
            )
        # another period and as-of day: a shorter window of closed deals
        other = metrics.forecast(
            session,
            TEAM,
            Period(dt.date(2026, 6, 1), dt.date(2026, 7, 31)),
            dt.date(2026, 1, 31),
            tz=TZ,
        )
        check_forecast(
            other, plans, dt.date(2026, 6, 1), dt.date(2026, 7, 31), dt.date(2026, 1, 31)
        )
        # same seed, same numbers
        again = metrics.forecast(session, TEAM, Period(*Q3), AS_OF, tz=TZ)
    assert (again.p10, again.p50, again.p90) == (result.p10, result.p50, result.p90)
    assert again.as_json() == result.as_json()


def closed_plan(name, created, close_at, *, won, furthest="lead", owner="U1") -> Plan:
    """A deal created in `lead` that reached `furthest` and then was won or lost."""
    p = Plan(name, owner, "web", Decimal("10"), None, created, "lead")
    t = created
    if furthest != "lead":
        t = min(close_at - dt.timedelta(seconds=1), created + days(1))
        p.steps.append(Step("move", t, furthest))
    p.steps.append(Step("win" if won else "lose", close_at, None))
    return p


def test_forecast_learns_from_20_closed_deals_else_uses_the_default(db_engine) -> None:
    created = at("2026-01-05T00:00:00")
    plans = []
    # 15 won deals (a win passes through every stage); one is won at 23:59:59 on the as-of day
    for i in range(14):
        plans.append(closed_plan(f"won {i}", created, created + days(30 + i), won=True))
    plans.append(closed_plan("won last second", created, at("2026-08-31T15:59:59"), won=True))
    for i in range(5):
        plans.append(closed_plan(f"lost in lead {i}", created, created + days(40 + i), won=False))
    for i in range(3):
        plans.append(
            closed_plan(
                f"lost in nego {i}", created, created + days(50), won=False, furthest="negotiation"
            )
        )
    # 2025-09-01 00:00 in Shanghai: the first day of the window
    plans.append(
        closed_plan(
            "lost first day", at("2025-08-01T00:00:00"), at("2025-08-31T16:00:00"), won=False
        )
    )
    # outside the window: the day before it, and the day after the as-of day
    plans.append(
        closed_plan("won too early", at("2025-08-01T00:00:00"), at("2025-08-31T15:59:59"), won=True)
    )
    plans.append(closed_plan("won too late", created, at("2026-08-31T16:00:00"), won=True))
    # the open pipeline: one deal in lead, one in proposal, one undated in negotiation
    plans.append(
        Plan("open lead", "U1", "web", Decimal("1000"), dt.date(2026, 9, 1), created, "lead")
    )
    plans.append(
        Plan(
            "open proposal", "U1", "web", Decimal("100"), dt.date(2026, 9, 30), created, "proposal"
        )
    )
    plans.append(Plan("open undated", "U2", "web", Decimal("50"), None, created, "negotiation"))
    plans.append(
        Plan("open later", "U2", "web", Decimal("70"), dt.date(2026, 10, 1), created, "lead")
    )
    sessions = make_session_factory(db_engine)
    with sessions.begin() as session:
        insert(session, TEAM, plans)
    with sessions() as session:
        result = metrics.forecast(session, TEAM, Period(*Q3), AS_OF, tz=TZ)
    by_key = {s.key: s for s in result.stages}
    # lead: 15 won + 5 + 3 + 1 lost = 24 closed deals in the window -> learned 15/24
    assert by_key["lead"].sample == 24 and by_key["lead"].learned
    assert by_key["lead"].p_win == pytest.approx(15 / 24, abs=1e-12)
    # later stages: 15 won + 3 lost = 18 < 20 -> the stage default, the sample still reported
    for key, default in (("interest", 0.2), ("proposal", 0.4), ("negotiation", 0.7)):
        assert by_key[key].sample == 18, key
        assert not by_key[key].learned
        assert by_key[key].p_win == pytest.approx(default, abs=1e-12)
        assert by_key[key].p_win_default == pytest.approx(default, abs=1e-12)
    assert result.deals == 2
    assert result.amount_open == Decimal("1100")
    assert result.weighted == Decimal(str(round(1000 * 15 / 24 + 100 * 0.4, 2)))
    # undated: the negotiation deal, and "won too late", which was still open in lead on T
    assert (result.undated_deals, result.undated_amount) == (2, Decimal("60"))
    assert result.undated_weighted == Decimal("41.25")  # 50 × 0.7 + 10 × 15/24
    check_forecast(result, plans, *Q3, AS_OF)
    # per rep: U2 has no closed deals at all -> every stage uses its default
    with sessions() as session:
        mine = metrics.forecast(session, TEAM, Period(*Q3), AS_OF, tz=TZ, owner="U2")
    assert [s.sample for s in mine.stages] == [0, 0, 0, 0]
    assert [s.p_win for s in mine.stages] == pytest.approx([0.1, 0.2, 0.4, 0.7])
    assert (mine.deals, mine.undated_deals, mine.undated_weighted) == (0, 1, Decimal("35.00"))
    assert (mine.p10, mine.p50, mine.p90) == (0, 0, 0)


def test_forecast_single_deal_with_even_odds(db_engine) -> None:
    sessions = make_session_factory(db_engine)
    created = at("2026-07-01T00:00:00")
    with sessions.begin() as session:
        insert(
            session,
            TEAM,
            [Plan("coin", "U1", None, Decimal("100"), dt.date(2026, 8, 1), created, "proposal")],
        )
        session.execute(
            sa.update(Stage)
            .where(Stage.team_id == TEAM, Stage.key == "proposal")
            .values(probability=Decimal("0.5"))
        )
        stages_changed(session.connection(), [TEAM])
    with sessions() as session:
        first = metrics.forecast(session, TEAM, Period(*Q3), AS_OF, tz=TZ)
        second = metrics.forecast(session, TEAM, Period(*Q3), AS_OF, tz=TZ)
    assert (first.deals, first.amount_open, first.weighted) == (1, Decimal("100"), Decimal("50.00"))
    assert first.p10 == 0 and first.p90 == 100
    assert first.p50 in (0, 50, 100)
    assert (second.p10, second.p50, second.p90) == (first.p10, first.p50, first.p90)
    assert metrics.FORECAST_RUNS >= 10_000


def test_forecast_percentiles_for_many_deals(db_engine) -> None:
    rnd = random.Random(SEED + 1)
    created = at("2026-06-01T00:00:00")
    plans = [
        Plan(
            f"big {i}",
            rnd.choice(("U1", "U2")),
            "web",
            Decimal(rnd.randrange(1000, 10_000)),
            dt.date(2026, 7, 1) + dt.timedelta(days=rnd.randrange(92)),
            created + dt.timedelta(minutes=i),
            rnd.choice(OPEN_KEYS),
        )
        for i in range(200)
    ]
    sessions = make_session_factory(db_engine)
    with sessions.begin() as session:
        insert(session, TEAM, plans)
    with sessions() as session:
        result = metrics.forecast(session, TEAM, Period(*Q3), AS_OF, tz=TZ)
    check_forecast(result, plans, *Q3, AS_OF)
    assert result.deals == 200
    weighted = float(result.weighted)
    # our own simulation: 20 000 runs of 200 independent wins
    probs = expected_win_probabilities(plans, AS_OF, TZ)
    amounts = np.array([float(p.amount) for p in plans])
    p = np.array([probs[plan.stage]["p_win"] for plan in plans])
    rng = np.random.default_rng(7)
    totals = (rng.random((20_000, len(plans))) < p) @ amounts
    p10, p50, p90 = np.percentile(totals, [10, 50, 90])
    assert abs(float(result.p50) - weighted) <= 0.02 * weighted
    for mine, theirs in ((p10, result.p10), (p50, result.p50), (p90, result.p90)):
        assert abs(float(theirs) - mine) <= 0.02 * weighted
    assert result.p10 < result.p50 < result.p90


# --- stalled, open by stage, breakdowns, lost reasons, velocity -------------------------------------


def test_stalled_deals(db_engine) -> None:
    now = at("2026-05-14T10:00:00")
    today = now.date()
    plans = []

    def idle(name, stage, idle_for, owner="U1", due=None):
        created = now - idle_for
        p = Plan(name, owner, None, Decimal("1"), None, created, stage, next_step_due=due)
        plans.append(p)
        return p

    second = dt.timedelta(seconds=1)
    for key in OPEN_KEYS:
        idle(f"{key} stalled", key, days(STALL_DAYS[key]) + second)
        idle(f"{key} exactly at the limit", key, days(STALL_DAYS[key]))
        idle(f"{key} fresh", key, days(1))
    idle("overdue step", "interest", days(1), due=today - days(1))
    idle("due today", "interest", days(1), due=today)
    idle("other rep", "lead", days(30), owner="U2")
    won = idle("won long ago", "lead", days(90))
    won.steps = [Step("win", now - days(80))]
    lost = idle("lost long ago", "proposal", days(90))
    lost.steps = [Step("lose", now - days(80), "price")]
    # moved recently: its idle time counts from the last change, not from creation
    moved = idle("moved recently", "lead", days(60))
    moved.steps = [Step("advance", now - days(2))]
    sessions = make_session_factory(db_engine)
    with sessions.begin() as session:
        insert(session, TEAM, plans)
    with sessions() as session:
        found, total = metrics.stalled_deals(session, TEAM, now, today)
        names = [d.name for d in found]
        expected = {f"{k} stalled" for k in OPEN_KEYS} | {"overdue step", "other rep"}
        assert set(names) == expected and total == len(expected)
        # oldest activity first
        activity = [d.last_activity_at for d in found]
        assert activity == sorted(activity)
        found, total = metrics.stalled_deals(session, TEAM, now, today, owner="U2")
        assert [d.name for d in found] == ["other rep"] and total == 1
        found, total = metrics.stalled_deals(session, TEAM, now, today, limit=3)
        assert total == len(expected)
        assert found[0].name == "other rep"  # idle for 30 days
        assert {d.name for d in found[1:]} == {"interest stalled", "proposal stalled"}


def test_open_by_stage(loaded) -> None:
    sessions, plans = loaded
    with sessions() as session:
        for owner in (None, "U1", "U3", "U404"):
            loads = metrics.open_by_stage(session, TEAM, owner=owner)
            assert [x.key for x in loads] == list(OPEN_KEYS)
            for load in loads:
                mine = [
                    p
                    for p in plans
                    if p.status == "open" and p.stage == load.key and owner in (None, p.owner)
                ]
                assert load.deals == len(mine), (owner, load.key)
                assert load.amount == sum((p.amount for p in mine), Decimal(0)), (owner, load.key)


@pytest.mark.parametrize("by", ["owner", "source"])
def test_breakdown(loaded, by) -> None:
    sessions, plans = loaded
    for since, until in (
        Q2,
        (dt.date(2025, 5, 1), dt.date(2026, 8, 31)),
        (dt.date(2024, 1, 1), dt.date(2024, 1, 2)),
    ):
        deals = cohort(plans, since, until, TZ)
        expected = {}
        for p in deals:
            key = p.owner if by == "owner" else p.source
            row = expected.setdefault(key, [0, 0, 0, 0, Decimal(0), Decimal(0)])
            row[0] += 1
            row[{"won": 1, "lost": 2, "open": 3}[p.status]] += 1
            if p.status == "won":
                row[4] += p.amount
            if p.status == "open":
                row[5] += p.amount
        with sessions() as session:
            rows = metrics.breakdown(session, TEAM, Period(since, until), by, tz=TZ)
        got = {r.key: [r.created, r.won, r.lost, r.open, r.won_amount, r.open_amount] for r in rows}
        assert got == expected
        assert [r.created for r in rows] == sorted((r.created for r in rows), reverse=True)
        for r in rows:
            assert r.win_rate == (r.won / (r.won + r.lost) if r.won + r.lost else None)
            if r.won + r.lost:
                assert r.win_interval == pytest.approx(wilson(r.won, r.won + r.lost))
            else:
                assert r.win_interval == (None, None)


def test_lost_reasons_and_velocity(loaded) -> None:
    sessions, plans = loaded
    for since, until in (Q2, (dt.date(2025, 5, 1), dt.date(2026, 8, 31))):
        lost = [
            p for p in plans if p.status == "lost" and since <= local_date(p.closed_at, TZ) <= until
        ]
        counts = Counter(p.lost_reason for p in lost)
        amounts: dict = {}
        for p in lost:
            amounts[p.lost_reason] = amounts.get(p.lost_reason, Decimal(0)) + p.amount
        with sessions() as session:
            reasons = metrics.lost_reasons(session, TEAM, Period(since, until), tz=TZ)
            vel = metrics.velocity(session, TEAM, Period(since, until), tz=TZ)
        assert {r.reason: r.deals for r in reasons} == dict(counts)
        assert {r.reason: r.amount for r in reasons} == amounts
        assert [r.deals for r in reasons] == sorted((r.deals for r in reasons), reverse=True)
        assert None in counts  # some deals were lost without a reason

        deals = cohort(plans, since, until, TZ)
        won = [p for p in deals if p.status == "won"]
        assert vel.open_deals == sum(1 for p in plans if p.status == "open")
        assert vel.avg_won_amount == sum((p.amount for p in won), Decimal(0)) / len(won)
        conv = expected_conversion(plans, since, until, TZ)
        value = (
            vel.open_deals * float(vel.avg_won_amount) * conv["win_rate"] / conv["cycle_days_avg"]
        )
        assert float(vel.per_day) == pytest.approx(value, abs=0.006)
