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


def configure_logging(settings: Settings) -> None:
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
    from funnelbot import db, metrics, teamconfig
    from funnelbot.periods import Period, unit_period

    engine = db.make_engine(settings.database_url)
    db.upgrade(engine)
    team = _pick_team(engine, args.team)
    with db.make_session_factory(engine)() as session:
        # The workspace's time zone as stored from Slack wins over the environment (SPEC §7).
        tz = teamconfig.load(session, settings, team).timezone
        today = dt.datetime.now(ZoneInfo(tz)).date()
        if args.which == "conversion":
            until = args.until or today
            period = Period(args.since or until - dt.timedelta(days=89), until)
            result = metrics.conversion(
                session,
                team,
                period,
                tz=tz,
                filters=metrics.Filters(owner=args.owner, source=args.source),
            )
        else:
            quarter = unit_period("quarter", args.as_of or today, 0)
            period = Period(args.since or quarter.since, args.until or quarter.until)
            result = metrics.forecast(
                session, team, period, args.as_of or today, tz=tz, owner=args.owner
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
    from funnelbot import db, importer, teamconfig
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
            tz=teamconfig.load(session, settings, team).timezone,
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

        return str(make_client(settings, settings.slack_bot_token).auth_test()["team_id"])
    raise SystemExit("funnelbot: say which workspace to import into with --team T0123")


def _email_lookup(settings: Settings):  # type: ignore[no-untyped-def]
    from slack_sdk.errors import SlackApiError

    from funnelbot.app import make_client

    client = make_client(settings, settings.slack_bot_token)

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
    context = jobs.JobContext(
        settings, db.make_session_factory(engine), make_client(settings, settings.slack_bot_token)
    )
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


def cmd_shell(settings: Settings, args: argparse.Namespace) -> int:
    from funnelbot import console

    return console.run(settings, user=args.as_user, language=args.lang, team_id=args.team)


def cmd_demo(settings: Settings, args: argparse.Namespace) -> int:
    from funnelbot import db, demo

    engine = db.make_engine(settings.database_url)
    db.upgrade(engine)
    try:
        print(demo.run_demo(db.make_session_factory(engine), settings, args.team, seed=args.seed))
    finally:
        engine.dispose()
    return 0


CLI_USER = "cli"  # who moved deals in the stage history when `stages apply --as` is not given


def _stages_team(engine: sa.Engine, wanted: str | None) -> str:
    """The workspace whose stages to show or change: --team (created with the default
    stages when new), else the only one there is."""
    from funnelbot import db
    from funnelbot import deals as domain

    if wanted:
        with db.make_session_factory(engine)() as session, session.begin():
            domain.ensure_workspace(session, wanted, domain.utcnow())
        return wanted
    from funnelbot.models import Workspace

    with engine.connect() as conn:
        if conn.execute(sa.select(sa.func.count()).select_from(Workspace)).scalar_one() == 0:
            raise SystemExit(
                "funnelbot: the database has no workspace yet; name one with --team T0123"
            )
    return _pick_team(engine, None)


def cmd_stages(settings: Settings, args: argparse.Namespace) -> int:
    """`stages show` prints the funnel definition; `stages apply` changes it (SPEC §6)."""
    from funnelbot import db, stages
    from funnelbot import deals as domain
    from funnelbot.errors import UserError
    from funnelbot.i18n import translator

    tr = translator(settings.language, settings.currency)
    if args.stages_command == "apply":
        # Read and validate the whole file before touching the database.
        try:
            with open(args.file, encoding="utf-8-sig") as source:
                text = source.read()
        except (OSError, UnicodeDecodeError) as exc:
            print(tr("stages.cli_unreadable", file=args.file, detail=exc), file=sys.stderr)
            return 1
        try:
            specs = stages.specs_from_data(stages.load(text))
        except UserError as err:
            print(tr(err.code, **err.params), file=sys.stderr)
            print(tr("stages.cli_unchanged"), file=sys.stderr)
            return 1

    engine = db.make_engine(settings.database_url)
    try:
        db.upgrade(engine)
        sessions = db.make_session_factory(engine)
        if args.stages_command == "show":
            team = _stages_team(engine, args.team)
            with sessions() as session:
                sys.stdout.write(stages.dump(stages.current_specs(session, team), args.format))
            return 0

        actor = domain.Actor(args.as_user or CLI_USER, is_admin=True)
        # A new --team is created inside the transaction: a dry run leaves no trace.
        team = args.team or _stages_team(engine, None)
        try:
            with sessions() as session, session.begin():
                now = domain.utcnow()
                domain.ensure_workspace(session, team, now)
                plan = stages.plan(session, team, specs, move_to=args.move_to)
                for line in stages.describe(plan, tr, tr.lang):
                    print(line)
                plan.check()
                if args.dry_run:
                    session.rollback()
                else:
                    plan = stages.apply(session, team, specs, actor, move_to=args.move_to, now=now)
        except UserError as err:
            print(tr(err.code, **err.params), file=sys.stderr)
            hint = "stages.cli_move_hint" if err.code == "stages.holds_deals" else None
            print(tr(hint or "stages.cli_unchanged"), file=sys.stderr)
            return 1
        if args.dry_run:
            print(tr("stages.cli_dry_run"), file=sys.stderr)
        elif not plan.empty:
            print(tr("stages.cli_applied", team=team, moved=plan.deals_to_move), file=sys.stderr)
        return 0
    finally:
        engine.dispose()


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
    serve.add_argument("--workers", type=int, default=None, help="HTTP worker processes (Granian)")
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

    shell = sub.add_parser("shell", help="the local console: try funnelbot without Slack")
    shell.add_argument("--as", dest="as_user", metavar="USER", help="start as this user id")
    shell.add_argument("--lang", choices=("en", "zh"), help="the users' Slack language")
    shell.add_argument("--team", default="T_LOCAL", help="workspace id (default T_LOCAL)")
    shell.set_defaults(func=cmd_shell)

    dem = sub.add_parser("demo", help="fill the database with a sample team and show it")
    dem.add_argument("--team", default="T_LOCAL", help="workspace id (default T_LOCAL)")
    dem.add_argument("--seed", type=int, default=42, help="random seed (default 42)")
    dem.set_defaults(func=cmd_demo)

    stg = sub.add_parser("stages", help="the funnel's open stages as a YAML/JSON file")
    stg_sub = stg.add_subparsers(dest="stages_command", required=True)
    stg_show = stg_sub.add_parser("show", help="print the current stage definition")
    stg_show.add_argument("--format", choices=("yaml", "json"), default="yaml")
    stg_show.add_argument("--team", help="Slack team id (created with the default stages if new)")
    stg_show.set_defaults(func=cmd_stages)
    stg_apply = stg_sub.add_parser(
        "apply", help="validate a stage definition file, show the changes, and apply them"
    )
    stg_apply.add_argument("file", help="YAML or JSON, as `stages show` prints it")
    stg_apply.add_argument("--dry-run", action="store_true", help="show the changes; write nothing")
    stg_apply.add_argument(
        "--move-to",
        dest="move_to",
        metavar="KEY",
        help="open stage for the deals of removed stages",
    )
    stg_apply.add_argument("--team", help="Slack team id (created with the default stages if new)")
    stg_apply.add_argument(
        "--as",
        dest="as_user",
        metavar="USER",
        help=f"user id recorded on moved deals (default {CLI_USER})",
    )
    stg_apply.set_defaults(func=cmd_stages)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    settings = Settings.from_env()
    configure_logging(settings)
    if args.command is None:
        args = parser.parse_args(["serve"])

    return int(args.func(settings, args) or 0)


if __name__ == "__main__":
    raise SystemExit(main())
