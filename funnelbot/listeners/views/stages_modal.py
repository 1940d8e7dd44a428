"""`/funnel stages` submission (managers and admins): the same rules as
`funnelbot stages apply` (funnelbot.stages), applied in one transaction."""

from __future__ import annotations

import logging
from decimal import Decimal, InvalidOperation
from typing import Any

from slack_bolt import Ack, App
from slack_sdk import WebClient
from sqlalchemy import orm as so

from funnelbot import blocks, stages
from funnelbot.errors import UserError
from funnelbot.ids import View
from funnelbot.listeners.context import Services, error_message
from funnelbot.listeners.views.deal_modals import FieldErrors, Submission

logger = logging.getLogger(__name__)


def _value(s: Submission, block_id: str) -> dict[str, Any]:
    return s.values.get(block_id, {}).get(block_id) or {}


def _text(s: Submission, block_id: str) -> str:
    return (_value(s, block_id).get("value") or "").strip()


def _number(s: Submission, block_id: str) -> Decimal | None:
    raw = _text(s, block_id)
    if not raw:
        return None
    try:
        return Decimal(raw)
    except InvalidOperation as exc:
        raise FieldErrors(
            {block_id: s.tr("stages.bad_probability", stage=block_id, value=raw)}
        ) from exc


def read_specs(s: Submission, keys: list[str]) -> tuple[list[stages.StageSpec], dict[str, str]]:
    """The stages as submitted, in their new order; and which block shows each key's errors."""
    ordered: list[tuple[Decimal, int, stages.StageSpec]] = []
    where: dict[str, str] = {}
    for i, key in enumerate(keys):
        prefix = f"s{i}"
        where[key] = f"{prefix}_name_en"
        if _value(s, f"{prefix}_remove").get("selected_options"):
            continue
        ordered.append((_number(s, f"{prefix}_pos") or Decimal(i + 1), i, _spec(s, prefix, key)))
    new_key = _text(s, "new_key")
    if new_key:
        where[new_key] = "new_key"
        ordered.append(
            (_number(s, "new_pos") or Decimal(len(keys) + 1), len(keys), _spec(s, "new", new_key))
        )
    ordered.sort(key=lambda item: (item[0], item[1]))
    return [spec for _, _, spec in ordered], where


def _spec(s: Submission, prefix: str, key: str) -> stages.StageSpec:
    stall = _number(s, f"{prefix}_stall")
    probability = _number(s, f"{prefix}_prob")
    criteria = tuple(
        line.strip() for line in _text(s, f"{prefix}_criteria").splitlines() if line.strip()
    )
    return stages.StageSpec(
        key=key,
        name_en=_text(s, f"{prefix}_name_en"),
        name_zh=_text(s, f"{prefix}_name_zh"),
        stall_days=int(stall) if stall is not None else None,
        probability=probability if probability is not None else Decimal("-1"),
        exit_criteria=criteria,
    )


def register(app: App, services: Services) -> None:
    @app.view(View.STAGES.value)
    def save_stages(ack: Ack, body: dict[str, Any], client: WebClient) -> None:
        s = Submission(services, client, body)
        keys: list[str] = list(s.meta_in.get("keys") or [])
        move_to = (_value(s, "move_to").get("selected_option") or {}).get("value")
        first_block = "s0_name_en" if keys else "new_key"
        try:
            specs, where = read_specs(s, keys)
        except FieldErrors as err:
            ack(response_action="errors", errors=err.errors)
            return

        def apply(session: so.Session) -> blocks.Message:
            plan = stages.apply(
                session, s.team_id, specs, s.actor, move_to=move_to, now=services.clock()
            )
            lines = stages.describe(plan, s.tr, s.tr.lang)
            return blocks.notice("\n".join([s.tr("stages.saved"), *lines]))

        try:
            message = services.transaction(s.team_id, apply)
        except UserError as err:
            stage = str(err.params.get("stage", ""))
            block = (
                "move_to"
                if err.code in ("stages.holds_deals", "stages.bad_move_to")
                else where.get(stage, first_block)
            )
            ack(
                response_action="errors",
                errors={block: error_message(s.tr, err)["text"].removeprefix(":warning: ")},
            )
            return
        except Exception:  # noqa: BLE001 - the modal says something went wrong
            logger.exception("could not apply stages")
            ack(response_action="errors", errors={first_block: s.tr("error.internal")})
            return
        ack()
        s.answer(message)
