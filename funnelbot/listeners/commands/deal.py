"""`/deal`: parse the text, call the domain, answer with a Block Kit builder (SPEC §3).

The answer rides on the command's ack when it is ready within a budget, else it follows
through the response_url (`CommandAck`), so Slack's 3-second ack never waits on the
database.
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
import re
from collections.abc import Callable
from typing import Any
from zoneinfo import ZoneInfo

from slack_bolt import Ack, App, Respond
from slack_sdk import WebClient
from sqlalchemy import orm as so

from funnelbot import blocks, parsing, presenters
from funnelbot import deals as domain
from funnelbot.errors import Ambiguous, AtLastOpenStage, CriteriaRequired, Forbidden, UserError
from funnelbot.listeners.context import CommandAck, Services, Turn, failure_message
from funnelbot.models import Deal

logger = logging.getLogger(__name__)
REMIND_HOUR = 9

# The first word (or "quoted phrase") and the rest, spacing of the rest preserved.
_HEAD = re.compile(r'^\s*(?:"([^"]*)"|“([^”]*)”|「([^」]*)」|(\S+))\s*(.*)$', re.DOTALL)


def split_head(text: str) -> tuple[str, str]:
    match = _HEAD.match(text)
    if not match:
        return "", ""
    quoted = next((g for g in match.groups()[:3] if g is not None), None)
    head = quoted if quoted is not None else match.group(4)
    return head, match.group(5)


class DealCommand(Turn):
    """One /deal invocation."""

    def resolve(self, session: so.Session, ref_text: str) -> Deal:
        ref = parsing.parse_ref(parsing.unescape_slack(ref_text))
        return domain.resolve_ref(session, self.team_id, ref.number, ref.prefix)

    # -- dispatch ------------------------------------------------------------------

    def run(self) -> None:
        text = self.payload.get("text") or ""
        sub, rest = split_head(text)
        sub = sub.lower()
        handlers: dict[str, Callable[[str], None]] = {
            "new": self.new,
            "list": self.list,
            "show": self.show,
            "advance": self.advance,
            "move": self.move,
            "won": self.won,
            "lost": self.lost,
            "reopen": self.reopen,
            "note": self.note,
            "next": self.next_step,
            "assign": self.assign,
            "edit": self.edit,
            "remind": self.remind,
            "help": lambda _rest: self.answer(blocks.help_message(self.tr, "/deal")),
        }
        try:
            if not sub:
                self.new("")
            elif sub in handlers:
                handlers[sub](rest)
            else:
                raise UserError("error.unknown_subcommand", command="/deal", sub=sub)
        except Ambiguous as err:
            self.answer(blocks.candidates(err.params["ref"], err.candidates, self.tr))  # type: ignore[arg-type]
        except AtLastOpenStage as err:
            self.answer(blocks.choose_outcome(err.number, err.version, self.tr))
        except CriteriaRequired as err:
            self.safely(functools.partial(self.open_criteria, err))
        except Exception as exc:  # noqa: BLE001 - every failure gets a kind answer
            self.answer(failure_message(self.tr, exc))

    # -- subcommands ---------------------------------------------------------------

    def new(self, rest: str) -> None:
        if not rest.strip():

            def modal(session: so.Session) -> dict[str, Any]:
                stages = [
                    presenters.stage_info(s) for s in domain.open_stages(session, self.team_id)
                ]
                return blocks.new_deal_modal(
                    self.tr, stages, owner_id=self.user_id, meta=self.meta()
                )

            self.open_modal(self.services.transaction(self.team_id, modal, readonly=True))
            return
        parsed = parsing.parse_quick_create(rest, self.today())

        def create(session: so.Session) -> blocks.Message:
            stage = domain.find_stage(session, self.team_id, parsed.stage) if parsed.stage else None
            deal = domain.create_deal(
                session,
                self.team_id,
                self.actor,
                name=parsed.name,
                amount=parsed.amount,
                owner_id=parsed.owner,
                stage=stage,
                source=parsed.source,
                expected_close=parsed.close,
                now=self.services.clock(),
            )
            created = self.tr("deal.created", number=deal.number)
            return self.card(session, deal, created, domain.new_deal_records(deal))

        self.in_transaction(create)
        self.changed()

    def list(self, rest: str) -> None:
        words = parsing.tokenize(rest)
        owner: str | None = self.user_id
        stage_text: str | None = None
        title_key = "list.mine"
        for word in words:
            mentioned = parsing.parse_user_mention(word)
            if mentioned:
                owner, title_key = mentioned, "list.user"
            elif word.lower() == "all":
                owner, title_key = None, "list.all"
            elif word.lower() == "mine":
                owner, title_key = self.user_id, "list.mine"
            elif stage_text is None:
                stage_text = parsing.unescape_slack(word)
            else:
                raise UserError("error.list_usage")

        def render(session: so.Session) -> blocks.Message:
            stage = domain.find_stage(session, self.team_id, stage_text) if stage_text else None
            found, total = domain.list_deals(session, self.team_id, owner_id=owner, stage=stage)
            title = self.tr(title_key, user=f"@{owner}")
            if stage is not None:
                title += f" · {stage.name(self.tr.lang)}"
            return blocks.deal_list(
                presenters.deal_infos(session, self.team_id, found), total, self.tr, title
            )

        self.in_transaction(render, readonly=True)

    def _one_ref(self, rest: str) -> str:
        ref, extra = split_head(rest)
        if not ref:
            raise UserError("error.ref_required")
        if extra.strip():
            raise UserError("error.extra_words", words=extra.strip())
        return ref

    def show(self, rest: str) -> None:
        ref = self._one_ref(rest)
        self.in_transaction(
            lambda session: self.card(session, self.resolve(session, ref)), readonly=True
        )

    def _change(self, ref: str, change: Callable[[so.Session, Deal], str]) -> None:
        """Resolve the ref, apply the change to the deal as it is now, answer with its card."""

        def work(session: so.Session) -> blocks.Message:
            deal = self.resolve(session, ref)
            note = change(session, deal)
            return self.card(session, deal, note)

        self.in_transaction(work)
        self.changed()

    def advance(self, rest: str) -> None:
        now = self.services.clock()

        def change(session: so.Session, deal: Deal) -> str:
            domain.advance(session, deal, self.actor, now=now)
            return self.tr("deal.moved", number=deal.number, stage=deal.stage.name(self.tr.lang))

        self._change(self._one_ref(rest), change)

    def move(self, rest: str) -> None:
        ref, stage_text = split_head(rest)
        stage_text = parsing.unescape_slack(stage_text.strip())
        if not ref or not stage_text:
            raise UserError("error.move_usage")
        now = self.services.clock()

        def change(session: so.Session, deal: Deal) -> str:
            target = domain.find_stage(session, self.team_id, stage_text)
            domain.move(session, deal, self.actor, target, now=now)
            return self.tr("deal.moved", number=deal.number, stage=deal.stage.name(self.tr.lang))

        self._change(ref, change)

    def won(self, rest: str) -> None:
        now = self.services.clock()

        def change(session: so.Session, deal: Deal) -> str:
            domain.win(session, deal, self.actor, now=now)
            return self.tr("deal.won", number=deal.number)

        self._change(self._one_ref(rest), change)

    def lost(self, rest: str) -> None:
        ref, reason = split_head(rest)
        if not ref:
            raise UserError("error.ref_required")
        now = self.services.clock()

        def change(session: so.Session, deal: Deal) -> str:
            domain.lose(session, deal, self.actor, parsing.unescape_slack(reason), now=now)
            return self.tr("deal.lost", number=deal.number)

        self._change(ref, change)

    def reopen(self, rest: str) -> None:
        now = self.services.clock()

        def change(session: so.Session, deal: Deal) -> str:
            domain.reopen(session, deal, self.actor, now=now)
            return self.tr("deal.reopened", number=deal.number, stage=deal.stage.name(self.tr.lang))

        self._change(self._one_ref(rest), change)

    def note(self, rest: str) -> None:
        ref, text = split_head(rest)
        if not ref:
            raise UserError("error.ref_required")
        text = parsing.unescape_slack(text)
        now = self.services.clock()

        def change(session: so.Session, deal: Deal) -> str:
            domain.add_note(session, deal, self.actor, text, now=now)
            return self.tr("deal.noted", number=deal.number)

        self._change(ref, change)

    def next_step(self, rest: str) -> None:
        ref, text = split_head(rest)
        if not ref:
            raise UserError("error.ref_required")
        due = None
        match = re.search(r"(?:^|\s)due[:：](\S+)\s*$", text)
        if match:
            due = parsing.parse_date(match.group(1), self.today())
            text = text[: match.start()]
        text = parsing.unescape_slack(text)
        now = self.services.clock()

        def change(session: so.Session, deal: Deal) -> str:
            domain.set_next_step(session, deal, self.actor, text, due, now=now)
            return self.tr("deal.next_set", number=deal.number)

        self._change(ref, change)

    def assign(self, rest: str) -> None:
        ref, who = split_head(rest)
        owner = parsing.parse_user_mention(who.strip())
        if not ref or not owner:
            raise UserError("error.assign_usage")
        now = self.services.clock()

        def change(session: so.Session, deal: Deal) -> str:
            domain.assign(session, deal, self.actor, owner, now=now)
            return self.tr("deal.assigned", number=deal.number, owner=f"@{owner}")

        self._change(ref, change)

    def remind(self, rest: str) -> None:
        """`remind <ref> <when> <text>`: a DM at 09:00 (workspace time) on that day."""
        ref, rest = split_head(rest)
        when, text = split_head(rest)
        if not ref or not when or not text.strip():
            raise UserError("error.remind_usage")
        day = parsing.parse_date(parsing.unescape_slack(when), self.today())
        zone = ZoneInfo(self.config.timezone)
        due = dt.datetime.combine(day, dt.time(REMIND_HOUR), zone).astimezone(dt.UTC)
        text = parsing.unescape_slack(text)
        now = self.services.clock()

        def change(session: so.Session, deal: Deal) -> str:
            domain.add_reminder(session, deal, self.actor, due, text, now=now)
            return self.tr("deal.reminder_set", number=deal.number, when=self.tr.date(day))

        self._change(ref, change)

    def edit(self, rest: str) -> None:
        ref = self._one_ref(rest)

        def modal(session: so.Session) -> dict[str, Any]:
            deal = self.resolve(session, ref)
            if not self.actor.may_change(deal):
                raise Forbidden("error.forbidden", number=deal.number, owner=deal.owner_id)
            info = presenters.deal_info(deal)
            return blocks.edit_deal_modal(
                self.tr, info, meta=self.meta(number=info.number, version=info.version)
            )

        self.open_modal(self.services.transaction(self.team_id, modal, readonly=True))


def register(app: App, services: Services) -> None:
    @app.command("/deal")
    def deal_command(ack: Ack, body: dict[str, Any], respond: Respond, client: WebClient) -> None:
        with CommandAck(ack) as answer_in_ack:
            DealCommand.from_command(services, client, respond, body, answer_in_ack).run()
