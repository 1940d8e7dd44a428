"""The `funnelbot` command (SPEC §6): serve, migrate, export, and friends."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

import sqlalchemy as sa

from funnelbot.config import Settings

logger = logging.getLogger("funnelbot")


def _configure_logging(settings: Settings) -> None:
    logging.basicConfig(
        level=getattr(logging, settings.log_level, logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
        stream=sys.stderr,
    )


def _pick_team(engine: sa.Engine, wanted: str | None) -> str:
    """The workspace to act on: the one named, or the only one there is."""
    from funnelbot.models import Workspace

    with engine.connect() as conn:
        teams = [
            t for (t,) in conn.execute(sa.select(Workspace.team_id).order_by(Workspace.team_id))
        ]
    if wanted:
        if wanted not in teams:
            raise SystemExit(
                f"funnelbot: no workspace {wanted!r} in the database (have: {', '.join(teams) or 'none'})"
            )
        return wanted
    if len(teams) == 1:
        return teams[0]
    if not teams:
        raise SystemExit("funnelbot: the database has no workspace yet (nothing to export)")
    raise SystemExit(f"funnelbot: several workspaces, pick one with --team: {', '.join(teams)}")


def cmd_migrate(settings: Settings, args: argparse.Namespace) -> int:
    from funnelbot import db

    engine = db.make_engine(settings.database_url)
    db.upgrade(engine)
    engine.dispose()
    print("database is up to date", file=sys.stderr)
    return 0


def cmd_export(settings: Settings, args: argparse.Namespace) -> int:
    from funnelbot import db, export

    engine = db.make_engine(settings.database_url)
    db.upgrade(engine)
    team = _pick_team(engine, args.team)
    with db.make_session_factory(engine)() as session:
        export.write(session, team, args.kind, args.format, sys.stdout)
    engine.dispose()
    return 0


def cmd_serve(settings: Settings, args: argparse.Namespace) -> int:
    from funnelbot import server

    return server.serve(settings, workers=args.workers)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="funnelbot", description="Run your sales funnel in Slack."
    )
    sub = parser.add_subparsers(dest="command")

    serve = sub.add_parser(
        "serve", help="Socket Mode, HTTP or the local console, by what .env holds"
    )
    serve.add_argument("--workers", type=int, default=None, help="HTTP worker processes (gunicorn)")
    serve.set_defaults(func=cmd_serve)

    migrate = sub.add_parser("migrate", help="apply database migrations")
    migrate.set_defaults(func=cmd_migrate)

    exp = sub.add_parser("export", help="deals, history or notes as CSV or JSON on stdout")
    exp.add_argument("kind", choices=("deals", "history", "notes"))
    exp.add_argument("--format", choices=("csv", "json"), default="csv")
    exp.add_argument("--team", help="Slack team id, when the database holds several workspaces")
    exp.set_defaults(func=cmd_export)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    settings = Settings.from_env()
    _configure_logging(settings)
    if args.command is None:
        args = parser.parse_args(["serve"])
    return int(args.func(settings, args) or 0)


if __name__ == "__main__":
    raise SystemExit(main())
