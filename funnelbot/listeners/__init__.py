"""Slack's doors into funnelbot: each module wires Slack ids to thin callbacks."""

from __future__ import annotations

from slack_bolt import App

from funnelbot.listeners.actions import deal_buttons
from funnelbot.listeners.commands import deal, funnel
from funnelbot.listeners.context import Services
from funnelbot.listeners.events import app_home
from funnelbot.listeners.views import deal_modals, settings_modal, stages_modal


def register_listeners(app: App, services: Services) -> None:
    deal.register(app, services)
    funnel.register(app, services)
    deal_buttons.register(app, services)
    deal_modals.register(app, services)
    settings_modal.register(app, services)
    stages_modal.register(app, services)
    app_home.register(app, services)
