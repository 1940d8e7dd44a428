"""A fake Slack Web API on 127.0.0.1 that records every call the product makes.

The product's real `slack_sdk` client is pointed at it through `SLACK_API_URL`
(`fake.url`, ending in `/api/`). It answers the methods funnelbot uses the way Slack
does (https://docs.slack.dev/reference/methods), including Slack's own Block Kit limits
(https://docs.slack.dev/reference/block-kit/blocks): a message or view Slack would
refuse with `invalid_blocks` / `invalid_arguments` is refused here too, so a test can't
pass on something real Slack would reject. Besides `/api/<method>` it serves
`response_url` posts (`/response/<id>`) and the upload URLs handed out by
`files.getUploadURLExternal` (`/upload/<file id>`).

    fake = FakeSlack().start()
    client = WebClient(token="xoxb-test", base_url=fake.url)
    client.chat_postMessage(channel="C1", text="hi")
    call = fake.wait_for("chat.postMessage", lambda c: c.params["channel"] == "C1")
    fake.stop()
"""

from __future__ import annotations

import contextlib
import email.parser
import email.policy
import itertools
import json
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

TEAM_ID = "T0TEST"
TEAM_NAME = "Funnelbot Test"
BOT_USER_ID = "UBOT"
BOT_ID = "BBOT"
APP_ID = "A0TEST"

# Form fields that carry JSON text (slack_sdk and Bolt send some arguments this way).
JSON_FIELDS = frozenset(
    {"blocks", "attachments", "view", "files", "metadata", "outputs", "unfurls", "user_auth_blocks"}
)


@dataclass
class Call:
    """One request the product sent to the fake."""

    method: str
    params: dict[str, Any]
    token: str | None
    at: float
    status: int = 200
    ok: bool = True
    error: str | None = None
    path: str = ""
    body: bytes = b""
    response: dict[str, Any] = field(default_factory=dict)

    def __repr__(self) -> str:
        shown = json.dumps(
            {k: v for k, v in self.params.items() if k != "bytes"}, ensure_ascii=False, default=str
        )
        if len(shown) > 300:
            shown = shown[:300] + "…"
        state = "ok" if self.ok else f"{self.status} {self.error}"
        return f"<Call {self.method} [{state}] {shown}>"


@dataclass
class _Fault:
    status: int
    error: str | None
    retry_after: int | None
    times: int


# --------------------------------------------------------------------------------------
# Block Kit limits, as Slack enforces them


class BlockKitError(ValueError):
    """A payload real Slack would refuse; the message names each problem and its path."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


BLOCK_TYPES = frozenset(
    {
        "actions",
        "context",
        "divider",
        "file",
        "header",
        "image",
        "input",
        "markdown",
        "rich_text",
        "section",
        "video",
        "call",
        "table",
        "context_actions",
    }
)


class _Checker:
    def __init__(self) -> None:
        self.problems: list[str] = []

    def fail(self, path: str, msg: str) -> None:
        self.problems.append(f"{path}: {msg}")

    def text(
        self,
        obj: Any,
        path: str,
        *,
        max_len: int,
        plain_only: bool = False,
        min_len: int = 1,
    ) -> None:
        if not isinstance(obj, dict):
            self.fail(path, "must be a text object")
            return
        kind = obj.get("type")
        if kind not in ("plain_text", "mrkdwn") or (plain_only and kind != "plain_text"):
            self.fail(
                path, f"type must be {'plain_text' if plain_only else 'plain_text or mrkdwn'}"
            )
        text = obj.get("text")
        if not isinstance(text, str):
            self.fail(path, "text must be a string")
            return
        if len(text) < min_len:
            self.fail(path, f"text must be at least {min_len} character(s)")
        if len(text) > max_len:
            self.fail(path, f"text must be at most {max_len} characters (is {len(text)})")

    def string(self, value: Any, path: str, *, max_len: int, required: bool = False) -> None:
        if value is None:
            if required:
                self.fail(path, "is required")
            return
        if not isinstance(value, str):
            self.fail(path, "must be a string")
        elif len(value) > max_len:
            self.fail(path, f"must be at most {max_len} characters (is {len(value)})")

    def option(self, opt: Any, path: str) -> None:
        if not isinstance(opt, dict):
            self.fail(path, "must be an option object")
            return
        self.text(opt.get("text"), f"{path}.text", max_len=75)
        self.string(opt.get("value"), f"{path}.value", max_len=150, required=True)

    def element(self, el: Any, path: str, action_ids: set[str]) -> None:
        if not isinstance(el, dict) or not isinstance(el.get("type"), str):
            self.fail(path, "must be an element object with a type")
            return
        kind = el["type"]
        action_id = el.get("action_id")
        self.string(action_id, f"{path}.action_id", max_len=255)
        if isinstance(action_id, str):
            if action_id in action_ids:
                self.fail(f"{path}.action_id", f"duplicate action_id {action_id!r} in one block")
            action_ids.add(action_id)
        if kind == "button":
            self.text(el.get("text"), f"{path}.text", max_len=75, plain_only=True)
            self.string(el.get("value"), f"{path}.value", max_len=2000)
            self.string(el.get("url"), f"{path}.url", max_len=3000)
            if el.get("style") not in (None, "primary", "danger"):
                self.fail(f"{path}.style", "must be primary or danger")
        elif kind == "image":
            self.string(el.get("alt_text"), f"{path}.alt_text", max_len=2000, required=True)
        if "placeholder" in el:
            self.text(el["placeholder"], f"{path}.placeholder", max_len=150, plain_only=True)
        options = el.get("options")
        if options is not None:
            if not isinstance(options, list) or not 1 <= len(options) <= 100:
                self.fail(f"{path}.options", "must be a list of 1 to 100 options")
            else:
                for i, opt in enumerate(options):
                    self.option(opt, f"{path}.options[{i}]")
        if "confirm" in el and isinstance(el["confirm"], dict):
            c = el["confirm"]
            self.text(c.get("title"), f"{path}.confirm.title", max_len=100, plain_only=True)
            self.text(c.get("text"), f"{path}.confirm.text", max_len=300)
            self.text(c.get("confirm"), f"{path}.confirm.confirm", max_len=30, plain_only=True)
            self.text(c.get("deny"), f"{path}.confirm.deny", max_len=30, plain_only=True)

    def block(self, b: Any, path: str, block_ids: set[str]) -> None:
        if not isinstance(b, dict):
            self.fail(path, "must be a block object")
            return
        kind = b.get("type")
        if kind not in BLOCK_TYPES:
            self.fail(f"{path}.type", f"unknown block type {kind!r}")
            return
        block_id = b.get("block_id")
        self.string(block_id, f"{path}.block_id", max_len=255)
        if isinstance(block_id, str):
            if block_id in block_ids:
                self.fail(f"{path}.block_id", f"duplicate block_id {block_id!r}")
            block_ids.add(block_id)
        action_ids: set[str] = set()
        if kind == "section":
            if "text" not in b and "fields" not in b:
                self.fail(path, "a section needs text or fields")
            if "text" in b:
                self.text(b["text"], f"{path}.text", max_len=3000)
            if "fields" in b:
                fields_ = b["fields"]
                if not isinstance(fields_, list) or not 1 <= len(fields_) <= 10:
                    self.fail(f"{path}.fields", "must be a list of 1 to 10 text objects")
                else:
                    for i, f in enumerate(fields_):
                        self.text(f, f"{path}.fields[{i}]", max_len=2000)
            if "accessory" in b:
                self.element(b["accessory"], f"{path}.accessory", action_ids)
        elif kind == "header":
            self.text(b.get("text"), f"{path}.text", max_len=150, plain_only=True)
        elif kind == "context":
            els = b.get("elements")
            if not isinstance(els, list) or not 1 <= len(els) <= 10:
                self.fail(f"{path}.elements", "must be a list of 1 to 10 elements")
            else:
                for i, el in enumerate(els):
                    if isinstance(el, dict) and el.get("type") in ("plain_text", "mrkdwn"):
                        self.text(el, f"{path}.elements[{i}]", max_len=3000)
                    elif isinstance(el, dict) and el.get("type") == "image":
                        self.string(
                            el.get("alt_text"),
                            f"{path}.elements[{i}].alt_text",
                            max_len=2000,
                            required=True,
                        )
                    else:
                        self.fail(f"{path}.elements[{i}]", "must be a text or image element")
        elif kind == "actions":
            els = b.get("elements")
            if not isinstance(els, list) or not 1 <= len(els) <= 25:
                self.fail(f"{path}.elements", "must be a list of 1 to 25 elements")
            else:
                for i, el in enumerate(els):
                    self.element(el, f"{path}.elements[{i}]", action_ids)
        elif kind == "input":
            self.text(b.get("label"), f"{path}.label", max_len=2000, plain_only=True)
            if "hint" in b:
                self.text(b["hint"], f"{path}.hint", max_len=2000, plain_only=True)
            if "element" not in b:
                self.fail(f"{path}.element", "is required")
            else:
                self.element(b["element"], f"{path}.element", action_ids)
        elif kind == "image":
            self.string(b.get("image_url"), f"{path}.image_url", max_len=3000)
            self.string(b.get("alt_text"), f"{path}.alt_text", max_len=2000, required=True)
            if "title" in b:
                self.text(b["title"], f"{path}.title", max_len=2000, plain_only=True)
            if not b.get("image_url") and not b.get("slack_file"):
                self.fail(path, "an image block needs image_url or slack_file")

    def blocks(self, blocks: Any, path: str, *, max_blocks: int) -> None:
        if not isinstance(blocks, list):
            self.fail(path, "must be a list of blocks")
            return
        if len(blocks) > max_blocks:
            self.fail(path, f"at most {max_blocks} blocks are allowed (got {len(blocks)})")
        block_ids: set[str] = set()
        for i, b in enumerate(blocks):
            self.block(b, f"{path}[{i}]", block_ids)


def check_message_blocks(blocks: Any) -> list[str]:
    """Problems Slack would report for a message's `blocks` (empty list: acceptable)."""
    checker = _Checker()
    checker.blocks(blocks, "blocks", max_blocks=50)
    return checker.problems


def check_view(view: Any) -> list[str]:
    """Problems Slack would report for a modal or Home tab view (empty list: acceptable)."""
    checker = _Checker()
    if not isinstance(view, dict):
        return ["view: must be an object"]
    kind = view.get("type")
    if kind not in ("modal", "home"):
        checker.fail("view.type", "must be modal or home")
    checker.blocks(view.get("blocks"), "view.blocks", max_blocks=100)
    checker.string(view.get("callback_id"), "view.callback_id", max_len=255)
    checker.string(view.get("private_metadata"), "view.private_metadata", max_len=3000)
    checker.string(view.get("external_id"), "view.external_id", max_len=255)
    if kind == "modal":
        checker.text(view.get("title"), "view.title", max_len=24, plain_only=True)
        for key in ("submit", "close"):
            if key in view:
                checker.text(view[key], f"view.{key}", max_len=24, plain_only=True)
        blocks = view.get("blocks") if isinstance(view.get("blocks"), list) else []
        has_input = any(isinstance(b, dict) and b.get("type") == "input" for b in blocks)
        if has_input and "submit" not in view:
            checker.fail("view.submit", "is required when the view has input blocks")
    return checker.problems


def assert_valid_message(payload: dict[str, Any]) -> None:
    """Raise BlockKitError if Slack would refuse this message (e.g. an ack() body)."""
    problems = check_message_blocks(payload["blocks"]) if "blocks" in payload else []
    if problems:
        raise BlockKitError(problems)


# --------------------------------------------------------------------------------------


def _decode_json_fields(params: dict[str, Any]) -> dict[str, Any]:
    for key in JSON_FIELDS & params.keys():
        value = params[key]
        if isinstance(value, str) and value[:1] in ("[", "{"):
            # Left as sent when it isn't JSON; a test asserting on it shows the raw text.
            with contextlib.suppress(ValueError):
                params[key] = json.loads(value)
    return params


def _parse_multipart(content_type: str, body: bytes) -> dict[str, Any]:
    raw = f"Content-Type: {content_type}\r\n\r\n".encode() + body
    msg = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(raw)
    params: dict[str, Any] = {}
    for part in msg.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if not name:
            continue
        payload = part.get_payload(decode=True) or b""
        if part.get_filename():
            params[name] = {"filename": part.get_filename(), "bytes": payload}
        else:
            params[name] = payload.decode(part.get_content_charset() or "utf-8")
    return params


class FakeSlack:
    """A threaded HTTP server that plays Slack's Web API; see the module docstring."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, *, validate_blocks: bool = True):
        self.validate_blocks = validate_blocks
        self.users: dict[str, dict[str, Any]] = {}
        self.usergroups: dict[str, list[str]] = {}
        # The workspace that oauth.v2.access installs into (team id, name).
        self.oauth_team: tuple[str, str] = ("T0OAUTH", "OAuth Co")
        self.files: dict[str, dict[str, Any]] = {}
        # Latest version of each message posted or updated: (channel, ts) -> params.
        self.messages: dict[tuple[str, str], dict[str, Any]] = {}
        self._calls: list[Call] = []
        self._faults: dict[str, list[_Fault]] = {}
        self._cond = threading.Condition()
        self._counter = itertools.count(1)
        self._server = ThreadingHTTPServer((host, port), _make_handler(self))
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None
        h, p = self._server.server_address[:2]
        self.base_url = f"http://{h}:{p}"
        self.url = f"{self.base_url}/api/"

    # -- lifecycle -------------------------------------------------------------------
    def start(self) -> FakeSlack:
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.name = "fake-slack"
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        if self._thread:
            self._thread.join(timeout=5)

    def __enter__(self) -> FakeSlack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- test API ------------------------------------------------------------------------
    @property
    def calls(self) -> list[Call]:
        """A snapshot of every call so far, in arrival order."""
        with self._cond:
            return list(self._calls)

    def calls_to(self, method: str, *, ok: bool | None = None) -> list[Call]:
        """Calls to `method`; ok=True/False keeps only answered-ok / refused ones."""
        return [c for c in self.calls if c.method == method and (ok is None or c.ok == ok)]

    def wait_for(
        self,
        method: str,
        predicate: Callable[[Call], bool] | None = None,
        timeout: float = 10,
        *,
        ok: bool | None = True,
    ) -> Call:
        """The first call to `method` matching `predicate`, waiting up to `timeout` seconds.

        By default only calls the fake answered with ok count (a refused or rate-limited
        attempt is not what a test waits for); pass ok=None to match any, ok=False for
        refused ones. Raises AssertionError listing every recorded call on timeout.
        """
        deadline = time.monotonic() + timeout

        def match() -> Call | None:
            for c in self._calls:
                if c.method != method or (ok is not None and c.ok != ok):
                    continue
                if predicate is None or predicate(c):
                    return c
            return None

        with self._cond:
            while True:
                found = match()
                if found is not None:
                    return found
                left = deadline - time.monotonic()
                if left <= 0:
                    listing = "\n".join(f"  {c!r}" for c in self._calls) or "  (none)"
                    raise AssertionError(
                        f"no {'matching ' if predicate else ''}{method} call within {timeout}s; "
                        f"recorded calls:\n{listing}"
                    )
                self._cond.wait(left)

    def wait_for_count(self, method: str, count: int, timeout: float = 10) -> list[Call]:
        """Wait until at least `count` ok calls to `method` were recorded; return them."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                found = [c for c in self._calls if c.method == method and c.ok]
                if len(found) >= count:
                    return found
                left = deadline - time.monotonic()
                if left <= 0:
                    listing = "\n".join(f"  {c!r}" for c in self._calls) or "  (none)"
                    raise AssertionError(
                        f"{len(found)} of {count} {method} calls within {timeout}s; "
                        f"recorded calls:\n{listing}"
                    )
                self._cond.wait(left)

    def fail_next(
        self,
        method: str,
        status: int | None = None,
        retry_after: int | None = 1,
        times: int = 1,
        *,
        error: str | None = None,
    ) -> None:
        """Make the next `times` calls to `method` fail.

        Without `error`: HTTP `status` (default 429) with a Retry-After header, like
        Slack's rate limiting. With `error`: HTTP 200 `{"ok": false, "error": error}`.
        `method` may also be 'response_url' or 'upload'.
        """
        if status is None:
            status = 200 if error else 429
        if error is None and status == 429:
            error = "ratelimited"
        fault = _Fault(status=status, error=error, retry_after=retry_after, times=times)
        with self._cond:
            self._faults.setdefault(method, []).append(fault)

    def response_url(self, id: str | None = None) -> str:  # noqa: A002 - mirrors Slack's name
        """A fresh response_url served by this fake."""
        return f"{self.base_url}/response/{id or uuid.uuid4().hex}"

    def ack_answered(self, response_url: str, body: str) -> None:
        """A slash command's ack carried its answer: record it as Slack would show it, like
        a response_url post (method "response_url", `_via: "ack"`), checked the same way."""
        payload = json.loads(body)
        if not isinstance(payload, dict) or not (payload.get("text") or payload.get("blocks")):
            return
        path = urlsplit(response_url).path
        params = {**payload, "_path": path, "_via": "ack"}
        self._record_answer(
            Call("response_url", params, None, time.time(), path=path, body=body.encode())
        )

    def _record_answer(self, call: Call) -> dict[str, Any]:
        answer: dict[str, Any] = {"ok": True}
        if self.validate_blocks and "blocks" in call.params:
            problems = check_message_blocks(call.params["blocks"])
            if problems:
                answer = {"ok": False, "error": "invalid_blocks", "errors": problems}
        call.ok, call.error, call.response = bool(answer["ok"]), answer.get("error"), answer
        self._record(call)
        return answer

    def reset(self) -> None:
        """Forget recorded calls, pending faults, uploaded files and messages.

        `users` and `usergroups` are configuration and stay.
        """
        with self._cond:
            self._calls.clear()
            self._faults.clear()
            self.files.clear()
            self.messages.clear()

    def message(self, channel: str, ts: str) -> dict[str, Any] | None:
        """The latest params posted or updated for a message."""
        with self._cond:
            return self.messages.get((channel, ts))

    # -- internals -----------------------------------------------------------------------
    def _next(self) -> int:
        return next(self._counter)

    def _ts(self, n: int) -> str:
        return f"{1_700_000_000 + n}.{n:06d}"

    def _take_fault(self, method: str) -> _Fault | None:
        with self._cond:
            queue = self._faults.get(method)
            if not queue:
                return None
            fault = queue[0]
            fault.times -= 1
            if fault.times <= 0:
                queue.pop(0)
            return fault

    def _record(self, call: Call) -> None:
        with self._cond:
            self._calls.append(call)
            self._cond.notify_all()

    def _user(self, uid: str) -> dict[str, Any]:
        user: dict[str, Any] = {
            "id": uid,
            "team_id": TEAM_ID,
            "name": uid.lower(),
            "real_name": f"User {uid}",
            "deleted": False,
            "is_bot": uid == BOT_USER_ID,
            "is_admin": False,
            "tz": "UTC",
            "tz_label": "Coordinated Universal Time",
            "tz_offset": 0,
            "locale": "en-US",
            "profile": {
                "real_name": f"User {uid}",
                "display_name": uid.lower(),
                "email": f"{uid.lower()}@example.com",
            },
        }
        override = self.users.get(uid, {})
        profile = {**user["profile"], **override.get("profile", {})}
        user.update(override)
        user["profile"] = profile
        return user

    def _answer(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        """Slack's answer to a successful call (may still be ok: false on bad input)."""
        if method == "auth.test":
            return {
                "ok": True,
                "url": "https://funnelbot-test.slack.com/",
                "team": TEAM_NAME,
                "user": "funnelbot",
                "team_id": TEAM_ID,
                "user_id": BOT_USER_ID,
                "bot_id": BOT_ID,
                "is_enterprise_install": False,
            }
        if method in (
            "chat.postMessage",
            "chat.postEphemeral",
            "chat.update",
            "chat.scheduleMessage",
        ):
            return self._answer_chat(method, params)
        if method in ("views.open", "views.update", "views.publish", "views.push"):
            return self._answer_view(method, params)
        if method == "chat.delete":
            with self._cond:
                self.messages.pop((params.get("channel", ""), params.get("ts", "")), None)
            return {"ok": True, "channel": params.get("channel"), "ts": params.get("ts")}
        if method == "oauth.v2.access":
            team_id, team_name = self.oauth_team
            return {
                "ok": True,
                "app_id": "A0FUNNEL",
                "authed_user": {"id": "UINSTALLER"},
                "scope": "commands,chat:write",
                "token_type": "bot",
                "access_token": f"xoxb-oauth-{team_id}",
                "bot_user_id": "UBOT2",
                "team": {"id": team_id, "name": team_name},
                "enterprise": None,
                "is_enterprise_install": False,
            }
        if method == "chat.getPermalink":
            ts = str(params.get("message_ts", "")).replace(".", "")
            return {
                "ok": True,
                "channel": params.get("channel"),
                "permalink": f"https://funnelbot-test.slack.com/archives/{params.get('channel')}/p{ts}",
            }
        if method == "conversations.open":
            users = str(params.get("users", "")).split(",")
            return {"ok": True, "channel": {"id": "D" + users[0], "is_im": True}}
        if method == "conversations.info":
            cid = str(params.get("channel", ""))
            return {"ok": True, "channel": {"id": cid, "name": cid.lower(), "is_member": True}}
        if method == "users.info":
            uid = str(params.get("user", ""))
            if not uid:
                return {"ok": False, "error": "user_not_found"}
            return {"ok": True, "user": self._user(uid)}
        if method == "users.lookupByEmail":
            wanted = str(params.get("email", "")).lower()
            for uid in list(self.users):
                user = self._user(uid)
                email = str(user.get("email") or user["profile"].get("email", ""))
                if email.lower() == wanted:
                    return {"ok": True, "user": user}
            return {"ok": False, "error": "users_not_found"}
        if method == "usergroups.users.list":
            group = str(params.get("usergroup", ""))
            if group not in self.usergroups:
                return {"ok": False, "error": "no_such_subteam"}
            return {"ok": True, "users": list(self.usergroups[group])}
        if method == "files.getUploadURLExternal":
            if not params.get("filename") or not params.get("length"):
                return {"ok": False, "error": "invalid_arguments"}
            fid = f"F{self._next():08d}"
            with self._cond:
                self.files[fid] = {
                    "id": fid,
                    "filename": params.get("filename"),
                    "length": int(params["length"]),
                    "alt_txt": params.get("alt_txt"),
                    "bytes": None,
                }
            return {"ok": True, "upload_url": f"{self.base_url}/upload/{fid}", "file_id": fid}
        if method == "files.completeUploadExternal":
            files = params.get("files")
            if not isinstance(files, list) or not files:
                return {"ok": False, "error": "invalid_arguments"}
            out = []
            for f in files:
                known = self.files.get(str(f.get("id")))
                if known is None or known.get("bytes") is None:
                    return {"ok": False, "error": "file_not_found"}
                known.update(
                    title=f.get("title"),
                    channel_id=params.get("channel_id"),
                    initial_comment=params.get("initial_comment"),
                    thread_ts=params.get("thread_ts"),
                )
                out.append({"id": known["id"], "name": known["filename"], "title": f.get("title")})
            return {"ok": True, "files": out}
        return {"ok": True}

    def _answer_chat(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        channel = str(params.get("channel") or "")
        if not channel:
            return {"ok": False, "error": "channel_not_found"}
        if not (params.get("text") or params.get("blocks") or params.get("attachments")):
            return {"ok": False, "error": "no_text"}
        if self.validate_blocks and "blocks" in params:
            problems = check_message_blocks(params["blocks"])
            if problems:
                return {
                    "ok": False,
                    "error": "invalid_blocks",
                    "errors": problems,
                    "response_metadata": {"messages": [f"[ERROR] {p}" for p in problems]},
                }
        if channel[:1] in ("U", "W") and method != "chat.postEphemeral":
            channel = "D" + channel  # posting to a user id lands in the DM with them
        if method == "chat.update":
            ts = str(params.get("ts") or "")
            if not ts:
                return {"ok": False, "error": "message_not_found"}
        else:
            ts = self._ts(self._next())
        message = {
            "type": "message",
            "user": BOT_USER_ID,
            "bot_id": BOT_ID,
            "text": params.get("text", ""),
            "blocks": params.get("blocks", []),
            "ts": ts,
        }
        if method != "chat.postEphemeral":
            with self._cond:
                self.messages[(channel, ts)] = dict(params, channel=channel, ts=ts)
        answer: dict[str, Any] = {"ok": True, "channel": channel, "ts": ts, "message": message}
        if method == "chat.postEphemeral":
            answer["message_ts"] = ts
        if method == "chat.scheduleMessage":
            answer["scheduled_message_id"] = f"Q{ts.replace('.', '')}"
            answer["post_at"] = params.get("post_at")
        return answer

    def _answer_view(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        view = params.get("view")
        if method in ("views.open", "views.push") and not params.get("trigger_id"):
            return {"ok": False, "error": "invalid_arguments"}
        if method == "views.update" and not (params.get("view_id") or params.get("external_id")):
            return {"ok": False, "error": "invalid_arguments"}
        if method == "views.publish" and not params.get("user_id"):
            return {"ok": False, "error": "invalid_arguments"}
        if self.validate_blocks:
            problems = check_view(view)
            if problems:
                return {
                    "ok": False,
                    "error": "invalid_arguments",
                    "response_metadata": {"messages": [f"[ERROR] {p}" for p in problems]},
                }
        view_id = str(params.get("view_id") or f"V{self._next():08d}")
        shown = dict(view) if isinstance(view, dict) else {}
        shown.update(
            id=view_id,
            team_id=TEAM_ID,
            app_id=APP_ID,
            bot_id=BOT_ID,
            hash=uuid.uuid4().hex[:16],
            root_view_id=view_id,
            state={"values": {}},
        )
        return {"ok": True, "view": shown}


def _make_handler(fake: FakeSlack) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "FakeSlack/1.0"

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            pass  # keep test output clean; every request is in fake.calls

        def do_GET(self) -> None:
            self._handle()

        def do_POST(self) -> None:
            self._handle()

        def _read_body(self) -> bytes:
            length = int(self.headers.get("Content-Length") or 0)
            return self.rfile.read(length) if length else b""

        def _send(self, status: int, payload: Any, headers: Iterable[tuple[str, str]] = ()) -> None:
            data = json.dumps(payload, ensure_ascii=False).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            for k, v in headers:
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(data)

        def _params(self, body: bytes, query: str) -> dict[str, Any]:
            params: dict[str, Any] = dict(parse_qsl(query, keep_blank_values=True))
            ctype = self.headers.get("Content-Type", "")
            if body:
                if ctype.startswith("application/json"):
                    loaded = json.loads(body.decode("utf-8"))
                    if isinstance(loaded, dict):
                        params.update(loaded)
                    else:
                        params["_json"] = loaded
                elif ctype.startswith("multipart/form-data"):
                    params.update(_parse_multipart(ctype, body))
                else:
                    params.update(parse_qsl(body.decode("utf-8"), keep_blank_values=True))
            return _decode_json_fields(params)

        def _fault_response(self, call: Call, fault: _Fault) -> None:
            call.status, call.ok, call.error = fault.status, False, fault.error
            headers = []
            if fault.status == 429 and fault.retry_after is not None:
                headers.append(("Retry-After", str(fault.retry_after)))
            call.response = {"ok": False, "error": fault.error or f"http_{fault.status}"}
            fake._record(call)
            self._send(fault.status, call.response, headers)

        def _handle(self) -> None:
            split = urlsplit(self.path)
            path = split.path
            body = self._read_body()
            now = time.time()
            auth = self.headers.get("Authorization", "")
            token = auth[7:] if auth.lower().startswith("bearer ") else None
            try:
                if path.startswith("/api/"):
                    method = path[len("/api/") :]
                    params = self._params(body, split.query)
                    form_token = params.pop("token", None)
                    call = Call(method, params, token or form_token, now, path=path, body=body)
                    fault = fake._take_fault(method)
                    if fault:
                        self._fault_response(call, fault)
                        return
                    if call.token is None and method not in ("api.test", "oauth.v2.access"):
                        answer: dict[str, Any] = {"ok": False, "error": "not_authed"}
                    else:
                        answer = fake._answer(method, params)
                    call.ok, call.error, call.response = (
                        bool(answer.get("ok")),
                        answer.get("error"),
                        answer,
                    )
                    fake._record(call)
                    self._send(200, answer)
                elif path.startswith("/response/"):
                    self._response_url(path, body, token, now)
                elif path.startswith("/upload/"):
                    self._upload(path, body, token, now)
                else:
                    call = Call("_unknown", {"_path": path}, token, now, status=404, ok=False)
                    call.error, call.path, call.body = "not_found", path, body
                    fake._record(call)
                    self._send(404, {"ok": False, "error": "not_found"})
            except Exception as exc:  # a bug in the fake must show up in the test, not hang it
                call = Call("_error", {"_path": path, "exception": repr(exc)}, token, now)
                call.status, call.ok, call.error, call.body = 500, False, repr(exc), body
                fake._record(call)
                self._send(500, {"ok": False, "error": "fake_slack_error", "detail": repr(exc)})

        def _response_url(self, path: str, body: bytes, token: str | None, now: float) -> None:
            try:
                params: dict[str, Any] = json.loads(body.decode("utf-8")) if body else {}
                if not isinstance(params, dict):
                    params = {"_json": params}
            except ValueError:
                params = _decode_json_fields(dict(parse_qsl(body.decode("utf-8"))))
            params["_path"] = path
            call = Call("response_url", params, token, now, path=path, body=body)
            fault = fake._take_fault("response_url")
            if fault:
                self._fault_response(call, fault)
                return
            self._send(200, fake._record_answer(call))

        def _upload(self, path: str, body: bytes, token: str | None, now: float) -> None:
            fid = path.rsplit("/", 1)[-1]
            params = {"_path": path, "file_id": fid, "length": len(body), "bytes": body}
            call = Call("upload", params, token, now, path=path, body=body)
            fault = fake._take_fault("upload")
            if fault:
                self._fault_response(call, fault)
                return
            with fake._cond:
                known = fake.files.get(fid)
                if known is not None:
                    known["bytes"] = body
            if known is None:
                call.status, call.ok, call.error = 404, False, "file_not_found"
                fake._record(call)
                self._send(404, {"ok": False, "error": "file_not_found"})
                return
            call.response = {"ok": True}
            fake._record(call)
            self._send(200, {"ok": True})

    return Handler
