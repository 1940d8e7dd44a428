"""Settings from the environment and `.env` (SPEC §7); one object, secrets never logged.

Settings changed in Slack are stored in the database and win over these values; this
module only knows the environment.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields

DEFAULT_DATABASE_URL = "sqlite:///funnelbot.db"
DEFAULT_SLACK_API_URL = "https://slack.com/api/"
SECRET_FIELDS = frozenset(
    {"slack_bot_token", "slack_signing_secret", "slack_app_token", "slack_client_secret"}
)


def _ids(raw: str | None) -> frozenset[str]:
    return frozenset(part.strip() for part in (raw or "").split(",") if part.strip())


def _flag(raw: str | None, default: bool) -> bool:
    if raw is None or raw.strip() == "":
        return default
    return raw.strip().lower() in {"1", "on", "true", "yes"}


def normalize_database_url(url: str) -> str:
    """`postgresql://` and `postgres://` mean PostgreSQL through psycopg 3 (SPEC §7)."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


@dataclass(frozen=True)
class Settings:
    slack_bot_token: str | None = None
    slack_signing_secret: str | None = None
    slack_app_token: str | None = None
    # OAuth distribution to many workspaces (install at /slack/install).
    slack_client_id: str | None = None
    slack_client_secret: str | None = None
    database_url: str = DEFAULT_DATABASE_URL
    port: int = 3000
    slack_api_url: str = DEFAULT_SLACK_API_URL
    timezone: str = "UTC"
    report_channel: str | None = None
    language: str = "en"
    currency: str = "USD"
    admins: frozenset[str] = field(default_factory=frozenset)
    managers: frozenset[str] = field(default_factory=frozenset)
    scheduler_enabled: bool = True
    log_level: str = "INFO"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, *, dotenv: bool = True) -> Settings:
        """Read settings from `env` (default: os.environ, after loading `.env`)."""
        if env is None:
            if dotenv:
                from dotenv import find_dotenv, load_dotenv

                # The .env of the directory the bot is started from, never one found
                # by walking up from the installed package.
                load_dotenv(find_dotenv(usecwd=True), override=False)
            env = os.environ

        def get(name: str) -> str | None:
            value = env.get(name)
            return value if value not in (None, "") else None

        api_url = get("SLACK_API_URL") or DEFAULT_SLACK_API_URL
        if not api_url.endswith("/"):
            api_url += "/"
        return cls(
            slack_bot_token=get("SLACK_BOT_TOKEN"),
            slack_signing_secret=get("SLACK_SIGNING_SECRET"),
            slack_app_token=get("SLACK_APP_TOKEN"),
            slack_client_id=get("SLACK_CLIENT_ID"),
            slack_client_secret=get("SLACK_CLIENT_SECRET"),
            database_url=normalize_database_url(get("DATABASE_URL") or DEFAULT_DATABASE_URL),
            port=int(get("PORT") or 3000),
            slack_api_url=api_url,
            timezone=get("FUNNELBOT_TIMEZONE") or "UTC",
            report_channel=get("FUNNELBOT_REPORT_CHANNEL"),
            language=(get("FUNNELBOT_LANGUAGE") or "en").lower(),
            currency=(get("FUNNELBOT_CURRENCY") or "USD").upper(),
            admins=_ids(get("FUNNELBOT_ADMINS")),
            managers=_ids(get("FUNNELBOT_MANAGERS")),
            scheduler_enabled=_flag(get("FUNNELBOT_SCHEDULER"), True),
            log_level=(get("LOG_LEVEL") or "INFO").upper(),
        )

    @property
    def oauth(self) -> bool:
        """Installed in many workspaces through OAuth, each with its own bot token."""
        return bool(self.slack_client_id and self.slack_client_secret and self.slack_signing_secret)

    @property
    def mode(self) -> str:
        """Which front door `serve` opens: socket, http or console (SPEC §6)."""
        if self.slack_bot_token and self.slack_app_token:
            return "socket"
        if (self.slack_bot_token or self.oauth) and self.slack_signing_secret:
            return "http"
        return "console"

    def __repr__(self) -> str:  # never leak a token into a log line
        shown = []
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in SECRET_FIELDS and value:
                value = "***"
            shown.append(f"{f.name}={value!r}")
        return f"Settings({', '.join(shown)})"
