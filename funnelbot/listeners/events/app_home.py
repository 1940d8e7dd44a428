"""App Home (app_home_opened -> views.publish): the viewer's pipeline, and the team
funnel for managers. Also republished after the viewer changes a deal."""

from __future__ import annotations

import logging
import time
from typing import Any

import sqlalchemy as sa
from slack_bolt import App
from slack_sdk import WebClient
from sqlalchemy import orm as so

from funnelbot import blocks, metrics, presenters
from funnelbot import deals as domain
from funnelbot.jobs import _why
from funnelbot.listeners.context import Services
from funnelbot.models import OPEN, Deal, Workspace

logger = logging.getLogger(__name__)
HOME_DEALS = 60


def build_home(services: Services, client: WebClient, team_id: str, user_id: str) -> dict[str, Any]:
    tr = services.translator(client, team_id, user_id)
    actor = services.actor(client, team_id, user_id)
    config = services.config(team_id)
    now = services.clock()
    today = config.today(now)

    def gather(session: so.Session) -> dict[str, Any]:
        stalled, _ = metrics.stalled_deals(session, team_id, now, today, owner=user_id, limit=8)
        attention = list(
            zip(
                presenters.deal_infos(session, team_id, stalled),
                [_why(tr, d, now, today) for d in stalled],
                strict=True,
            )
        )
        # Every open deal of the viewer is counted per stage; the deals listed are the
        # most recently active ones of each stage, as many as the Home can hold.
        counts = dict(
            session.execute(
                sa.select(Deal.stage_id, sa.func.count())
                .where(Deal.team_id == team_id, Deal.owner_id == user_id, Deal.status == OPEN)
                .group_by(Deal.stage_id)
            ).all()
        )
        by_stage = []
        for stage in domain.open_stages(session, team_id):
            total = int(counts.get(stage.id, 0))
            deals: list[presenters.DealInfo] = []
            if total:
                found, _ = domain.list_deals(
                    session, team_id, owner_id=user_id, stage=stage, limit=HOME_DEALS
                )
                deals = presenters.deal_infos(session, team_id, found)
            by_stage.append((stage.key, stage.name(tr.lang), deals, total))
        team = None
        if actor.is_manager or actor.is_admin:
            loads = metrics.open_by_stage(session, team_id)
            lines = [
                f"*{blocks.escape(load.name_zh if tr.lang == 'zh' else load.name)}*  {load.deals} · "
                f"{blocks.escape(tr.money(load.amount))}"
                for load in loads
            ]
            workspace = session.get(Workspace, team_id)
            team = {
                "funnel": "\n".join(lines),
                "report_link": (workspace.settings or {}).get("last_report_link")
                if workspace
                else None,
            }
        return blocks.home_view(tr, attention=attention, by_stage=by_stage, team=team)

    return services.transaction(team_id, gather, readonly=True)


def publish_home(services: Services, client: WebClient, team_id: str, user_id: str) -> None:
    client.views_publish(user_id=user_id, view=build_home(services, client, team_id, user_id))


HOME_FRESH_FOR = 12 * 3600.0  # seconds: refresh the Home of people who looked at it lately


def register(app: App, services: Services) -> None:
    viewers: dict[tuple[str, str], float] = {}

    def refresh_if_viewed(client: WebClient, team_id: str, user_id: str) -> None:
        """Rebuilding a Home costs a dozen queries: do it for people who opened theirs
        lately (as seen by this process; elsewhere it is rebuilt on their next open)."""
        seen = viewers.get((team_id, user_id))
        if seen is not None and time.monotonic() - seen < HOME_FRESH_FOR:
            publish_home(services, client, team_id, user_id)

    services.on_deal_changed = refresh_if_viewed

    @app.event("app_home_opened")
    def home_opened(event: dict[str, Any], body: dict[str, Any], client: WebClient) -> None:
        if event.get("tab", "home") != "home":
            return
        team_id = body.get("team_id") or event.get("view", {}).get("team_id") or ""
        viewers[(team_id, event["user"])] = time.monotonic()
        try:
            publish_home(services, client, team_id, event["user"])
        except Exception:  # noqa: BLE001 - Slack shows the previous Home; log why
            logger.exception("could not publish the App Home for %s", event.get("user"))
