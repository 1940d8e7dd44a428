"""A workspace's effective configuration: settings stored from Slack win over the
environment (SPEC §7). Stored values live in `workspaces.settings` (JSON).
"""

from __future__ import annotations

import datetime as dt
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from babel.numbers import get_currency_name
from sqlalchemy import exc as sa_exc
from sqlalchemy import orm as so

from funnelbot.config import Settings
from funnelbot.errors import UserError
from funnelbot.i18n import LANGUAGES
from funnelbot.models import Workspace

logger = logging.getLogger(__name__)

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
STORED_KEYS = (
    "report_channel",
    "weekly_day",
    "weekly_time",
    "nudge_hour",
    "timezone",
    "language",
    "currency",
    "managers",
    "admins",
    "manager_group",
)


@dataclass(frozen=True)
class TeamConfig:
    timezone: str
    language: str
    currency: str
    report_channel: str | None
    weekly_day: str
    weekly_time: str
    nudge_hour: int
    managers: frozenset[str]
    admins: frozenset[str]
    manager_group: str | None

    def today(self, now: dt.datetime) -> dt.date:
        return now.astimezone(ZoneInfo(self.timezone)).date()


def team_config(settings: Settings, stored: Mapping[str, Any] | None) -> TeamConfig:
    s = dict(stored or {})
    return TeamConfig(
        timezone=s.get("timezone") or settings.timezone,
        language=s.get("language") or settings.language,
        currency=s.get("currency") or settings.currency,
        report_channel=s.get("report_channel") or settings.report_channel,
        weekly_day=s.get("weekly_day") or "mon",
        weekly_time=s.get("weekly_time") or "09:00",
        nudge_hour=int(s.get("nudge_hour", 9)),
        # The managers saved in /funnel settings win over the environment's like every
        # other setting (the modal shows and saves the whole list, so a removal sticks).
        # Admins are not edited in Slack: the environment's always hold.
        managers=(frozenset(s["managers"]) if s.get("managers") is not None else settings.managers),
        admins=settings.admins | frozenset(s.get("admins") or ()),
        manager_group=s.get("manager_group") or None,
    )


def load(session: so.Session, settings: Settings, team_id: str) -> TeamConfig:
    workspace = session.get(Workspace, team_id)
    return team_config(settings, workspace.settings if workspace else None)


def validate(values: Mapping[str, Any]) -> dict[str, str]:
    """Field errors (setting -> message key) for values about to be stored."""
    errors: dict[str, str] = {}
    tz = values.get("timezone")
    if tz:
        try:
            ZoneInfo(tz)
        except (ZoneInfoNotFoundError, ValueError):
            errors["timezone"] = "settings.bad_timezone"
    if values.get("language") and values["language"] not in LANGUAGES:
        errors["language"] = "settings.bad_language"
    currency = values.get("currency")
    if currency and (
        not re.fullmatch(r"[A-Z]{3}", currency)
        or get_currency_name(currency, locale="en") == currency
    ):
        errors["currency"] = "settings.bad_currency"
    if values.get("weekly_day") and values["weekly_day"] not in WEEKDAYS:
        errors["weekly_day"] = "settings.bad_day"
    time = values.get("weekly_time")
    if time and not re.fullmatch(r"([01]\d|2[0-3]):[0-5]\d", time):
        errors["weekly_time"] = "settings.bad_time"
    hour = values.get("nudge_hour")
    if hour is not None and not (isinstance(hour, int) and 0 <= hour <= 23):
        errors["nudge_hour"] = "settings.bad_hour"
    return errors


def store(session: so.Session, team_id: str, values: Mapping[str, Any]) -> dict[str, Any]:
    """Merge validated values into the workspace's stored settings (None clears a key)."""
    errors = validate(values)
    if errors:
        key, code = next(iter(errors.items()))
        raise UserError(code, field=key)
    workspace = session.get(Workspace, team_id, with_for_update=True)
    if workspace is None:
        raise UserError("error.internal")
    merged = dict(workspace.settings or {})
    for key, value in values.items():
        if key not in STORED_KEYS:
            continue
        if key == "managers" and value is not None:
            merged[key] = sorted(value)  # an empty list too: "no managers" wins as well
        elif value in (None, "", [], ()):
            merged.pop(key, None)
        else:
            merged[key] = (
                sorted(value) if isinstance(value, set | frozenset | list | tuple) else value
            )
    workspace.settings = merged
    session.flush()
    return merged


class ConfigCache:
    """Each team's effective configuration, re-read every few seconds so a change saved
    by another replica takes effect quickly; a local save refreshes it at once."""

    TTL = 5.0

    def __init__(self, settings: Settings, sessions: so.sessionmaker[so.Session]) -> None:
        import threading

        self.settings = settings
        self.sessions = sessions
        self._known: dict[str, tuple[float, TeamConfig]] = {}
        self._lock = threading.Lock()

    def get(self, team_id: str) -> TeamConfig:
        import time

        with self._lock:
            hit = self._known.get(team_id)
        if hit and time.monotonic() - hit[0] < self.TTL:
            return hit[1]
        try:
            with self.sessions() as session:
                config = load(session, self.settings, team_id)
        except (sa_exc.OperationalError, sa_exc.InterfaceError) as exc:
            # The database is away. Go on with what we knew (else the environment's
            # settings, uncached) so the caller gets as far as telling the user, in their
            # language, that the database is unreachable, instead of failing silently.
            logger.warning(
                "settings of team %s unavailable (%s); using %s",
                team_id,
                exc,
                "the last known ones" if hit else "the environment's",
            )
            return hit[1] if hit else team_config(self.settings, None)
        with self._lock:
            self._known[team_id] = (time.monotonic(), config)
        return config

    def forget(self, team_id: str) -> None:
        with self._lock:
            self._known.pop(team_id, None)
