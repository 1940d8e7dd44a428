"""A bare Bolt app: the yardstick for benchmarks/load.py.

`/deal` and `/funnel` answer "ok" in the ack at once, with the same Bolt machinery
(signature check, listener thread pool, answer in the ack body, as funnelbot gives an
answer ready within its ack budget) and served by the same Granian settings as
`funnelbot serve --workers N`, but no database, no parsing and no rendering:

    SLACK_BOT_TOKEN=xoxb-… SLACK_SIGNING_SECRET=… SLACK_API_URL=http://…/api/ \\
        python -m granian --interface wsgi --workers 2 --blocking-threads 8 benchmarks.bare_app:app
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable, Iterable
from typing import Any

from slack_bolt import Ack, App
from slack_bolt.adapter.wsgi import SlackRequestHandler
from slack_sdk import WebClient

bolt = App(
    signing_secret=os.environ["SLACK_SIGNING_SECRET"],
    client=WebClient(
        token=os.environ["SLACK_BOT_TOKEN"],
        base_url=os.environ.get("SLACK_API_URL") or "https://slack.com/api/",
    ),
    process_before_response=False,
    logger=logging.getLogger("bare"),
)


@bolt.command(re.compile(r"^/(deal|funnel)$"))
def answer(ack: Ack) -> None:
    ack(text="ok", response_type="ephemeral")


_slack = SlackRequestHandler(bolt, path="/slack/events")


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    if environ.get("PATH_INFO") == "/healthz":
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "3")])
        return [b"ok\n"]
    return _slack(environ, start_response)
