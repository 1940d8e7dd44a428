"""The local console (`funnelbot shell`, or `python bot.py` with no Slack tokens).

Like a chat framework's shell adapter, it stands in for Slack on a terminal and goes
through the same Bolt app and handlers as Slack's requests do:

- it runs a small local Slack Web API (`funnelbot.localslack`) on 127.0.0.1 and builds
  the runtime with `slack_api_url` pointing there, so everything the handlers send
  (response_url answers, chat.postMessage DMs and channel posts, views.open modals,
  views.publish Home tabs, file uploads) arrives back here to be shown;
- what you type becomes the payload Slack would send (a slash command's form body, a
  `block_actions` or `view_submission` JSON payload, an `app_home_opened` event), signed
  with the console's signing secret and dispatched in-process with
  `runtime.bolt.dispatch(BoltRequest(...))`;
- listeners ack and answer asynchronously, so after each request the console waits
  (up to `timeout` seconds) until the listener has finished and its answers have
  arrived, then shows them and prompts again.

Block Kit is drawn as text by `funnelbot.console_render`; buttons get numbers that
`:click N` presses; modals are filled field by field.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import json
import logging
import os
import re
import secrets
import shutil
import sys
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlencode

from slack_bolt.request import BoltRequest
from slack_bolt.response import BoltResponse
from slack_sdk.signature import SignatureVerifier

from funnelbot import console_render as cr
from funnelbot import demo
from funnelbot.config import Settings
from funnelbot.localslack import APP_ID, ApiCall, LocalSlack

logger = logging.getLogger(__name__)

CONSOLE_USER = "UCONSOLE"  # Slack ids are [A-Z0-9]; the mention parser expects that
TEAM_ID = demo.TEAM_ID
CHANNEL_ID = "C0LOCAL"
CHANNEL_NAME = "sales"
BOT_TOKEN = "xoxb-local-console"
VERIFICATION_TOKEN = "local-verification-token"
DEFAULT_TIMEOUT = 10.0
HISTORY_FILE = Path("~/.funnelbot_history")
LOCALES = {"en": "en-US", "zh": "zh-CN"}
_USER_ID = re.compile(r"[UW][A-Z0-9]+")

HELP = """\
Type what you would type in Slack, as the user shown in the prompt:
  /deal new Acme 50k        create a deal (more: /deal help)
  /deal                     open the New-deal form
  /deal list all            open deals of the whole team
  /funnel …                 funnel reports (/funnel help)
Console commands:
  :click N       press button N of the last message that has buttons
  :as U123       act as another user (also :as alice); :as alone lists the team
  :home          open your App Home tab
  :run JOB       run a scheduled job now: stalled-nudges, reminders, weekly-report
  :demo          fill an empty workspace with the sample team
  :debug         show every Slack API call the app makes (again to stop)
  :help          this help
  :quit          leave (also Ctrl-D)
In a form: Enter keeps the value in [brackets], :cancel closes the form."""


class _Cancelled(Exception):
    """The person typed :cancel (or Ctrl-C/Ctrl-D) inside a modal."""


class _TrackingExecutor(concurrent.futures.Executor):
    """Bolt's listener executor, counting listener runs still in flight."""

    def __init__(self, inner: concurrent.futures.Executor, cond: threading.Condition) -> None:
        self.inner = inner
        self.cond = cond
        self.in_flight = 0

    def submit(
        self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any
    ) -> concurrent.futures.Future[Any]:
        with self.cond:
            self.in_flight += 1

        def run() -> Any:
            try:
                return fn(*args, **kwargs)
            finally:
                with self.cond:
                    self.in_flight -= 1
                    self.cond.notify_all()

        return self.inner.submit(run)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        self.inner.shutdown(wait=wait, cancel_futures=cancel_futures)


class _DropUnhandled(logging.Filter):
    """Bolt's 'Unhandled request' warning: the console says it in its own words."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = str(record.msg)
        # Also Bolt's note that the token is unused when a client is given (app.py does).
        return not message.startswith(("Unhandled request", "As you gave `client`"))


@dataclasses.dataclass
class Shown:
    """A message (or Home tab) on screen whose controls `:click` can press."""

    rendered: cr.Rendered
    kind: str  # "ephemeral", "message" or "home"
    channel: str | None = None
    ts: str | None = None
    message: dict[str, Any] | None = None
    view: dict[str, Any] | None = None


class Console:
    """The console, with injectable input and output streams (tests drive it this way)."""

    def __init__(
        self,
        settings: Settings,
        *,
        stdin: IO[str] | None = None,
        stdout: IO[str] | None = None,
        user: str | None = None,
        team_id: str = TEAM_ID,
        language: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        width: int | None = None,
        color: bool | None = None,
        clock: Callable[[], Any] | None = None,
        files_dir: str | Path | None = None,
        history_file: Path | None = HISTORY_FILE,
    ) -> None:
        self.stdin = stdin or sys.stdin
        self.stdout = stdout or sys.stdout
        self.team_id = team_id
        self.user = (user or CONSOLE_USER).upper()
        self.timeout = timeout
        self._tty = (
            self.stdin is sys.stdin
            and self.stdout is sys.stdout
            and _isatty(self.stdin)
            and _isatty(self.stdout)
        )
        self.width = width or (
            min(100, shutil.get_terminal_size((80, 24)).columns) if self._tty else 80
        )
        if color is None:
            color = _isatty(self.stdout) and not os.environ.get("NO_COLOR")
        self.color = color
        self.history_file = history_file
        lang = (language or settings.language or "en").lower()
        self.language = lang if lang in LOCALES else "en"
        self.users: dict[str, dict[str, Any]] = {
            CONSOLE_USER: {"real_name": "you", "name": "you"},
            **{
                u.user_id: {"real_name": u.name, "name": u.handle, "role": u.role}
                for u in demo.USERS
            },
        }
        self._cond = threading.Condition()
        self._out_lock = threading.RLock()
        self._busy = False
        self._pending: list[ApiCall] = []
        self._modals: list[dict[str, Any]] = []
        self._home_published = False
        self._surface = "chat"  # or "home", after :home
        self._debug = False
        self._eof = False
        self._seq = 0
        self.last: Shown | None = None
        self.local = LocalSlack(
            team_id=team_id,
            on_call=self._on_call,
            users=self.users,
            locale=LOCALES[self.language],
            files_dir=files_dir,
        )
        self._secret = secrets.token_hex(16)
        self._verifier = SignatureVerifier(self._secret)
        self._settings_in = settings
        self._clock = clock
        self.runtime: Any = None
        self._tracker: _TrackingExecutor | None = None
        self._log_filter = _DropUnhandled()

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> Console:
        from funnelbot.runtime import build_runtime

        self.local.start()
        base = self._settings_in
        settings = dataclasses.replace(
            base,
            slack_bot_token=BOT_TOKEN,
            slack_signing_secret=self._secret,
            slack_app_token=None,
            slack_api_url=self.local.url,
            # Your local workspace: you administer it unless admins are configured.
            admins=base.admins or frozenset({CONSOLE_USER}),
            managers=base.managers | demo.MANAGER_IDS,
            report_channel=base.report_channel or CHANNEL_ID,
        )
        logging.getLogger("funnelbot.bolt").addFilter(self._log_filter)
        try:
            self.runtime = build_runtime(settings, clock=self._clock)
        except BaseException:
            self.close()
            raise
        runner = getattr(self.runtime.bolt, "listener_runner", None)
        if runner is not None and hasattr(runner, "listener_executor"):
            self._tracker = _TrackingExecutor(runner.listener_executor, self._cond)
            runner.listener_executor = self._tracker
        return self

    def close(self) -> None:
        logging.getLogger("funnelbot.bolt").removeFilter(self._log_filter)
        if self.runtime is not None:
            self._wait_idle(self.timeout)
            self.runtime.close()
            self.runtime = None
        self.local.stop()

    def __enter__(self) -> Console:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- output ------------------------------------------------------------------------------

    def say(self, text: str = "") -> None:
        with self._out_lock:
            self.stdout.write(text + "\n")
            self.stdout.flush()

    def _dim(self, text: str) -> str:
        return f"{cr.DIM}{text}{cr.RESET}" if self.color else text

    def _bold(self, text: str) -> str:
        return f"{cr.BOLD}{text}{cr.RESET}" if self.color else text

    def _frame(self, label: str) -> str:
        head = f"── {label} "
        return self._dim(head + "─" * max(3, self.width - cr.display_width(head)))

    def name_of(self, uid: str) -> str:
        known = self.users.get(uid)
        return str(known["real_name"]) if known else uid

    def prompt(self) -> str:
        name = self.name_of(self.user)
        who = f"{name} ({self.user})" if name != self.user else self.user
        return f"{who}> "

    def _where(self, channel: str | None) -> str:
        if not channel:
            return "?"
        if channel.startswith("D") and _USER_ID.fullmatch(channel[1:]):
            return f"DM to {channel[1:]}"
        if channel == CHANNEL_ID:
            return f"#{CHANNEL_NAME}"
        return channel if channel.startswith("#") else f"#{channel}"

    # -- what the local Slack receives ----------------------------------------------------------

    def _on_call(self, call: ApiCall) -> None:
        with self._cond:
            if self._busy:
                self._pending.append(call)
                self._cond.notify_all()
                return
        if not (call.shown or self._debug):
            return
        # A background post (a scheduled job) while you type: show it above the prompt.
        with self._out_lock:
            if self._tty:
                self.stdout.write("\r\n")
            self._show_call(call)
            if self._tty:
                self.stdout.write(self.prompt() + _line_buffer())
                self.stdout.flush()

    def _show_call(self, call: ApiCall) -> None:
        if self._debug:
            shown = json.dumps(
                {k: v for k, v in call.params.items() if k not in ("blocks", "view")},
                ensure_ascii=False,
                default=str,
            )
            self.say(self._dim(f"· {call.method} {shown[:200]}"))
        if not call.shown:
            return
        p = call.params
        m = call.method
        if m == "response_url":
            if p.get("delete_original"):
                self.say(self._dim("(funnelbot deleted the message)"))
                return
            label = "funnelbot · only visible to you"
            if p.get("response_type") == "in_channel":
                label = f"funnelbot in #{CHANNEL_NAME}"
            if p.get("replace_original"):
                label += " · updated"
            kind = "message" if p.get("response_type") == "in_channel" else "ephemeral"
            self._show_message(label, p, kind=kind, channel=CHANNEL_ID, ts=self._fake_ts())
        elif m == "chat.postMessage":
            channel = str(p.get("channel"))
            ts = str(call.response.get("ts"))
            self._show_message(f"[{self._where(channel)}] funnelbot", p, "message", channel, ts)
        elif m == "chat.postEphemeral":
            channel = str(p.get("channel"))
            label = f"[{self._where(channel)}, only visible to {p.get('user')}] funnelbot"
            self._show_message(label, p, "ephemeral", channel, str(call.response.get("message_ts")))
        elif m == "chat.update":
            channel = str(p.get("channel"))
            label = f"[{self._where(channel)}] funnelbot · edited"
            self._show_message(label, p, "message", channel, str(p.get("ts")))
        elif m == "chat.delete":
            self.say(self._dim(f"[{self._where(str(p.get('channel')))}] a message was deleted"))
        elif m == "chat.scheduleMessage":
            label = f"[{self._where(str(p.get('channel')))}] scheduled for {p.get('post_at')}"
            self._show_message(label, p, "message", str(p.get("channel")), None)
        elif m in ("views.open", "views.push"):
            view = call.response.get("view")
            if isinstance(view, dict):
                with self._cond:
                    self._modals.append(view)
        elif m == "views.update":
            view = call.response.get("view") or {}
            if view.get("type") == "home":
                if self._surface == "home":
                    self._show_home(view)
            else:
                self.say(self._dim(f"(the open form was updated: {cr.text_of(view.get('title'))})"))
        elif m == "views.publish":
            # Shown only while you look at the Home tab (:home); Slack keeps it for later.
            view = call.response.get("view") or {}
            if p.get("user_id") == self.user and self._surface == "home":
                self._home_published = True
                self._show_home(view)
        elif m in ("files.completeUploadExternal", "files.upload"):
            channel = str(p.get("channel_id") or p.get("channels") or "")
            where = self._where(channel) if channel else "files"
            lines = [self._frame(f"[{where}] funnelbot shared a file")]
            if p.get("initial_comment"):
                lines.append(cr.mrkdwn_to_text(str(p["initial_comment"])))
            for f in p.get("files") or []:
                lines.append(f"[image: {f.get('title') or f.get('name')}] {f.get('path')}")
            self.say("\n".join(lines) + "\n")

    def _fake_ts(self) -> str:
        self._seq += 1
        return f"{int(time.time())}.{self._seq:06d}"

    def _show_message(
        self, label: str, payload: dict[str, Any], kind: str, channel: str | None, ts: str | None
    ) -> None:
        rendered = cr.render_message(payload, width=self.width, color=self.color)
        with self._out_lock:
            self.say(self._frame(label))
            self.say(rendered.text + "\n")
            if rendered.controls:
                message = {
                    "type": "message",
                    "text": payload.get("text", ""),
                    "blocks": payload.get("blocks") or [],
                    "ts": ts,
                }
                self.last = Shown(rendered, kind, channel, ts, message=message)

    def _show_home(self, view: dict[str, Any]) -> None:
        rendered = cr.render_view(view, width=self.width, color=self.color)
        with self._out_lock:
            self.say(self._frame(f"App Home · {self.name_of(self.user)}"))
            self.say(rendered.text + "\n")
            if rendered.controls:
                self.last = Shown(rendered, "home", view=view)

    # -- requests to the app ----------------------------------------------------------------------

    def _headers(self, body: str, content_type: str) -> dict[str, str]:
        ts = str(int(time.time()))
        return {
            "content-type": content_type,
            "x-slack-request-timestamp": ts,
            "x-slack-signature": self._verifier.generate_signature(timestamp=ts, body=body) or "",
        }

    def dispatch(self, body: str, content_type: str) -> BoltResponse:
        """One signed request through the Bolt app; waits for the listener's answers."""
        assert self.runtime is not None, "call start() first"
        request = BoltRequest(body=body, headers=self._headers(body, content_type))
        response = self.runtime.bolt.dispatch(request)
        if not self._wait_idle(self.timeout):
            self.say(
                self._dim(f"(no answer within {self.timeout:g} s; it will show when it arrives)")
            )
        return response

    def _wait_idle(self, timeout: float) -> bool:
        tracker = self._tracker
        with self._cond:
            if tracker is None:  # fall back on the first answer arriving
                return self._cond.wait_for(lambda: bool(self._pending), timeout)
            return self._cond.wait_for(lambda: tracker.in_flight == 0, timeout)

    def _interactive(self, payload: dict[str, Any]) -> BoltResponse:
        body = urlencode({"payload": json.dumps(payload, ensure_ascii=False)})
        return self.dispatch(body, "application/x-www-form-urlencoded")

    def _trigger_id(self) -> str:
        return f"{int(time.time())}.{uuid.uuid4().int % 10**12}.{uuid.uuid4().hex[:16]}"

    def _user_obj(self) -> dict[str, Any]:
        handle = str(self.users.get(self.user, {}).get("name") or self.user.lower())
        return {"id": self.user, "username": handle, "name": handle, "team_id": self.team_id}

    def _team_obj(self) -> dict[str, Any]:
        return {"id": self.team_id, "domain": "funnelbot-local"}

    def slackify(self, text: str) -> str:
        """Command text as Slack sends it with should_escape: `& < >` escaped, `@U1`,
        `@alice` turned into `<@U1|name>` mentions."""
        text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")

        def mention(m: re.Match[str]) -> str:
            word = m.group(1)
            uid = self._find_user(word)
            if uid is None:
                return m.group(0)
            handle = str(self.users.get(uid, {}).get("name") or uid.lower())
            return f"<@{uid}|{handle}>"

        return re.sub(r"(?<!\S)@([\w.\-]+)", mention, text)

    def _find_user(self, word: str) -> str | None:
        if _USER_ID.fullmatch(word.upper()) and (word.isupper() or word.upper() in self.users):
            return word.upper()
        folded = word.casefold()
        for uid, info in self.users.items():
            if folded in (str(info.get("name", "")).casefold(), uid.casefold()):
                return uid
        return None

    def command(self, command: str, text: str) -> None:
        handle = str(self.users.get(self.user, {}).get("name") or self.user.lower())
        fields = {
            "token": VERIFICATION_TOKEN,
            "team_id": self.team_id,
            "team_domain": "funnelbot-local",
            "channel_id": CHANNEL_ID,
            "channel_name": CHANNEL_NAME,
            "user_id": self.user,
            "user_name": handle,
            "command": command,
            "text": self.slackify(text),
            "api_app_id": APP_ID,
            "is_enterprise_install": "false",
            "response_url": self.local.response_url(),
            "trigger_id": self._trigger_id(),
        }
        response = self.dispatch(urlencode(fields), "application/x-www-form-urlencoded")
        if response.status == 404:
            self.say(f"Nothing in funnelbot answers {command} (yet).")
        elif response.status >= 400:
            self.say(f"{command} failed: HTTP {response.status} {response.body}")
        elif response.body:
            self._show_ack_body(response)

    def _show_ack_body(self, response: BoltResponse) -> None:
        """An ack() with content: Slack shows it like an ephemeral answer."""
        try:
            payload = json.loads(response.body)
        except ValueError:
            payload = {"text": response.body}
        if isinstance(payload, dict) and (payload.get("text") or payload.get("blocks")):
            self._show_message(
                "funnelbot · only visible to you", payload, "ephemeral", CHANNEL_ID, None
            )

    def click(self, number: int) -> None:
        shown = self.last
        if shown is None:
            self.say("No message with buttons yet.")
            return
        control = shown.rendered.control(number)
        if control is None:
            numbers = ", ".join(str(c.number) for c in shown.rendered.controls)
            self.say(f"The last message has buttons {numbers}; there is no {number}.")
            return
        element = control.element
        self._surface = "home" if shown.kind == "home" else "chat"
        action: dict[str, Any] = {
            "type": element.get("type"),
            "action_id": element.get("action_id") or f"console-{number}",
            "block_id": control.block_id or f"console-block-{number}",
            "action_ts": f"{time.time():.6f}",
        }
        try:
            chosen = self._choose_for(element)
        except _Cancelled:
            self.say("(nothing chosen)")
            return
        action.update(chosen)
        if element.get("type") == "button":
            action["text"] = element.get("text")
            if "value" in element:
                action["value"] = element["value"]
            if element.get("style"):
                action["style"] = element["style"]
            if element.get("url"):
                self.say(f"(opens {element['url']})")
        payload: dict[str, Any] = {
            "type": "block_actions",
            "user": self._user_obj(),
            "api_app_id": APP_ID,
            "token": VERIFICATION_TOKEN,
            "trigger_id": self._trigger_id(),
            "team": self._team_obj(),
            "enterprise": None,
            "is_enterprise_install": False,
            "actions": [action],
        }
        if shown.kind == "home":
            view = dict(shown.view or {})
            view.setdefault("state", {"values": {}})
            payload["container"] = {"type": "view", "view_id": view.get("id")}
            payload["view"] = view
        else:
            channel = shown.channel or CHANNEL_ID
            payload["container"] = {
                "type": "message",
                "message_ts": shown.ts,
                "channel_id": channel,
                "is_ephemeral": shown.kind == "ephemeral",
            }
            payload["channel"] = {"id": channel, "name": self._where(channel).lstrip("#")}
            if shown.kind != "ephemeral" and shown.message is not None:
                payload["message"] = shown.message
            payload["state"] = {"values": {}}
            payload["response_url"] = self.local.response_url()
        response = self._interactive(payload)
        if response.status == 404 and not element.get("url"):
            self.say(f"Nothing in funnelbot handles that button ({action['action_id']}) yet.")

    def _choose_for(self, element: dict[str, Any]) -> dict[str, Any]:
        """What a click on a non-button element selects (asked here)."""
        kind = element.get("type")
        if kind in ("static_select", "overflow", "radio_buttons"):
            option = self._ask_option(element, multi=False)
            return {"selected_option": option}
        if kind in ("multi_static_select", "checkboxes"):
            return {"selected_options": self._ask_option(element, multi=True)}
        if kind == "datepicker":
            return {"selected_date": self._ask_plain("Date (YYYY-MM-DD)", _check_date)}
        if kind == "timepicker":
            return {"selected_time": self._ask_plain("Time (HH:MM)", _check_time)}
        if kind == "users_select":
            return {"selected_user": self._ask_plain("User id", self._check_user)}
        if kind in ("conversations_select", "channels_select"):
            key = "selected_conversation" if kind == "conversations_select" else "selected_channel"
            return {key: self._ask_plain("Channel id", None)}
        return {}

    def _ask_option(self, element: dict[str, Any], *, multi: bool) -> Any:
        options = _options(element)
        for i, opt in enumerate(options, 1):
            self.say(f"  {i}) {cr.option_text(opt)}")
        while True:
            raw = self._read_field("  > ")
            picked = _pick(raw, options, multi=multi)
            if picked is not None:
                return picked
            self.say(f"  Type a number from 1 to {len(options)}.")

    def _ask_plain(self, label: str, check: Callable[[str], str | None] | None) -> str:
        while True:
            raw = self._read_field(f"  {label}: ").strip()
            problem = check(raw) if check else None
            if not problem:
                return raw
            self.say(f"  {problem}")

    def _check_user(self, raw: str) -> str | None:
        return None if _USER_ID.fullmatch(raw.upper()) else "A user id looks like U012ABCDEF."

    def home(self) -> None:
        self._home_published = False
        self._surface = "home"
        envelope = {
            "token": VERIFICATION_TOKEN,
            "team_id": self.team_id,
            "api_app_id": APP_ID,
            "event": {
                "type": "app_home_opened",
                "user": self.user,
                "channel": "D" + self.user,
                "tab": "home",
                "event_ts": f"{time.time():.6f}",
            },
            "type": "event_callback",
            "event_id": f"Ev{uuid.uuid4().hex[:10].upper()}",
            "event_time": int(time.time()),
            "authorizations": [
                {
                    "enterprise_id": None,
                    "team_id": self.team_id,
                    "user_id": "UFUNNELBOT",
                    "is_bot": True,
                    "is_enterprise_install": False,
                }
            ],
            "is_ext_shared_channel": False,
        }
        if self.local.home.get(self.user):
            envelope["event"]["view"] = self.local.home[self.user]
        response = self.dispatch(json.dumps(envelope, ensure_ascii=False), "application/json")
        if response.status == 404:
            self.say("No App Home yet: nothing in funnelbot listens to app_home_opened.")
            return
        self._drain()
        if not self._home_published:
            stored = self.local.home.get(self.user)
            if stored:
                self.say(self._dim("(the Home tab as last published)"))
                self._show_home(stored)
            else:
                self.say("funnelbot did not publish an App Home for you.")

    # -- modals -----------------------------------------------------------------------------------

    def _drain(self) -> None:
        """Show what arrived during a request; fill any modal it opened."""
        while True:
            with self._cond:
                calls, self._pending = self._pending, []
            for call in calls:
                self._show_call(call)
            with self._cond:
                if not self._modals:
                    if not self._pending:
                        return
                    continue
                view = self._modals.pop(0)
            self.fill_modal(view)

    def fill_modal(self, view: dict[str, Any]) -> None:
        values: dict[str, dict[str, Any]] = {}
        to_ask = _input_blocks(view)
        self._show_modal_head(view)
        while True:
            try:
                for block in to_ask:
                    values[block["block_id"]] = self._ask_input(
                        block, values.get(block["block_id"])
                    )
            except _Cancelled:
                self._close_modal(view)
                return
            for block in _input_blocks(view):  # Slack sends every input, asked or not
                values.setdefault(block["block_id"], _initial_state(block))
            submit = cr.text_of(view.get("submit")) or "Submit"
            self.say(self._dim(f"→ {submit}"))
            response = self._submit(view, values)
            if response.status == 404:
                self.say(f"Nothing in funnelbot handles this form ({view.get('callback_id')}).")
                self.local.forget_view(str(view.get("id")))
                return
            answer = _json_body(response)
            action = answer.get("response_action")
            if action == "errors":
                errors = answer.get("errors") or {}
                to_ask = self._show_errors(view, errors)
                continue
            if action in ("update", "push") and isinstance(answer.get("view"), dict):
                new_view = dict(answer["view"])
                new_view.setdefault(
                    "id", view.get("id") if action == "update" else f"V{uuid.uuid4().hex[:8]}"
                )
                new_view.setdefault("private_metadata", "")
                view, values = new_view, {}
                to_ask = _input_blocks(view)
                self._show_modal_head(view)
                continue
            # No action (or "clear"): the modal closes; the answers follow.
            self.local.forget_view(str(view.get("id")))
            self._drain()
            return

    def _show_modal_head(self, view: dict[str, Any]) -> None:
        title = cr.text_of(view.get("title")) or "Form"
        self.say(self._frame(f"form: {title}  (Enter keeps [default], :cancel closes)"))
        shown = [b for b in view.get("blocks") or [] if b.get("type") != "input"]
        if shown:
            text = cr.render_blocks(shown, width=self.width, color=self.color).text
            if text.strip():
                self.say(text)

    def _show_errors(self, view: dict[str, Any], errors: dict[str, Any]) -> list[dict[str, Any]]:
        inputs = _input_blocks(view)
        by_id = {b["block_id"]: b for b in inputs}
        self.say("The form has errors:")
        for block_id, message in errors.items():
            label = cr.text_of(by_id[block_id].get("label")) if block_id in by_id else block_id
            self.say(f"  ✗ {label}: {cr.mrkdwn_to_text(str(message))}")
        wrong = [b for b in inputs if b["block_id"] in errors]
        return wrong or inputs

    def _close_modal(self, view: dict[str, Any]) -> None:
        self.say("(form closed)")
        self.local.forget_view(str(view.get("id")))
        if view.get("notify_on_close"):
            payload = {
                "type": "view_closed",
                "team": self._team_obj(),
                "user": self._user_obj(),
                "api_app_id": APP_ID,
                "token": VERIFICATION_TOKEN,
                "view": {**view, "state": {"values": {}}},
                "is_cleared": False,
                "is_enterprise_install": False,
                "enterprise": None,
            }
            self._interactive(payload)
            self._drain()

    def _submit(self, view: dict[str, Any], values: dict[str, dict[str, Any]]) -> BoltResponse:
        sent = {k: v for k, v in view.items() if k != "state"}
        sent["state"] = {"values": values}
        sent.setdefault("hash", uuid.uuid4().hex[:16])
        payload = {
            "type": "view_submission",
            "team": self._team_obj(),
            "user": self._user_obj(),
            "api_app_id": APP_ID,
            "token": VERIFICATION_TOKEN,
            "trigger_id": self._trigger_id(),
            "view": sent,
            "response_urls": [],
            "is_enterprise_install": False,
            "enterprise": None,
        }
        return self._interactive(payload)

    def _read_field(self, prompt: str) -> str:
        line = self._read(prompt)
        if line is None:
            self._eof = True
            raise _Cancelled
        if line.strip() == ":cancel":
            raise _Cancelled
        return line

    def _ask_input(self, block: dict[str, Any], current: dict[str, Any] | None) -> dict[str, Any]:
        """Prompt for one input block; returns its state as Slack reports it."""
        element = dict(block.get("element") or {})
        kind = str(element.get("type"))
        action_id = str(element.get("action_id") or block["block_id"])
        optional = bool(block.get("optional"))
        label = cr.text_of(block.get("label"))
        state = dict((current or {}).get(action_id) or _initial_state(block)[action_id])
        self.say(self._bold(label) + (" (optional)" if optional else " (required)"))
        if block.get("hint"):
            self.say(self._dim("  " + cr.text_of(block["hint"])))
        options = _options(element)
        if kind in ("static_select", "radio_buttons", "multi_static_select", "checkboxes"):
            for i, opt in enumerate(options, 1):
                self.say(f"  {i}) {cr.option_text(opt)}")
        help_text = _FORMAT_HINTS.get(kind)
        if element.get("multiline"):
            help_text = "end a line with \\ to write another line"
        if help_text:
            self.say(self._dim("  " + help_text))
        while True:
            default = _state_text(state)
            raw = self._read_field(f"  [{default}] > " if default else "  > ")
            if element.get("multiline"):
                while raw.endswith("\\"):
                    raw = raw[:-1] + "\n" + self._read_field("  … ")
            raw = raw.strip()
            if not raw:
                if default or optional:
                    return {action_id: state}
                self.say("  This field is required (or :cancel).")
                continue
            if raw == "-" and optional:
                return {action_id: _empty_state(kind)}
            new, problem = _parse_input(kind, element, options, raw, self._check_user)
            if problem:
                self.say(f"  {problem}")
                continue
            return {action_id: new}

    # -- the loop ---------------------------------------------------------------------------------

    def _read(self, prompt: str) -> str | None:
        if self._tty:
            try:
                return input(prompt)
            except EOFError:
                return None
        with self._out_lock:
            self.stdout.write(prompt)
            self.stdout.flush()
        line = self.stdin.readline()
        if not line:
            self.say("")
            return None
        line = line.rstrip("\r\n")
        self.say(line)  # echo, so a piped session reads like a transcript
        return line

    def banner(self) -> None:
        from sqlalchemy.engine import make_url

        url = make_url(self.runtime.settings.database_url).render_as_string(hide_password=True)
        role = "admin" if self.user in self.runtime.settings.admins else "member"
        self.say(self._bold("funnelbot console") + " — a local stand-in for Slack.")
        self.say(f"Workspace {self.team_id} · database {url} · you are {self.user} ({role})")
        with self.runtime.sessions() as session:
            empty = not demo.has_deals(session, self.team_id)
        if empty:
            self.say("No deals yet: try /deal new Acme 50k, or :demo for a sample team.")
        else:
            self.say("Try /deal list all, /deal new Acme 50k, :home or :help.")
        self.say("")

    def handle_line(self, line: str) -> bool:
        """One line of input; False when the console should stop."""
        line = line.strip()
        if not line:
            return True
        with self._cond:
            self._busy = True
        try:
            return self._handle(line)
        finally:
            self._drain()
            with self._cond:
                self._busy = False
            self._drain()

    def _handle(self, line: str) -> bool:
        if line.startswith("/"):
            self._surface = "chat"
            command, _, text = line.partition(" ")
            self.command(command.lower(), text.strip())
            return True
        if not line.startswith(":"):
            self.say("Type a slash command like /deal new Acme 50k, or :help.")
            return True
        word, _, rest = line[1:].partition(" ")
        word, rest = word.lower(), rest.strip()
        if word in ("q", "quit", "exit"):
            return False
        if word in ("h", "help", "?"):
            self.say(HELP)
        elif word in ("c", "click"):
            if not rest.isdigit():
                self.say("Usage: :click N (the number in [N …] of the last message).")
            else:
                self.click(int(rest))
        elif word == "as":
            self.switch_user(rest)
        elif word == "home":
            self.home()
        elif word == "demo":
            self.seed_demo()
        elif word == "run":
            self.run_job(rest)
        elif word == "debug":
            self._debug = not self._debug
            self.say(f"API call log {'on' if self._debug else 'off'}.")
        else:
            self.say(f"Unknown console command :{word}. Type :help.")
        return True

    def switch_user(self, rest: str) -> None:
        if not rest:
            self.say(f"You are {self.name_of(self.user)} ({self.user}). Known users:")
            for uid, info in self.users.items():
                role = info.get("role") or ("admin" if uid in self.runtime.settings.admins else "")
                self.say(f"  {uid:<10} {info['real_name']}" + (f"  ({role})" if role else ""))
            return
        word = rest.lstrip("@")
        uid = self._find_user(word) or (word.upper() if _USER_ID.fullmatch(word.upper()) else None)
        if uid is None:
            self.say("Usage: :as U123 (a Slack user id: U or W, then capitals and digits).")
            return
        self.user = uid
        name = self.name_of(uid)
        self.say(f"You are now {name} ({uid})." if name != uid else f"You are now {uid}.")

    def run_job(self, name: str) -> None:
        from funnelbot import jobs

        if name not in jobs.JOB_NAMES:
            self.say(f"Usage: :run JOB, one of {', '.join(jobs.JOB_NAMES)}.")
            return
        now = self.runtime.services.clock()
        lines = jobs.run_job(self.runtime.jobs, name, now)
        self._drain()
        for line in lines or ["nothing to do"]:
            self.say(self._dim(f"{name}: {line}"))

    def seed_demo(self) -> None:
        from funnelbot.i18n import translator

        self.say("Adding the sample team (this takes a few seconds)…")
        result = demo.seed_demo(self.runtime.sessions, self.team_id)
        if not result.seeded:
            self.say(
                f"Workspace {self.team_id} already has {result.deals} deals; left as they are."
            )
            return
        tr = translator(self.language, self.runtime.settings.currency)
        with self.runtime.sessions() as session:
            summary = demo.funnel_summary(session, self.team_id)
        self.say(f"Added {result.deals} deals for 5 reps and 2 managers.")
        self.say(demo.summary_text(summary, tr.money, self.language))
        self.say("Try :as alice then /deal list, or :as maya then /deal list all.")

    def loop(self) -> int:
        """Read and handle lines until :quit or end of input."""
        history = self._setup_readline()
        try:
            while not self._eof:
                try:
                    line = self._read(self.prompt())
                except KeyboardInterrupt:
                    self.say("")
                    continue
                if line is None:
                    break
                try:
                    if not self.handle_line(line):
                        break
                except KeyboardInterrupt:
                    self.say("(interrupted)")
                except Exception as exc:  # noqa: BLE001 - keep the console alive
                    logger.debug("console command failed", exc_info=True)
                    self.say(f"console error: {exc!r}")
        finally:
            if history is not None:
                with contextlib.suppress(Exception):
                    history()
        self.say("bye")
        return 0

    def _setup_readline(self) -> Callable[[], None] | None:
        if not self._tty:
            return None
        try:
            import readline
        except ImportError:  # Windows without pyreadline: plain input() still works
            return None
        words = [
            "/deal ",
            "/funnel ",
            ":click ",
            ":as ",
            ":home",
            ":demo",
            ":debug",
            ":help",
            ":quit",
        ]

        def complete(text: str, state: int) -> str | None:
            matches = [w for w in words if w.startswith(text)]
            return matches[state] if state < len(matches) else None

        readline.set_completer_delims(" \t\n")
        readline.set_completer(complete)
        readline.parse_and_bind("tab: complete")
        path = self.history_file.expanduser() if self.history_file else None
        if path is not None:
            with contextlib.suppress(OSError):
                readline.read_history_file(path)
        readline.set_history_length(1000)

        def save() -> None:
            if path is not None:
                with contextlib.suppress(OSError):
                    readline.write_history_file(path)

        return save


# --- modal inputs ------------------------------------------------------------------------------

_FORMAT_HINTS = {
    "datepicker": "a date, YYYY-MM-DD ('-' clears an optional one)",
    "timepicker": "a time, HH:MM",
    "users_select": "a user id like U012ABCDEF",
    "multi_users_select": "user ids, separated by commas",
    "checkboxes": "numbers of the boxes to tick, e.g. 1,3",
    "multi_static_select": "numbers, separated by commas",
    "static_select": "a number from the list",
    "radio_buttons": "a number from the list",
    "number_input": "a number",
}


def _line_buffer() -> str:
    """What the person had typed so far (readline), to redraw after a background post."""
    try:
        import readline

        return str(readline.get_line_buffer())
    except (ImportError, AttributeError):
        return ""


def _isatty(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def _json_body(response: BoltResponse) -> dict[str, Any]:
    if not response.body:
        return {}
    try:
        loaded = json.loads(response.body)
    except ValueError:
        return {}
    return loaded if isinstance(loaded, dict) else {}


def _input_blocks(view: dict[str, Any]) -> list[dict[str, Any]]:
    blocks = []
    for i, block in enumerate(view.get("blocks") or []):
        if block.get("type") == "input":
            block.setdefault("block_id", f"input-{i}")
            blocks.append(block)
    return blocks


def _options(element: dict[str, Any]) -> list[dict[str, Any]]:
    options = list(element.get("options") or [])
    for group in element.get("option_groups") or []:
        options.extend(group.get("options") or [])
    return options


def _pick(raw: str, options: list[dict[str, Any]], *, multi: bool) -> Any:
    """Options chosen by number (or exact text/value); None if the answer is not valid."""
    parts = [p.strip() for p in raw.split(",") if p.strip()] if multi else [raw.strip()]
    chosen = []
    for part in parts:
        if part.isdigit() and 1 <= int(part) <= len(options):
            chosen.append(options[int(part) - 1])
            continue
        match = [
            o
            for o in options
            if part.casefold() in (cr.option_text(o).casefold(), str(o.get("value")).casefold())
        ]
        if not match:
            return None
        chosen.append(match[0])
    if multi:
        return chosen
    return chosen[0] if chosen else None


def _check_date(raw: str) -> str | None:
    import datetime as dt

    try:
        dt.date.fromisoformat(raw)
    except ValueError:
        return "Type a date as YYYY-MM-DD, e.g. 2025-06-30."
    return None if re.fullmatch(r"\d{4}-\d{2}-\d{2}", raw) else "Type a date as YYYY-MM-DD."


def _check_time(raw: str) -> str | None:
    return None if re.fullmatch(r"([01]\d|2[0-3]):[0-5]\d", raw) else "Type a time as HH:MM."


_VALUE_KEYS = {
    "static_select": "selected_option",
    "external_select": "selected_option",
    "radio_buttons": "selected_option",
    "multi_static_select": "selected_options",
    "multi_external_select": "selected_options",
    "checkboxes": "selected_options",
    "datepicker": "selected_date",
    "timepicker": "selected_time",
    "users_select": "selected_user",
    "multi_users_select": "selected_users",
    "conversations_select": "selected_conversation",
    "multi_conversations_select": "selected_conversations",
    "channels_select": "selected_channel",
    "multi_channels_select": "selected_channels",
}
_INITIAL_KEYS = {
    "selected_option": "initial_option",
    "selected_options": "initial_options",
    "selected_date": "initial_date",
    "selected_time": "initial_time",
    "selected_user": "initial_user",
    "selected_users": "initial_users",
    "selected_conversation": "initial_conversation",
    "selected_conversations": "initial_conversations",
    "selected_channel": "initial_channel",
    "selected_channels": "initial_channels",
}
_MULTI = frozenset(
    {"selected_options", "selected_users", "selected_conversations", "selected_channels"}
)


def _empty_state(kind: str) -> dict[str, Any]:
    key = _VALUE_KEYS.get(kind, "value")
    return {"type": kind, key: [] if key in _MULTI else None}


def _initial_state(block: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """An input's state as Slack reports it before anyone types: its initial value."""
    element = block.get("element") or {}
    kind = str(element.get("type"))
    action_id = str(element.get("action_id") or block["block_id"])
    state = _empty_state(kind)
    key = _VALUE_KEYS.get(kind, "value")
    initial = element.get(_INITIAL_KEYS.get(key, "initial_value"))
    if initial not in (None, "", []):
        state[key] = initial
    return {action_id: state}


def _state_text(state: dict[str, Any]) -> str:
    """The current value of a field, for the [default] in its prompt."""
    for key, value in state.items():
        if key == "type" or value in (None, "", []):
            continue
        if isinstance(value, dict):
            return cr.option_text(value)
        if isinstance(value, list):
            return ", ".join(cr.option_text(v) if isinstance(v, dict) else str(v) for v in value)
        return str(value)
    return ""


def _parse_input(
    kind: str,
    element: dict[str, Any],
    options: list[dict[str, Any]],
    raw: str,
    check_user: Callable[[str], str | None],
) -> tuple[dict[str, Any], str | None]:
    """The state for what was typed, or the problem Slack's client would point out."""
    key = _VALUE_KEYS.get(kind, "value")
    state: dict[str, Any] = {"type": kind}
    if key in ("selected_option", "selected_options"):
        picked = _pick(raw, options, multi=key == "selected_options")
        if picked is None:
            return state, f"Choose a number from 1 to {len(options)}."
        state[key] = picked
    elif key == "selected_date":
        problem = _check_date(raw)
        if problem:
            return state, problem
        state[key] = raw
    elif key == "selected_time":
        problem = _check_time(raw)
        if problem:
            return state, problem
        state[key] = raw
    elif key == "selected_user":
        uid = raw.lstrip("@").upper()
        problem = check_user(uid)
        if problem:
            return state, problem
        state[key] = uid
    elif key == "selected_users":
        ids = [p.strip().lstrip("@").upper() for p in raw.split(",") if p.strip()]
        bad = next((i for i in ids if check_user(i)), None)
        if bad:
            return state, f"{bad}: not a user id."
        state[key] = ids
    elif key in _MULTI:
        state[key] = [p.strip() for p in raw.split(",") if p.strip()]
    elif key != "value":
        state[key] = raw
    else:
        if kind == "number_input":
            pattern = r"-?\d+(\.\d+)?" if element.get("is_decimal_allowed") else r"-?\d+"
            if not re.fullmatch(pattern, raw):
                return state, "Type a number."
        limit = element.get("max_length")
        if isinstance(limit, int) and len(raw) > limit:
            return state, f"At most {limit} characters (this is {len(raw)})."
        least = element.get("min_length")
        if isinstance(least, int) and len(raw) < least:
            return state, f"At least {least} characters."
        state[key] = raw
    return state, None


def run(
    settings: Settings,
    *,
    user: str | None = None,
    language: str | None = None,
    team_id: str = TEAM_ID,
) -> int:
    """`funnelbot shell`: the console on this terminal until :quit or Ctrl-D."""
    if not os.environ.get("LOG_LEVEL"):
        # Log lines would interleave with the conversation; keep warnings and errors.
        logging.getLogger().setLevel(logging.WARNING)
    console = Console(settings, user=user, language=language, team_id=team_id)
    try:
        console.start()
    except Exception as exc:  # noqa: BLE001 - say what went wrong, no traceback
        logger.debug("console start failed", exc_info=True)
        print(f"funnelbot: could not start the console: {exc}", file=sys.stderr)
        return 1
    try:
        console.banner()
        if settings.scheduler_enabled:
            # Scheduled DMs and channel posts show up here as they are sent.
            console.runtime.start_scheduler()
        return console.loop()
    finally:
        console.close()
