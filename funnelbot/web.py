"""The HTTP front door as one WSGI app: Slack at POST /slack/events, /healthz, /readyz.

The same callable runs under Granian in production (`serve --workers N`) and under a
threaded wsgiref server in the tests.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from typing import Any

from slack_bolt import App
from slack_bolt.adapter.wsgi import SlackRequestHandler

from funnelbot.middleware import log_request

logger = logging.getLogger(__name__)
EVENTS_PATH = "/slack/events"
OAUTH_PATHS = ("/slack/install", "/slack/oauth_redirect")
MAX_BODY = 1_000_000  # Slack payloads are far smaller; refuse anything bigger unread

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def _reply(start_response: Callable[..., Any], status: str, body: bytes) -> list[bytes]:
    start_response(
        status, [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(body)))]
    )
    return [body]


def _logged(
    app: WSGIApp, environ: dict[str, Any], start_response: Callable[..., Any]
) -> Iterable[bytes]:
    started = time.perf_counter()
    seen: list[int] = []

    def capture(status: str, headers: list[tuple[str, str]], *args: Any) -> Any:
        seen.append(int(status.split()[0]))
        return start_response(status, headers, *args)

    result = app(environ, capture)
    log_request(seen[0] if seen else 500, started)
    return result


def create_wsgi_app(bolt: App, ready: Callable[[], bool]) -> WSGIApp:
    slack = SlackRequestHandler(bolt, path=EVENTS_PATH)

    def wsgi(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        method = environ.get("REQUEST_METHOD", "GET")
        if path == "/healthz":
            return _reply(start_response, "200 OK", b"ok\n")
        if path == "/readyz":
            ok = ready()
            return _reply(
                start_response,
                "200 OK" if ok else "503 Service Unavailable",
                b"ready\n" if ok else b"database unavailable\n",
            )
        if path in OAUTH_PATHS and method == "GET" and bolt.oauth_flow is not None:
            return _logged(slack, environ, start_response)
        if path == EVENTS_PATH and method == "POST":
            try:
                length = int(environ.get("CONTENT_LENGTH") or 0)
            except ValueError:
                length = 0
            if length > MAX_BODY:
                return _reply(start_response, "413 Payload Too Large", b"too large\n")
            return _logged(slack, environ, start_response)
        return _reply(start_response, "404 Not Found", b"not found\n")

    return wsgi
