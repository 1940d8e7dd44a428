"""`funnelbot serve`: Socket Mode, HTTP under gunicorn, or the local console (SPEC §6).

Migrations run once in the parent before any worker starts (and take an advisory lock on
PostgreSQL, so several replicas starting together are safe).
"""

from __future__ import annotations

import logging
import sys
from typing import Any

from funnelbot.config import Settings

logger = logging.getLogger(__name__)


def serve(settings: Settings, *, workers: int | None = None) -> int:
    mode = settings.mode
    # The console is for people at a terminal; keep its first screen clean.
    logger.log(
        logging.DEBUG if mode == "console" else logging.INFO,
        "starting funnelbot in %s mode: %r",
        mode,
        settings,
    )
    if mode == "console":
        from funnelbot import console

        return console.run(settings)
    from funnelbot import db

    engine = db.make_engine(settings.database_url)
    db.upgrade(engine)
    engine.dispose()
    if mode == "socket":
        return _serve_socket(settings)
    return serve_http(settings, workers=workers or 1)


def _serve_socket(settings: Settings) -> int:
    from slack_bolt.adapter.socket_mode import SocketModeHandler

    from funnelbot.runtime import build_runtime

    runtime = build_runtime(settings, migrate=False)
    runtime.start_scheduler()
    SocketModeHandler(runtime.bolt, settings.slack_app_token).start()
    return 0


def serve_http(settings: Settings, *, workers: int = 1, threads: int = 8) -> int:
    """Bolt behind gunicorn: N worker processes, each with its own pool and threads."""
    from gunicorn.app.base import BaseApplication

    class FunnelbotServer(BaseApplication):  # type: ignore[misc]
        def load_config(self) -> None:
            options: dict[str, Any] = {
                "bind": f"0.0.0.0:{settings.port}",
                "workers": workers,
                "worker_class": "gthread",
                "threads": threads,
                "timeout": 30,
                "graceful_timeout": 10,
                "accesslog": None,
                "loglevel": settings.log_level.lower(),
            }
            for key, value in options.items():
                self.cfg.set(key, value)

        def load(self) -> Any:
            from funnelbot.runtime import build_runtime

            runtime = build_runtime(settings, migrate=False)
            runtime.start_scheduler()
            return runtime.wsgi

    FunnelbotServer().run()
    return 0


if __name__ == "__main__":
    sys.exit(serve(Settings.from_env()))
