"""The local console (`funnelbot shell`) that stands in for Slack. Work in progress."""

from __future__ import annotations

import sys

from funnelbot.config import Settings


def run(settings: Settings) -> int:
    print(
        "funnelbot: no Slack tokens are set (SLACK_BOT_TOKEN + SLACK_SIGNING_SECRET, or "
        "SLACK_APP_TOKEN for Socket Mode).\nCopy .env.example to .env and fill them in; "
        "see README.md.",
        file=sys.stderr,
    )
    return 2
