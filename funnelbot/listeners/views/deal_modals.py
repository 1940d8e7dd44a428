"""Modal submissions: New deal, Edit, Note, Lost, Exit criteria.

Field errors go back to the modal (`response_action: errors`) and change nothing; a
valid submission is applied in one transaction, then answered where the modal came from
(the command's or the card's response_url) or, failing that, by DM.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from slack_bolt import Ack, App
from slack_bolt.context.respond import Respond
from slack_sdk import WebClient
from sqlalchemy import orm as so

from funnelbot import blocks, parsing
from funnelbot import deals as domain
from funnelbot.errors import StaleVersion, UserError
from funnelbot.ids import Field, View
from funnelbot.listeners.context import Services, Turn, error_message, failure_message
from funnelbot.models import WON, Deal

logger = logging.getLogger(__name__)


class FieldErrors(Exception):
    """Errors to show beside modal fields, keyed by block id."""

    def __init__(self, errors: dict[str, str]) -> None:
        super().__init__(errors)
        self.errors = errors


class Submission(Turn):
    def __init__(self, services: Services, client: WebClient, body: dict[str, Any]) -> None:
        view = body["view"]
        try:
            self.meta_in: dict[str, Any] = json.loads(view.get("private_metadata") or "{}")
        except ValueError:
            self.meta_in = {}
        response_url = self.meta_in.get("response_url")
        super().__init__(
            services,
            client,
            Respond(response_url=response_url) if response_url else None,
            team_id=(body.get("team") or {}).get("id") or body["user"].get("team_id") or "",
            user_id=body["user"]["id"],
            response_url=response_url,
            trigger_id=body.get("trigger_id"),
        )
        self.values: dict[str, dict[str, Any]] = view.get("state", {}).get("values", {})

    # -- reading fields --------------------------------------------------------------

    def _element(self, field: Field) -> dict[str, Any]:
        return self.values.get(field.value, {}).get(field.value) or {}

    def text(self, field: Field) -> str:
        return self._element(field).get("value") or ""

    def date(self, field: Field) -> dt.date | None:
        raw = self._element(field).get("selected_date")
        return dt.date.fromisoformat(raw) if raw else None

    def user(self, field: Field) -> str | None:
        return self._element(field).get("selected_user")

    def option(self, field: Field) -> str | None:
        selected = self._element(field).get("selected_option")
        return selected.get("value") if selected else None

    def checked(self, field: Field) -> set[int]:
        return {int(o["value"]) for o in self._element(field).get("selected_options") or []}

    def check(self, field: Field, validate: Callable[[], Any], errors: dict[str, str]) -> Any:
        """Run one field's validation, collecting its message instead of stopping."""
        try:
            return validate()
        except UserError as err:
            errors[field.value] = error_message(self.tr, err)["text"].removeprefix(":warning: ")
            return None

    def amount(self, errors: dict[str, str]) -> Decimal | None:
        raw = self.text(Field.AMOUNT).strip()
        return self.check(Field.AMOUNT, lambda: parsing.parse_amount(raw), errors) if raw else None

    # -- applying ------------------------------------------------------------------

    def submit(
        self, ack: Ack, work: Callable[[so.Session], blocks.Message], *, replace: bool
    ) -> None:
        """Apply `work`; field errors and stale versions go back to the modal."""
        try:
            message = self.services.transaction(self.team_id, work)
        except FieldErrors as err:
            ack(response_action="errors", errors=err.errors)
            return
        except StaleVersion as err:
            ack(
                response_action="errors",
                errors={self.first_block(): error_message(self.tr, err)["text"]},
            )
            return
        except UserError as err:
            ack(
                response_action="errors",
                errors={self.first_block(): error_message(self.tr, err)["text"]},
            )
            return
        except Exception as exc:  # noqa: BLE001 - the modal closes, the user gets told
            ack()
            self.answer(failure_message(self.tr, exc))
            return
        ack()
        try:
            self.answer(message, replace=replace)
        except Exception:  # noqa: BLE001 - the change is saved; only the echo failed
            logger.exception("could not answer a modal submission")
        self.changed()

    def first_block(self) -> str:
        return next(iter(self.values), Field.NAME.value)

    def deal(self, session: so.Session) -> Deal:
        return domain.get_deal(session, self.team_id, int(self.meta_in["number"]))

    @property
    def version(self) -> int | None:
        version = self.meta_in.get("version")
        return int(version) if version is not None else None


def register(app: App, services: Services) -> None:
    @app.view(View.NEW_DEAL.value)
    def new_deal(ack: Ack, body: dict[str, Any], client: WebClient) -> None:
        s = Submission(services, client, body)
        errors: dict[str, str] = {}
        name = s.check(Field.NAME, lambda: domain.clean_name(s.text(Field.NAME)), errors)
        amount = s.amount(errors)
        source = s.check(
            Field.SOURCE,
            lambda: domain.clean_optional(s.text(Field.SOURCE), field="source"),
            errors,
        )
        if errors:
            ack(response_action="errors", errors=errors)
            return

        def create(session: so.Session) -> blocks.Message:
            stage_key = s.option(Field.STAGE)
            stage = domain.find_stage(session, s.team_id, stage_key) if stage_key else None
            deal = domain.create_deal(
                session,
                s.team_id,
                s.actor,
                name=name,
                amount=amount,
                owner_id=s.user(Field.OWNER),
                stage=stage,
                source=source,
                expected_close=s.date(Field.CLOSE),
                now=services.clock(),
            )
            created = s.tr("deal.created", number=deal.number)
            return s.card(session, deal, created, domain.new_deal_records(deal))

        s.submit(ack, create, replace=False)

    @app.view(View.EDIT_DEAL.value)
    def edit_deal(ack: Ack, body: dict[str, Any], client: WebClient) -> None:
        s = Submission(services, client, body)
        errors: dict[str, str] = {}
        changes = domain.DealEdit(
            name=s.text(Field.NAME),
            amount=s.amount(errors),
            source=s.text(Field.SOURCE),
            expected_close=s.date(Field.CLOSE),
            next_step=s.text(Field.NEXT_STEP),
            next_step_due=s.date(Field.NEXT_DUE),
        )
        s.check(Field.NAME, lambda: domain.clean_name(changes.name), errors)
        s.check(Field.SOURCE, lambda: domain.clean_optional(changes.source, field="source"), errors)
        s.check(
            Field.NEXT_STEP,
            lambda: domain.clean_optional(
                changes.next_step, field="next_step", limit=domain.MAX_TEXT
            ),
            errors,
        )
        if errors:
            ack(response_action="errors", errors=errors)
            return

        def apply(session: so.Session) -> blocks.Message:
            deal = s.deal(session)
            domain.edit(
                session, deal, s.actor, changes, now=services.clock(), expected_version=s.version
            )
            return s.card(session, deal, s.tr("deal.updated", number=deal.number))

        s.submit(ack, apply, replace=True)

    @app.view(View.NOTE.value)
    def note(ack: Ack, body: dict[str, Any], client: WebClient) -> None:
        s = Submission(services, client, body)
        errors: dict[str, str] = {}
        text = s.check(
            Field.NOTE, lambda: domain.clean_text(s.text(Field.NOTE), field="note"), errors
        )
        if errors:
            ack(response_action="errors", errors=errors)
            return

        def apply(session: so.Session) -> blocks.Message:
            # A note never conflicts with a stage change, so it does not check the version.
            deal = s.deal(session)
            domain.add_note(session, deal, s.actor, text, now=services.clock())
            return s.card(session, deal, s.tr("deal.noted", number=deal.number))

        s.submit(ack, apply, replace=True)

    @app.view(View.LOST.value)
    def lost(ack: Ack, body: dict[str, Any], client: WebClient) -> None:
        s = Submission(services, client, body)
        reason = s.text(Field.REASON)

        def apply(session: so.Session) -> blocks.Message:
            deal = s.deal(session)
            try:
                domain.lose(
                    session, deal, s.actor, reason, now=services.clock(), expected_version=s.version
                )
            except UserError as err:
                if err.code == "error.text_too_long":
                    raise FieldErrors(
                        {Field.REASON.value: error_message(s.tr, err)["text"]}
                    ) from err
                raise
            return s.card(session, deal, s.tr("deal.lost", number=deal.number))

        s.submit(ack, apply, replace=True)

    @app.view(View.CRITERIA.value)
    def criteria(ack: Ack, body: dict[str, Any], client: WebClient) -> None:
        s = Submission(services, client, body)

        def apply(session: so.Session) -> blocks.Message:
            deal = s.deal(session)
            if s.version is not None and deal.version != s.version:
                # Changed since the checklist was drawn: its items may not be this stage's.
                raise StaleVersion("error.stale", number=deal.number)
            if not {c.id for c in deal.stage.criteria} <= s.checked(Field.CRITERIA):
                raise FieldErrors({Field.CRITERIA.value: s.tr("error.criteria_unchecked")})
            # Complete the change the checklist interrupted: advance, move or won.
            target_key = s.meta_in.get("target")
            target = domain.find_stage(session, s.team_id, target_key) if target_key else None
            now, version, confirmed = services.clock(), s.version, s.checked(Field.CRITERIA)
            if target is None:
                domain.advance(
                    session, deal, s.actor, now=now, expected_version=version, confirmed=confirmed
                )
            elif target.kind == WON:
                domain.win(
                    session, deal, s.actor, now=now, expected_version=version, confirmed=confirmed
                )
                return s.card(session, deal, s.tr("deal.won", number=deal.number))
            else:
                domain.move(
                    session,
                    deal,
                    s.actor,
                    target,
                    now=now,
                    expected_version=version,
                    confirmed=confirmed,
                )
            return s.card(
                session,
                deal,
                s.tr("deal.moved", number=deal.number, stage=deal.stage.name(s.tr.lang)),
            )

        s.submit(ack, apply, replace=False)

    @app.view(View.SNOOZE.value)
    def snooze(ack: Ack, body: dict[str, Any], client: WebClient) -> None:
        s = Submission(services, client, body)
        until = s.date(Field.UNTIL)
        if until is None:
            ack(response_action="errors", errors={Field.UNTIL.value: s.tr("error.date_required")})
            return

        def apply(session: so.Session) -> blocks.Message:
            deal = s.deal(session)
            try:
                domain.snooze(
                    session,
                    deal,
                    s.actor,
                    until,
                    s.text(Field.REASON),
                    now=services.clock(),
                    today=s.today(),
                    expected_version=s.version,
                )
            except UserError as err:
                if err.code in ("error.snooze_past", "error.text_too_long"):
                    block = Field.UNTIL if err.code == "error.snooze_past" else Field.REASON
                    raise FieldErrors({block.value: error_message(s.tr, err)["text"]}) from err
                raise
            return s.card(
                session, deal, s.tr("deal.snoozed", number=deal.number, date=s.tr.date(until))
            )

        s.submit(ack, apply, replace=True)
