"""Request verification (SPEC §8): forged, stale or unsigned Slack requests are refused
with 401 and change nothing; health and readiness endpoints answer. Every test runs on
SQLite and PostgreSQL.
"""

from __future__ import annotations

import json
import time
from urllib.parse import urlencode

import pytest
from helpers import (
    ADVANCE,
    all_text,
    create_deal,
    deal_row,
    run_command,
    snapshot,
    wait_response,
)
from slackclient import SlackRequests


def _command_body(text: str, url: str, user: str = "U1") -> bytes:
    return urlencode(
        {
            "token": "legacy-verification-token",
            "team_id": "T0TEST",
            "team_domain": "funnelbot-test",
            "channel_id": "C0TEST",
            "channel_name": "c0test",
            "user_id": user,
            "user_name": user.lower(),
            "command": "/deal",
            "text": text,
            "api_app_id": "A0TEST",
            "response_url": url,
            "trigger_id": "trig-1",
        }
    ).encode()


def _click_body(url: str, value: str) -> bytes:
    payload = {
        "type": "block_actions",
        "user": {"id": "U1", "username": "u1", "name": "u1", "team_id": "T0TEST"},
        "api_app_id": "A0TEST",
        "token": "legacy-verification-token",
        "trigger_id": "trig-2",
        "team": {"id": "T0TEST", "domain": "funnelbot-test"},
        "container": {"type": "message", "message_ts": "1.2", "channel_id": "C0TEST"},
        "channel": {"id": "C0TEST", "name": "c0test"},
        "response_url": url,
        "actions": [
            {
                "action_id": ADVANCE,
                "block_id": "b",
                "type": "button",
                "value": value,
                "action_ts": "1.3",
            }
        ],
    }
    return urlencode({"payload": json.dumps(payload)}).encode()


FORM = "application/x-www-form-urlencoded"


@pytest.fixture
def deal_app(app_server):
    create_deal(app_server, '"Acme Corp" 50k')
    return app_server


def _refused(deal_app, body: bytes, headers: dict[str, str], url: str) -> None:
    before = snapshot(deal_app)
    reply = deal_app.slack.raw(body, headers)
    assert reply.status == 401, reply
    # the app did nothing: a later, genuine request is answered, the forged one never is
    run_command(deal_app, "show #1")
    assert [
        c
        for c in deal_app.fake.calls_to("response_url")
        if c.params["_path"].endswith(url.rsplit("/", 1)[1])
    ] == []
    assert snapshot(deal_app) == before


def _forged_cases(slack: SlackRequests, body: bytes) -> dict[str, dict[str, str]]:
    now = int(time.time())
    wrong = SlackRequests(slack.base_url, "not-the-secret")
    good = slack.signed_headers(body, content_type=FORM)
    return {
        "wrong secret": wrong.signed_headers(body, content_type=FORM),
        "six minutes old": slack.signed_headers(body, content_type=FORM, timestamp=now - 360),
        "an hour old": slack.signed_headers(body, content_type=FORM, timestamp=now - 3600),
        "six minutes ahead": slack.signed_headers(body, content_type=FORM, timestamp=now + 360),
        "no signature": {k: v for k, v in good.items() if k != "X-Slack-Signature"},
        "no timestamp": {k: v for k, v in good.items() if k != "X-Slack-Request-Timestamp"},
        "no headers": {"Content-Type": FORM},
        "garbled signature": {**good, "X-Slack-Signature": "v0=" + "0" * 64},
        "old timestamp, signature of the new": {
            **good,
            "X-Slack-Request-Timestamp": str(now - 3600),
        },
    }


@pytest.mark.parametrize("request_kind", ["command", "click"])
def test_forged_or_stale_requests_are_refused(deal_app, request_kind: str) -> None:
    url = deal_app.fake.response_url()
    body = _command_body("won #1", url) if request_kind == "command" else _click_body(url, "1:1")
    for case, headers in _forged_cases(deal_app.slack, body).items():
        try:
            _refused(deal_app, body, headers, url)
        except AssertionError as exc:
            raise AssertionError(f"{request_kind} with {case}: {exc}") from exc
    assert deal_row(deal_app, 1)["status"] == "open"


def test_tampered_body_is_refused(deal_app) -> None:
    url = deal_app.fake.response_url()
    signed_for = _command_body("show #1", url)
    headers = deal_app.slack.signed_headers(signed_for, content_type=FORM)
    sent = _command_body("won #1", url)
    _refused(deal_app, sent, headers, url)
    assert deal_row(deal_app, 1)["status"] == "open"


def test_signed_request_within_five_minutes_is_accepted(deal_app) -> None:
    url = deal_app.fake.response_url()
    reply = deal_app.slack.command(
        "/deal", "won #1", user_id="U1", response_url=url, timestamp=int(time.time()) - 240
    )
    assert reply.status == 200
    assert "#1" in all_text(wait_response(deal_app, url))
    assert deal_row(deal_app, 1)["status"] == "won"


def test_health_and_readiness(app_server) -> None:
    health = app_server.slack.get("/healthz")
    assert health.status == 200
    ready = app_server.slack.get("/readyz")
    assert ready.status == 200


def test_unknown_path_is_404(app_server) -> None:
    assert app_server.slack.get("/nope").status == 404
