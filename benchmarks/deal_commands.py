#!/usr/bin/env python
"""Server-side latency of `/deal show #id` and `/deal advance #id` with many deals in SQLite.

    python benchmarks/deal_commands.py [--deals 100000] [--requests 500] [--quick]
                                       [--no-http] [--profile] [--strict] [--seed N]

What it does, all in one process and one run:

1. Builds a fresh SQLite database in a temp dir (`funnelbot.db.make_engine` + `upgrade`),
   creates the workspace (`funnelbot.deals.ensure_workspace`) and bulk-inserts N deals,
   each with its first `stage_changes` row, spread over several owners and all stages
   (SQLAlchemy Core executemany in chunks; deal numbers 1..N).
2. Starts the test suite's fake Slack (tests/fakeslack.py) so users.info and the
   response_url posts stay on loopback, and builds the product with
   `funnelbot.runtime.build_runtime` (scheduler off).
3. Builds a bare Bolt app whose `/deal` listener only acks with "ok" as its answer: the
   same Bolt machinery and the same way of answering, no funnelbot.
4. Sends signed slash commands, one at a time, interleaved bare / show / advance in a
   random order each round (the machine is noisy; interleaving spreads the noise evenly):
   - phase "dispatch": in-process, `app.dispatch(BoltRequest(...))`;
   - phase "http": through a threaded wsgiref server (like tests/conftest.py serve_wsgi)
     with a real HTTP POST on 127.0.0.1 (skip with --no-http).

   For every request:
   - ack    = from just before dispatch / the POST until the ack came back;
   - answer = from the same moment until the answer arrived: in the ack's body (funnelbot
              answers there when it is ready within its ack budget) or else as the
              response_url post for that request (each request has its own response_url;
              the fake stamps the arrival time). This is the server-side time to answer:
              DB work, rendering and delivery.
   The next request starts only once the listener has returned (its executor is wrapped
   to signal completion), so requests never overlap.

`show` uses random deal numbers; `advance` uses distinct deals that are all in the first
stage (each is advanced exactly once). The acting user is the deal's owner for advance and
a random owner for show; warm-up requests (not measured) first touch every owner so the
product's users.info locale cache is warm, as it is in steady state.

Targets (the issue): answer p50 within 2x of the bare app and under 50 ms; the ack never
near Slack's 3 s. Exit code 0 unless a request failed (or, with --strict, a target missed).
"""

from __future__ import annotations

import argparse
import cProfile
import datetime as dt
import io
import json
import logging
import pstats
import random
import resource
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import Executor, Future
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from socketserver import ThreadingMixIn
from typing import Any
from urllib.parse import urlencode
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

REPO_ROOT = Path(__file__).resolve().parent.parent
TESTS_DIR = REPO_ROOT / "tests"
for _p in (str(TESTS_DIR), str(REPO_ROOT)):
    if _p not in sys.path:
        sys.path.insert(0, _p)

import sqlalchemy as sa  # noqa: E402
from fakeslack import TEAM_ID, FakeSlack  # noqa: E402
from sample_data import COMPANIES, PRODUCTS, SOURCES  # noqa: E402 - benchmarks/ is on sys.path
from slack_bolt import Ack, App, BoltRequest  # noqa: E402
from slack_bolt.adapter.wsgi import SlackRequestHandler  # noqa: E402
from slack_sdk import WebClient  # noqa: E402
from slackclient import SlackRequests  # noqa: E402

from funnelbot import db  # noqa: E402
from funnelbot import deals as domain  # noqa: E402
from funnelbot.config import Settings  # noqa: E402
from funnelbot.models import Deal, StageChange, Workspace  # noqa: E402
from funnelbot.runtime import Runtime, build_runtime  # noqa: E402

BOT_TOKEN = "xoxb-bench"
SIGNING_SECRET = "s"
CHANNEL = "C0BENCH"
CHUNK = 10_000
OWNERS = 25
TARGET_P50_MS = 50.0
TARGET_RATIO = 2.0
SLACK_ACK_LIMIT_MS = 3000.0

# How the generated deals spread over the default stages (the migration's seed).
STAGE_WEIGHTS = {
    "lead": 30,
    "interest": 25,
    "proposal": 18,
    "negotiation": 10,
    "won": 11,
    "lost": 6,
}


# --------------------------------------------------------------------------------------
# Data generation


@dataclass
class Dataset:
    deals: int
    owner_of: list[str]  # index: deal number (0 unused)
    first_stage_numbers: list[int]  # open deals in the first stage, shuffled
    seconds: float
    db_bytes: int


def generate(url: str, db_path: Path, n: int, rng: random.Random) -> Dataset:
    started = time.perf_counter()
    engine = db.make_engine(url)
    try:
        db.upgrade(engine)
        sessions = db.make_session_factory(engine)
        now = dt.datetime.now(dt.UTC)
        with sessions.begin() as session:
            domain.ensure_workspace(session, TEAM_ID, now - dt.timedelta(days=800))
            stages = {s.key: s for s in domain.funnel_stages(session, TEAM_ID)}
        keys = [k for k in STAGE_WEIGHTS if k in stages]
        weights = [STAGE_WEIGHTS[k] for k in keys]
        first_key = min(
            (s for s in stages.values() if s.kind == domain.OPEN), key=lambda s: (s.position, s.id)
        ).key
        owners = [f"U{i:04d}BENCH" for i in range(1, OWNERS + 1)]
        owner_of = [""] * (n + 1)
        first_stage: list[int] = []
        deals_t, changes_t = Deal.__table__, StageChange.__table__
        span = 730 * 86400
        with engine.begin() as conn:
            for start in range(1, n + 1, CHUNK):
                deal_rows: list[dict[str, Any]] = []
                change_rows: list[dict[str, Any]] = []
                for number in range(start, min(start + CHUNK, n + 1)):
                    key = rng.choices(keys, weights)[0]
                    stage = stages[key]
                    owner = owners[rng.randrange(OWNERS)]
                    owner_of[number] = owner
                    if key == first_key:
                        first_stage.append(number)
                    created = now - dt.timedelta(seconds=rng.randrange(3600, span))
                    updated = min(
                        created + dt.timedelta(seconds=rng.randrange(0, 90 * 86400)),
                        now - dt.timedelta(minutes=5),
                    )
                    closed = updated if stage.kind != domain.OPEN else None
                    name = f"{rng.choice(COMPANIES)} {rng.choice(PRODUCTS)} {number}"
                    has_next = stage.kind == domain.OPEN and rng.random() < 0.5
                    deal_rows.append(
                        {
                            "id": number,
                            "team_id": TEAM_ID,
                            "number": number,
                            "name": name,
                            "name_folded": name.casefold(),
                            "amount": Decimal(rng.randrange(0, 50_000_000)) / 100,
                            "owner_id": owner,
                            "stage_id": stage.id,
                            "status": stage.kind,
                            "source": rng.choice(SOURCES),
                            "expected_close": (
                                updated + dt.timedelta(days=rng.randrange(1, 120))
                            ).date()
                            if stage.kind == domain.OPEN
                            else None,
                            "next_step": "Follow up on pricing" if has_next else None,
                            "next_step_due": (
                                now + dt.timedelta(days=rng.randrange(-10, 30))
                            ).date()
                            if has_next
                            else None,
                            "lost_reason": "Budget" if stage.kind == domain.LOST else None,
                            "created_by": owner,
                            "created_at": created,
                            "updated_at": updated,
                            "last_activity_at": updated,
                            "closed_at": closed,
                            "snoozed_until": None,
                            "version": 1,
                            "furthest_stage_id": stage.id,
                        }
                    )
                    change_rows.append(
                        {
                            "team_id": TEAM_ID,
                            "deal_id": number,
                            "from_stage_id": None,
                            "to_stage_id": stage.id,
                            "at": created,
                            "by": owner,
                            "deal_version": 1,
                            "deal_created_at": created,
                        }
                    )
                conn.execute(sa.insert(deals_t), deal_rows)
                conn.execute(sa.insert(changes_t), change_rows)
            conn.execute(
                sa.update(Workspace.__table__)
                .where(Workspace.__table__.c.team_id == TEAM_ID)
                .values(next_deal_number=n + 1)
            )
    finally:
        engine.dispose()
    rng.shuffle(first_stage)
    seconds = time.perf_counter() - started
    size = sum(p.stat().st_size for p in db_path.parent.glob(db_path.name + "*"))
    return Dataset(n, owner_of, first_stage, seconds, size)


# --------------------------------------------------------------------------------------
# Harness


class DoneSignallingExecutor(Executor):
    """Wraps a Bolt listener executor: tells us when the listener has returned."""

    def __init__(self, inner: Executor | None) -> None:
        self.inner = inner  # None: run inline (for --profile)
        self.done = threading.Event()
        self.finished_at = 0.0

    def arm(self) -> None:
        self.done.clear()

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        def run() -> Any:
            try:
                return fn(*args, **kwargs)
            finally:
                self.finished_at = time.time()
                self.done.set()

        if self.inner is not None:
            return self.inner.submit(run)
        future: Future[Any] = Future()
        future.set_result(run())
        return future

    def shutdown(self, wait: bool = True, **kwargs: Any) -> None:
        if self.inner is not None:
            self.inner.shutdown(wait=wait, **kwargs)


def wrap_listener_executor(app: App, *, inline: bool = False) -> DoneSignallingExecutor:
    runner = app.listener_runner
    inner = runner.listener_executor
    if isinstance(inner, DoneSignallingExecutor):
        inner = inner.inner
    wrapped = DoneSignallingExecutor(None if inline else inner)
    runner.listener_executor = wrapped  # type: ignore[attr-defined]
    return wrapped


class _ThreadingWSGIServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True
    allow_reuse_address = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass


@contextmanager
def serve_wsgi(app: Any) -> Iterator[str]:
    """As tests/conftest.py serve_wsgi: a threaded wsgiref server on 127.0.0.1."""
    server = make_server(
        "127.0.0.1", 0, app, server_class=_ThreadingWSGIServer, handler_class=_QuietHandler
    )
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    try:
        host, port = server.server_address[:2]
        yield f"http://{host}:{port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


class QueryCounter:
    def __init__(self, engine: sa.Engine) -> None:
        self.count = 0
        self.statements: list[str] | None = None
        sa.event.listen(engine, "before_cursor_execute", self._on_execute)

    def _on_execute(self, conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        self.count += 1
        if self.statements is not None:
            self.statements.append(" ".join(statement.split()))


@dataclass
class Target:
    label: str
    app: App
    done: DoneSignallingExecutor
    wsgi: Any
    http: SlackRequests | None = None


@dataclass
class Sample:
    ack_ms: float
    answer_ms: float
    queries: int
    users_info: int


@dataclass
class Series:
    samples: list[Sample] = field(default_factory=list)

    def values(self, attr: str) -> list[float]:
        return [getattr(s, attr) for s in self.samples]


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


class Bench:
    def __init__(self, fake: FakeSlack, counter: QueryCounter) -> None:
        self.fake = fake
        self.counter = counter
        self.signer = SlackRequests("http://unused", SIGNING_SECRET)
        self.failures: list[str] = []

    def body(self, text: str, user_id: str, response_url: str) -> bytes:
        fields = {
            "token": "legacy-verification-token",
            "team_id": TEAM_ID,
            "team_domain": "funnelbot-bench",
            "channel_id": CHANNEL,
            "channel_name": "bench",
            "user_id": user_id,
            "user_name": user_id.lower(),
            "command": "/deal",
            "text": text,
            "api_app_id": "A0TEST",
            "is_enterprise_install": "false",
            "response_url": response_url,
            "trigger_id": f"trig-{uuid.uuid4().hex[:12]}",
        }
        return urlencode(fields).encode()

    def request(
        self, target: Target, text: str, user_id: str, mode: str, expect: Callable[[str], bool]
    ) -> Sample:
        path = f"/response/{uuid.uuid4().hex}"
        body = self.body(text, user_id, self.fake.base_url + path)
        headers = self.signer.signed_headers(body, content_type="application/x-www-form-urlencoded")
        target.done.arm()
        queries0 = self.counter.count
        wall0 = time.time()
        t0 = time.perf_counter()
        if mode == "http":
            assert target.http is not None
            status, acked = target.http.raw(body, headers)
        else:
            reply = target.app.dispatch(BoltRequest(body=body.decode(), headers=headers))
            status, acked = reply.status, reply.body
        ack_ms = (time.perf_counter() - t0) * 1000
        if status == 200 and acked.strip():  # the answer rode on the ack
            self.fake.ack_answered(self.fake.base_url + path, acked)
        call = self.fake.wait_for("response_url", lambda c: c.path == path, timeout=30, ok=None)
        if not target.done.done.wait(30):
            self.failures.append(f"{target.label} {text!r}: listener did not return")
        answer_ms = (call.at - wall0) * 1000
        queries = self.counter.count - queries0
        users_info = len(self.fake.calls_to("users.info"))
        answered = json.dumps(call.params, ensure_ascii=False)
        if status != 200 or not call.ok or not expect(answered):
            self.failures.append(
                f"{target.label} {text!r} as {user_id}: HTTP {status}, answer {answered[:300]}"
            )
        self.fake.reset()
        return Sample(ack_ms, answer_ms, queries, users_info)


# --------------------------------------------------------------------------------------
# Runs


@dataclass
class Workload:
    show_numbers: Iterator[int]
    advance_numbers: Iterator[int]
    owner_of: list[str]
    owners: list[str]
    rng: random.Random


def run_phase(
    bench: Bench,
    bare: Target,
    ours: Target,
    work: Workload,
    mode: str,
    requests: int,
    warmup: int,
) -> dict[str, Series]:
    results = {"bare": Series(), "show": Series(), "advance": Series()}

    def do(kind: str, round_no: int) -> Sample:
        if kind == "bare":
            user = work.owners[round_no % len(work.owners)]
            return bench.request(bare, "show #1", user, mode, lambda a: '"ok"' in a)
        if kind == "show":
            number = next(work.show_numbers)
            # Warm-up walks through every owner (fills the locale cache); then random users.
            user = (
                work.owners[round_no % len(work.owners)]
                if round_no < 0
                else work.rng.choice(work.owners)
            )
            return bench.request(
                ours,
                f"show #{number}",
                user,
                mode,
                lambda a: f"#{number} " in a and ":warning:" not in a,
            )
        number = next(work.advance_numbers)
        return bench.request(
            ours,
            f"advance #{number}",
            work.owner_of[number],
            mode,
            lambda a: f"#{number} " in a and ":warning:" not in a and "moved to" in a,
        )

    kinds = list(results)
    for round_no in range(-warmup, requests):
        work.rng.shuffle(kinds)
        for kind in kinds:
            sample = do(kind, round_no)
            if round_no >= 0:
                results[kind].samples.append(sample)
    return results


LABELS = {
    "bare": "bare Bolt ack with answer",
    "show": "/deal show #id",
    "advance": "/deal advance #id",
}


def table(results: dict[str, Series]) -> list[str]:
    lines = [f"{'command':<36} | {'p50 ms':>8} | {'p95 ms':>8} | {'max ms':>8}"]
    lines.append("-" * len(lines[0]))
    for attr, suffix in (("answer_ms", "answered"), ("ack_ms", "ack only")):
        for kind in ("bare", "show", "advance"):
            v = results[kind].values(attr)
            lines.append(
                f"{LABELS[kind] + ' (' + suffix + ')':<36} | {percentile(v, 50):8.2f} | "
                f"{percentile(v, 95):8.2f} | {max(v):8.2f}"
            )
    return lines


def report(results: dict[str, Series], title: str) -> list[str]:
    print()
    print(title)
    for line in table(results):
        print(line)
    bare50 = percentile(results["bare"].values("answer_ms"), 50)
    verdicts: list[str] = []
    ratios = []
    for kind in ("show", "advance"):
        p50 = percentile(results[kind].values("answer_ms"), 50)
        ratio = p50 / bare50 if bare50 > 0 else float("inf")
        ratios.append(f"{kind} {ratio:.2f}x")
        if p50 >= TARGET_P50_MS:
            verdicts.append(f"{kind} p50 {p50:.1f} ms >= {TARGET_P50_MS:.0f} ms")
        if ratio > TARGET_RATIO:
            verdicts.append(f"{kind} p50 {ratio:.2f}x bare > {TARGET_RATIO:.0f}x")
    bare_ack50 = percentile(results["bare"].values("ack_ms"), 50)
    print(f"p50 ratio ours/bare (answered vs answered): {', '.join(ratios)}")
    print(
        "p50 ratio ours answered / bare ack-only: "
        + ", ".join(
            f"{k} {percentile(results[k].values('answer_ms'), 50) / bare_ack50:.2f}x"
            for k in ("show", "advance")
        )
        + f"  (bare ack p50 {bare_ack50:.2f} ms is mostly Bolt's 10 ms ack poll)"
    )
    q = {k: sum(results[k].values("queries")) / max(1, len(results[k].samples)) for k in results}
    ui = {k: sum(results[k].values("users_info")) for k in results}
    print(
        f"SQL statements per request (cursor executes incl. BEGIN IMMEDIATE, COMMIT "
        f"not counted): show {q['show']:.1f}, "
        f"advance {q['advance']:.1f}; users.info calls while measuring: "
        f"show {ui['show']}, advance {ui['advance']}, bare {ui['bare']}"
    )
    for kind in ("show", "advance"):
        p50 = percentile(results[kind].values("answer_ms"), 50)
        ratio = p50 / bare50 if bare50 > 0 else float("inf")
        print(
            f"target {kind:<7}: p50 {p50:6.2f} ms < {TARGET_P50_MS:.0f} ms: "
            f"{'PASS' if p50 < TARGET_P50_MS else 'FAIL'}; "
            f"within {TARGET_RATIO:.0f}x of the bare app ({ratio:.2f}x): "
            f"{'PASS' if ratio <= TARGET_RATIO else 'FAIL'}"
        )
    worst_ack = max(max(results[k].values("ack_ms")) for k in ("show", "advance"))
    ack_ok = worst_ack < SLACK_ACK_LIMIT_MS / 10
    print(
        f"target ack    : worst ack {worst_ack:.2f} ms vs Slack's 3000 ms: "
        f"{'PASS' if ack_ok else 'FAIL'} (pass = under 10% of the limit)"
    )
    if not ack_ok:
        verdicts.append(f"worst ack {worst_ack:.1f} ms")
    return verdicts


def cold_users(bench: Bench, ours: Target, work: Workload, n: int) -> None:
    """A user's first command: the locale cache is cold, so the product calls users.info."""
    samples = [
        bench.request(
            ours,
            f"show #{next(work.show_numbers)}",
            f"U9{i:03d}COLD{uuid.uuid4().hex[:4].upper()}",
            "dispatch",
            lambda a: ":warning:" not in a,
        )
        for i in range(n)
    ]
    answers = [s.answer_ms for s in samples]
    print(
        f"\ncold locale cache (a user's first /deal show, {n} requests, dispatch): answered p50 "
        f"{percentile(answers, 50):.2f} ms, max {max(answers):.2f} ms; users.info calls "
        f"{sum(s.users_info for s in samples)} (the fake answers on loopback; real Slack "
        "adds its own round trip to this answer, not to the ack)"
    )


def profile(bench: Bench, ours: Target, work: Workload, n: int) -> None:
    """Inline the listener (so cProfile in this thread sees it) and profile n of each."""
    inline = wrap_listener_executor(ours.app, inline=True)
    ours.done = inline
    prof = cProfile.Profile()
    bench.counter.statements = []
    for kind in ("show", "advance"):
        first = True
        for _ in range(n):
            number = next(work.show_numbers if kind == "show" else work.advance_numbers)
            user = work.rng.choice(work.owners) if kind == "show" else work.owner_of[number]
            if first:
                bench.counter.statements = []
            prof.enable()
            bench.request(ours, f"{kind} #{number}", user, "dispatch", lambda a: True)
            prof.disable()
            if first:
                print(f"\nSQL of one /deal {kind} request:")
                for i, stmt in enumerate(bench.counter.statements or [], 1):
                    print(f"  {i:2d}. {stmt[:160]}")
                bench.counter.statements = None
                first = False
    out = io.StringIO()
    stats = pstats.Stats(prof, stream=out)
    stats.sort_stats("cumulative").print_stats(40)
    print(f"\ncProfile of {n} show + {n} advance requests (listener inlined), top 40 cumulative:")
    print(out.getvalue())
    out = io.StringIO()
    pstats.Stats(prof, stream=out).sort_stats("tottime").print_stats(25)
    print("top 25 by own time:")
    print(out.getvalue())


def rss_mb() -> tuple[float, float]:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    current = float("nan")
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                current = int(line.split()[1]) / 1024
    except OSError:
        pass
    return peak, current


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--deals", type=int, default=100_000)
    parser.add_argument(
        "--requests", type=int, default=500, help="measured requests per command and phase"
    )
    parser.add_argument(
        "--warmup",
        type=int,
        default=OWNERS,
        help="unmeasured rounds first (default: one per owner)",
    )
    parser.add_argument(
        "--quick", action="store_true", help="5,000 deals, 100 requests (smoke test)"
    )
    parser.add_argument("--no-http", action="store_true", help="skip the phase through real HTTP")
    parser.add_argument(
        "--profile",
        type=int,
        nargs="?",
        const=100,
        default=0,
        metavar="N",
        help="afterwards, cProfile N show + N advance requests (default 100)",
    )
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    if args.quick:
        args.deals, args.requests = 5_000, 100

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    rng = random.Random(args.seed)
    phases = ["dispatch"] + ([] if args.no_http else ["http"])
    per_phase = args.requests + args.warmup

    with tempfile.TemporaryDirectory(prefix="funnelbot-bench-") as tmp:
        db_path = Path(tmp) / "bench.db"
        url = f"sqlite:///{db_path}"
        print(f"generating {args.deals:,} deals in {db_path} ...", flush=True)
        data = generate(url, db_path, args.deals, rng)
        print(
            f"generated {args.deals:,} deals + {args.deals:,} stage_changes in {data.seconds:.1f} s "
            f"({args.deals / data.seconds:,.0f} deals/s); db {data.db_bytes / 1e6:.1f} MB; "
            f"{len(data.first_stage_numbers):,} deals in the first stage",
            flush=True,
        )
        need = per_phase * len(phases) + args.profile
        if len(data.first_stage_numbers) < need:
            print(
                f"error: {need} first-stage deals needed for advance, only {len(data.first_stage_numbers)}"
            )
            return 2

        fake = FakeSlack().start()
        runtime: Runtime | None = None
        try:
            settings = Settings(
                slack_bot_token=BOT_TOKEN,
                slack_signing_secret=SIGNING_SECRET,
                database_url=url,
                slack_api_url=fake.url,
                scheduler_enabled=False,
                log_level="WARNING",
            )
            runtime = build_runtime(settings)
            bare_app = App(
                # The token rides on the client (Bolt ignores `token=` next to `client=`).
                signing_secret=SIGNING_SECRET,
                client=WebClient(token=BOT_TOKEN, base_url=fake.url),
                process_before_response=False,
                logger=logging.getLogger("bench.bare"),
            )

            @bare_app.command("/deal")
            def bare_deal(ack: Ack) -> None:
                ack("ok", response_type="ephemeral")

            ours = Target(
                "funnelbot", runtime.bolt, wrap_listener_executor(runtime.bolt), runtime.wsgi
            )
            bare = Target(
                "bare", bare_app, wrap_listener_executor(bare_app), SlackRequestHandler(bare_app)
            )
            bench = Bench(fake, QueryCounter(runtime.engine))
            owners = sorted({o for o in data.owner_of if o})
            work = Workload(
                show_numbers=iter(lambda: rng.randint(1, args.deals), None),
                advance_numbers=iter(data.first_stage_numbers),
                owner_of=data.owner_of,
                owners=owners,
                rng=rng,
            )
            fake.reset()
            print(
                f"{args.requests} measured requests per command and phase after {args.warmup} warm-up "
                f"rounds; bare/show/advance interleaved in random order each round",
                flush=True,
            )
            all_verdicts: list[str] = []
            for mode in phases:
                started = time.perf_counter()
                if mode == "http":
                    with serve_wsgi(ours.wsgi) as ours_url, serve_wsgi(bare.wsgi) as bare_url:
                        ours.http = SlackRequests(ours_url, SIGNING_SECRET)
                        bare.http = SlackRequests(bare_url, SIGNING_SECRET)
                        results = run_phase(
                            bench, bare, ours, work, mode, args.requests, args.warmup
                        )
                else:
                    results = run_phase(bench, bare, ours, work, mode, args.requests, args.warmup)
                took = time.perf_counter() - started
                title = (
                    f"== phase {mode}: "
                    + (
                        "in-process app.dispatch(BoltRequest)"
                        if mode == "dispatch"
                        else "HTTP POST to a threaded wsgiref server on 127.0.0.1"
                    )
                    + f"; SQLite, {args.deals:,} deals, {args.requests} requests each ({took:.1f} s) =="
                )
                all_verdicts += [f"[{mode}] {v}" for v in report(results, title)]

            cold_users(bench, ours, work, min(20, args.requests))

            # Sanity: every advanced deal moved exactly one stage.
            with runtime.engine.connect() as conn:
                moved = conn.execute(
                    sa.text("SELECT count(*) FROM deals WHERE version = 2 AND team_id = :t"),
                    {"t": TEAM_ID},
                ).scalar_one()
            expected = per_phase * len(phases)
            if moved != expected:
                bench.failures.append(f"{moved} deals at version 2, expected {expected}")

            peak, current = rss_mb()
            print(f"\npeak RSS {peak:.0f} MB (current {current:.0f} MB; includes data generation)")

            if args.profile:
                profile(bench, ours, work, args.profile)
        finally:
            if runtime is not None:
                runtime.close()
            fake.stop()

    if bench.failures:
        print(f"\n{len(bench.failures)} request(s) failed:")
        for f in bench.failures[:20]:
            print("  " + f)
        return 1
    if all_verdicts:
        print("\ntargets missed: " + "; ".join(all_verdicts))
        return 1 if args.strict else 0
    print("\nall targets met")
    return 0


if __name__ == "__main__":
    sys.exit(main())
