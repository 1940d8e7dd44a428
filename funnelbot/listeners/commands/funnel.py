"""`/funnel`: conversion questions answered from the metrics module (SPEC §3, §5).

Grammar: `/funnel <question> [from <stage> to <stage>] [<period>] [@rep] [source:<s>]`.
An unparseable question gets examples back, never a stack trace.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from slack_bolt import Ack, App, Respond
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from sqlalchemy import orm as so

from funnelbot import blocks, charts, metrics, parsing, presenters, reports, stages
from funnelbot import deals as domain
from funnelbot.errors import UserError
from funnelbot.listeners.context import CommandAck, Services, Turn
from funnelbot.periods import Period, parse_period, unit_period

logger = logging.getLogger(__name__)
DEFAULT_DAYS = 90
QUESTIONS = ("conversion", "forecast", "stalled", "lost", "reps", "sources", "velocity", "help")
ALIASES = {
    "转化": "conversion",
    "转化率": "conversion",
    "预测": "forecast",
    "停滞": "stalled",
    "输单": "lost",
    "销售": "reps",
    "来源": "sources",
    "速度": "velocity",
    "帮助": "help",
}


_DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")


@dataclass
class Question:
    kind: str
    period: Period | None = None
    rep: str | None = None
    source: str | None = None
    from_stage: str | None = None
    to_stage: str | None = None


def parse_question(text: str, today: dt.date) -> Question:
    words = parsing.tokenize(text)
    kind = "summary"
    if words:
        first = ALIASES.get(words[0], words[0].lower())
        if first in QUESTIONS or first in ("chart", "stages", "settings"):
            kind, words = first, words[1:]
    question = Question(kind)
    rest: list[str] = []
    i = 0
    while i < len(words):
        word = words[i]
        mentioned = parsing.parse_user_mention(word)
        option = parsing.split_option(word)
        if mentioned:
            question.rep = mentioned
        elif option and option[0] == "source":
            question.source = parsing.unescape_slack(option[1])
        elif option:
            raise UserError("error.unknown_option", option=option[0])
        elif word.lower() in ("from", "从") and i + 1 < len(words):
            question.from_stage = words[i + 1]
            i += 1
        elif word.lower() in ("to", "到") and i + 1 < len(words) and not _DAY.match(words[i + 1]):
            # `to <stage>`; `2026-01-01 to 2026-03-31` is a period
            question.to_stage = words[i + 1]
            i += 1
        else:
            rest.append(word)
        i += 1
    if rest:
        question.period = parse_period(" ".join(rest), today)
    return question


class FunnelCommand(Turn):
    """One /funnel question."""

    @property
    def text(self) -> str:
        return self.payload.get("text") or ""

    @property
    def channel_id(self) -> str:
        return self.payload.get("channel_id") or ""

    @property
    def tz(self) -> str:
        return self.config.timezone

    def run(self) -> None:
        self.safely(self._run)

    def _run(self) -> None:
        today = self.today()
        try:
            q = parse_question(self.text, today)
        except UserError as err:
            if err.code == "error.bad_period":
                raise UserError("error.bad_question", value=err.params.get("value", "")) from err
            raise
        if q.kind == "help":
            self.answer(blocks.help_message(self.tr, "/funnel"))
            return
        if q.kind == "chart":
            self.chart(q, today)
            return
        if q.kind == "settings":
            self.services.require_admin(self.actor, self.team_id, self.tr("settings.title"))
            self.open_modal(blocks.settings_modal(self.tr, self.config, meta=self.meta()))
            return
        if q.kind == "stages":
            if not (self.actor.is_admin or self.actor.is_manager):
                raise UserError("stages.forbidden")

            def modal(session: so.Session) -> dict[str, Any]:
                specs = stages.current_specs(session, self.team_id)
                return blocks.stages_modal(
                    self.tr, specs, meta=self.meta(keys=[s.key for s in specs])
                )

            self.open_modal(self.services.transaction(self.team_id, modal, readonly=True))
            return
        answers: dict[str, Callable[[so.Session, Question, dt.date], blocks.Message]] = {
            "summary": self.summary,
            "conversion": self.conversion,
            "forecast": self.forecast,
            "stalled": self.stalled,
            "lost": self.lost,
            "reps": self.reps,
            "sources": self.sources,
            "velocity": self.velocity,
        }
        self.in_transaction(lambda session: answers[q.kind](session, q, today), readonly=True)

    def chart(self, q: Question, today: dt.date) -> None:
        """Post the funnel picture in the channel the command came from."""
        period = q.period or unit_period("week", today, 0)

        def render(session: so.Session) -> bytes:
            return charts.render_funnel(
                reports.chart_data(session, self.team_id, period, self.tr, tz=self.tz)
            )

        png = self.services.transaction(self.team_id, render, readonly=True)
        try:
            self.client.files_upload_v2(
                channel=self.channel_id,
                content=png,
                filename=f"funnel-{period.label()}.png",
                title=self.tr("report.chart_title"),
                initial_comment=self.tr("chart.posted", period=period.label()),
            )
        except SlackApiError as exc:
            logger.warning("chart upload to %s failed: %s", self.channel_id, exc)
            raise UserError("error.chart_channel") from exc

    def recent(self, q: Question, today: dt.date) -> Period:
        return q.period or Period(today - dt.timedelta(days=DEFAULT_DAYS - 1), today)

    def summary(self, session: so.Session, q: Question, today: dt.date) -> blocks.Message:
        loads = metrics.open_by_stage(session, self.team_id, owner=q.rep)
        conv = metrics.conversion(
            session,
            self.team_id,
            self.recent(q, today),
            tz=self.tz,
            filters=metrics.Filters(q.rep, q.source),
            stays=False,  # the summary shows no days in stage
        )
        _, stalled = metrics.stalled_deals(
            session, self.team_id, self.services.clock(), today, owner=q.rep, limit=0
        )
        return blocks.funnel_summary(
            self.tr, loads, conv, stalled, self.tr("metrics.summary_title")
        )

    def conversion(self, session: so.Session, q: Question, today: dt.date) -> blocks.Message:
        period = self.recent(q, today)
        conv = metrics.conversion(
            session, self.team_id, period, tz=self.tz, filters=metrics.Filters(q.rep, q.source)
        )
        path = None
        if q.from_stage or q.to_stage:
            path = self.stage_path(session, conv, q)
        title = self.tr("metrics.conversion_title")
        if q.rep:
            title += f" · @{q.rep}"
        if q.source:
            title += f" · {q.source}"
        return blocks.conversion_table(self.tr, conv, title, path)

    def stage_path(
        self, session: so.Session, conv: metrics.Conversion, q: Question
    ) -> tuple[str, str, int, int]:
        """From stage a to stage b: the share of deals that reached a and also reached b."""
        stages = [s.key for s in conv.stages]
        a = domain.find_stage(session, self.team_id, q.from_stage or stages[0])
        b = domain.find_stage(session, self.team_id, q.to_stage or "won")
        reached = {s.key: s.reached for s in conv.stages}
        reached["won"] = conv.stages[-1].advanced if conv.stages else conv.won
        if a.key not in reached or b.key not in reached:
            raise UserError("error.bad_stage_path", a=a.key, b=b.key)
        order = [*stages, "won"]
        if order.index(b.key) <= order.index(a.key):
            raise UserError("error.bad_stage_path", a=a.key, b=b.key)
        return a.name(self.tr.lang), b.name(self.tr.lang), reached[a.key], reached[b.key]

    def forecast(self, session: so.Session, q: Question, today: dt.date) -> blocks.Message:
        period = q.period or unit_period("quarter", today, 0)
        fc = metrics.forecast(session, self.team_id, period, today, tz=self.tz, owner=q.rep)
        return blocks.forecast_message(self.tr, fc, self.tr("metrics.forecast_title"))

    def stalled(self, session: so.Session, q: Question, today: dt.date) -> blocks.Message:
        found, total = metrics.stalled_deals(
            session, self.team_id, self.services.clock(), today, owner=q.rep, limit=blocks.LIST_PAGE
        )
        infos = presenters.deal_infos(session, self.team_id, found)
        return blocks.deal_list(infos, total, self.tr, self.tr("metrics.stalled_title"))

    def lost(self, session: so.Session, q: Question, today: dt.date) -> blocks.Message:
        period = self.recent(q, today)
        reasons = metrics.lost_reasons(session, self.team_id, period, tz=self.tz)
        conv = metrics.conversion(session, self.team_id, period, tz=self.tz, stays=False)
        return blocks.lost_message(
            self.tr, reasons, conv, self.tr("metrics.lost_title", period=period.label())
        )

    def reps(self, session: so.Session, q: Question, today: dt.date) -> blocks.Message:
        period = self.recent(q, today)
        rows = metrics.breakdown(session, self.team_id, period, "owner", tz=self.tz)
        return blocks.breakdown_message(
            self.tr, rows, self.tr("metrics.reps_title", period=period.label()), "owner"
        )

    def sources(self, session: so.Session, q: Question, today: dt.date) -> blocks.Message:
        period = self.recent(q, today)
        rows = metrics.breakdown(session, self.team_id, period, "source", tz=self.tz)
        return blocks.breakdown_message(
            self.tr, rows, self.tr("metrics.sources_title", period=period.label()), "source"
        )

    def velocity(self, session: so.Session, q: Question, today: dt.date) -> blocks.Message:
        vel = metrics.velocity(session, self.team_id, self.recent(q, today), tz=self.tz)
        return blocks.velocity_message(self.tr, vel, self.tr("metrics.velocity_title"))


def register(app: App, services: Services) -> None:
    @app.command("/funnel")
    def funnel_command(ack: Ack, body: dict[str, Any], respond: Respond, client: WebClient) -> None:
        with CommandAck(ack) as answer_in_ack:
            FunnelCommand.from_command(services, client, respond, body, answer_in_ack).run()
