"""What every listener needs: sessions, the clock, roles, the user's language, and one
place that turns failures into a kind answer (never a stack trace in Slack).
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from sqlalchemy import exc as sa_exc
from sqlalchemy import orm as so
from sqlalchemy.orm.exc import StaleDataError

from funnelbot import blocks, presenters
from funnelbot import deals as domain
from funnelbot.config import Settings
from funnelbot.errors import CriteriaRequired, UserError
from funnelbot.i18n import Translator, language_of, translator
from funnelbot.models import Deal

logger = logging.getLogger(__name__)
T = TypeVar("T")
Clock = Callable[[], dt.datetime]
LOCALE_TTL = 3600.0
CONFLICT_RETRIES = 8


class LocaleCache:
    """Each user's Slack locale (users.info include_locale), kept for an hour."""

    def __init__(self) -> None:
        self._known: dict[tuple[str, str], tuple[float, str | None]] = {}
        self._lock = threading.Lock()

    def locale(self, client: WebClient | None, team_id: str, user_id: str) -> str | None:
        key = (team_id, user_id)
        with self._lock:
            hit = self._known.get(key)
        if hit and time.monotonic() - hit[0] < LOCALE_TTL:
            return hit[1]
        locale = None
        if client is not None and client.token:
            try:
                user = client.users_info(user=user_id, include_locale=True)["user"]
                locale = user.get("locale")
            except (SlackApiError, KeyError, OSError) as exc:
                logger.warning("users.info failed for %s: %s", user_id, exc)
        with self._lock:
            self._known[key] = (time.monotonic(), locale)
        return locale


@dataclass
class Services:
    settings: Settings
    sessions: so.sessionmaker[so.Session]
    clock: Clock = domain.utcnow
    locales: LocaleCache = field(default_factory=LocaleCache)

    def actor(self, user_id: str) -> domain.Actor:
        return domain.Actor(
            user_id=user_id,
            is_manager=user_id in self.settings.managers,
            is_admin=user_id in self.settings.admins,
        )

    def translator(self, client: WebClient | None, team_id: str, user_id: str) -> Translator:
        locale = self.locales.locale(client, team_id, user_id)
        return translator(language_of(locale, self.settings.language), self.settings.currency)

    def transaction(self, team_id: str, work: Callable[[so.Session], T]) -> T:
        """Run `work` in one transaction; a lost optimistic-lock race is retried afresh.

        A retried button click then finds the deal's new version and is refused as stale,
        while a text command simply acts on the deal as it now is.
        """
        for attempt in range(CONFLICT_RETRIES):
            try:
                with self.sessions.begin() as session:
                    domain.ensure_workspace(session, team_id, self.clock())
                    return work(session)
            except StaleDataError:
                logger.info("concurrent change, retrying (attempt %d)", attempt + 1)
        raise UserError("error.busy")


def is_database_down(exc: BaseException) -> bool:
    return isinstance(exc, sa_exc.OperationalError | sa_exc.InterfaceError) or (
        isinstance(exc, sa_exc.DBAPIError) and exc.connection_invalidated
    )


def error_message(tr: Translator, err: UserError) -> blocks.Message:
    """A user error in the user's language. Echoed input is shown literally."""
    params: dict[str, Any] = dict(err.params)
    if "field" in params and tr.has(f"field.{params['field']}"):
        label = tr(f"field.{params['field']}")
        params["field"] = label.lower() if tr.lang == "en" else label
    if "owner" not in params:
        return blocks.error(tr(err.code, **params))
    # Naming the owner needs mrkdwn for the mention, so everything else is escaped.
    params = {k: blocks.escape(str(v)) for k, v in params.items()}
    params["owner"] = blocks.mention(str(err.params["owner"]))
    text = tr(err.code, **params)
    return {
        "text": text,
        "blocks": [{"type": "section", "text": blocks.mrkdwn(":warning: " + text)}],
    }


def failure_message(tr: Translator, exc: BaseException) -> blocks.Message:
    """What to say for any exception a listener did not handle itself."""
    if isinstance(exc, UserError):
        return error_message(tr, exc)
    if is_database_down(exc):
        logger.error("database unavailable: %s", exc)
        return blocks.error(tr("error.database"))
    logger.exception("unexpected failure", exc_info=exc)
    return blocks.error(tr("error.internal"))


class Turn:
    """One user interaction (command, click, submission): who, where, in which language,
    and how to answer. Subclasses add the parsing of their own payload."""

    def __init__(
        self,
        services: Services,
        client: WebClient,
        respond: Callable[..., Any] | None,
        *,
        team_id: str,
        user_id: str,
        response_url: str | None = None,
        trigger_id: str | None = None,
    ) -> None:
        self.services = services
        self.client = client
        self.respond = respond
        self.team_id = team_id
        self.user_id = user_id
        self.response_url = response_url
        self.trigger_id = trigger_id
        self.actor = services.actor(user_id)
        self.tr: Translator = services.translator(client, team_id, user_id)

    def answer(self, message: blocks.Message, *, replace: bool = False) -> None:
        """An ephemeral answer: through response_url when there is one, else a DM."""
        if self.respond is not None and self.response_url:
            self.respond(**message, response_type="ephemeral", replace_original=replace)
        else:
            self.client.chat_postMessage(channel=self.user_id, **message, unfurl_links=False)

    def in_transaction(
        self, work: Callable[[so.Session], blocks.Message], *, replace: bool = False
    ) -> None:
        self.answer(self.services.transaction(self.team_id, work), replace=replace)

    def safely(self, action: Callable[[], None]) -> None:
        try:
            action()
        except Exception as exc:  # noqa: BLE001 - every failure gets a kind answer
            self.answer(failure_message(self.tr, exc))

    def today(self) -> dt.date:
        from zoneinfo import ZoneInfo

        zone = ZoneInfo(self.services.settings.timezone)
        return self.services.clock().astimezone(zone).date()

    def card(self, session: so.Session, deal: Deal, note: str | None = None) -> blocks.Message:
        return blocks.deal_card(presenters.deal_detail(session, deal), self.tr, note=note)

    def meta(self, **extra: Any) -> dict[str, Any]:
        """What a modal opened in this turn needs in order to answer afterwards."""
        return {"response_url": self.response_url, **extra}

    def open_modal(self, view: dict[str, Any]) -> None:
        self.client.views_open(trigger_id=self.trigger_id, view=view)

    def open_criteria(self, err: CriteriaRequired) -> None:
        """Exit criteria to confirm before the deal may leave its stage forward."""

        def modal(session: so.Session) -> dict[str, Any]:
            info = presenters.deal_info(domain.get_deal(session, self.team_id, err.number))
            return blocks.criteria_modal(
                self.tr, info, meta=self.meta(number=err.number, version=err.version)
            )

        self.open_modal(self.services.transaction(self.team_id, modal))
