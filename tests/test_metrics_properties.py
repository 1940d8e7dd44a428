"""Property tests of funnelbot.metrics.conversion (SPEC §5) over arbitrary histories.

Hypothesis builds deal histories (any mix of advance / move forward or back / win / lose /
reopen at increasing times), they are replayed through the deal domain into a fresh team
of one SQLite database, and the funnel must hold together: reached never grows along the
funnel, advanced[k] is reached[k+1], every ratio is a proportion inside its Wilson
interval, and the open column adds up to the open cohort deals.
"""

from __future__ import annotations

import datetime as dt
import itertools
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from metrics_model import (
    OPEN_KEYS,
    RANK,
    Plan,
    Step,
    cohort,
    expected_conversion,
    insert,
    valid_actions,
)

from funnelbot import metrics
from funnelbot.db import make_engine, make_session_factory, upgrade
from funnelbot.periods import Period

BASE = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
EPS = 1e-12
_teams = itertools.count(1)


@pytest.fixture(scope="module")
def sessions(tmp_path_factory):
    engine = make_engine(f"sqlite:///{tmp_path_factory.mktemp('props')}/funnelbot.db")
    upgrade(engine)
    try:
        yield make_session_factory(engine)
    finally:
        engine.dispose()


step_st = st.tuples(
    st.sampled_from(("advance", "move", "win", "lose", "reopen")),
    st.sampled_from((*OPEN_KEYS, "won", "lost")),
    st.integers(min_value=1, max_value=40 * 86400),  # seconds after the previous change
)
deal_st = st.tuples(
    st.sampled_from(OPEN_KEYS),
    st.sampled_from(("U1", "U2", "U3")),
    st.sampled_from(("web", "referral", None)),
    st.integers(min_value=0, max_value=180 * 86400),  # created, seconds after BASE
    st.lists(step_st, max_size=7),
)


def build(deals: list[tuple]) -> list[Plan]:
    """Plans from the drawn deals; a step that makes no sense where the deal is is skipped."""
    plans = []
    for n, (start, owner, source, offset, steps) in enumerate(deals):
        created = BASE + dt.timedelta(seconds=offset)
        plan = Plan(f"P{n}", owner, source, Decimal(n), None, created, start)
        at = created
        for action, target, gap in steps:
            at += dt.timedelta(seconds=gap)
            current = plan.events[-1][1]
            if action not in valid_actions(plan.events):
                continue
            if action == "move" and target == current:
                continue
            plan.steps.append(Step(action, at, target if action == "move" else None))
        plans.append(plan)
    return plans


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    deals=st.lists(deal_st, min_size=1, max_size=12),
    since_day=st.one_of(st.just(-1), st.integers(min_value=-5, max_value=150)),
    length=st.one_of(st.just(366), st.integers(min_value=1, max_value=240)),
    tz=st.sampled_from(("UTC", "Asia/Shanghai", "America/New_York")),
    owner=st.sampled_from((None, None, None, "U1")),
    source=st.sampled_from((None, None, None, "web")),
)
def test_funnel_holds_together(sessions, deals, since_day, length, tz, owner, source) -> None:
    plans = build(deals)
    team = f"TP{next(_teams)}"
    since = BASE.date() + dt.timedelta(days=since_day)
    until = since + dt.timedelta(days=length - 1)
    with sessions.begin() as session:
        insert(session, team, plans)
    with sessions() as session:
        result = metrics.conversion(
            session, team, Period(since, until), tz=tz, filters=metrics.Filters(owner, source)
        )
    stages = result.stages
    mine = cohort(plans, since, until, tz, owner, source)
    event(f"cohort size {min(len(mine), 4)}{'+' if len(mine) >= 4 else ''}")

    assert [s.key for s in stages] == list(OPEN_KEYS)
    reached = [s.reached for s in stages]
    assert reached == sorted(reached, reverse=True)  # non-increasing along the funnel
    assert reached[0] == sum(1 for p in mine if p.furthest >= 0)
    for i, s in enumerate(stages):
        following = stages[i + 1].reached if i + 1 < len(stages) else None
        if following is not None:
            assert s.advanced == following
        else:
            assert s.advanced == sum(1 for p in mine if p.furthest == RANK["won"])
        assert 0 <= s.advanced <= s.reached
        if s.reached == 0:
            assert s.conversion is None and s.conversion_low is None and s.conversion_high is None
        else:
            assert 0 <= s.conversion <= 1
            assert 0 <= s.conversion_low <= s.conversion + EPS
            assert s.conversion - EPS <= s.conversion_high <= 1
        if s.avg_days is not None:
            assert s.avg_days > 0 and s.median_days > 0
    assert sum(s.open for s in stages) == sum(1 for p in mine if p.status == "open")
    assert sum(s.lost for s in stages) == result.lost == sum(1 for p in mine if p.status == "lost")
    assert result.won == sum(1 for p in mine if p.status == "won")
    assert result.created == len(mine) == result.won + result.lost + sum(s.open for s in stages)
    if result.won + result.lost:
        assert result.win_rate_low - EPS <= result.win_rate <= result.win_rate_high + EPS
    else:
        assert result.win_rate is None and result.win_rate_low is None

    # and every number agrees with the spec recomputed from the drawn events
    expected = expected_conversion(plans, since, until, tz, owner, source)
    actual = result.as_json()
    for got, want in zip(actual["stages"], expected["stages"], strict=True):
        for key, value in want.items():
            if isinstance(value, float):
                assert got[key] == pytest.approx(value, rel=1e-9, abs=1e-9), key
            else:
                assert got[key] == value, key
    for key in ("won", "lost", "win_rate", "win_rate_low", "win_rate_high", "cycle_days_avg"):
        want = expected[key]
        assert actual[key] == (want if want is None else pytest.approx(want, rel=1e-9, abs=1e-9)), (
            key
        )
