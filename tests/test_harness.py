"""Tests of the test harness itself: the fake Slack, the signed requests, the databases.

None of these need funnelbot; they pin down that the harness behaves like the real
thing, so a product test failing means the product is wrong.
"""

from __future__ import annotations

import json
import threading
import time

import pytest
import sqlalchemy as sa
from conftest import PgDatabases, serve_wsgi
from fakeslack import FakeSlack, check_message_blocks, check_view
from slack_bolt import App
from slack_bolt.adapter.wsgi import SlackRequestHandler
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_handlers import RateLimitErrorRetryHandler
from slack_sdk.webhook import WebhookClient
from slackclient import SlackRequests

BLOCKS = [
    {"type": "header", "text": {"type": "plain_text", "text": "商机 #42"}},
    {
        "type": "actions",
        "block_id": "deal:42",
        "elements": [
            {
                "type": "button",
                "action_id": "advance",
                "value": "42:3",
                "text": {"type": "plain_text", "text": "Advance ▸"},
            }
        ],
    },
]


def client_for(fake: FakeSlack, **kw: object) -> WebClient:
    return WebClient(token="xoxb-test", base_url=fake.url, **kw)  # type: ignore[arg-type]


def test_records_post_message_with_blocks_decoded(fake_slack: FakeSlack) -> None:
    resp = client_for(fake_slack).chat_postMessage(channel="C1", text="fallback", blocks=BLOCKS)
    assert resp["ok"] and resp["channel"] == "C1" and resp["ts"]

    call = fake_slack.wait_for("chat.postMessage")
    assert call.token == "xoxb-test"
    assert call.params["channel"] == "C1"
    assert call.params["blocks"] == BLOCKS  # a list again, not JSON text
    assert fake_slack.message("C1", resp["ts"])["text"] == "fallback"


def test_decodes_json_fields_sent_in_a_form_body(fake_slack: FakeSlack) -> None:
    client = client_for(fake_slack)
    client.api_call(
        "chat.postEphemeral",
        params={"channel": "C1", "user": "U1", "text": "t", "blocks": json.dumps(BLOCKS)},
    )
    call = fake_slack.wait_for("chat.postEphemeral")
    assert call.params["blocks"] == BLOCKS
    assert call.params["user"] == "U1"


def test_ts_increments_and_update_keeps_ts(fake_slack: FakeSlack) -> None:
    client = client_for(fake_slack)
    first = client.chat_postMessage(channel="C1", text="a")["ts"]
    second = client.chat_postMessage(channel="C1", text="b")["ts"]
    assert float(second) > float(first)
    updated = client.chat_update(channel="C1", ts=first, text="a2")
    assert updated["ts"] == first
    assert fake_slack.message("C1", first)["text"] == "a2"


def test_rate_limit_is_retried_by_web_client(fake_slack: FakeSlack) -> None:
    fake_slack.fail_next("chat.postMessage", status=429, retry_after=0)
    client = client_for(fake_slack, retry_handlers=[RateLimitErrorRetryHandler(max_retry_count=1)])

    resp = client.chat_postMessage(channel="C1", text="hello")

    assert resp["ok"]
    attempts = fake_slack.calls_to("chat.postMessage")
    assert [(c.status, c.ok) for c in attempts] == [(429, False), (200, True)]
    assert fake_slack.wait_for("chat.postMessage").params["text"] == "hello"


def test_fail_next_with_error_answers_ok_false(fake_slack: FakeSlack) -> None:
    fake_slack.fail_next("chat.postMessage", error="channel_not_found", times=2)
    client = client_for(fake_slack)
    for _ in range(2):
        with pytest.raises(SlackApiError) as err:
            client.chat_postMessage(channel="C404", text="x")
        assert err.value.response["error"] == "channel_not_found"
    assert client.chat_postMessage(channel="C404", text="x")["ok"]
    assert len(fake_slack.calls_to("chat.postMessage", ok=False)) == 2


def test_invalid_block_kit_is_refused_like_slack(fake_slack: FakeSlack) -> None:
    client = client_for(fake_slack)
    too_long = [{"type": "header", "text": {"type": "plain_text", "text": "x" * 151}}]
    with pytest.raises(SlackApiError) as err:
        client.chat_postMessage(channel="C1", text="t", blocks=too_long)
    assert err.value.response["error"] == "invalid_blocks"
    assert "blocks[0].text" in err.value.response["errors"][0]

    assert check_message_blocks(BLOCKS) == []
    assert check_message_blocks([{"type": "divider"}] * 51)
    dup = [BLOCKS[1], BLOCKS[1]]
    assert any("duplicate block_id" in p for p in check_message_blocks(dup))
    modal = {"type": "modal", "title": {"type": "plain_text", "text": "New deal"}, "blocks": []}
    assert check_view(modal) == []
    long_title = dict(modal, title={"type": "plain_text", "text": "x" * 25})
    assert check_view(long_title)


def test_views_users_and_conversations(fake_slack: FakeSlack) -> None:
    client = client_for(fake_slack)
    modal = {"type": "modal", "title": {"type": "plain_text", "text": "New deal"}, "blocks": []}
    opened = client.views_open(trigger_id="trig-1", view=modal)
    assert opened["view"]["id"].startswith("V")
    assert fake_slack.wait_for("views.open").params["view"] == modal
    assert client.views_publish(user_id="U1", view={"type": "home", "blocks": []})["ok"]

    assert client.conversations_open(users="U1")["channel"]["id"] == "DU1"
    user = client.users_info(user="U1")["user"]
    assert (user["tz"], user["locale"]) == ("UTC", "en-US")

    fake_slack.users["U2"] = {
        "locale": "zh-CN",
        "tz": "Asia/Shanghai",
        "profile": {"email": "li@x.cn"},
    }
    assert client.users_info(user="U2")["user"]["locale"] == "zh-CN"
    assert client.users_lookupByEmail(email="LI@x.cn")["user"]["id"] == "U2"
    with pytest.raises(SlackApiError):
        client.users_lookupByEmail(email="nobody@x.cn")

    fake_slack.usergroups["S1"] = ["U1", "U2"]
    assert client.usergroups_users_list(usergroup="S1")["users"] == ["U1", "U2"]
    assert client.auth_test()["user_id"] == "UBOT"
    assert client.api_call("reactions.add", params={"name": "x"})["ok"]


def test_response_url_posts_are_recorded(fake_slack: FakeSlack) -> None:
    url = fake_slack.response_url()
    resp = WebhookClient(url).send(text="done", blocks=BLOCKS, response_type="ephemeral")
    assert resp.status_code == 200
    call = fake_slack.wait_for("response_url", lambda c: c.params["_path"].endswith(url[-32:]))
    assert call.params["text"] == "done" and call.params["blocks"] == BLOCKS


def test_file_upload_v2_round_trip(fake_slack: FakeSlack) -> None:
    png = b"\x89PNG\r\n\x1a\n" + b"0" * 100
    resp = client_for(fake_slack).files_upload_v2(
        channel="C1", content=png, filename="funnel.png", title="Funnel", initial_comment="hi"
    )
    assert resp["ok"]
    upload = fake_slack.wait_for("upload")
    assert upload.params["length"] == len(png) and upload.body == png
    fid = upload.params["file_id"]
    assert fake_slack.files[fid]["bytes"] == png
    assert fake_slack.files[fid]["channel_id"] == "C1"
    assert fake_slack.wait_for("files.completeUploadExternal").params["files"][0]["id"] == fid


def test_wait_for_raises_listing_calls_on_timeout(fake_slack: FakeSlack) -> None:
    client_for(fake_slack).chat_postMessage(channel="C1", text="only this")
    started = time.monotonic()
    with pytest.raises(AssertionError) as err:
        fake_slack.wait_for("chat.postMessage", lambda c: c.params["channel"] == "C2", timeout=0.3)
    assert time.monotonic() - started < 5
    assert "chat.postMessage" in str(err.value) and "only this" in str(err.value)


def test_wait_for_wakes_on_a_later_call(fake_slack: FakeSlack) -> None:
    client = client_for(fake_slack)
    timer = threading.Timer(0.2, lambda: client.chat_postMessage(channel="C9", text="late"))
    timer.start()
    try:
        call = fake_slack.wait_for("chat.postMessage", timeout=10)
    finally:
        timer.join()
    assert call.params["channel"] == "C9"
    fake_slack.reset()
    assert fake_slack.calls == []


# ---- signed requests against a real Bolt app (no funnelbot needed) -----------------------


@pytest.fixture
def mini_bolt(fake_slack: FakeSlack):
    app = App(
        signing_secret="s3cret",
        client=WebClient(token="xoxb-test", base_url=fake_slack.url),
    )

    @app.command("/deal")
    def deal(ack, respond, command, client):  # type: ignore[no-untyped-def]
        ack(text=f"got {command['text']}")
        respond(text=f"responded to {command['user_id']}")
        client.chat_postMessage(channel=command["channel_id"], text=command["text"])

    @app.action("advance")
    def advance(ack, body, respond):  # type: ignore[no-untyped-def]
        ack()
        respond(text=f"advance {body['actions'][0]['value']} by {body['user']['id']}")

    @app.view("new_deal")
    def new_deal(ack, view):  # type: ignore[no-untyped-def]
        name = view["state"]["values"]["name"]["name"]["value"]
        if not name:
            ack(response_action="errors", errors={"name": "Give the deal a name"})
            return
        ack()

    @app.event("app_home_opened")
    def home(event, client):  # type: ignore[no-untyped-def]
        client.views_publish(user_id=event["user"], view={"type": "home", "blocks": []})

    with serve_wsgi(SlackRequestHandler(app)) as url:
        yield SlackRequests(url, "s3cret", response_url_factory=fake_slack.response_url)


def test_signed_command_reaches_bolt(mini_bolt: SlackRequests, fake_slack: FakeSlack) -> None:
    reply = mini_bolt.command("/deal", "new Acme 5万 <!channel>", user_id="U1")
    status, body = reply
    assert status == 200, body
    assert body == "got new Acme 5万 <!channel>"  # Bolt answers a text-only ack as plain text
    assert (
        fake_slack.wait_for(
            "response_url",
            lambda c: c.params["_path"] == "/response/" + reply.response_url.rsplit("/", 1)[1],
        ).params["text"]
        == "responded to U1"
    )
    assert fake_slack.wait_for("chat.postMessage").params["channel"] == "C0TEST"


def test_forged_and_stale_signatures_are_refused(mini_bolt: SlackRequests) -> None:
    stale = mini_bolt.command("/deal", "x", user_id="U1", timestamp=int(time.time()) - 600)
    assert stale.status == 401
    body = b"command=%2Fdeal&text=x&user_id=U1"
    ts = int(time.time())
    forged = mini_bolt.raw(
        body,
        {
            "Content-Type": "application/x-www-form-urlencoded",
            "X-Slack-Request-Timestamp": str(ts),
            "X-Slack-Signature": "v0=" + "0" * 64,
        },
    )
    assert forged.status == 401
    good = mini_bolt.raw(
        body,
        {
            "Content-Type": "application/x-www-form-urlencoded",
            "X-Slack-Request-Timestamp": str(ts),
            "X-Slack-Signature": mini_bolt.sign(body, ts),
        },
    )
    assert good.status != 401


def test_block_action_view_submission_and_event(
    mini_bolt: SlackRequests, fake_slack: FakeSlack
) -> None:
    url = fake_slack.response_url("click-1")
    assert (
        mini_bolt.block_action(
            user_id="U1", action_id="advance", value="42:3", response_url=url
        ).status
        == 200
    )
    assert fake_slack.wait_for("response_url").params["text"] == "advance 42:3 by U1"

    empty = {"name": {"name": {"type": "plain_text_input", "value": None}}}
    reply = mini_bolt.view_submission(user_id="U1", callback_id="new_deal", state_values=empty)
    assert reply.status == 200
    assert reply.json() == {"response_action": "errors", "errors": {"name": "Give the deal a name"}}
    filled = {"name": {"name": {"type": "plain_text_input", "value": "Acme"}}}
    ok = mini_bolt.view_submission(user_id="U1", callback_id="new_deal", state_values=filled)
    assert ok.status == 200 and ok.body == ""

    assert mini_bolt.app_home_opened(user_id="U7").status == 200
    assert fake_slack.wait_for("views.publish").params["user_id"] == "U7"
    retried = mini_bolt.event({"type": "app_home_opened", "user": "U7", "tab": "home"}, retry_num=1)
    assert retried.status == 200


# ---- databases ------------------------------------------------------------------------


def test_database_answers_select_1(empty_db_url: str) -> None:
    engine = sa.create_engine(empty_db_url)
    try:
        with engine.connect() as conn:
            assert conn.execute(sa.text("select 1")).scalar_one() == 1
            if engine.dialect.name == "postgresql":
                assert engine.dialect.driver == "psycopg"
    finally:
        engine.dispose()


def test_databases_clone_from_a_template(pg_databases: PgDatabases) -> None:
    template = pg_databases.new_name()
    clone = pg_databases.new_name()
    engine = sa.create_engine(pg_databases.create(template))
    try:
        with engine.begin() as conn:
            conn.execute(sa.text("create table t (x text)"))
            conn.execute(sa.text("insert into t values ('商机')"))
    finally:
        engine.dispose()
    engine = sa.create_engine(pg_databases.create(clone, template=template))
    try:
        with engine.connect() as conn:
            assert conn.execute(sa.text("select x from t")).scalar_one() == "商机"
    finally:
        engine.dispose()
        pg_databases.drop(clone)
        pg_databases.drop(template)
    with pg_databases.admin.connect() as conn:
        left = conn.execute(
            sa.text("select count(*) from pg_database where datname in (:a, :b)"),
            {"a": template, "b": clone},
        ).scalar_one()
    assert left == 0
