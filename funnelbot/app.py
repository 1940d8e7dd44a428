"""The Bolt app: a Slack client with retries, and every listener registered."""

from __future__ import annotations

import logging

from slack_bolt import App
from slack_sdk import WebClient
from slack_sdk.http_retry.builtin_handlers import (
    ConnectionErrorRetryHandler,
    RateLimitErrorRetryHandler,
    ServerErrorRetryHandler,
)

from funnelbot.config import Settings
from funnelbot.listeners import register_listeners
from funnelbot.listeners.context import Services
from funnelbot.middleware import make_middleware

logger = logging.getLogger(__name__)


def make_client(settings: Settings, token: str | None = None) -> WebClient:
    """The Web API client: base URL from SLACK_API_URL, 429/5xx/connection errors retried."""
    return WebClient(
        token=token or settings.slack_bot_token,
        base_url=settings.slack_api_url,
        timeout=10,
        retry_handlers=[
            ConnectionErrorRetryHandler(max_retry_count=2),
            RateLimitErrorRetryHandler(max_retry_count=3),
            ServerErrorRetryHandler(max_retry_count=2),
        ],
    )


def build_bolt_app(services: Services, *, client: WebClient | None = None) -> App:
    settings = services.settings
    app = App(
        signing_secret=settings.slack_signing_secret,
        client=client or make_client(settings),
        # Ack at once; the listener goes on in Bolt's thread pool.
        process_before_response=False,
        logger=logging.getLogger("funnelbot.bolt"),
    )

    @app.error
    def on_error(error: Exception, body: dict) -> None:  # type: ignore[type-arg]
        logger.exception("unhandled error in a listener", exc_info=error)

    app.use(make_middleware(services.sessions, services.clock))
    register_listeners(app, services)
    return app
