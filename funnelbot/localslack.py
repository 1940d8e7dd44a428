"""A small local stand-in for Slack's Web API, for the console (`funnelbot shell`).

The console builds the real Bolt app with `slack_api_url` pointing here, so every
`client.chat_postMessage`, `views_open` or `respond(...)` the handlers make lands on
127.0.0.1 instead of slack.com. Each call is answered the way Slack answers it and then
handed to `on_call` for display. It keeps what a Slack client would show again: messages
by (channel, ts), open views by id, each user's published Home tab, uploaded files
(written to `files_dir`).

Served paths: `/api/<method>` (auth.test, chat.postMessage/postEphemeral/update/delete/
getPermalink/scheduleMessage, views.open/update/push/publish, conversations.open/info,
users.info/lookupByEmail, files.getUploadURLExternal/completeUploadExternal, files.upload;
anything else answers `{"ok": true}`), `/response/<id>` (response_url) and `/upload/<id>`.
"""

from __future__ import annotations

import contextlib
import email.parser
import email.policy
import itertools
import json
import logging
import re
import tempfile
import threading
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

logger = logging.getLogger(__name__)

BOT_USER_ID = "UFUNNELBOT"
BOT_ID = "BFUNNELBOT"
APP_ID = "AFUNNELBOT"
TEAM_NAME = "funnelbot (local)"
# Form fields slack_sdk sends as JSON text.
JSON_FIELDS = frozenset({"blocks", "attachments", "view", "files", "metadata"})
# What a person sees in Slack; everything else (auth.test, users.info…) is plumbing.
SHOWN = frozenset(
    {
        "chat.postMessage",
        "chat.postEphemeral",
        "chat.update",
        "chat.delete",
        "chat.scheduleMessage",
        "views.open",
        "views.update",
        "views.push",
        "views.publish",
        "files.completeUploadExternal",
        "files.upload",
        "response_url",
    }
)
_SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass
class ApiCall:
    """One request the app made, with the answer it got."""

    method: str
    params: dict[str, Any]
    response: dict[str, Any] = field(default_factory=dict)
    # For response_url calls: the id in /response/<id>.
    response_id: str | None = None

    @property
    def shown(self) -> bool:
        return self.method in SHOWN and bool(self.response.get("ok", True))


def _decode_json_fields(params: dict[str, Any]) -> dict[str, Any]:
    for key in JSON_FIELDS & params.keys():
        value = params[key]
        if isinstance(value, str) and value[:1] in ("[", "{"):
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


class LocalSlack:
    """A threaded HTTP server on 127.0.0.1 playing Slack's Web API for one local team."""

    def __init__(
        self,
        *,
        team_id: str = "T_LOCAL",
        on_call: Callable[[ApiCall], None] | None = None,
        users: Mapping[str, Mapping[str, Any]] | None = None,
        locale: str = "en-US",
        files_dir: str | Path | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.team_id = team_id
        self.on_call = on_call
        self.users: dict[str, dict[str, Any]] = {k: dict(v) for k, v in (users or {}).items()}
        self.locale = locale
        self._files_dir = Path(files_dir) if files_dir else None
        self.messages: dict[tuple[str, str], dict[str, Any]] = {}
        self.views: dict[str, dict[str, Any]] = {}
        self.home: dict[str, dict[str, Any]] = {}
        self.files: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()
        self._counter = itertools.count(1)
        self._server = ThreadingHTTPServer((host, port), _make_handler(self))
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None
        h, p = self._server.server_address[:2]
        self.base_url = f"http://{h}:{p}"
        self.url = f"{self.base_url}/api/"

    # -- lifecycle ---------------------------------------------------------------------

    def start(self) -> LocalSlack:
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="funnelbot-localslack",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread is not None:  # shutdown() would wait forever on a server never started
            self._server.shutdown()
            self._thread.join(timeout=5)
            self._thread = None
        self._server.server_close()

    def __enter__(self) -> LocalSlack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- what the console asks -----------------------------------------------------------

    def response_url(self) -> str:
        """A fresh response_url, as Slack puts in a command or a click."""
        return f"{self.base_url}/response/{uuid.uuid4().hex}"

    def user(self, uid: str) -> dict[str, Any]:
        known = self.users.get(uid, {})
        name = str(known.get("real_name") or known.get("name") or uid)
        handle = str(known.get("name") or uid.lower())
        return {
            "id": uid,
            "team_id": self.team_id,
            "name": handle,
            "real_name": name,
            "deleted": False,
            "is_bot": uid == BOT_USER_ID,
            "is_admin": bool(known.get("is_admin", False)),
            "tz": known.get("tz", "UTC"),
            "tz_label": "Coordinated Universal Time",
            "tz_offset": 0,
            "locale": known.get("locale") or self.locale,
            "profile": {
                "real_name": name,
                "display_name": handle,
                "email": known.get("email") or f"{handle}@example.com",
            },
        }

    @property
    def files_dir(self) -> Path:
        if self._files_dir is None:
            self._files_dir = Path(tempfile.mkdtemp(prefix="funnelbot-console-files-"))
        self._files_dir.mkdir(parents=True, exist_ok=True)
        return self._files_dir

    # -- internals -----------------------------------------------------------------------

    def _next(self) -> int:
        return next(self._counter)

    def _ts(self) -> str:
        import time

        n = self._next()
        return f"{int(time.time())}.{n:06d}"

    def _deliver(self, call: ApiCall) -> None:
        if self.on_call is None:
            return
        try:
            self.on_call(call)
        except Exception:  # a display problem must not fail the app's call
            logger.exception("the console could not show %s", call.method)

    def handle(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        """Answer one Web API call the way Slack would."""
        if method == "auth.test":
            return {
                "ok": True,
                "url": "http://localhost/",
                "team": TEAM_NAME,
                "user": "funnelbot",
                "team_id": self.team_id,
                "user_id": BOT_USER_ID,
                "bot_id": BOT_ID,
                "app_id": APP_ID,
                "is_enterprise_install": False,
            }
        if method in (
            "chat.postMessage",
            "chat.postEphemeral",
            "chat.update",
            "chat.scheduleMessage",
        ):
            return self._chat(method, params)
        if method == "chat.delete":
            with self._lock:
                self.messages.pop((str(params.get("channel")), str(params.get("ts"))), None)
            return {"ok": True, "channel": params.get("channel"), "ts": params.get("ts")}
        if method == "chat.getPermalink":
            ts = str(params.get("message_ts", "")).replace(".", "")
            return {
                "ok": True,
                "channel": params.get("channel"),
                "permalink": f"{self.base_url}/archives/{params.get('channel')}/p{ts}",
            }
        if method.startswith("views."):
            return self._view(method, params)
        if method == "conversations.open":
            users = [u for u in str(params.get("users") or "").split(",") if u]
            if not users:
                return {"ok": False, "error": "users_list_not_supplied"}
            return {"ok": True, "channel": {"id": "D" + users[0], "is_im": True}}
        if method == "conversations.info":
            cid = str(params.get("channel", ""))
            return {"ok": True, "channel": {"id": cid, "name": cid.lower(), "is_member": True}}
        if method == "users.info":
            uid = str(params.get("user") or "")
            if not uid:
                return {"ok": False, "error": "user_not_found"}
            return {"ok": True, "user": self.user(uid)}
        if method == "users.lookupByEmail":
            wanted = str(params.get("email") or "").lower()
            for uid in list(self.users):
                user = self.user(uid)
                if user["profile"]["email"].lower() == wanted:
                    return {"ok": True, "user": user}
            return {"ok": False, "error": "users_not_found"}
        if method == "files.getUploadURLExternal":
            if not params.get("filename") or not params.get("length"):
                return {"ok": False, "error": "invalid_arguments"}
            fid = f"F{self._next():08d}"
            with self._lock:
                self.files[fid] = {
                    "id": fid,
                    "filename": str(params["filename"]),
                    "alt_txt": params.get("alt_txt"),
                    "path": None,
                }
            return {"ok": True, "upload_url": f"{self.base_url}/upload/{fid}", "file_id": fid}
        if method == "files.completeUploadExternal":
            return self._complete_upload(params)
        if method == "files.upload":
            return self._legacy_upload(params)
        return {"ok": True}

    def _chat(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        channel = str(params.get("channel") or "")
        if not channel:
            return {"ok": False, "error": "channel_not_found"}
        if not (params.get("text") or params.get("blocks") or params.get("attachments")):
            return {"ok": False, "error": "no_text"}
        if channel[:1] in ("U", "W") and method != "chat.postEphemeral":
            channel = "D" + channel  # a user id as channel: the DM with them
        if method == "chat.update":
            ts = str(params.get("ts") or "")
            if not ts:
                return {"ok": False, "error": "message_not_found"}
        else:
            ts = self._ts()
        params["channel"] = channel
        message = {
            "type": "message",
            "user": BOT_USER_ID,
            "bot_id": BOT_ID,
            "text": params.get("text", ""),
            "blocks": params.get("blocks") or [],
            "ts": ts,
        }
        if method != "chat.postEphemeral":
            with self._lock:
                self.messages[(channel, ts)] = dict(params, ts=ts)
        answer: dict[str, Any] = {"ok": True, "channel": channel, "ts": ts, "message": message}
        if method == "chat.postEphemeral":
            answer = {"ok": True, "message_ts": ts}
        if method == "chat.scheduleMessage":
            answer["scheduled_message_id"] = f"Q{ts.replace('.', '')}"
            answer["post_at"] = params.get("post_at")
        return answer

    def _view(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        view = params.get("view")
        if not isinstance(view, dict):
            return {"ok": False, "error": "invalid_arguments"}
        if method in ("views.open", "views.push") and not params.get("trigger_id"):
            return {"ok": False, "error": "invalid_arguments"}
        with self._lock:
            if method == "views.update":
                view_id = str(params.get("view_id") or "")
                if not view_id and params.get("external_id"):
                    view_id = next(
                        (
                            k
                            for k, v in self.views.items()
                            if v.get("external_id") == params["external_id"]
                        ),
                        "",
                    )
                homes = {v.get("id"): user for user, v in self.home.items()}
                if view_id in homes:  # a Home tab: update it in place
                    method = "views.publish"
                    params["user_id"] = homes[view_id]
                    previous = self.home[homes[view_id]]
                elif view_id not in self.views:
                    return {"ok": False, "error": "not_found"}
                else:
                    previous = self.views[view_id]
                root, before = previous.get("root_view_id"), previous.get("previous_view_id")
            elif method == "views.publish":
                user_id = str(params.get("user_id") or "")
                if not user_id:
                    return {"ok": False, "error": "invalid_arguments"}
                view_id = (self.home.get(user_id) or {}).get("id") or f"V{self._next():08d}"
                root, before = view_id, None
            else:
                view_id = f"V{self._next():08d}"
                root, before = view_id, None
                if method == "views.push":
                    # Pushed on top of the most recent modal, as in Slack.
                    stack = [v for v in self.views.values() if v.get("type") == "modal"]
                    if stack:
                        before = stack[-1]["id"]
                        root = stack[-1].get("root_view_id") or before
            shown = dict(view)
            shown.update(
                id=view_id,
                team_id=self.team_id,
                app_id=APP_ID,
                bot_id=BOT_ID,
                hash=uuid.uuid4().hex[:16],
                root_view_id=root,
                previous_view_id=before,
                state={"values": {}},
                private_metadata=view.get("private_metadata", ""),
                callback_id=view.get("callback_id", ""),
                external_id=view.get("external_id", ""),
            )
            if method == "views.publish":
                self.home[str(params["user_id"])] = shown
            else:
                self.views[view_id] = shown
        return {"ok": True, "view": shown}

    def forget_view(self, view_id: str) -> None:
        with self._lock:
            self.views.pop(view_id, None)

    def _save_file(self, fid: str, filename: str, data: bytes) -> Path:
        name = _SAFE_NAME.sub("_", Path(filename).name) or "file"
        path = self.files_dir / f"{fid}-{name}"
        path.write_bytes(data)
        return path

    def upload(self, fid: str, data: bytes) -> bool:
        with self._lock:
            known = self.files.get(fid)
        if known is None:
            return False
        known["path"] = str(self._save_file(fid, known["filename"], data))
        known["length"] = len(data)
        return True

    def _complete_upload(self, params: dict[str, Any]) -> dict[str, Any]:
        files = params.get("files")
        if not isinstance(files, list) or not files:
            return {"ok": False, "error": "invalid_arguments"}
        out = []
        for f in files:
            known = self.files.get(str(f.get("id")))
            if known is None or known.get("path") is None:
                return {"ok": False, "error": "file_not_found"}
            known.update(title=f.get("title"), channel=params.get("channel_id"))
            out.append(
                {
                    "id": known["id"],
                    "name": known["filename"],
                    "title": f.get("title") or known["filename"],
                    "path": known["path"],
                    "alt_txt": known.get("alt_txt"),
                }
            )
        params["files"] = out
        return {"ok": True, "files": out}

    def _legacy_upload(self, params: dict[str, Any]) -> dict[str, Any]:
        upload = params.get("file")
        content = params.get("content")
        fid = f"F{self._next():08d}"
        filename = str(params.get("filename") or "file")
        if isinstance(upload, dict):
            data, filename = upload["bytes"], str(params.get("filename") or upload["filename"])
        elif isinstance(content, str):
            data = content.encode()
        else:
            return {"ok": False, "error": "no_file_data"}
        path = self._save_file(fid, filename, data)
        info = {
            "id": fid,
            "name": filename,
            "title": params.get("title") or filename,
            "path": str(path),
        }
        with self._lock:
            self.files[fid] = dict(info, filename=filename)
        params.pop("file", None)
        params["files"] = [info]
        params["channel_id"] = params.get("channels") or params.get("channel_id")
        return {"ok": True, "file": info}


def _make_handler(slack: LocalSlack) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "funnelbot-localslack/1.0"

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            pass

        def do_GET(self) -> None:
            self._handle()

        def do_POST(self) -> None:
            self._handle()

        def _body(self) -> bytes:
            length = int(self.headers.get("Content-Length") or 0)
            return self.rfile.read(length) if length else b""

        def _send(self, status: int, payload: Any) -> None:
            data = json.dumps(payload, ensure_ascii=False).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
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
                elif ctype.startswith("multipart/form-data"):
                    params.update(_parse_multipart(ctype, body))
                else:
                    params.update(parse_qsl(body.decode("utf-8"), keep_blank_values=True))
            return _decode_json_fields(params)

        def _handle(self) -> None:
            split = urlsplit(self.path)
            path = split.path
            try:
                body = self._body()
                if path.startswith("/api/"):
                    method = path[len("/api/") :]
                    params = self._params(body, split.query)
                    params.pop("token", None)
                    answer = slack.handle(method, params)
                    call = ApiCall(method, params, answer)
                elif path.startswith("/response/"):
                    try:
                        params = json.loads(body.decode("utf-8")) if body else {}
                    except ValueError:
                        params = _decode_json_fields(dict(parse_qsl(body.decode("utf-8"))))
                    if not isinstance(params, dict):
                        params = {}
                    answer = {"ok": True}
                    call = ApiCall(
                        "response_url", params, answer, response_id=path.rsplit("/", 1)[-1]
                    )
                elif path.startswith("/upload/"):
                    ok = slack.upload(path.rsplit("/", 1)[-1], body)
                    self._send(200 if ok else 404, {"ok": ok})
                    return
                else:
                    self._send(404, {"ok": False, "error": "not_found"})
                    return
                slack._deliver(call)
                self._send(200, answer)
            except Exception as exc:  # noqa: BLE001 - answer like a server error, log it
                logger.exception("local Slack failed on %s", path)
                self._send(500, {"ok": False, "error": "internal_error", "detail": repr(exc)})

    return Handler
