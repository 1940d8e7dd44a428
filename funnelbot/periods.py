"""Reporting periods (SPEC §3): `this quarter`, `last 30 days`, `2026-01-01..2026-03-31`,
`本月`, `上季度`, `近30天`, `今年` … Both end dates are inclusive, in the workspace time zone.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from funnelbot.errors import UserError

UNITS_ZH = {
    "周": "week",
    "星期": "week",
    "月": "month",
    "季度": "quarter",
    "季": "quarter",
    "年": "year",
}


@dataclass(frozen=True)
class Period:
    since: dt.date
    until: dt.date  # inclusive

    def bounds(self, tz: str) -> tuple[dt.datetime, dt.datetime]:
        """[start, end) as aware UTC instants: local midnight of `since` to the day after `until`."""
        zone = ZoneInfo(tz)
        start = dt.datetime.combine(self.since, dt.time(), zone).astimezone(dt.UTC)
        end = dt.datetime.combine(self.until + dt.timedelta(days=1), dt.time(), zone)
        return start, end.astimezone(dt.UTC)

    @property
    def days(self) -> int:
        return (self.until - self.since).days + 1

    def previous(self) -> Period:
        """The period of the same length just before this one."""
        length = dt.timedelta(days=self.days)
        return Period(self.since - length, self.until - length)

    def label(self) -> str:
        return f"{self.since.isoformat()}..{self.until.isoformat()}"


def _quarter_start(day: dt.date) -> dt.date:
    return dt.date(day.year, 3 * ((day.month - 1) // 3) + 1, 1)


def _add_months(day: dt.date, months: int) -> dt.date:
    index = day.year * 12 + day.month - 1 + months
    return dt.date(index // 12, index % 12 + 1, 1)


def unit_period(unit: str, today: dt.date, offset: int) -> Period:
    """The calendar week (ISO, Monday first), month, quarter or year `offset` units from today's."""
    if unit == "week":
        start = today - dt.timedelta(days=today.weekday()) + dt.timedelta(weeks=offset)
        return Period(start, start + dt.timedelta(days=6))
    if unit == "month":
        start = _add_months(today.replace(day=1), offset)
        return Period(start, _add_months(start, 1) - dt.timedelta(days=1))
    if unit == "quarter":
        start = _add_months(_quarter_start(today), 3 * offset)
        return Period(start, _add_months(start, 3) - dt.timedelta(days=1))
    if unit == "year":
        start = dt.date(today.year + offset, 1, 1)
        return Period(start, dt.date(start.year, 12, 31))
    raise ValueError(unit)


_RANGE = re.compile(r"^(\d{4}-\d{2}-\d{2})\s*(?:\.\.|~|～|到|至|to)\s*(\d{4}-\d{2}-\d{2})$")
_LAST_N = re.compile(r"^(?:last|past)\s+(\d{1,4})\s+days?$")
_LAST_N_ZH = re.compile(r"^(?:近|最近|过去)(\d{1,4})天$")
_EN = re.compile(r"^(this|last|previous|next)\s+(week|month|quarter|year)$")
_ZH = re.compile(r"^(本|这|这个|上|上个|下|下个|今|去)(周|星期|月|季度|季|年)$")


def parse_period(text: str, today: dt.date) -> Period:
    """A period phrase, or UserError('error.bad_period')."""
    phrase = " ".join(text.strip().lower().split())
    if m := _RANGE.match(phrase):
        try:
            since, until = dt.date.fromisoformat(m.group(1)), dt.date.fromisoformat(m.group(2))
        except ValueError as exc:
            raise UserError("error.bad_period", value=text) from exc
        if until < since:
            raise UserError("error.bad_period", value=text)
        return Period(since, until)
    if m := _LAST_N.match(phrase) or _LAST_N_ZH.match(phrase):
        days = int(m.group(1))
        if days < 1:
            raise UserError("error.bad_period", value=text)
        return Period(today - dt.timedelta(days=days - 1), today)
    if m := _EN.match(phrase):
        offset = {"this": 0, "last": -1, "previous": -1, "next": 1}[m.group(1)]
        return unit_period(m.group(2), today, offset)
    if m := _ZH.match(phrase):
        prefix, unit = m.group(1), UNITS_ZH[m.group(2)]
        if prefix == "今" and unit not in ("year",):
            raise UserError("error.bad_period", value=text)
        if prefix == "去" and unit != "year":
            raise UserError("error.bad_period", value=text)
        offset = {
            "本": 0,
            "这": 0,
            "这个": 0,
            "今": 0,
            "上": -1,
            "上个": -1,
            "去": -1,
            "下": 1,
            "下个": 1,
        }[prefix]
        return unit_period(unit, today, offset)
    if phrase in ("today", "今天"):
        return Period(today, today)
    if phrase in ("yesterday", "昨天"):
        return Period(today - dt.timedelta(days=1), today - dt.timedelta(days=1))
    raise UserError("error.bad_period", value=text)


def looks_like_period_start(word: str) -> bool:
    """Whether a command word may begin a period phrase (so the parser can take the rest)."""
    w = word.lower()
    return w in {"this", "last", "previous", "next", "past", "today", "yesterday"} or bool(
        re.match(r"^(\d{4}-\d{2}-\d{2}|本|这|上|下|今|去|近|最近|过去|昨天)", w)
    )
