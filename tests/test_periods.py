"""funnelbot.periods (SPEC §3 periods, §5 "inclusive of both end dates, in the workspace
time zone"): phrases relative to a fixed day, explicit ranges, Chinese forms, bad input."""

from __future__ import annotations

import datetime as dt

import pytest

from funnelbot.errors import UserError
from funnelbot.periods import Period, looks_like_period_start, parse_period, unit_period

D = dt.date
THURSDAY = D(2026, 5, 14)  # a Thursday in Q2


@pytest.mark.parametrize(
    ("text", "since", "until"),
    [
        ("this week", D(2026, 5, 11), D(2026, 5, 17)),  # ISO week: Monday..Sunday
        ("last week", D(2026, 5, 4), D(2026, 5, 10)),
        ("previous week", D(2026, 5, 4), D(2026, 5, 10)),
        ("next week", D(2026, 5, 18), D(2026, 5, 24)),
        ("this month", D(2026, 5, 1), D(2026, 5, 31)),
        ("last month", D(2026, 4, 1), D(2026, 4, 30)),
        ("this quarter", D(2026, 4, 1), D(2026, 6, 30)),
        ("last quarter", D(2026, 1, 1), D(2026, 3, 31)),
        ("next quarter", D(2026, 7, 1), D(2026, 9, 30)),
        ("this year", D(2026, 1, 1), D(2026, 12, 31)),
        ("last year", D(2025, 1, 1), D(2025, 12, 31)),
        ("last 30 days", D(2026, 4, 15), D(2026, 5, 14)),  # 30 days ending today
        ("past 7 days", D(2026, 5, 8), D(2026, 5, 14)),
        ("last 1 day", THURSDAY, THURSDAY),
        ("Last  90   Days", D(2026, 2, 14), D(2026, 5, 14)),  # case and spaces
        ("today", THURSDAY, THURSDAY),
        ("yesterday", D(2026, 5, 13), D(2026, 5, 13)),
        ("2026-01-01..2026-03-31", D(2026, 1, 1), D(2026, 3, 31)),
        ("2026-01-01 .. 2026-03-31", D(2026, 1, 1), D(2026, 3, 31)),
        ("2026-02-01~2026-02-28", D(2026, 2, 1), D(2026, 2, 28)),
        ("2026-03-03..2026-03-03", D(2026, 3, 3), D(2026, 3, 3)),
        ("2026-01-01到2026-01-31", D(2026, 1, 1), D(2026, 1, 31)),
        ("2026-01-01至2026-01-31", D(2026, 1, 1), D(2026, 1, 31)),
        ("2026-01-01 to 2026-03-31", D(2026, 1, 1), D(2026, 3, 31)),
        ("2026-01-01 到 2026-03-31", D(2026, 1, 1), D(2026, 3, 31)),
        # Chinese forms
        ("本周", D(2026, 5, 11), D(2026, 5, 17)),
        ("上周", D(2026, 5, 4), D(2026, 5, 10)),
        ("本月", D(2026, 5, 1), D(2026, 5, 31)),
        ("这个月", D(2026, 5, 1), D(2026, 5, 31)),
        ("上月", D(2026, 4, 1), D(2026, 4, 30)),
        ("上个月", D(2026, 4, 1), D(2026, 4, 30)),
        ("下个月", D(2026, 6, 1), D(2026, 6, 30)),
        ("本季度", D(2026, 4, 1), D(2026, 6, 30)),
        ("上季度", D(2026, 1, 1), D(2026, 3, 31)),
        ("今年", D(2026, 1, 1), D(2026, 12, 31)),
        ("去年", D(2025, 1, 1), D(2025, 12, 31)),
        ("近30天", D(2026, 4, 15), D(2026, 5, 14)),
        ("最近7天", D(2026, 5, 8), D(2026, 5, 14)),
        ("过去7天", D(2026, 5, 8), D(2026, 5, 14)),
        ("今天", THURSDAY, THURSDAY),
        ("昨天", D(2026, 5, 13), D(2026, 5, 13)),
    ],
)
def test_phrases_relative_to_a_fixed_day(text: str, since: dt.date, until: dt.date) -> None:
    assert parse_period(text, THURSDAY) == Period(since, until)


@pytest.mark.parametrize(
    ("text", "today", "since", "until"),
    [
        # across a year boundary
        ("last week", D(2026, 1, 2), D(2025, 12, 22), D(2025, 12, 28)),
        ("this week", D(2026, 1, 1), D(2025, 12, 29), D(2026, 1, 4)),
        ("last month", D(2026, 1, 15), D(2025, 12, 1), D(2025, 12, 31)),
        ("last quarter", D(2026, 2, 1), D(2025, 10, 1), D(2025, 12, 31)),
        ("上季度", D(2026, 3, 31), D(2025, 10, 1), D(2025, 12, 31)),
        ("next month", D(2026, 12, 31), D(2027, 1, 1), D(2027, 1, 31)),
        ("last 30 days", D(2026, 1, 10), D(2025, 12, 12), D(2026, 1, 10)),
        # month lengths and leap years
        ("last month", D(2028, 3, 31), D(2028, 2, 1), D(2028, 2, 29)),
        ("this month", D(2027, 2, 10), D(2027, 2, 1), D(2027, 2, 28)),
        ("this quarter", D(2026, 12, 31), D(2026, 10, 1), D(2026, 12, 31)),
        ("本周", D(2026, 5, 17), D(2026, 5, 11), D(2026, 5, 17)),  # Sunday ends the week
        ("this week", D(2026, 5, 11), D(2026, 5, 11), D(2026, 5, 17)),  # Monday starts it
    ],
)
def test_calendar_edges(text: str, today: dt.date, since: dt.date, until: dt.date) -> None:
    assert parse_period(text, today) == Period(since, until)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   ",
        "someday",
        "last fortnight",
        "last 0 days",
        "last -3 days",
        "近0天",
        "this decade",
        "2026-03-31..2026-01-01",  # ends before it starts
        "2026-02-30..2026-03-31",  # no such day
        "2026-01-01..",
        "2026-01-01",
        "今月",  # 今 only goes with 年
        "去月",
        "last 30 days please",
    ],
)
def test_bad_input_is_a_user_error(text: str) -> None:
    with pytest.raises(UserError) as err:
        parse_period(text, THURSDAY)
    assert err.value.code == "error.bad_period"
    assert err.value.params.get("value") == text


def test_unit_period_offsets() -> None:
    assert unit_period("quarter", THURSDAY, -4) == Period(D(2025, 4, 1), D(2025, 6, 30))
    assert unit_period("month", THURSDAY, -13) == Period(D(2025, 4, 1), D(2025, 4, 30))
    assert unit_period("week", THURSDAY, 2) == Period(D(2026, 5, 25), D(2026, 5, 31))
    assert unit_period("year", THURSDAY, 1) == Period(D(2027, 1, 1), D(2027, 12, 31))
    with pytest.raises(ValueError):
        unit_period("fortnight", THURSDAY, 0)


def test_bounds_are_local_midnights_inclusive_of_the_last_day() -> None:
    utc = dt.UTC
    april = Period(D(2026, 4, 1), D(2026, 4, 30))
    assert april.bounds("UTC") == (
        dt.datetime(2026, 4, 1, tzinfo=utc),
        dt.datetime(2026, 5, 1, tzinfo=utc),
    )
    # UTC+8: 2026-04-01 00:00 local is 2026-03-31 16:00 UTC
    assert april.bounds("Asia/Shanghai") == (
        dt.datetime(2026, 3, 31, 16, tzinfo=utc),
        dt.datetime(2026, 4, 30, 16, tzinfo=utc),
    )
    # a daylight-saving day in New York is 23 hours long
    start, end = Period(D(2026, 3, 8), D(2026, 3, 8)).bounds("America/New_York")
    assert start == dt.datetime(2026, 3, 8, 5, tzinfo=utc)
    assert end == dt.datetime(2026, 3, 9, 4, tzinfo=utc)
    assert all(t.tzinfo is not None and t.utcoffset() == dt.timedelta(0) for t in (start, end))


def test_period_helpers() -> None:
    q2 = Period(D(2026, 4, 1), D(2026, 6, 30))
    assert q2.days == 91
    assert q2.previous() == Period(D(2025, 12, 31), D(2026, 3, 31))
    assert q2.label() == "2026-04-01..2026-06-30"
    assert parse_period(q2.label(), THURSDAY) == q2
    assert Period(THURSDAY, THURSDAY).days == 1


@pytest.mark.parametrize(
    ("word", "starts"),
    [
        ("this", True),
        ("Last", True),
        ("past", True),
        ("today", True),
        ("2026-01-01..2026-02-01", True),
        ("本月", True),
        ("上季度", True),
        ("近30天", True),
        ("今年", True),
        ("去年", True),
        ("proposal", False),
        ("won", False),
        ("<@U1>", False),
        ("source:web", False),
    ],
)
def test_looks_like_period_start(word: str, starts: bool) -> None:
    assert looks_like_period_start(word) is starts
