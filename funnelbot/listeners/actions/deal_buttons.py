"""Deal-card buttons. Each acts on the deal version it was drawn for: a stale or double
click changes nothing and says so, with the card as it is now."""

from __future__ import annotations

import datetime as dt
import functools
import logging
from collections.abc import Callable
from typing import Any

from slack_bolt import Ack, App, Respond
from slack_sdk import WebClient
from sqlalchemy import orm as so

from funnelbot import blocks, presenters
from funnelbot import deals as domain
from funnelbot.errors import AtLastOpenStage, CriteriaRequired, Forbidden, StaleVersion
from funnelbot.ids import Action
from funnelbot.listeners.context import Services, Turn, failure_message
from funnelbot.models import Deal

logger = logging.getLogger(__name__)
SNOOZE_DAYS = 7


class ButtonTurn(Turn):
    def __init__(
        self, services: Services, client: WebClient, respond: Respond, body: dict[str, Any]
    ) -> None:
        team_id = (body.get("team") or {}).get("id") or body["user"].get("team_id") or ""
        super().__init__(
            services,
            client,
            respond,
            team_id=team_id,
            user_id=body["user"]["id"],
            response_url=body.get("response_url"),
            trigger_id=body.get("trigger_id"),
        )
        action = body["actions"][0]
        self.number, self.version = blocks.parse_deal_value(action["value"])

    def run(self, work: Callable[[], None]) -> None:
        try:
            work()
        except StaleVersion:
            self.safely(self.show_current_after_stale)
        except AtLastOpenStage as err:
            self.answer(blocks.choose_outcome(err.number, err.version, self.tr))
        except CriteriaRequired as err:
            self.safely(functools.partial(self.open_criteria, err))
        except Exception as exc:  # noqa: BLE001 - every failure gets a kind answer
            self.answer(failure_message(self.tr, exc))

    def show_current_after_stale(self) -> None:
        def current(session: so.Session) -> blocks.Message:
            deal = domain.get_deal(session, self.team_id, self.number)
            return self.card(session, deal, self.tr("error.stale", number=self.number))

        self.in_transaction(current, readonly=True)

    def change(self, apply: Callable[[so.Session, Deal], str]) -> None:
        """Apply a change to the drawn version and redraw the card in place."""

        def work(session: so.Session) -> blocks.Message:
            deal = domain.get_deal(session, self.team_id, self.number)
            note = apply(session, deal)
            return self.card(session, deal, note)

        def apply_and_refresh() -> None:
            self.in_transaction(work, replace=True)
            self.changed()

        self.run(apply_and_refresh)

    def open_for_drawn_version(
        self, build: Callable[[presenters.DealInfo], dict[str, Any]]
    ) -> None:
        """Open a modal, but only for the card's version and only for someone who may change it."""

        def modal(session: so.Session) -> dict[str, Any]:
            deal = domain.get_deal(session, self.team_id, self.number)
            if deal.version != self.version:
                raise StaleVersion("error.stale", number=deal.number)
            if not self.actor.may_change(deal):
                raise Forbidden("error.forbidden", number=deal.number, owner=deal.owner_id)
            return build(presenters.deal_info(deal))

        self.run(
            lambda: self.open_modal(self.services.transaction(self.team_id, modal, readonly=True))
        )

    def meta_for(self, info: presenters.DealInfo) -> dict[str, Any]:
        return self.meta(number=info.number, version=info.version)


def register(app: App, services: Services) -> None:
    def turn(body: dict[str, Any], client: WebClient, respond: Respond) -> ButtonTurn:
        return ButtonTurn(services, client, respond, body)

    @app.action(Action.ADVANCE.value)
    def advance(ack: Ack, body: dict[str, Any], client: WebClient, respond: Respond) -> None:
        ack()
        t = turn(body, client, respond)

        def apply(session: so.Session, deal: Deal) -> str:
            domain.advance(session, deal, t.actor, now=services.clock(), expected_version=t.version)
            return t.tr("deal.moved", number=deal.number, stage=deal.stage.name(t.tr.lang))

        t.change(apply)

    @app.action(Action.WON.value)
    def won(ack: Ack, body: dict[str, Any], client: WebClient, respond: Respond) -> None:
        ack()
        t = turn(body, client, respond)

        def apply(session: so.Session, deal: Deal) -> str:
            domain.win(session, deal, t.actor, now=services.clock(), expected_version=t.version)
            return t.tr("deal.won", number=deal.number)

        t.change(apply)

    @app.action(Action.REOPEN.value)
    def reopen(ack: Ack, body: dict[str, Any], client: WebClient, respond: Respond) -> None:
        ack()
        t = turn(body, client, respond)

        def apply(session: so.Session, deal: Deal) -> str:
            domain.reopen(session, deal, t.actor, now=services.clock(), expected_version=t.version)
            return t.tr("deal.reopened", number=deal.number, stage=deal.stage.name(t.tr.lang))

        t.change(apply)

    @app.action(Action.LOST.value)
    def lost(ack: Ack, body: dict[str, Any], client: WebClient, respond: Respond) -> None:
        ack()
        t = turn(body, client, respond)
        t.open_for_drawn_version(lambda info: blocks.lost_modal(t.tr, info, meta=t.meta_for(info)))

    @app.action(Action.NOTE.value)
    def note(ack: Ack, body: dict[str, Any], client: WebClient, respond: Respond) -> None:
        ack()
        t = turn(body, client, respond)
        t.open_for_drawn_version(lambda info: blocks.note_modal(t.tr, info, meta=t.meta_for(info)))

    @app.action(Action.EDIT.value)
    def edit(ack: Ack, body: dict[str, Any], client: WebClient, respond: Respond) -> None:
        ack()
        t = turn(body, client, respond)
        t.open_for_drawn_version(
            lambda info: blocks.edit_deal_modal(t.tr, info, meta=t.meta_for(info))
        )

    @app.action(Action.SNOOZE.value)
    def snooze(ack: Ack, body: dict[str, Any], client: WebClient, respond: Respond) -> None:
        ack()
        t = turn(body, client, respond)
        until = t.today() + dt.timedelta(days=SNOOZE_DAYS)
        t.open_for_drawn_version(
            lambda info: blocks.snooze_modal(t.tr, info, until, meta=t.meta_for(info))
        )

    @app.action(Action.SHOW.value)
    def show(ack: Ack, body: dict[str, Any], client: WebClient, respond: Respond) -> None:
        ack()
        t = turn(body, client, respond)

        def current(session: so.Session) -> blocks.Message:
            return t.card(session, domain.get_deal(session, t.team_id, t.number))

        t.run(lambda: t.in_transaction(current, readonly=True))
