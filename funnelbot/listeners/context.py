"""What every listener needs: sessions, the clock, roles, the user's language, and one
place that turns failures into a kind answer (never a stack trace in Slack).
"""

from __future__ import annotations

import datetime as dt
import heapq
import itertools
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
from funnelbot.errors import CriteriaRequired, Forbidden, UserError
from funnelbot.i18n import Translator, language_of, translator
from funnelbot.models import Deal
from funnelbot.teamconfig import ConfigCache, TeamConfig

logger = logging.getLogger(__name__)
T = TypeVar("T")
Clock = Callable[[], dt.datetime]
LOCALE_TTL = 3600.0
CONFLICT_RETRIES = 8
# Slack wants a command's ack within 3 s; an answer ready by then rides on the ack.
ACK_BUDGET = 2.0


class CommandAck:
    """A slash command's ack, carrying the command's first answer when it is ready in time.

    Answering in the ack body is what Slack advises for quick answers: the user sees it
    one round trip sooner and the bot makes no response_url call. Work that is not done
    within `ACK_BUDGET` (a slow database, a Slack API retry) is acked empty by a watchdog
    and its answer follows through the response_url. Use as a context manager around the
    listener's work: leaving it acks empty if nothing was answered (a modal was opened).
    """

    def __init__(self, ack: Callable[..., Any], budget: float | None = None) -> None:
        self._ack = ack
        self._lock = threading.Lock()
        self.sent = False
        self.deadline = time.monotonic() + (ACK_BUDGET if budget is None else budget)
        _WATCHDOG.watch(self)

    def _take(self) -> bool:
        with self._lock:
            taken, self.sent = not self.sent, True
            return taken

    def answer(self, message: blocks.Message) -> bool:
        """Ack with `message` (ephemeral); False when the ack has already gone out."""
        if not self._take():
            return False
        self._ack(**message, response_type="ephemeral")
        return True

    def release(self) -> None:
        """Ack empty unless the ack has gone out."""
        if self._take():
            self._ack()

    def __enter__(self) -> CommandAck:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


class _AckWatchdog:
    """One thread per process that acks overdue commands empty.

    Deadlines wait in a heap; answered commands are dropped when they reach its top (no
    per-command timer thread, which would cost more than the answer it guards).
    """

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, CommandAck]] = []
        self._seq = itertools.count()
        self._wake = threading.Condition()
        self._thread: threading.Thread | None = None

    def watch(self, ack: CommandAck) -> None:
        with self._wake:
            if self._thread is None or not self._thread.is_alive():  # also after a fork
                self._thread = threading.Thread(target=self._run, name="ack-watchdog", daemon=True)
                self._thread.start()
            heapq.heappush(self._heap, (ack.deadline, next(self._seq), ack))
            if self._heap[0][2] is ack:  # the earliest deadline now: re-arm the wait
                self._wake.notify()

    def _run(self) -> None:
        while True:
            with self._wake:
                while not self._heap:
                    self._wake.wait()
                deadline, _, head = self._heap[0]
                delay = 0.0 if head.sent else deadline - time.monotonic()
                if delay > 0:
                    self._wake.wait(delay)
                    continue
                heapq.heappop(self._heap)
            try:
                head.release()
            except Exception:  # noqa: BLE001 - the watchdog must outlive any one request
                logger.exception("could not ack an overdue command")


_WATCHDOG = _AckWatchdog()


class UserDirectory:
    """What Slack says about each user (users.info: locale, tz, admin flags) and each
    manager user group's members, kept for an hour so handlers stay fast."""

    def __init__(self) -> None:
        self._users: dict[tuple[str, str], tuple[float, dict[str, Any]]] = {}
        self._groups: dict[tuple[str, str], tuple[float, frozenset[str]]] = {}
        self._lock = threading.Lock()

    def user(self, client: WebClient | None, team_id: str, user_id: str) -> dict[str, Any]:
        key = (team_id, user_id)
        with self._lock:
            hit = self._users.get(key)
        if hit and time.monotonic() - hit[0] < LOCALE_TTL:
            return hit[1]
        info: dict[str, Any] = {}
        if client is not None and client.token:
            try:
                info = dict(client.users_info(user=user_id, include_locale=True)["user"])
            except (SlackApiError, KeyError, OSError) as exc:
                logger.warning("users.info failed for %s: %s", user_id, exc)
        with self._lock:
            self._users[key] = (time.monotonic(), info)
        return info

    def locale(self, client: WebClient | None, team_id: str, user_id: str) -> str | None:
        return self.user(client, team_id, user_id).get("locale")

    def group_members(
        self, client: WebClient | None, team_id: str, group_id: str
    ) -> frozenset[str]:
        key = (team_id, group_id)
        with self._lock:
            hit = self._groups.get(key)
        if hit and time.monotonic() - hit[0] < LOCALE_TTL:
            return hit[1]
        members: frozenset[str] = frozenset()
        if client is not None and client.token:
            try:
                members = frozenset(client.usergroups_users_list(usergroup=group_id)["users"])
            except (SlackApiError, KeyError, OSError) as exc:
                logger.warning("usergroups.users.list failed for %s: %s", group_id, exc)
        with self._lock:
            self._groups[key] = (time.monotonic(), members)
        return members


# Older name kept for callers that only want locales.
LocaleCache = UserDirectory


@dataclass
class Services:
    settings: Settings
    sessions: so.sessionmaker[so.Session]
    clock: Clock = domain.utcnow
    locales: UserDirectory = field(default_factory=UserDirectory)
    configs: ConfigCache | None = None
    # Called after /funnel settings saved a team's settings (the scheduler reschedules).
    on_settings_changed: Callable[[str, TeamConfig], None] | None = None
    # Called after a user changed a deal, to refresh their App Home.
    on_deal_changed: Callable[[WebClient, str, str], None] | None = None

    readers: so.sessionmaker[so.Session] | None = None
    _known_teams: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        if self.configs is None:
            self.configs = ConfigCache(self.settings, self.sessions)

    def _ensure_workspace(self, team_id: str) -> None:
        """The workspace row and its stages, created on first sight (checked once per process)."""
        if team_id in self._known_teams:
            return
        with self.sessions.begin() as session:
            domain.ensure_workspace(session, team_id, self.clock())
        self._known_teams.add(team_id)

    def require_admin(self, actor: domain.Actor, team_id: str, what: str) -> None:
        if not actor.is_admin:
            raise Forbidden(
                "error.admins_only", what=what, admins=sorted(self.config(team_id).admins)
            )

    def config(self, team_id: str) -> TeamConfig:
        assert self.configs is not None
        return self.configs.get(team_id)

    def actor(self, client: WebClient | None, team_id: str, user_id: str) -> domain.Actor:
        """Roles: admins and managers from settings (and a manager user group); Slack
        workspace admins and owners are funnelbot admins too."""
        config = self.config(team_id)
        is_admin = user_id in config.admins
        if not is_admin:
            info = self.locales.user(client, team_id, user_id)
            is_admin = bool(info.get("is_admin") or info.get("is_owner"))
        is_manager = user_id in config.managers or (
            config.manager_group is not None
            and user_id in self.locales.group_members(client, team_id, config.manager_group)
        )
        return domain.Actor(user_id=user_id, is_manager=is_manager, is_admin=is_admin)

    def translator(self, client: WebClient | None, team_id: str, user_id: str) -> Translator:
        config = self.config(team_id)
        locale = self.locales.locale(client, team_id, user_id)
        return translator(language_of(locale, config.language), config.currency)

    def transaction(
        self, team_id: str, work: Callable[[so.Session], T], *, readonly: bool = False
    ) -> T:
        """Run `work` in one transaction; a lost optimistic-lock race is retried afresh.

        A retried button click then finds the deal's new version and is refused as stale,
        while a text command simply acts on the deal as it now is. `readonly` answers
        (show, list, /funnel) take no write lock on SQLite.
        """
        self._ensure_workspace(team_id)
        factory = self.readers if readonly and self.readers is not None else self.sessions
        for attempt in range(CONFLICT_RETRIES):
            try:
                with factory.begin() as session:
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
    # A deal field named in an `error.*` message is shown by its label; other messages
    # (e.g. `stages.*` about a file's keys) name their field literally.
    if "field" in params and err.code.startswith("error.") and tr.has(f"field.{params['field']}"):
        label = tr(f"field.{params['field']}")
        params["field"] = label.lower() if tr.lang == "en" else label
    people = {"owner", "admins"} & params.keys()
    if not people:
        return blocks.error(tr(err.code, **params))
    # Naming people needs mrkdwn for the mentions, so everything else is escaped.
    params = {k: blocks.escape(str(v)) for k, v in params.items()}
    for key in people:
        users = err.params[key]
        ids = [users] if isinstance(users, str) else sorted(users)  # type: ignore[arg-type]
        params[key] = ", ".join(blocks.mention(u) for u in ids) or tr("error.no_admins")
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

    @classmethod
    def from_command(
        cls,
        services: Services,
        client: WebClient,
        respond: Callable[..., Any],
        payload: dict[str, Any],
        ack: CommandAck | None = None,
    ) -> Turn:
        """A turn for a slash-command payload; `payload` stays at hand for its text."""
        turn = cls(
            services,
            client,
            respond,
            team_id=payload.get("team_id") or "",
            user_id=payload["user_id"],
            response_url=payload.get("response_url"),
            trigger_id=payload.get("trigger_id"),
        )
        turn.payload = payload
        turn.ack = ack
        return turn

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
        self.payload: dict[str, Any] = {}
        self.ack: CommandAck | None = None
        self.config = services.config(team_id)
        self.actor = services.actor(client, team_id, user_id)
        self.tr: Translator = services.translator(client, team_id, user_id)

    def answer(self, message: blocks.Message, *, replace: bool = False) -> None:
        """An ephemeral answer: in the command's ack while it is pending, else through the
        response_url when there is one, else a DM."""
        if not replace and self.ack is not None and self.ack.answer(message):
            return
        if self.respond is not None and self.response_url:
            self.respond(**message, response_type="ephemeral", replace_original=replace)
        else:
            self.client.chat_postMessage(channel=self.user_id, **message, unfurl_links=False)

    def in_transaction(
        self,
        work: Callable[[so.Session], blocks.Message],
        *,
        replace: bool = False,
        readonly: bool = False,
    ) -> None:
        self.answer(
            self.services.transaction(self.team_id, work, readonly=readonly), replace=replace
        )

    def changed(self) -> None:
        """After the user changed a deal: refresh their App Home (best effort)."""
        if self.services.on_deal_changed is not None:
            try:
                self.services.on_deal_changed(self.client, self.team_id, self.user_id)
            except Exception as exc:  # noqa: BLE001 - the change itself is done and answered
                if is_database_down(exc):  # expected while the database is away: no trace
                    logger.warning("could not refresh the App Home: database unavailable: %s", exc)
                else:
                    logger.exception("could not refresh the App Home")

    def safely(self, action: Callable[[], None]) -> None:
        try:
            action()
        except Exception as exc:  # noqa: BLE001 - every failure gets a kind answer
            self.answer(failure_message(self.tr, exc))

    def today(self) -> dt.date:

        return self.config.today(self.services.clock())

    def card(
        self,
        session: so.Session,
        deal: Deal,
        note: str | None = None,
        records: domain.DealRecords | None = None,
    ) -> blocks.Message:
        detail = presenters.deal_detail(session, deal, records)
        return blocks.deal_card(detail, self.tr, note=note)

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
                self.tr,
                info,
                meta=self.meta(number=err.number, version=err.version, target=err.target),
            )

        self.open_modal(self.services.transaction(self.team_id, modal, readonly=True))
