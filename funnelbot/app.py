"""The Bolt app: a Slack client with retries, and every listener registered."""

from __future__ import annotations

import logging

import sqlalchemy as sa
from slack_bolt import App
from slack_bolt.oauth.oauth_settings import OAuthSettings
from slack_sdk import WebClient
from slack_sdk.http_retry.builtin_handlers import (
    ConnectionErrorRetryHandler,
    RateLimitErrorRetryHandler,
    ServerErrorRetryHandler,
)

from funnelbot.ackwait import AckWaitingExecutor
from funnelbot.config import Settings
from funnelbot.listeners import register_listeners
from funnelbot.listeners.context import Services
from funnelbot.middleware import FirstDeliveryGate

logger = logging.getLogger(__name__)


def make_client(settings: Settings, token: str | None) -> WebClient:
    """The Web API client: base URL from SLACK_API_URL, 429/5xx/connection errors retried."""
    return WebClient(
        token=token,
        base_url=settings.slack_api_url,
        timeout=10,
        retry_handlers=[
            ConnectionErrorRetryHandler(max_retry_count=2),
            RateLimitErrorRetryHandler(max_retry_count=3),
            ServerErrorRetryHandler(max_retry_count=2),
        ],
    )


BOT_SCOPES = (
    "commands",
    "chat:write",
    "chat:write.public",
    "im:write",
    "users:read",
    "users:read.email",
    "files:write",
    "channels:read",
    "groups:read",
)


def oauth_settings(settings: Settings, engine: sa.Engine) -> OAuthSettings:
    """Install in many workspaces: slack_sdk's SQLAlchemy stores, in our database."""
    from slack_sdk.oauth.installation_store.sqlalchemy import SQLAlchemyInstallationStore
    from slack_sdk.oauth.state_store.sqlalchemy import SQLAlchemyOAuthStateStore

    assert settings.slack_client_id and settings.slack_client_secret
    return OAuthSettings(
        client_id=settings.slack_client_id,
        client_secret=settings.slack_client_secret,
        scopes=list(BOT_SCOPES),
        installation_store=SQLAlchemyInstallationStore(
            client_id=settings.slack_client_id, engine=engine
        ),
        state_store=SQLAlchemyOAuthStateStore(expiration_seconds=600, engine=engine),
        install_path="/slack/install",
        redirect_uri_path="/slack/oauth_redirect",
    )


def build_bolt_app(
    services: Services, engine: sa.Engine, *, client: WebClient | None = None
) -> App:
    settings = services.settings
    oauth = oauth_settings(settings, engine) if settings.oauth else None
    app = App(
        signing_secret=settings.slack_signing_secret,
        client=client or make_client(settings, token=None if oauth else settings.slack_bot_token),
        oauth_settings=oauth,
        # The listener runs in a pool; the request thread answers as soon as it acks (a
        # slow listener acks within its budget and goes on).
        process_before_response=False,
        listener_executor=AckWaitingExecutor(),
        logger=logging.getLogger("funnelbot.bolt"),
    )

    @app.error
    def on_error(error: Exception, body: dict) -> None:  # type: ignore[type-arg]
        logger.exception("unhandled error in a listener", exc_info=error)

    app.use(FirstDeliveryGate(engine, services.clock))
    register_listeners(app, services)
    return app
