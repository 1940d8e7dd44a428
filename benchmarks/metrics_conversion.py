#!/usr/bin/env python
"""`metrics conversion` over a full year with 1,000,000 deals, on SQLite and PostgreSQL.

    python benchmarks/metrics_conversion.py [--deals 1000000] [--backend sqlite|postgresql|both]
                                            [--pg-url URL] [--quick] [--repeat 3] [--warmup 1]
                                            [--no-cli] [--strict] [--seed N]
    python benchmarks/metrics_conversion.py --measure-only --db-url URL [--team T]
                                            [--repeat 3] [--warmup 1] [--no-cli] [--seed N]

What it does, in one run:

1. Generates N deals (default 1,000,000) with realistic stage histories, about four
   `stage_changes` rows per deal (~4,000,000 rows), and loads them into each backend at
   once (one pass of the generator feeds every backend):
   - deals are created over 2025-10-01 .. 2026-11-27 in creation order (deal ids follow
     creation); each starts in a stage (mostly `lead`), moves forward through 1-5 stages
     with skips and a few moves back, and ends ~25 % won and ~35 % lost (from various
     stages) or stays open; a few closed deals are reopened (and mostly closed again).
     Nothing happens after NOW = 2026-11-28, so recent deals are more often still open.
   - history rows get their ids in global time order, as in production (the generator
     holds the not-yet-due rows of recent deals in a heap, so memory stays bounded);
   - SQLite: `funnelbot.db.make_engine` + `upgrade`, then SQLAlchemy Core executemany in
     chunks inside one transaction (PRAGMA synchronous=OFF while loading), ANALYZE and a
     WAL checkpoint;
   - PostgreSQL: the same schema, then COPY through psycopg's `cursor.copy()`, the id
     sequences moved past the data, VACUUM ANALYZE. Without --pg-url a throwaway cluster
     is started with tests/pgcluster.py and stopped at the end; with --pg-url a fresh
     database `funnelbot_bench_<pid>` is created on that server and dropped at the end.
2. For each backend, runs a fresh subprocess of this script (`--measure-only`) that
   times, in interleaved rounds (random order per round, --warmup rounds unmeasured):
   (a) the scan floor `SELECT count(*), max(at) FROM stage_changes`,
   (b) `funnelbot.metrics.conversion(session, team, Period(2026-01-01, 2026-12-31))`,
   (c) the CLI `python -m funnelbot metrics conversion --since 2026-01-01 --until
       2026-12-31 --json --team T` as a subprocess, wall time (skip with --no-cli).
   The subprocess reports its own peak RSS (getrusage ru_maxrss): that figure is the
   metric's memory, not the generator's.
3. Checks the result: reached/advanced/open/lost per stage and won/lost/created against
   counts the generator kept while generating; with --quick, the whole JSON document
   (stay averages and medians, Wilson intervals, cycle time) against an independent
   Python computation over the generated events (tests/metrics_model.py); and that the
   CLI printed the same document.

Targets (the issue): conversion within 5x of the scan floor, under 3 s on SQLite, peak
memory under 300 MB; judged on the medians. Exit code 0 unless a check failed (or, with
--strict, a target was missed).
"""

from __future__ import annotations

import argparse
import datetime as dt
import heapq
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from contextlib import ExitStack
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
TESTS_DIR = REPO_ROOT / "tests"
for _p in (str(TESTS_DIR), str(REPO_ROOT)):
    if _p not in sys.path:
        sys.path.insert(0, _p)

import sqlalchemy as sa  # noqa: E402
from sample_data import COMPANIES, PRODUCTS, SOURCES  # noqa: E402 - benchmarks/ is on sys.path

from funnelbot import db  # noqa: E402
from funnelbot import deals as domain  # noqa: E402
from funnelbot.config import normalize_database_url  # noqa: E402
from funnelbot.models import Deal, StageChange, UTCDateTime, Workspace  # noqa: E402
from funnelbot.periods import Period  # noqa: E402

TEAM_ID = "T0BENCH"
UTC = dt.UTC
NOW = dt.datetime(2026, 11, 28, tzinfo=UTC)  # nothing happens after this instant
FIRST_CREATED = dt.datetime(2025, 10, 1, tzinfo=UTC)
LAST_CREATED = NOW - dt.timedelta(days=1)
PERIOD = Period(dt.date(2026, 1, 1), dt.date(2026, 12, 31))
FLOOR_SQL = "SELECT count(*), max(at) FROM stage_changes"

CHUNK = 20_000  # deals generated (and inserted) per chunk
CHANGE_CHUNK = 50_000  # history rows per executemany / COPY batch
OWNERS = 40
TARGET_RATIO = 5.0
TARGET_SQLITE_S = 3.0
TARGET_RSS_MB = 300.0

# The default funnel (the migration's seed): four open stages, then won and lost.
KEYS = ("lead", "interest", "proposal", "negotiation", "won", "lost")
OPEN_N = 4
WON_I, LOST_I = 4, 5
RANK = (0, 1, 2, 3, 4, -1)  # funnel rank by stage index: won beyond every open stage
# How deals are born, end, and how far they get (weights over the open stages).
# Planned outcomes are a little above 25 % won / 35 % lost: histories are cut at NOW, so
# recent deals end up open more often; what the data holds is printed after generating
# (about 24.6 % won, 34.6 % lost, 40.7 % open and 3.9 history rows per deal).
START_WEIGHTS = (85, 8, 5, 2)
OUTCOMES = ("won", "lost", "open")
OUTCOME_WEIGHTS = (27, 37, 36)
FURTHEST_WEIGHTS = {"won": (1, 2, 4, 14), "lost": (2, 4, 4, 3), "open": (2, 3, 3, 3)}
SKIP_P = 0.15  # a forward move jumps a stage
BACK_P = 0.2  # after a forward move, the deal is moved back 1-2 stages (at most twice)
REOPEN_P = 0.05  # a closed deal is reopened to the stage it was closed from ...
RECLOSE_P = 0.6  # ... and then closed again the same way
MEAN_GAP_S = 7 * 86400
MIN_GAP_S, MAX_GAP_S = 600, 120 * 86400

LOST_REASONS = ("Budget", "Competitor", "Timing", "No decision", None)

DEAL_COLS = (
    "id",
    "team_id",
    "number",
    "name",
    "name_folded",
    "amount",
    "owner_id",
    "stage_id",
    "status",
    "source",
    "expected_close",
    "next_step",
    "next_step_due",
    "lost_reason",
    "created_by",
    "created_at",
    "updated_at",
    "last_activity_at",
    "closed_at",
    "snoozed_until",
    "version",
    "furthest_stage_id",
    "lost_from_stage_id",
)
CHANGE_COLS = (
    "id",
    "team_id",
    "deal_id",
    "from_stage_id",
    "to_stage_id",
    "at",
    "by",
    "deal_version",
    "stay_days",
    "deal_created_at",
)


# --------------------------------------------------------------------------------------
# Data generation


def plan_history(rng: random.Random, created: int) -> list[tuple[int, int]]:
    """(epoch second, stage index) of the creation and every stage change of one deal."""
    start = rng.choices(range(OPEN_N), START_WEIGHTS)[0]
    outcome = rng.choices(OUTCOMES, OUTCOME_WEIGHTS)[0]
    weights = FURTHEST_WEIGHTS[outcome][start:]
    furthest = start + rng.choices(range(len(weights)), weights)[0]
    path = [start]
    cur, backs = start, 0
    while cur < furthest:
        cur = min(furthest, cur + (2 if rng.random() < SKIP_P else 1))
        path.append(cur)
        if cur > 0 and backs < 2 and rng.random() < BACK_P:
            cur = rng.randrange(max(0, cur - 2), cur)
            path.append(cur)
            backs += 1
    if outcome != "open":
        path.append(WON_I if outcome == "won" else LOST_I)
        if rng.random() < REOPEN_P:
            path.append(path[-2])  # back to the stage it was closed from
            if rng.random() < RECLOSE_P:
                path.append(path[-2])
    events = [(created, start)]
    at = created
    limit = int(NOW.timestamp())
    for stage in path[1:]:
        gap = min(MAX_GAP_S, MIN_GAP_S + int(rng.expovariate(1 / MEAN_GAP_S)))
        at += gap
        if at >= limit:
            break  # not happened yet: the deal stays where it is
        events.append((at, stage))
    return events


@dataclass
class Expected:
    """What conversion() must find for the benchmark period, kept while generating."""

    start: int
    end: int
    created: int = 0
    won: int = 0
    lost: int = 0
    furthest: list[int] = field(default_factory=lambda: [0] * 6)  # by stage index (-1: lost)
    open_at: list[int] = field(default_factory=lambda: [0] * OPEN_N)
    lost_from: list[int] = field(default_factory=lambda: [0] * OPEN_N)
    plans: list[Any] | None = None  # tests/metrics_model.Plan per deal, for the full check

    def add(self, created: int, events: list[tuple[int, int]]) -> None:
        if not self.start <= created < self.end:
            return
        self.created += 1
        best = max(events, key=lambda e: RANK[e[1]])[1]
        self.furthest[best] += 1
        final = events[-1][1]
        if final == WON_I:
            self.won += 1
        elif final == LOST_I:
            self.lost += 1
            self.lost_from[events[-2][1]] += 1
        else:
            self.open_at[final] += 1

    def reached(self, index: int) -> int:
        rank = RANK[index]
        return sum(n for i, n in enumerate(self.furthest) if RANK[i] >= rank)


@dataclass
class Generated:
    deals: int = 0
    changes: int = 0
    won: int = 0
    lost: int = 0
    open: int = 0
    back_moves: int = 0
    seconds: float = 0.0


class Sink:
    """Where generated rows go; one per backend."""

    label = ""

    def deals(self, rows: list[tuple[Any, ...]]) -> None:
        raise NotImplementedError

    def changes(self, rows: list[tuple[Any, ...]]) -> None:
        raise NotImplementedError

    def finish(self) -> None:
        raise NotImplementedError


def generate(
    n: int, sinks: list[Sink], stage_ids: list[int], rng: random.Random, expected: Expected
) -> Generated:
    """N deals and their histories into every sink, in chunks; history ids in time order."""
    started = time.perf_counter()
    stats = Generated(deals=n)
    owners = [f"U{i:04d}BENCH" for i in range(1, OWNERS + 1)]
    first, last = int(FIRST_CREATED.timestamp()), int(LAST_CREATED.timestamp())
    span = last - first
    status_of = ("open",) * OPEN_N + ("won", "lost")
    # (at, deal, version, from, to, owner, entered `from` at, deal created at)
    pending: list[tuple[int, int, int, int, int, int, int, int]] = []
    next_change_id = 1

    def stamp(t: int) -> dt.datetime:
        return dt.datetime.fromtimestamp(t, UTC)

    def flush_changes(before: int | None) -> None:
        nonlocal next_change_id
        rows: list[tuple[Any, ...]] = []
        while pending and (before is None or pending[0][0] < before):
            at, deal_id, version, from_i, to_i, owner, entered, created = heapq.heappop(pending)
            rows.append(
                (
                    next_change_id,
                    TEAM_ID,
                    deal_id,
                    None if from_i < 0 else stage_ids[from_i],
                    stage_ids[to_i],
                    stamp(at),
                    owners[owner],
                    version,
                    None if from_i < 0 else (at - entered) / 86400,
                    stamp(created),
                )
            )
            next_change_id += 1
            if len(rows) >= CHANGE_CHUNK:
                for sink in sinks:
                    sink.changes(rows)
                rows = []
        if rows:
            for sink in sinks:
                sink.changes(rows)

    for chunk_start in range(0, n, CHUNK):
        size = min(CHUNK, n - chunk_start)
        # Creation times in order: this chunk's share of the span, sorted.
        lo = first + span * chunk_start // n
        hi = first + span * (chunk_start + size) // n
        created_times = sorted(rng.randrange(lo, max(lo + 1, hi)) for _ in range(size))
        deal_rows: list[tuple[Any, ...]] = []
        for offset, created in enumerate(created_times):
            number = chunk_start + offset + 1
            events = plan_history(rng, created)
            expected.add(created, events)
            if expected.plans is not None and expected.start <= created < expected.end:
                expected.plans.append(_plan(number, events))
            owner = rng.randrange(OWNERS)
            prev, prev_at = -1, created
            for version, (at, stage) in enumerate(events, start=1):
                heapq.heappush(pending, (at, number, version, prev, stage, owner, prev_at, created))
                if 0 <= stage < prev < OPEN_N:
                    stats.back_moves += 1
                prev, prev_at = stage, at
            furthest = max((stage for _, stage in events), key=lambda i: RANK[i])
            stats.changes += len(events)
            final_at, final = events[-1]
            status = status_of[final]
            if status == "won":
                stats.won += 1
            elif status == "lost":
                stats.lost += 1
            else:
                stats.open += 1
            name = f"{COMPANIES[number % len(COMPANIES)]} {rng.choice(PRODUCTS)} {number}"
            has_next = status == "open" and rng.random() < 0.5
            created_dt, final_dt = stamp(created), stamp(final_at)
            deal_rows.append(
                (
                    number,
                    TEAM_ID,
                    number,
                    name,
                    name.casefold(),
                    Decimal(rng.randrange(0, 50_000_000)) / 100,
                    owners[owner],
                    stage_ids[final],
                    status,
                    rng.choice(SOURCES),
                    (final_dt + dt.timedelta(days=rng.randrange(1, 120))).date()
                    if status == "open"
                    else None,
                    "Follow up on pricing" if has_next else None,
                    (NOW + dt.timedelta(days=rng.randrange(-10, 30))).date() if has_next else None,
                    rng.choice(LOST_REASONS) if status == "lost" else None,
                    owners[owner],
                    created_dt,
                    final_dt,
                    final_dt,
                    final_dt if status != "open" else None,
                    None,
                    len(events),
                    stage_ids[furthest],
                    stage_ids[events[-2][1]] if status == "lost" and len(events) > 1 else None,
                )
            )
        for sink in sinks:
            sink.deals(deal_rows)
        # Every later deal is created at or after `hi`: rows before it are final in order.
        flush_changes(hi)
    flush_changes(None)
    for sink in sinks:
        sink.finish()
    stats.seconds = time.perf_counter() - started
    return stats


def _plan(number: int, events: list[tuple[int, int]]) -> Any:
    """The deal as a tests/metrics_model.Plan (only what conversion reads matters)."""
    from metrics_model import Plan, Step

    def stamp(t: int) -> dt.datetime:
        return dt.datetime.fromtimestamp(t, UTC)

    plan = Plan(
        name=f"Deal {number}",
        owner="-",
        source=None,
        amount=Decimal(0),
        expected_close=None,
        created_at=stamp(events[0][0]),
        start=KEYS[events[0][1]],
    )
    plan.steps = [Step("move", stamp(at), KEYS[stage]) for at, stage in events[1:]]
    return plan


class SQLiteSink(Sink):
    """Core executemany in one transaction.

    SQLAlchemy's per-value bind processing (UTCDateTime, then SQLite's DATETIME string)
    would cost more than SQLite itself, so the rows go through untyped `sa.table()`
    constructs with the values already in the form the typed columns would store; the
    first chunk is checked against the real column types to prove the forms identical."""

    label = "sqlite"

    def __init__(self, url: str) -> None:
        self.engine = db.make_engine(url)

        @sa.event.listens_for(self.engine, "connect")
        def _bulk_pragmas(dbapi_conn, _record):  # type: ignore[no-untyped-def]
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA synchronous=OFF")  # a crash mid-load only loses the benchmark
            cur.execute("PRAGMA cache_size=-262144")  # 256 MB while building the indexes
            cur.close()

        self.conn = self.engine.connect()
        self.conn.begin()
        self.tables = {
            name: (
                sa.table(name, *(sa.column(c) for c in cols)),
                cols,
                typed,
                self._converters(typed, cols),
            )
            for name, cols, typed in (
                ("deals", DEAL_COLS, Deal.__table__),
                ("stage_changes", CHANGE_COLS, StageChange.__table__),
            )
        }
        self.proven: set[str] = set()

    @staticmethod
    def _converters(
        typed: sa.Table, cols: tuple[str, ...]
    ) -> list[tuple[int, Callable[[Any], Any]]]:
        """What SQLAlchemy's SQLite types bind, per column that needs converting."""

        def utc_datetime(value: dt.datetime) -> str:
            # UTCDateTime: to UTC, naive; then SQLite DATETIME's "YYYY-MM-DD HH:MM:SS.ffffff"
            v = value.astimezone(UTC)
            return "%04d-%02d-%02d %02d:%02d:%02d.%06d" % (  # noqa: UP031
                v.year,
                v.month,
                v.day,
                v.hour,
                v.minute,
                v.second,
                v.microsecond,
            )

        out: list[tuple[int, Callable[[Any], Any]]] = []
        for i, c in enumerate(cols):
            kind = typed.c[c].type
            if isinstance(kind, UTCDateTime):
                out.append((i, utc_datetime))
            elif isinstance(kind, sa.Date):
                out.append((i, dt.date.isoformat))
            elif isinstance(kind, sa.Numeric) and not isinstance(kind, sa.Integer | sa.Float):
                out.append((i, float))  # Numeric binds floats on SQLite
        return out

    def _insert(self, name: str, rows: list[tuple[Any, ...]]) -> None:
        table, cols, typed, converters = self.tables[name]
        params = []
        for row in rows:
            values = list(row)
            for i, convert in converters:
                if values[i] is not None:
                    values[i] = convert(values[i])
            params.append(dict(zip(cols, values, strict=True)))
        if name not in self.proven:
            self._prove(typed, cols, rows[:500], params[:500])
            self.proven.add(name)
        self.conn.execute(sa.insert(table), params)

    def _prove(
        self, typed: sa.Table, cols: tuple[str, ...], rows: list[Any], params: list[Any]
    ) -> None:
        """The fast conversions store exactly what the typed columns would."""
        dialect = self.engine.dialect
        processors = {
            c: typed.c[c].type.dialect_impl(dialect).bind_processor(dialect) for c in cols
        }
        for row, fast in zip(rows, params, strict=True):
            for c, value in zip(cols, row, strict=True):
                proc = processors[c]
                slow = proc(value) if proc else value
                if slow != fast[c] or type(slow) is not type(fast[c]):
                    raise AssertionError(f"{typed.name}.{c}: {fast[c]!r} stored, {slow!r} expected")

    def deals(self, rows: list[tuple[Any, ...]]) -> None:
        self._insert("deals", rows)

    def changes(self, rows: list[tuple[Any, ...]]) -> None:
        self._insert("stage_changes", rows)

    def finish(self) -> None:
        self.conn.commit()
        self.conn.close()
        self.engine.dispose()


class PostgresSink(Sink):
    label = "postgresql"

    def __init__(self, engine: sa.Engine) -> None:
        import psycopg

        self.engine = engine
        self.raw = engine.raw_connection()
        self.pg = self.raw.driver_connection  # psycopg.Connection
        self.cur = self.pg.cursor()
        # The generator keeps every foreign key valid by construction; checking them row by
        # row (one RI trigger query per key and row) would make the load several times
        # slower. Needs superuser; without it the keys are simply checked.
        try:
            self.cur.execute("SET session_replication_role = replica")
        except psycopg.errors.InsufficientPrivilege:
            self.pg.rollback()
        self.copy_deals = f"COPY deals ({', '.join(DEAL_COLS)}) FROM STDIN"
        self.copy_changes = f"COPY stage_changes ({', '.join(CHANGE_COLS)}) FROM STDIN"

    def _copy(self, statement: str, rows: Iterable[tuple[Any, ...]]) -> None:
        with self.cur.copy(statement) as copy:
            for row in rows:
                copy.write_row(row)

    def deals(self, rows: list[tuple[Any, ...]]) -> None:
        self._copy(self.copy_deals, rows)

    def changes(self, rows: list[tuple[Any, ...]]) -> None:
        self._copy(self.copy_changes, rows)

    def finish(self) -> None:
        for table in ("deals", "stage_changes"):
            self.cur.execute(
                f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                f"(SELECT max(id) FROM {table}))"
            )
        self.cur.execute("RESET session_replication_role")
        self.pg.commit()
        self.cur.close()
        self.raw.close()


@dataclass
class Backend:
    label: str
    url: str
    load_seconds: float = 0.0
    analyze_seconds: float = 0.0
    size_bytes: int = 0
    cleanup: list[Callable[[], None]] = field(default_factory=list)


def prepare_schema(url: str, n: int) -> list[int]:
    """Migrate, create the workspace (with its copy of the default stages); stage ids by KEYS."""
    engine = db.make_engine(url)
    try:
        db.upgrade(engine)
        with db.make_session_factory(engine).begin() as session:
            domain.ensure_workspace(session, TEAM_ID, FIRST_CREATED - dt.timedelta(days=30))
            by_key = {s.key: s.id for s in domain.funnel_stages(session, TEAM_ID)}
            session.execute(
                sa.update(Workspace)
                .where(Workspace.team_id == TEAM_ID)
                .values(next_deal_number=n + 1)
            )
    finally:
        engine.dispose()
    return [by_key[k] for k in KEYS]


def finish_sqlite(backend: Backend, path: Path) -> None:
    started = time.perf_counter()
    engine = db.make_engine(backend.url)
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql("ANALYZE")
            conn.commit()
        raw = engine.raw_connection()
        try:
            raw.driver_connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            raw.close()
    finally:
        engine.dispose()
    backend.analyze_seconds = time.perf_counter() - started
    backend.size_bytes = sum(p.stat().st_size for p in path.parent.glob(path.name + "*"))


def finish_postgres(backend: Backend) -> None:
    started = time.perf_counter()
    engine = db.make_engine(backend.url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql("VACUUM (ANALYZE)")
            backend.size_bytes = conn.exec_driver_sql(
                "SELECT pg_database_size(current_database())"
            ).scalar_one()
    finally:
        engine.dispose()
    backend.analyze_seconds = time.perf_counter() - started


def start_postgres(args: argparse.Namespace, stack: ExitStack) -> Backend:
    """A fresh database: on --pg-url's server, or in a throwaway cluster."""
    if args.pg_url:
        admin = sa.create_engine(
            normalize_database_url(args.pg_url), isolation_level="AUTOCOMMIT", poolclass=sa.NullPool
        )
        name = f"funnelbot_bench_{os.getpid()}"
        with admin.connect() as conn:
            conn.exec_driver_sql(f"CREATE DATABASE {name}")

        def drop() -> None:
            with admin.connect() as conn:
                conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
            admin.dispose()

        url = admin.url.set(database=name).render_as_string(hide_password=False)
        if args.keep:
            print(f"keeping PostgreSQL database {name}: drop it yourself when done")
        else:
            stack.callback(drop)
        return Backend("postgresql", url)
    import pgcluster

    print("starting a throwaway PostgreSQL cluster (tests/pgcluster.py) ...", flush=True)
    url, root = pgcluster.start_cluster(base_dir=Path(args.keep) / "pg" if args.keep else None)
    if args.keep:
        print(
            f"keeping the PostgreSQL cluster; stop it with: python tests/pgcluster.py stop {root}"
        )
    else:
        stack.callback(pgcluster.stop, root)
    return Backend("postgresql", url)


# --------------------------------------------------------------------------------------
# Measuring (in a fresh process: --measure-only)


def peak_rss_mb() -> float:
    """This process's peak RSS in MB.

    VmHWM (the high-water mark of this process's own memory map) where /proc has it:
    `getrusage(RUSAGE_SELF).ru_maxrss` is not honest in a child, because Linux carries the
    parent's peak over through fork/exec, so a measuring process started by a generator
    that peaked at 300 MB would report at least 300 MB whatever it did itself."""
    hwm = _proc_status_mb("VmHWM:")
    if hwm == hwm:  # not NaN
        return hwm
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def current_rss_mb() -> float:
    return _proc_status_mb("VmRSS:")


def _proc_status_mb(field_name: str) -> float:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field_name):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def cli_command(team: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "funnelbot",
        "metrics",
        "conversion",
        "--since",
        PERIOD.since.isoformat(),
        "--until",
        PERIOD.until.isoformat(),
        "--json",
        "--team",
        team,
    ]


_CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _stat_fields(pid: int | str) -> list[str]:
    text = Path(f"/proc/{pid}/stat").read_text()
    return text[text.rindex(")") + 2 :].split()  # fields from `state` on


def server_cpu_meter(engine: sa.Engine) -> Callable[[], float] | None:
    """CPU seconds used so far by a local PostgreSQL cluster, or None when not measurable.

    Sums the postmaster's own and reaped children's time (parallel workers that exited)
    and the time of its live children (backends, workers), from /proc. The machine may be
    shared and busy: CPU seconds are what a query costs, wall seconds what it took here."""
    if engine.dialect.name != "postgresql":
        return None
    try:
        with engine.connect() as conn:
            data_dir = conn.exec_driver_sql("SHOW data_directory").scalar_one()
        postmaster = int((Path(data_dir) / "postmaster.pid").read_text().split()[0])
        _stat_fields(postmaster)
    except (OSError, ValueError, IndexError, sa.exc.SQLAlchemyError):
        return None

    def cpu() -> float:
        ticks = 0
        own = _stat_fields(postmaster)
        ticks += sum(int(x) for x in own[11:15])  # utime stime cutime cstime
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            try:
                fields = _stat_fields(entry.name)
            except OSError:
                continue  # gone meanwhile
            if int(fields[1]) == postmaster:
                ticks += int(fields[11]) + int(fields[12])
        return ticks / _CLK_TCK

    return cpu


def measure(args: argparse.Namespace) -> dict[str, Any]:
    from funnelbot import metrics

    rng = random.Random(args.seed)
    engine = db.make_engine(args.db_url)
    sessions = db.make_session_factory(engine)
    workdir = tempfile.mkdtemp(prefix="funnelbot-bench-cli-")  # no .env in there
    env = {
        **os.environ,
        "DATABASE_URL": args.db_url,
        "FUNNELBOT_TIMEZONE": "UTC",
        "LOG_LEVEL": "WARNING",
        "PYTHONPATH": os.pathsep.join(
            p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH", "")) if p
        ),
    }
    docs: dict[str, Any] = {}

    def floor() -> None:
        with engine.connect() as conn:
            docs["floor"] = list(conn.exec_driver_sql(FLOOR_SQL).one())[:1]

    def conversion() -> None:
        with sessions() as session:
            docs["conversion"] = metrics.conversion(session, args.team, PERIOD).as_json()

    def cli() -> None:
        proc = subprocess.run(
            cli_command(args.team),
            cwd=workdir,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        if proc.returncode != 0:
            raise RuntimeError(f"CLI exit {proc.returncode}: {proc.stderr[-2000:]}")
        docs["cli"] = json.loads(proc.stdout)

    kinds: dict[str, Callable[[], None]] = {"floor": floor, "conversion": conversion}
    if not args.no_cli:
        kinds["cli"] = cli
    times: dict[str, list[float]] = {k: [] for k in kinds}
    cpu_times: dict[str, list[float]] = {k: [] for k in kinds}
    server_cpu = server_cpu_meter(engine)

    def cpu_now() -> float:
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        own = time.process_time() + children.ru_utime + children.ru_stime
        return own + (server_cpu() if server_cpu else 0.0)

    floor()
    baseline = current_rss_mb()  # imports, engine, one scan: before any conversion()
    order = list(kinds)
    for round_no in range(-args.warmup, args.repeat):
        rng.shuffle(order)
        for kind in order:
            cpu_started = cpu_now()
            started = time.perf_counter()
            kinds[kind]()
            took = time.perf_counter() - started
            if round_no >= 0:
                times[kind].append(took)
                cpu_times[kind].append(cpu_now() - cpu_started)
    engine.dispose()
    os.rmdir(workdir)
    return {
        "times": times,
        "cpu_times": cpu_times,
        "cpu_measured": "process" + (" + PostgreSQL server" if server_cpu else ""),
        "peak_rss_mb": peak_rss_mb(),
        "baseline_rss_mb": baseline,
        "ru_maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "history_rows": docs["floor"][0],
        "conversion": docs["conversion"],
        "cli": docs.get("cli"),
    }


def run_measure(backend: Backend, args: argparse.Namespace) -> dict[str, Any]:
    cmd = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--measure-only",
        "--db-url",
        backend.url,
        "--team",
        TEAM_ID,
        "--repeat",
        str(args.repeat),
        "--warmup",
        str(args.warmup),
        "--seed",
        str(args.seed),
    ] + (["--no-cli"] if args.no_cli else [])
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"measuring {backend.label} failed ({proc.returncode}):\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# --------------------------------------------------------------------------------------
# Checking and reporting


def check(result: dict[str, Any], expected: Expected, label: str) -> list[str]:
    """Differences between conversion() and what the generator knows; [] when all agree."""
    doc = result["conversion"]
    problems = []
    want: dict[str, Any] = {"won": expected.won, "lost": expected.lost}
    for key, value in want.items():
        if doc[key] != value:
            problems.append(f"{label}: {key} {doc[key]} != expected {value}")
    for i, stage in enumerate(doc["stages"]):
        nxt = i + 1 if i + 1 < OPEN_N else WON_I
        want = {
            "key": KEYS[i],
            "reached": expected.reached(i),
            "advanced": expected.reached(nxt),
            "open": expected.open_at[i],
            "lost": expected.lost_from[i],
        }
        for key, value in want.items():
            if stage[key] != value:
                problems.append(f"{label}: {KEYS[i]}.{key} {stage[key]} != expected {value}")
    if expected.plans is not None:
        from metrics_model import expected_conversion

        model = expected_conversion(expected.plans, PERIOD.since, PERIOD.until, "UTC")
        problems += [f"{label}: {p}" for p in _diff(doc, model, "")]
    if result.get("cli") is not None and result["cli"] != doc:
        problems += [f"{label}: CLI {p}" for p in _diff(result["cli"], doc, "")]
    return problems


def _diff(got: Any, want: Any, where: str) -> list[str]:
    if isinstance(want, dict):
        return [p for k in want for p in _diff(got.get(k), want[k], f"{where}.{k}")]
    if isinstance(want, list):
        if len(got) != len(want):
            return [f"{where}: {len(got)} items != {len(want)}"]
        return [
            p
            for i, (g, w) in enumerate(zip(got, want, strict=True))
            for p in _diff(g, w, f"{where}[{i}]")
        ]
    if isinstance(want, float) and isinstance(got, int | float):
        ok = abs(got - want) <= 1e-6 * max(1.0, abs(want))
    else:
        ok = got == want
    return [] if ok else [f"{where}: {got!r} != expected {want!r}"]


def fmt_s(values: list[float]) -> str:
    return f"{min(values):7.3f} / {statistics.median(values):7.3f}" if values else "-"


def report(rows: list[tuple[Backend, dict[str, Any]]], deals: int, repeat: int) -> list[str]:
    print()
    print(
        f"== metrics conversion {PERIOD.label()}, {deals:,} deals; seconds as best / median of "
        f"{repeat} interleaved rounds; ratio = conversion / scan floor (median; best) =="
    )
    header = (
        f"{'backend':<10} | {'history rows':>12} | {'scan floor s':>17} | {'conversion s':>17} | "
        f"{'ratio':>15} | {'CLI s':>17} | {'peak RSS MB':>11} | target verdicts"
    )
    print(header)
    print("-" * len(header))
    missed: list[str] = []
    for backend, res in rows:
        t = res["times"]
        floor_med, conv_med = statistics.median(t["floor"]), statistics.median(t["conversion"])
        ratio_med = conv_med / floor_med
        ratio_best = min(t["conversion"]) / min(t["floor"])
        rss = res["peak_rss_mb"]
        verdicts = [
            f"<={TARGET_RATIO:.0f}x floor {'PASS' if ratio_med <= TARGET_RATIO else 'FAIL'}",
        ]
        if ratio_med > TARGET_RATIO:
            missed.append(f"{backend.label} {ratio_med:.1f}x the scan floor")
        if backend.label == "sqlite":
            ok = conv_med < TARGET_SQLITE_S
            verdicts.append(f"<{TARGET_SQLITE_S:.0f} s {'PASS' if ok else 'FAIL'}")
            if not ok:
                missed.append(f"sqlite conversion {conv_med:.2f} s")
        ok = rss < TARGET_RSS_MB
        verdicts.append(f"<{TARGET_RSS_MB:.0f} MB {'PASS' if ok else 'FAIL'}")
        if not ok:
            missed.append(f"{backend.label} peak RSS {rss:.0f} MB")
        print(
            f"{backend.label:<10} | {res['history_rows']:>12,} | {fmt_s(t['floor']):>17} | "
            f"{fmt_s(t['conversion']):>17} | {ratio_med:6.1f}x ({ratio_best:4.1f}x) | "
            f"{fmt_s(t.get('cli', [])):>17} | {rss:11.0f} | {'; '.join(verdicts)}"
        )
    print("\nCPU seconds, median (the machine may be shared: wall time includes waiting for a CPU)")
    header = (
        f"{'backend':<10} | {'scan floor cpu s':>16} | {'conversion cpu s':>16} | {'ratio':>6} | "
        f"{'CLI cpu s':>9} | counted"
    )
    print(header)
    print("-" * len(header))
    for backend, res in rows:
        c = res["cpu_times"]
        floor_cpu, conv_cpu = statistics.median(c["floor"]), statistics.median(c["conversion"])
        cli_cpu = f"{statistics.median(c['cli']):9.3f}" if c.get("cli") else f"{'-':>9}"
        print(
            f"{backend.label:<10} | {floor_cpu:16.3f} | {conv_cpu:16.3f} | "
            f"{conv_cpu / floor_cpu if floor_cpu else float('inf'):5.1f}x | {cli_cpu} | "
            f"{res['cpu_measured']}"
        )
    print(
        "peak RSS = VmHWM of the fresh measuring process (imports, engine, the scans and every "
        "conversion() run; the CLI runs in its own process); before the first conversion(): "
        + ", ".join(f"{b.label} {r['baseline_rss_mb']:.0f} MB" for b, r in rows)
    )
    return missed


# --------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--deals", type=int, default=1_000_000)
    parser.add_argument("--backend", choices=("sqlite", "postgresql", "both"), default="both")
    parser.add_argument("--pg-url", help="PostgreSQL server to use (default: a throwaway cluster)")
    parser.add_argument("--quick", action="store_true", help="20,000 deals (smoke test)")
    parser.add_argument("--repeat", type=int, default=3, help="measured rounds per backend")
    parser.add_argument("--warmup", type=int, default=1, help="unmeasured rounds first")
    parser.add_argument("--no-cli", action="store_true", help="do not time the CLI subprocess")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--keep",
        metavar="DIR",
        help="build the databases under DIR and keep them (and a started PostgreSQL cluster) "
        "for `--measure-only --db-url ...` runs",
    )
    parser.add_argument("--measure-only", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--db-url", help=argparse.SUPPRESS)
    parser.add_argument("--team", default=TEAM_ID, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.measure_only:
        if not args.db_url:
            parser.error("--measure-only needs --db-url")
        print(json.dumps(measure(args)))
        return 0
    if args.quick:
        args.deals = 20_000
    labels = ["sqlite", "postgresql"] if args.backend == "both" else [args.backend]

    rng = random.Random(args.seed)
    start, end = PERIOD.bounds("UTC")
    expected = Expected(int(start.timestamp()), int(end.timestamp()))
    if args.quick:
        expected.plans = []
    problems: list[str] = []
    with ExitStack() as stack:
        if args.keep:
            Path(args.keep).mkdir(parents=True, exist_ok=True)
            tmp = args.keep
        else:
            tmp = stack.enter_context(tempfile.TemporaryDirectory(prefix="funnelbot-bench-"))
        backends: list[Backend] = []
        sinks: list[Sink] = []
        db_path = Path(tmp) / "bench.db"
        stage_ids: list[int] | None = None
        for label in labels:
            backend = (
                Backend("sqlite", f"sqlite:///{db_path}")
                if label == "sqlite"
                else start_postgres(args, stack)
            )
            ids = prepare_schema(backend.url, args.deals)
            if stage_ids is not None and ids != stage_ids:
                raise RuntimeError(f"stage ids differ between backends: {ids} != {stage_ids}")
            stage_ids = ids
            if label == "sqlite":
                sinks.append(SQLiteSink(backend.url))
            else:
                pg_engine = db.make_engine(backend.url)
                stack.callback(pg_engine.dispose)
                sinks.append(PostgresSink(pg_engine))
            backends.append(backend)
        assert stage_ids is not None
        print(
            f"generating {args.deals:,} deals into {', '.join(labels)} (one generator pass) ...",
            flush=True,
        )
        gen = generate(args.deals, sinks, stage_ids, rng, expected)
        n = max(1, gen.deals)
        print(
            f"generated {gen.deals:,} deals + {gen.changes:,} stage_changes "
            f"({gen.changes / n:.2f} per deal; {gen.back_moves:,} moves back) in "
            f"{gen.seconds:.1f} s ({gen.deals / gen.seconds:,.0f} deals/s, all backends); "
            f"now {100 * gen.won / n:.1f} % won, {100 * gen.lost / n:.1f} % lost, "
            f"{100 * gen.open / n:.1f} % open; {expected.created:,} deals created in "
            f"{PERIOD.label()}",
            flush=True,
        )
        for backend in backends:
            if backend.label == "sqlite":
                finish_sqlite(backend, db_path)
            else:
                finish_postgres(backend)
            print(
                f"{backend.label}: ANALYZE etc. {backend.analyze_seconds:.1f} s; "
                f"database {backend.size_bytes / 1e6:,.0f} MB"
                + (f"; kept: --db-url {backend.url}" if args.keep else ""),
                flush=True,
            )
        print(f"generator process peak RSS {peak_rss_mb():.0f} MB (not the metric's)", flush=True)

        results: list[tuple[Backend, dict[str, Any]]] = []
        for backend in backends:
            load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
            print(
                f"measuring {backend.label} in a fresh process (load average {load} on "
                f"{os.cpu_count()} CPUs) ...",
                flush=True,
            )
            res = run_measure(backend, args)
            results.append((backend, res))
            if res["history_rows"] != gen.changes:
                problems.append(
                    f"{backend.label}: {res['history_rows']} history rows, generated {gen.changes}"
                )
            problems += check(res, expected, backend.label)
        missed = report(results, args.deals, args.repeat)

    checked = "the whole document (independent model)" if args.quick else "the counts"
    if problems:
        print(f"\ncorrectness: {len(problems)} difference(s) ({checked}):")
        for p in problems[:30]:
            print("  " + p)
        return 1
    print(
        f"\ncorrectness: conversion() agrees with the generated events ({checked}) "
        f"on {', '.join(labels)}" + ("" if args.no_cli else "; the CLI printed the same JSON")
    )
    if missed:
        print("targets missed: " + "; ".join(missed))
        return 1 if args.strict else 0
    print("all targets met")
    return 0


if __name__ == "__main__":
    sys.exit(main())
