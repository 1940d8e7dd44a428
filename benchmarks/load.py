#!/usr/bin/env python
"""Load and fault benchmark: funnelbot under Granian on PostgreSQL, next to a bare Bolt app.

    python benchmarks/load.py [--pg-url URL] [--clients 8] [--requests 500]
                              [--workers 2 4] [--no-bare] [--restart-db] [--outage 2.5]
                              [--quick] [--strict] [--seed N] [--json FILE]

For each worker count it runs, on loopback:

1. the bare Bolt app (benchmarks/bare_app.py: answers "ok" in the ack)
   under `granian --interface wsgi --workers N --blocking-threads 8`, the settings
   `funnelbot serve` uses;
2. `python -m funnelbot serve --workers N` on a fresh PostgreSQL database (scheduler off,
   LOG_LEVEL=WARNING), Slack's Web API and response_urls played by tests/fakeslack.py in
   this process.

C client threads each send R signed slash commands (`/deal new|advance|note|show`,
`/funnel`; mix in tests/loadkit.py), one at a time: a client waits for its command's
answer (in the ack, or on its own response_url) before sending the next (a person at a
keyboard; closed loop).
`ack` = request sent -> HTTP response; `answer` = request sent -> the answer: the ack itself
when it carries it (funnelbot answers in the ack when ready within its budget), else the
response_url post arriving at the fake Slack. commands/s = commands answered / wall time.

Then the database is checked against the answers (tests/loadkit.py `verify`: every change
whose answer said it succeeded is stored exactly once, nothing users were told failed is
stored, per-deal history is a gap-free chain with one row per acknowledged advance,
history versions increase, and each deal's version is 1 + its acknowledged advances and
notes: an update lost anywhere shows up here).

`--restart-db` adds a run in which PostgreSQL is stopped (fast shutdown) halfway through
the load and started again `--outage` seconds later, on the same port, without touching
the bot: commands sent while it is down must be answered with the database message
within 3 s, acks stay 200, commands work again once it is back, and the same consistency
checks hold (nothing half-written). Needs the cluster this script starts (not --pg-url).

Target (the issue): >= 200 commands/s at answer p99 < 300 ms on a 2-core machine, zero
lost updates. Exit code: 1 on any consistency or outage problem (with --strict also when
the target is missed).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import sys
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
TESTS_DIR = REPO_ROOT / "tests"
for _p in (str(TESTS_DIR), str(REPO_ROOT)):
    if _p not in sys.path:
        sys.path.insert(0, _p)

import loadkit  # noqa: E402
import pgcluster  # noqa: E402
import sqlalchemy as sa  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402

TARGET_RATE = 200.0
TARGET_P99_MS = 300.0


@dataclass
class Row:
    server: str
    workers: int
    summary: loadkit.Summary
    cpu_server: float | None = None
    cpu_postgres: float | None = None
    cpu_driver: float | None = None
    kinds: dict[str, tuple[int, float | None, float | None]] = field(default_factory=dict)
    verification: loadkit.Verification | None = None
    outage: loadkit.OutageReport | None = None
    tracebacks: list[str] = field(default_factory=list)

    @property
    def problems(self) -> list[str]:
        found = list(self.verification.problems if self.verification else [])
        found += self.outage.problems if self.outage else []
        if self.tracebacks:
            found.append(
                f"{len(self.tracebacks)} tracebacks in the server log: {self.tracebacks[:3]}"
            )
        return found


class Databases:
    """Fresh databases on the server behind a superuser URL."""

    def __init__(self, url: str) -> None:
        self.url = make_url(url)
        self.admin = sa.create_engine(url, isolation_level="AUTOCOMMIT", poolclass=sa.NullPool)
        self.n = 0

    def create(self) -> tuple[str, str]:
        self.n += 1
        name = f"funnelbot_load_{os.getpid()}_{self.n}"
        with self.admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            conn.execute(sa.text(f"CREATE DATABASE \"{name}\" TEMPLATE template0 ENCODING 'UTF8'"))
        return name, self.url.set(database=name).render_as_string(hide_password=False)

    def drop(self, name: str) -> None:
        with contextlib.suppress(sa.exc.SQLAlchemyError), self.admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def _cpu_self() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def run_one(
    args: argparse.Namespace,
    *,
    bare: bool,
    workers: int,
    fake: loadkit.AnswerLog,
    dbs: Databases,
    cluster_root: Path | None,
    logs: Path,
    restart: bool = False,
) -> Row:
    label = "bare Bolt ack" if bare else ("funnelbot + DB restart" if restart else "funnelbot")
    users = loadkit.Load.users(args.clients)
    name = url = None
    log_path = (
        logs / f"{'bare' if bare else 'funnelbot'}-w{workers}{'-restart' if restart else ''}.log"
    )
    if bare:
        server = loadkit.start_bare(workers, fake=fake, log_path=log_path)
    else:
        name, url = dbs.create()
        server = loadkit.start_funnelbot(
            workers, fake=fake, db_url=url, users=users, log_path=log_path
        )
    print(f"  {label}, {workers} workers: running …", file=sys.stderr, flush=True)
    try:
        load = loadkit.Load(
            server.url,
            fake,
            clients=args.clients,
            requests=args.requests,
            seed=args.seed,
            bare=bare,
        )
        load.warm_up()
        postmaster = loadkit.postmaster_pid(cluster_root) if cluster_root else None
        cpu0 = (
            loadkit.tree_cpu(server.pid),
            loadkit.tree_cpu(postmaster) if postmaster else None,
            _cpu_self(),
        )
        outage = thread = None
        if restart:
            assert cluster_root is not None
            outage, thread = loadkit.restart_midway(load, cluster_root, args.outage)
        records = load.run()
        if thread is not None:
            thread.join(120)
        postmaster_after = loadkit.postmaster_pid(cluster_root) if cluster_root else None
        cpu1 = (
            loadkit.tree_cpu(server.pid),
            loadkit.tree_cpu(postmaster_after) if postmaster_after else None,
            _cpu_self(),
        )
    finally:
        server.stop()
    summary = loadkit.summarize(label, records, load.started, load.finished)
    row = Row(label, workers, summary, kinds=loadkit.by_kind(records))
    row.cpu_server = cpu1[0] - cpu0[0]
    # After a restart the postmaster is a new process: its CPU is what it used since.
    if cpu1[1] is not None and cpu0[1] is not None:
        row.cpu_postgres = cpu1[1] - (cpu0[1] if postmaster_after == postmaster else 0.0)
    row.cpu_driver = cpu1[2] - cpu0[2]
    row.tracebacks = loadkit.tracebacks(server.log_text())
    if not bare:
        assert url is not None
        rules = loadkit.outage_rules(outage) if outage is not None else None
        row.verification = loadkit.verify(records, url, tag=load.tag, allowed=rules)
        if outage is not None:
            row.outage = loadkit.check_outage(records, outage)
        if name and not args.keep:
            dbs.drop(name)
    elif summary.errors:
        row.tracebacks.append(
            f"{summary.errors} bare commands not answered 'ok': {summary.outcomes}"
        )
    fake.forget_answers()
    fake.reset()
    return row


def _ms(value: float | None) -> str:
    return "—" if value is None else f"{value:.0f}"


def _per(cpu_seconds: float | None, commands: int) -> str:
    """CPU milliseconds per command."""
    return "—" if cpu_seconds is None or not commands else f"{cpu_seconds / commands * 1000:.1f}"


def print_report(args: argparse.Namespace, rows: list[Row]) -> None:
    mix = ", ".join(f"{k} {w}%" for k, w in loadkit.MIX)
    print(
        f"\nfunnelbot load: {args.clients} clients x {args.requests} commands each "
        f"(mix: {mix}); PostgreSQL; {os.cpu_count()} CPUs; Granian WSGI, 8 threads/worker"
    )
    print(
        "times in ms (ack = sent -> HTTP 200; answer = sent -> answer in the ack or response_url post received)\n"
    )
    header = (
        "| server | workers | commands | cmds/s | ack p50 | ack p99 | answer p50 | answer p99 "
        "| answer max | DB-down answers | other errors | lost updates "
        "| CPU ms/cmd server/postgres/driver |"
    )
    print(header)
    print("|" + "---|" * (header.count("|") - 1))
    for row in rows:
        s = row.summary
        lost = "—" if row.verification is None else str(row.verification.lost_updates)
        db = s.outcomes.get("db", 0)
        print(
            f"| {row.server} | {row.workers} | {s.requests} | {s.per_second:.0f} | {_ms(s.ack_p50)} "
            f"| {_ms(s.ack_p99)} | {_ms(s.answer_p50)} | {_ms(s.answer_p99)} | {_ms(s.answer_max)} "
            f"| {db} | {s.errors - db} | {lost} | {_per(row.cpu_server, s.requests)} / "
            f"{_per(row.cpu_postgres, s.requests)} / {_per(row.cpu_driver, s.requests)} |"
        )
    print("\nfunnelbot answer latency by command (ms):\n")
    kinds = [k for k, _ in loadkit.MIX]
    print("| run | " + " | ".join(f"{k} p50 / p99" for k in kinds) + " |")
    print("|---|" + "---|" * len(kinds))
    for row in rows:
        if row.verification is None:
            continue
        cells = []
        for kind in kinds:
            n, p50, p99 = row.kinds.get(kind, (0, None, None))
            cells.append(f"{_ms(p50)} / {_ms(p99)} (n={n})")
        print(f"| {row.server} x{row.workers} | " + " | ".join(cells) + " |")
    print("\nconsistency (database vs. answers):\n")
    for row in rows:
        v = row.verification
        if v is None:
            continue
        outcome = ", ".join(f"{k} {n}" for k, n in sorted(row.summary.outcomes.items()))
        print(
            f"- {row.server} x{row.workers}: {v.deals} deals, {v.history} history rows, "
            f"{v.notes} notes; acknowledged: {v.created_ok} creates, {v.advances_ok} advances, "
            f"{v.notes_ok} notes; outcomes: {outcome}; "
            + ("OK" if not row.problems else f"{len(row.problems)} PROBLEMS")
        )
        for problem in row.problems[:20]:
            print(f"    ! {problem}")
        if row.outage is not None:
            o = row.outage
            print(
                f"    outage: {o.during} commands sent while PostgreSQL was down; "
                f"{o.db_answers} answered with the database message, slowest "
                f"{_ms(o.db_answer_max_ms)} ms (limit 3000); max ack {_ms(o.ack_max_ms)} ms; "
                f"first command done {_ms(o.recovered_after_ms)} ms after PostgreSQL was back"
            )
    for row in rows:
        if row.verification is None and row.problems:
            print(f"- {row.server} x{row.workers}: " + "; ".join(row.problems))
    print()
    for row in rows:
        if row.server != "funnelbot":
            continue
        s = row.summary
        met = s.per_second >= TARGET_RATE and (s.answer_p99 or 1e9) < TARGET_P99_MS
        lost = row.verification.lost_updates if row.verification else "?"
        print(
            f"target x{row.workers}: >= {TARGET_RATE:.0f} cmds/s at answer p99 < "
            f"{TARGET_P99_MS:.0f} ms, 0 lost updates: {'MET' if met and lost == 0 else 'MISSED'} "
            f"({s.per_second:.0f} cmds/s, p99 {_ms(s.answer_p99)} ms, {lost} lost updates)"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pg-url", help="a PostgreSQL superuser URL (default: start a cluster)")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--requests", type=int, default=500, help="commands per client")
    parser.add_argument("--workers", type=int, nargs="+", default=[2, 4])
    parser.add_argument("--no-bare", action="store_true", help="skip the bare Bolt runs")
    parser.add_argument("--restart-db", action="store_true", help="add the DB restart run")
    parser.add_argument("--outage", type=float, default=2.5, help="seconds the database is down")
    parser.add_argument("--only-restart", action="store_true", help="just the DB restart run")
    parser.add_argument("--quick", action="store_true", help="4 clients x 40, 2 workers")
    parser.add_argument("--strict", action="store_true", help="exit 1 when the target is missed")
    parser.add_argument("--keep", action="store_true", help="keep the databases and logs")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    if args.quick:
        args.clients, args.requests, args.workers = 4, 40, [2]
    if args.only_restart:
        args.restart_db = True
    if args.restart_db and args.pg_url:
        parser.error("--restart-db restarts the cluster this script starts; drop --pg-url")

    logs = Path(tempfile.mkdtemp(prefix="funnelbot-load-"))
    cluster_root: Path | None = None
    if args.pg_url:
        pg_url = args.pg_url
    else:
        print("starting PostgreSQL …", file=sys.stderr, flush=True)
        pg_url, cluster_root = pgcluster.start_cluster()
    dbs = Databases(pg_url)
    fake = loadkit.AnswerLog().start()
    rows: list[Row] = []
    try:
        if not args.only_restart:
            for workers in args.workers:
                if not args.no_bare:
                    rows.append(
                        run_one(
                            args,
                            bare=True,
                            workers=workers,
                            fake=fake,
                            dbs=dbs,
                            cluster_root=cluster_root,
                            logs=logs,
                        )
                    )
                rows.append(
                    run_one(
                        args,
                        bare=False,
                        workers=workers,
                        fake=fake,
                        dbs=dbs,
                        cluster_root=cluster_root,
                        logs=logs,
                    )
                )
        if args.restart_db:
            rows.append(
                run_one(
                    args,
                    bare=False,
                    workers=args.workers[0],
                    fake=fake,
                    dbs=dbs,
                    cluster_root=cluster_root,
                    logs=logs,
                    restart=True,
                )
            )
    finally:
        fake.stop()
        dbs.admin.dispose()
        if cluster_root is not None and not args.keep:
            pgcluster.stop(cluster_root)
    print_report(args, rows)
    print(f"\nserver logs: {logs}")
    if args.json:
        args.json.write_text(json.dumps([_jsonable(r) for r in rows], indent=2, default=str))
    failed = any(r.problems for r in rows)
    missed = any(
        r.server == "funnelbot"
        and (r.summary.per_second < TARGET_RATE or (r.summary.answer_p99 or 1e9) >= TARGET_P99_MS)
        for r in rows
    )
    return 1 if failed or (args.strict and missed) else 0


def _jsonable(row: Row) -> dict[str, Any]:
    out = asdict(row)
    out["problems"] = row.problems
    return out


if __name__ == "__main__":
    sys.exit(main())
