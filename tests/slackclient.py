"""Slack's side of the Bolt endpoint: real, signed requests to `POST /slack/events`.

Payloads follow what Slack sends
(https://docs.slack.dev/interactivity/implementing-slash-commands,
https://docs.slack.dev/reference/interaction-payloads,
https://docs.slack.dev/apis/events-api) and are signed the way Slack signs them
(https://docs.slack.dev/authentication/verifying-requests-from-slack): `v0=` +
HMAC-SHA256 of `v0:{timestamp}:{body}` with the signing secret.

Every sending method returns a `Reply`: a `(status, body_text)` tuple that also carries
`.response_url` (the one sent, if any), `.event_id` and `.json()`.
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import itertools
import json
import time
import uuid
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlencode, urlsplit

DEFAULT_TEAM = "T0TEST"
DEFAULT_CHANNEL = "C0TEST"
APP_ID = "A0TEST"
VERIFICATION_TOKEN = "legacy-verification-token"  # Slack still sends it; Bolt ignores it


class Reply(tuple):
    """`(status, body_text)` plus what the test may need to follow up on."""

    status: int
    body: str
    headers: dict[str, str]
    response_url: str | None
    event_id: str | None

    def __new__(
        cls,
        status: int,
        body: str,
        *,
        headers: Mapping[str, str] | None = None,
        response_url: str | None = None,
        event_id: str | None = None,
    ) -> Reply:
        self = super().__new__(cls, (status, body))
        self.status, self.body = status, body
        self.headers = dict(headers or {})
        self.response_url = response_url
        self.event_id = event_id
        return self

    def json(self) -> Any:
        """The body as JSON (Bolt answers an ack with content as JSON)."""
        return json.loads(self.body)


class SlackRequests:
    """Builds, signs and POSTs Slack-shaped requests to `{base_url}/slack/events`."""

    def __init__(
        self,
        base_url: str,
        signing_secret: str,
        *,
        path: str = "/slack/events",
        response_url_factory: Callable[[], str] | None = None,
        on_ack_answer: Callable[[str, str], None] | None = None,
        timeout: float = 30,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.signing_secret = signing_secret
        self.path = path
        self.timeout = timeout
        self.response_url_factory = response_url_factory
        # Slack shows a command's ack body as its answer: (response_url, body) goes here.
        self.on_ack_answer = on_ack_answer
        self._seq = itertools.count(1)

    # -- signing and transport -------------------------------------------------------------
    def sign(self, body: bytes | str, ts: int | str) -> str:
        """The X-Slack-Signature Slack would send for `body` at `ts`."""
        raw = body.encode() if isinstance(body, str) else body
        base = b"v0:" + str(ts).encode() + b":" + raw
        digest = hmac.new(self.signing_secret.encode(), base, hashlib.sha256).hexdigest()
        return f"v0={digest}"

    def signed_headers(
        self, body: bytes, *, content_type: str, timestamp: int | None = None
    ) -> dict[str, str]:
        ts = int(time.time()) if timestamp is None else int(timestamp)
        return {
            "Content-Type": content_type,
            "X-Slack-Request-Timestamp": str(ts),
            "X-Slack-Signature": self.sign(body, ts),
            "User-Agent": "Slackbot 1.0 (+https://api.slack.com/robots)",
        }

    def raw(
        self, body: bytes | str, headers: Mapping[str, str], *, path: str | None = None
    ) -> Reply:
        """POST `body` with exactly these headers (for forged/stale/garbled requests)."""
        data = body.encode() if isinstance(body, str) else body
        split = urlsplit(self.base_url)
        conn = http.client.HTTPConnection(split.hostname, split.port, timeout=self.timeout)
        try:
            conn.request("POST", split.path + (path or self.path), body=data, headers=dict(headers))
            resp = conn.getresponse()
            text = resp.read().decode("utf-8", errors="replace")
            return Reply(resp.status, text, headers=dict(resp.getheaders()))
        finally:
            conn.close()

    def get(self, path: str) -> Reply:
        """GET a path on the app (e.g. /healthz)."""
        split = urlsplit(self.base_url)
        conn = http.client.HTTPConnection(split.hostname, split.port, timeout=self.timeout)
        try:
            conn.request("GET", split.path + path)
            resp = conn.getresponse()
            text = resp.read().decode("utf-8", errors="replace")
            return Reply(resp.status, text, headers=dict(resp.getheaders()))
        finally:
            conn.close()

    def _post(
        self,
        body: bytes,
        content_type: str,
        *,
        timestamp: int | None,
        extra_headers: Mapping[str, str] | None = None,
        response_url: str | None = None,
        event_id: str | None = None,
    ) -> Reply:
        headers = self.signed_headers(body, content_type=content_type, timestamp=timestamp)
        headers.update(extra_headers or {})
        reply = self.raw(body, headers)
        reply.response_url, reply.event_id = response_url, event_id
        return reply

    def _form(self, fields: Mapping[str, Any], **kw: Any) -> Reply:
        body = urlencode({k: v for k, v in fields.items() if v is not None}).encode()
        return self._post(body, "application/x-www-form-urlencoded", **kw)

    def _response_url(self, given: str | None) -> str | None:
        if given is not None:
            return given
        return self.response_url_factory() if self.response_url_factory else None

    def _trigger_id(self) -> str:
        return f"trig-{next(self._seq)}.{uuid.uuid4().hex[:12]}"

    # -- slash commands --------------------------------------------------------------------
    def command(
        self,
        command: str,
        text: str = "",
        *,
        user_id: str,
        team_id: str = DEFAULT_TEAM,
        channel_id: str = DEFAULT_CHANNEL,
        channel_name: str | None = None,
        response_url: str | None = None,
        trigger_id: str | None = None,
        user_name: str | None = None,
        timestamp: int | None = None,
    ) -> Reply:
        """A slash command, form-encoded exactly as Slack posts it."""
        url = self._response_url(response_url)
        fields = {
            "token": VERIFICATION_TOKEN,
            "team_id": team_id,
            "team_domain": "funnelbot-test",
            "channel_id": channel_id,
            "channel_name": channel_name or _channel_name(channel_id),
            "user_id": user_id,
            "user_name": user_name or user_id.lower(),
            "command": command if command.startswith("/") else "/" + command,
            "text": text,
            "api_app_id": APP_ID,
            "is_enterprise_install": "false",
            "response_url": url or "",
            "trigger_id": trigger_id or self._trigger_id(),
        }
        reply = self._form(fields, timestamp=timestamp, response_url=url)
        if self.on_ack_answer and url and reply.status == 200 and reply.body.strip():
            self.on_ack_answer(url, reply.body)
        return reply

    # -- interactivity ---------------------------------------------------------------------
    def interactive(self, payload: Mapping[str, Any], *, timestamp: int | None = None) -> Reply:
        """Any interaction payload, sent as Slack does: form field `payload=<json>`."""
        return self._form(
            {"payload": json.dumps(payload, ensure_ascii=False)},
            timestamp=timestamp,
            response_url=payload.get("response_url"),
        )

    def block_action(
        self,
        *,
        user_id: str,
        action_id: str,
        value: str | None = None,
        block_id: str = "b",
        team_id: str = DEFAULT_TEAM,
        channel_id: str | None = DEFAULT_CHANNEL,
        response_url: str | None = None,
        message: Mapping[str, Any] | None = None,
        container: Mapping[str, Any] | None = None,
        view: Mapping[str, Any] | None = None,
        action_type: str = "button",
        action_extra: Mapping[str, Any] | None = None,
        state_values: Mapping[str, Any] | None = None,
        trigger_id: str | None = None,
        timestamp: int | None = None,
    ) -> Reply:
        """A `block_actions` payload for one clicked element.

        A click in a message (the default) carries channel, message and response_url;
        pass `view=` for a click in a modal or on the App Home (container type `view`, no
        channel or response_url, like Slack). `action_extra` adds element fields such as
        `selected_option` or `selected_date`.
        """
        now = f"{time.time():.6f}"
        action: dict[str, Any] = {
            "action_id": action_id,
            "block_id": block_id,
            "type": action_type,
            "action_ts": now,
        }
        if value is not None:
            action["value"] = value
        if action_type == "button":
            action.setdefault("text", {"type": "plain_text", "text": action_id, "emoji": True})
        action.update(action_extra or {})
        payload: dict[str, Any] = {
            "type": "block_actions",
            "user": _user(user_id, team_id),
            "api_app_id": APP_ID,
            "token": VERIFICATION_TOKEN,
            "trigger_id": trigger_id or self._trigger_id(),
            "team": {"id": team_id, "domain": "funnelbot-test"},
            "enterprise": None,
            "is_enterprise_install": False,
            "actions": [action],
        }
        if view is not None:
            payload["container"] = dict(
                container or {"type": "view", "view_id": view.get("id", "V1")}
            )
            full_view = {"id": "V1", "team_id": team_id, "type": "modal", "state": {"values": {}}}
            full_view.update(view)
            if state_values is not None:
                full_view["state"] = {"values": dict(state_values)}
            payload["view"] = full_view
            if response_url is not None:
                payload["response_url"] = response_url
        else:
            url = self._response_url(response_url)
            msg = dict(message) if message is not None else None
            ts = (msg or {}).get("ts") or f"{int(time.time())}.000100"
            payload["container"] = dict(
                container
                or {
                    "type": "message",
                    "message_ts": ts,
                    "channel_id": channel_id,
                    "is_ephemeral": message is None,
                }
            )
            if channel_id is not None:
                payload["channel"] = {"id": channel_id, "name": _channel_name(channel_id)}
            if msg is not None:
                msg.setdefault("type", "message")
                msg.setdefault("ts", ts)
                payload["message"] = msg
            payload["state"] = {"values": dict(state_values or {})}
            payload["response_url"] = url
        return self.interactive(payload, timestamp=timestamp)

    def view_submission(
        self,
        *,
        user_id: str,
        callback_id: str,
        state_values: Mapping[str, Any],
        private_metadata: str = "",
        team_id: str = DEFAULT_TEAM,
        view_id: str = "V1",
        view_extra: Mapping[str, Any] | None = None,
        timestamp: int | None = None,
    ) -> Reply:
        """A modal submitted: state_values is `{block_id: {action_id: {type, value...}}}`."""
        view: dict[str, Any] = {
            "id": view_id,
            "team_id": team_id,
            "type": "modal",
            "callback_id": callback_id,
            "private_metadata": private_metadata,
            "state": {"values": dict(state_values)},
            "hash": uuid.uuid4().hex[:16],
            "title": {"type": "plain_text", "text": "funnelbot"},
            "blocks": [],
            "root_view_id": view_id,
            "previous_view_id": None,
            "app_id": APP_ID,
            "bot_id": "BBOT",
            "external_id": "",
        }
        view.update(view_extra or {})
        payload = {
            "type": "view_submission",
            "team": {"id": team_id, "domain": "funnelbot-test"},
            "user": _user(user_id, team_id),
            "api_app_id": APP_ID,
            "token": VERIFICATION_TOKEN,
            "trigger_id": self._trigger_id(),
            "view": view,
            "response_urls": [],
            "is_enterprise_install": False,
            "enterprise": None,
        }
        return self.interactive(payload, timestamp=timestamp)

    def view_closed(
        self, *, user_id: str, callback_id: str, team_id: str = DEFAULT_TEAM, view_id: str = "V1"
    ) -> Reply:
        payload = {
            "type": "view_closed",
            "team": {"id": team_id, "domain": "funnelbot-test"},
            "user": _user(user_id, team_id),
            "api_app_id": APP_ID,
            "token": VERIFICATION_TOKEN,
            "view": {"id": view_id, "type": "modal", "callback_id": callback_id, "state": {}},
            "is_cleared": False,
        }
        return self.interactive(payload)

    # -- Events API ------------------------------------------------------------------------
    def event(
        self,
        event: Mapping[str, Any],
        *,
        team_id: str = DEFAULT_TEAM,
        retry_num: int | None = None,
        retry_reason: str = "http_timeout",
        event_id: str | None = None,
        timestamp: int | None = None,
    ) -> Reply:
        """An `event_callback` envelope; pass the same `event_id` with `retry_num` to retry."""
        eid = event_id or f"Ev{uuid.uuid4().hex[:10].upper()}"
        envelope = {
            "token": VERIFICATION_TOKEN,
            "team_id": team_id,
            "api_app_id": APP_ID,
            "event": dict(event),
            "type": "event_callback",
            "event_id": eid,
            "event_time": int(time.time()),
            "authorizations": [
                {
                    "enterprise_id": None,
                    "team_id": team_id,
                    "user_id": "UBOT",
                    "is_bot": True,
                    "is_enterprise_install": False,
                }
            ],
            "is_ext_shared_channel": False,
            "event_context": f"4-{uuid.uuid4().hex}",
        }
        extra = {}
        if retry_num is not None:
            extra = {"X-Slack-Retry-Num": str(retry_num), "X-Slack-Retry-Reason": retry_reason}
        body = json.dumps(envelope, ensure_ascii=False).encode()
        return self._post(
            body, "application/json", timestamp=timestamp, extra_headers=extra, event_id=eid
        )

    def app_home_opened(self, *, user_id: str, team_id: str = DEFAULT_TEAM) -> Reply:
        return self.event(
            {
                "type": "app_home_opened",
                "user": user_id,
                "channel": "D" + user_id,
                "tab": "home",
                "event_ts": f"{time.time():.6f}",
            },
            team_id=team_id,
        )

    def url_verification(self, challenge: str = "challenge-token") -> Reply:
        body = json.dumps(
            {"token": VERIFICATION_TOKEN, "challenge": challenge, "type": "url_verification"}
        ).encode()
        return self._post(body, "application/json", timestamp=None)


def _user(user_id: str, team_id: str) -> dict[str, Any]:
    return {"id": user_id, "username": user_id.lower(), "name": user_id.lower(), "team_id": team_id}


def _channel_name(channel_id: str) -> str:
    return "directmessage" if channel_id.startswith("D") else channel_id.lower()
