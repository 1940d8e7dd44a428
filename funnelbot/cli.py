"""The `funnelbot` command (SPEC §6): serve, migrate, export, and friends."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import sys
from collections.abc import Sequence
from zoneinfo import ZoneInfo

import sqlalchemy as sa

from funnelbot.config import Settings

logger = logging.getLogger("funnelbot")


def _configure_logging(settings: Settings) -> None:
    logging.basicConfig(
        level=getattr(logging, settings.log_level, logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
        stream=sys.stderr,
    )
    # Migration chatter belongs to `migrate`, not to every command that checks the schema.
    logging.getLogger("alembic").setLevel(logging.WARNING)


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


def _today(settings: Settings) -> dt.date:
    return dt.datetime.now(ZoneInfo(settings.timezone)).date()


def _date(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not an ISO date (YYYY-MM-DD): {text!r}") from exc


def cmd_metrics(settings: Settings, args: argparse.Namespace) -> int:
    from funnelbot import db, metrics
    from funnelbot.periods import Period, unit_period

    engine = db.make_engine(settings.database_url)
    db.upgrade(engine)
    team = _pick_team(engine, args.team)
    today = _today(settings)
    with db.make_session_factory(engine)() as session:
        if args.which == "conversion":
            until = args.until or today
            period = Period(args.since or until - dt.timedelta(days=89), until)
            result = metrics.conversion(
                session,
                team,
                period,
                tz=settings.timezone,
                filters=metrics.Filters(owner=args.owner, source=args.source),
            )
        else:
            quarter = unit_period("quarter", args.as_of or today, 0)
            period = Period(args.since or quarter.since, args.until or quarter.until)
            result = metrics.forecast(
                session, team, period, args.as_of or today, tz=settings.timezone, owner=args.owner
            )
    engine.dispose()
    if args.json:
        json.dump(result.as_json(), sys.stdout, ensure_ascii=False, indent=2)
        sys.stdout.write("\n")
    else:
        _print_table(result.as_json())
    return 0


def _print_table(data: dict) -> None:  # type: ignore[type-arg]
    """A plain-text rendering of a metrics result for people at a terminal."""
    for key, value in data.items():
        if key == "stages":
            for stage in value:
                print("  " + "  ".join(f"{k}={_fmt(v)}" for k, v in stage.items()))
        else:
            print(f"{key}: {_fmt(value)}")


def _fmt(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if value is None:
        return "-"
    return str(value)


def cmd_import(settings: Settings, args: argparse.Namespace) -> int:
    from funnelbot import db, importer
    from funnelbot.i18n import translator

    engine = db.make_engine(settings.database_url)
    db.upgrade(engine)
    team = args.team or _existing_or_slack_team(engine, settings)
    lookup = _email_lookup(settings) if settings.slack_bot_token else None
    tr = translator("en", settings.currency)
    sessions = db.make_session_factory(engine)
    with (
        open(args.file, encoding="utf-8-sig", newline="") as source,
        sessions() as session,
        session.begin(),
    ):
        report = importer.run_import(
            session,
            team,
            source,
            tz=settings.timezone,
            lookup_owner=lookup,
            translate=lambda err: tr(err.code, **err.params),
        )
        if report.errors or args.dry_run:
            session.rollback()
    engine.dispose()
    for line in report.errors:
        print(line, file=sys.stderr)
    if report.errors:
        print(
            f"import failed: {len(report.errors)} bad row(s) of {report.rows}; nothing was imported",
            file=sys.stderr,
        )
        return 1
    verb = "would import" if args.dry_run else "imported"
    print(
        f"{verb} {report.deals} deals with {report.history} history rows into {team}",
        file=sys.stderr,
    )
    return 0


def _existing_or_slack_team(engine: sa.Engine, settings: Settings) -> str:
    from funnelbot.models import Workspace

    with engine.connect() as conn:
        teams = [t for (t,) in conn.execute(sa.select(Workspace.team_id))]
    if len(teams) == 1:
        return teams[0]
    if settings.slack_bot_token:
        from funnelbot.app import make_client

        return str(make_client(settings).auth_test()["team_id"])
    raise SystemExit("funnelbot: say which workspace to import into with --team T0123")


def _email_lookup(settings: Settings):  # type: ignore[no-untyped-def]
    from slack_sdk.errors import SlackApiError

    from funnelbot.app import make_client

    client = make_client(settings)

    def lookup(email: str) -> str | None:
        try:
            return str(client.users_lookupByEmail(email=email)["user"]["id"])
        except SlackApiError:
            return None

    return lookup


def _instant(text: str, zone: ZoneInfo) -> dt.datetime:
    """An ISO 8601 instant; without an offset it is read in the workspace time zone."""
    try:
        value = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise SystemExit(f"funnelbot: --now is not an ISO 8601 instant: {text!r}") from exc
    return (value if value.tzinfo else value.replace(tzinfo=zone)).astimezone(dt.UTC)


def cmd_jobs(settings: Settings, args: argparse.Namespace) -> int:
    """Run one job once, as if it were --now, through the same ledger as the scheduler."""
    from funnelbot import db, jobs
    from funnelbot.app import make_client

    if not settings.slack_bot_token:
        raise SystemExit(
            "funnelbot: jobs send Slack messages; set SLACK_BOT_TOKEN (see .env.example)"
        )
    now = _instant(args.now, ZoneInfo(settings.timezone)) if args.now else dt.datetime.now(dt.UTC)
    engine = db.make_engine(settings.database_url)
    db.upgrade(engine)
    context = jobs.JobContext(settings, db.make_session_factory(engine), make_client(settings))
    try:
        lines = jobs.run_job(context, args.job, now)
    finally:
        engine.dispose()
    for line in lines or ["nothing to do"]:
        print(line)
    return 0


def cmd_chart(settings: Settings, args: argparse.Namespace) -> int:
    from funnelbot import charts, db, reports
    from funnelbot.i18n import translator
    from funnelbot.periods import Period, unit_period

    engine = db.make_engine(settings.database_url)
    db.upgrade(engine)
    team = _pick_team(engine, args.team)
    today = _today(settings)
    week = unit_period("week", today, 0)
    period = Period(args.since or week.since, args.until or today)
    tr = translator(args.lang or settings.language, settings.currency)
    with db.make_session_factory(engine)() as session:
        png = charts.render_funnel(
            reports.chart_data(session, team, period, tr, tz=settings.timezone)
        )
    engine.dispose()
    with open(args.out, "wb") as out:
        out.write(png)
    print(f"wrote {args.out} ({len(png):,} bytes, {period.label()})", file=sys.stderr)
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

    met = sub.add_parser("metrics", help="funnel metrics (SPEC §5) as a table or JSON")
    met.add_argument("which", choices=("conversion", "forecast"))
    met.add_argument("--since", type=_date, help="first day (inclusive)")
    met.add_argument("--until", type=_date, help="last day (inclusive)")
    met.add_argument("--as-of", dest="as_of", type=_date, help="forecast as of this day")
    met.add_argument("--owner", help="Slack user id of a rep")
    met.add_argument("--source", help="lead source")
    met.add_argument("--json", action="store_true", help="JSON on stdout")
    met.add_argument("--team", help="Slack team id, when the database holds several workspaces")
    met.set_defaults(func=cmd_metrics)

    imp = sub.add_parser("import", help="deals and their history from a CSV file")
    imp.add_argument("file")
    imp.add_argument("--dry-run", action="store_true", help="validate and report; write nothing")
    imp.add_argument("--team", help="Slack team id to import into")
    imp.set_defaults(func=cmd_import)

    job = sub.add_parser("jobs", help="run a scheduled job once")
    job_sub = job.add_subparsers(dest="jobs_command", required=True)
    run = job_sub.add_parser("run", help="run one job as of --now (default: now)")
    run.add_argument("job", choices=("stalled-nudges", "weekly-report", "reminders"))
    run.add_argument(
        "--now", type=str, help="ISO 8601 instant; without an offset it is workspace time"
    )
    run.set_defaults(func=cmd_jobs)

    chart = sub.add_parser("chart", help="render the funnel image to a PNG file")
    chart.add_argument("--out", required=True)
    chart.add_argument("--since", type=_date)
    chart.add_argument("--until", type=_date)
    chart.add_argument("--lang", choices=("en", "zh"))
    chart.add_argument("--team")
    chart.set_defaults(func=cmd_chart)
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
