"""`/funnel settings` submission (admins): validate, store, take effect at once."""

from __future__ import annotations

import logging
from typing import Any

from slack_bolt import Ack, App
from slack_sdk import WebClient
from sqlalchemy import orm as so

from funnelbot import blocks, teamconfig
from funnelbot.errors import UserError
from funnelbot.ids import Field, View
from funnelbot.listeners.context import Services, error_message
from funnelbot.listeners.views.deal_modals import Submission

logger = logging.getLogger(__name__)


def register(app: App, services: Services) -> None:
    @app.view(View.SETTINGS.value)
    def save_settings(ack: Ack, body: dict[str, Any], client: WebClient) -> None:
        s = Submission(services, client, body)
        try:
            services.require_admin(s.actor, s.team_id, s.tr("settings.title"))
        except UserError as err:
            ack(
                response_action="errors",
                errors={Field.REPORT_CHANNEL.value: error_message(s.tr, err)["text"]},
            )
            return
        element = s.values.get(Field.REPORT_CHANNEL.value, {}).get(Field.REPORT_CHANNEL.value) or {}
        managers = s.values.get(Field.MANAGERS.value, {}).get(Field.MANAGERS.value) or {}
        hour = s.option(Field.NUDGE_HOUR)
        values: dict[str, Any] = {
            "report_channel": element.get("selected_conversation"),
            "weekly_day": s.option(Field.WEEKLY_DAY),
            "weekly_time": (
                s.values.get(Field.WEEKLY_TIME.value, {}).get(Field.WEEKLY_TIME.value) or {}
            ).get("selected_time"),
            "nudge_hour": int(hour) if hour is not None and hour.isdigit() else None,
            "timezone": s.text(Field.TIMEZONE).strip(),
            "language": s.option(Field.LANGUAGE),
            "currency": s.text(Field.CURRENCY).strip().upper(),
            "managers": managers.get("selected_users") or [],
            "manager_group": s.text(Field.MANAGER_GROUP).strip(),
        }
        errors = teamconfig.validate(values)
        if errors:
            ack(
                response_action="errors",
                errors={field: s.tr(code) for field, code in errors.items()},
            )
            return

        def save(session: so.Session) -> None:
            teamconfig.store(session, s.team_id, values)

        try:
            services.transaction(s.team_id, save)
        except Exception as exc:  # noqa: BLE001 - keep the modal open with the reason
            logger.exception("could not save settings")
            ack(
                response_action="errors",
                errors={Field.REPORT_CHANNEL.value: s.tr("error.internal")},
            )
            del exc
            return
        ack()
        assert services.configs is not None
        services.configs.forget(s.team_id)
        config = services.config(s.team_id)
        if services.on_settings_changed is not None:
            services.on_settings_changed(s.team_id, config)
        s.answer(
            blocks.notice(
                s.tr(
                    "settings.saved",
                    day=s.tr(f"weekday.{config.weekly_day}"),
                    time=config.weekly_time,
                    timezone=config.timezone,
                    hour=f"{config.nudge_hour:02d}",
                )
            )
        )
