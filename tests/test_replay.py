"""Replayed deliveries (same signed body) and Events API retries are processed once."""

from __future__ import annotations

import urllib.parse

import sqlalchemy as sa

from funnelbot.models import Deal


def _deal_count(app_server, team: str) -> int:
    with app_server.runtime.engine.connect() as conn:
        return conn.execute(
            sa.select(sa.func.count()).select_from(Deal).where(Deal.team_id == team)
        ).scalar_one()


def test_replayed_slash_command_creates_one_deal(app_server):
    s, fake = app_server.slack, app_server.fake
    url = fake.response_url()
    body = urllib.parse.urlencode(
        {
            "team_id": "TREPLAY",
            "user_id": "U1",
            "command": "/deal",
            "text": "new Replayed 5k",
            "response_url": url,
            "trigger_id": "t1",
            "channel_id": "C1",
        }
    ).encode()
    headers = s.signed_headers(body, content_type="application/x-www-form-urlencoded")
    first = s.raw(body, headers)
    second = s.raw(body, headers)
    assert first.status == 200 and second.status == 200
    assert "Replayed" in first.json()["text"]  # the answer rides on the first ack
    assert second.body == ""  # the replay is acknowledged and dropped, unanswered
    assert _deal_count(app_server, "TREPLAY") == 1
    assert fake.calls_to("response_url") == []  # nor answered later through the response_url
    # The same command sent again (a new signature) is a new request and does act.
    again = s.command(
        "/deal",
        "new Replayed 5k",
        user_id="U1",
        team_id="TREPLAY",
        response_url=fake.response_url(),
    )
    assert "Replayed" in again.json()["text"]
    assert _deal_count(app_server, "TREPLAY") == 2


def test_event_retry_is_processed_once(app_server):
    s, fake = app_server.slack, app_server.fake
    event = {"type": "app_home_opened", "user": "U1", "tab": "home"}
    s.event(event, team_id="TREPLAY", event_id="Ev1")
    fake.wait_for("views.publish")
    s.event(event, team_id="TREPLAY", event_id="Ev1", retry_num=1)
    s.event(event, team_id="TREPLAY", event_id="Ev2")
    fake.wait_for_count("views.publish", 2)
    assert len(fake.calls_to("views.publish")) == 2
