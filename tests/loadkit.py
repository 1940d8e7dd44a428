"""Load and fault harness: the real server (Granian workers) on loopback, concurrent
signed slash commands, and a check of the database against what users were told.

Used by tests/test_load_quick.py (a few seconds) and benchmarks/load.py (minutes).

- `AnswerLog`: a FakeSlack that indexes response_url posts by path, so thousands of
  concurrent waits stay cheap; a post's arrival time is the answer time.
- `start_funnelbot` / `start_bare`: `python -m funnelbot serve --workers N`, or the bare
  Bolt app (benchmarks/bare_app.py) under the same Granian settings.
- `Load`: C client threads x R commands each (`/deal new|advance|note|show`, `/funnel`),
  each with its own response_url; a client waits for its answer before the next command.
- `verify`: every change whose answer said it succeeded is in the database exactly once,
  nothing a user was told failed is there, history is gap-free and versions add up.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import random
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa

TESTS_DIR = Path(__file__).resolve().parent
REPO_ROOT = TESTS_DIR.parent
for _p in (str(TESTS_DIR), str(REPO_ROOT)):
    if _p not in sys.path:
        sys.path.insert(0, _p)

import pgcluster  # noqa: E402
from fakeslack import Call, FakeSlack  # noqa: E402
from slackclient import SlackRequests  # noqa: E402

from funnelbot.i18n import en  # noqa: E402
from funnelbot.server import HTTP_THREADS  # noqa: E402

TEAM = "T0LOAD"
BOT_TOKEN = "xoxb-load"
SIGNING_SECRET = "load-signing-secret"
SLACK_ACK_LIMIT = 3.0  # seconds: Slack's deadline for the ack, and ours for an outage answer

# Command mix: (kind, weight). `new` comes first whenever a client knows no deal yet.
MIX: tuple[tuple[str, int], ...] = (
    ("new", 25),
    ("advance", 25),
    ("note", 20),
    ("show", 20),
    ("funnel", 10),
)
HOT_DEALS = 16  # changes pick among the most recently created deals: real contention


# --------------------------------------------------------------------------------------
# What the answers say (built from the English catalogue, so a rewording can't hide a
# failure as a success or the other way round)


def _pattern(key: str) -> re.Pattern[str]:
    template = re.escape(en.MESSAGES[key])
    for name in ("number", "stage"):
        template = template.replace(
            re.escape("{" + name + "}"), r"(\d+)" if name == "number" else "(.+?)"
        )
    return re.compile(template)


CREATED = _pattern("deal.created")
MOVED = _pattern("deal.moved")
NOTED = _pattern("deal.noted")
LAST_STAGE = _pattern("deal.last_open_stage")
DATABASE_DOWN = en.MESSAGES["error.database"]
BUSY = en.MESSAGES["error.busy"]
INTERNAL = en.MESSAGES["error.internal"]


# --------------------------------------------------------------------------------------
# Slack's side


class AnswerLog(FakeSlack):
    """FakeSlack that keeps response_url posts by path and wakes whoever waits for one."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._answers: dict[str, list[Call]] = defaultdict(list)
        self._waiting: dict[str, threading.Event] = {}
        self._alock = threading.Lock()

    def expect(self, path: str) -> threading.Event:
        event = threading.Event()
        with self._alock:
            self._waiting[path] = event
            if self._answers.get(path):
                event.set()
        return event

    def answers(self, path: str) -> list[Call]:
        with self._alock:
            return list(self._answers.get(path, ()))

    def forget_answers(self) -> None:
        with self._alock:
            self._answers.clear()
            self._waiting.clear()

    def _record(self, call: Call) -> None:
        if call.method != "response_url":
            super()._record(call)
            return
        path = str(call.params.get("_path") or call.path)
        with self._alock:
            self._answers[path].append(call)
            event = self._waiting.get(path)
        if event is not None:
            event.set()


# --------------------------------------------------------------------------------------
# Servers


_SCRUBBED = ("SLACK_", "FUNNELBOT_", "DATABASE_URL", "PORT", "LOG_LEVEL")


def child_env(extra: Mapping[str, str]) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(_SCRUBBED) or k.startswith("FUNNELBOT_TEST_")
    }
    env.update(PYTHONUNBUFFERED="1", PYTHONIOENCODING="utf-8", PYTHONUTF8="1")
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH", "")) if p
    )
    env.update(extra)
    return env


def server_env(
    *, port: int, fake: FakeSlack, db_url: str | None, users: Iterable[str]
) -> dict[str, str]:
    env = {
        "SLACK_BOT_TOKEN": BOT_TOKEN,
        "SLACK_SIGNING_SECRET": SIGNING_SECRET,
        "SLACK_API_URL": fake.url,
        "PORT": str(port),
        "FUNNELBOT_SCHEDULER": "off",
        "LOG_LEVEL": "WARNING",
        # Every load user may change every deal: the clients contend for the same deals.
        "FUNNELBOT_MANAGERS": ",".join(users),
    }
    if db_url is not None:
        env["DATABASE_URL"] = db_url
    return child_env(env)


@dataclass
class Server:
    proc: subprocess.Popen[bytes]
    url: str
    log_path: Path
    label: str

    @property
    def pid(self) -> int:
        return self.proc.pid

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def stop(self, timeout: float = 20) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _start(
    argv: list[str], env: dict[str, str], log_path: Path, url: str, label: str, timeout: float
) -> Server:
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            argv,
            cwd=REPO_ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    server = Server(proc, url, log_path, label)
    try:
        wait_healthy(server, timeout)
    except BaseException:
        server.stop()
        raise
    return server


def wait_healthy(server: Server, timeout: float = 60) -> None:
    """Until every worker could answer: /healthz twice in a row, and the master alive."""
    deadline = time.monotonic() + timeout
    streak = 0
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            raise RuntimeError(
                f"{server.label} exited with {server.proc.returncode}:\n{server.log_text()[-3000:]}"
            )
        try:
            with urllib.request.urlopen(server.url + "/healthz", timeout=2) as resp:
                streak = streak + 1 if resp.status == 200 else 0
        except OSError:
            streak = 0
        if streak >= 2:
            return
        time.sleep(0.1)
    raise RuntimeError(
        f"{server.label} not healthy within {timeout}s:\n{server.log_text()[-3000:]}"
    )


def start_funnelbot(
    workers: int,
    *,
    fake: FakeSlack,
    db_url: str,
    users: Iterable[str],
    log_path: Path,
    timeout: float = 90,
) -> Server:
    port = pgcluster.free_port()
    env = server_env(port=port, fake=fake, db_url=db_url, users=users)
    argv = [sys.executable, "-m", "funnelbot", "serve", "--workers", str(workers)]
    return _start(argv, env, log_path, f"http://127.0.0.1:{port}", f"funnelbot x{workers}", timeout)


def start_bare(
    workers: int,
    *,
    fake: FakeSlack,
    log_path: Path,
    threads: int = HTTP_THREADS,
    timeout: float = 60,
) -> Server:
    """benchmarks/bare_app.py under Granian with the settings `serve --workers` uses
    (threads per worker and the same cap on requests in flight)."""
    port = pgcluster.free_port()
    env = server_env(port=port, fake=fake, db_url=None, users=())
    argv = [
        sys.executable,
        "-m",
        "granian",
        "--interface",
        "wsgi",
        "--workers",
        str(workers),
        "--blocking-threads",
        str(threads),
        "--backpressure",
        str(threads),
        "--host",
        "0.0.0.0",
        "--port",
        str(port),
        "--log-level",
        "warning",
        "benchmarks.bare_app:app",
    ]
    return _start(argv, env, log_path, f"http://127.0.0.1:{port}", f"bare x{workers}", timeout)


# --------------------------------------------------------------------------------------
# The load


@dataclass
class Sent:
    """One command a client sent, and what came of it."""

    client: int
    seq: int
    kind: str
    command: str
    text: str
    path: str
    number: int | None = None  # the deal it acted on / created
    mark: str | None = None  # the unique name or note text it carried
    t_sent: float = 0.0
    t_ack: float = 0.0
    status: int = 0
    answer: str | None = None
    t_answer: float | None = None
    answers: int = 0
    valid: bool = True
    outcome: str = "none"  # ok, last, db, busy, internal, error, none, http, refused
    moved_to: str | None = None

    @property
    def ack_ms(self) -> float:
        return (self.t_ack - self.t_sent) * 1000

    @property
    def answer_ms(self) -> float | None:
        return None if self.t_answer is None else (self.t_answer - self.t_sent) * 1000


def classify(sent: Sent) -> None:
    """Set `outcome` (and `number`, `moved_to`) from the answer text."""
    if sent.status != 200:
        sent.outcome = "http" if sent.status else "refused"
        return
    text = sent.answer
    if text is None:
        sent.outcome = "none"
        return
    created = CREATED.search(text) if sent.kind == "new" else None
    moved = MOVED.search(text) if sent.kind == "advance" else None
    noted = NOTED.search(text) if sent.kind == "note" else None
    if DATABASE_DOWN in text:
        sent.outcome = "db"
    elif BUSY in text:
        sent.outcome = "busy"
    elif INTERNAL in text or "Traceback" in text:
        sent.outcome = "internal"
    elif created:
        sent.outcome, sent.number = "ok", int(created.group(1))
    elif moved and int(moved.group(1)) == sent.number:
        sent.outcome, sent.moved_to = "ok", moved.group(2)
    elif sent.kind == "advance" and LAST_STAGE.search(text):
        sent.outcome = "last"
    else:
        done = {
            "note": bool(noted and int(noted.group(1)) == sent.number),
            "show": f"#{sent.number}" in text,
            "funnel": True,
        }
        sent.outcome = "ok" if done.get(sent.kind, False) else "error"
    if not sent.valid and sent.outcome == "ok":
        sent.outcome = "error"


class Load:
    """C clients x R commands against one server; `run()` returns every Sent."""

    def __init__(
        self,
        base_url: str,
        fake: AnswerLog,
        *,
        clients: int = 8,
        requests: int = 500,
        seed: int = 1,
        team: str = TEAM,
        tag: str | None = None,
        answer_timeout: float = 15.0,
        bare: bool = False,
        db_backoff: float = 0.25,
    ) -> None:
        self.base_url = base_url
        self.fake = fake
        self.clients = clients
        self.requests = requests
        self.seed = seed
        self.team = team
        self.tag = tag or f"{os.getpid()}x{int(time.time() * 1000) % 10**8}"
        self.answer_timeout = answer_timeout
        self.bare = bare
        # After "the database is unreachable, try again" a person waits a moment.
        self.db_backoff = db_backoff
        self.created: list[int] = []
        self._lock = threading.Lock()
        self.sent_count = 0
        self.records: list[Sent] = []
        self.started = 0.0
        self.finished = 0.0
        self.failures: list[BaseException] = []

    @staticmethod
    def users(clients: int) -> list[str]:
        return [f"ULOAD{i:02d}" for i in range(1, clients + 1)]

    # -- one command -----------------------------------------------------------------------

    def _choose(self, rng: random.Random) -> str:
        kinds = [k for k, _ in MIX]
        return rng.choices(kinds, weights=[w for _, w in MIX])[0]

    def _target(self, rng: random.Random) -> int | None:
        with self._lock:
            hot = self.created[-HOT_DEALS:]
        return rng.choice(hot) if hot else None

    def build(self, client: int, seq: int, rng: random.Random, kind: str | None = None) -> Sent:
        kind = kind or self._choose(rng)
        number = None
        if kind in ("advance", "note", "show"):
            number = self._target(rng)
            if number is None:
                kind = "new" if not self.bare else kind
                number = 1 if self.bare else None
        path = f"/response/{self.tag}-{client}-{seq}"
        mark = None
        if kind == "new":
            mark = f"Load {self.tag} c{client} r{seq}"
            command, text = "/deal", f'new "{mark}" {rng.randint(1, 900)}k'
        elif kind == "advance":
            command, text = "/deal", f"advance #{number}"
        elif kind == "note":
            mark = f"note {self.tag} c{client} r{seq} — “quoted” & <angle> 中文"
            command, text = "/deal", f"note #{number} {mark}"
        elif kind == "show":
            command, text = "/deal", f"show #{number}"
        else:
            command, text = "/funnel", ""
        return Sent(client, seq, kind, command, text, path, number=number, mark=mark)

    def send(self, slack: SlackRequests, user: str, sent: Sent) -> Sent:
        done = self.fake.expect(sent.path)
        sent.t_sent = time.time()
        try:
            reply = slack.command(
                sent.command,
                sent.text,
                user_id=user,
                team_id=self.team,
                response_url=self.fake.base_url + sent.path,
            )
            sent.status = reply.status
        except OSError:
            sent.status = 0
        sent.t_ack = time.time()
        with self._lock:
            self.sent_count += 1
        if sent.status == 200 and reply.body.strip():
            self.fake.ack_answered(self.fake.base_url + sent.path, reply.body)  # answer in the ack
        elif sent.status == 200:
            done.wait(self.answer_timeout)
        self.settle(sent)
        if sent.outcome == "ok" and sent.kind == "new" and sent.number is not None:
            with self._lock:
                self.created.append(sent.number)
        return sent

    def settle(self, sent: Sent) -> None:
        """Read the answer(s) the fake received for this command and classify it."""
        answers = self.fake.answers(sent.path)
        sent.answers = len(answers)
        if answers:
            first = answers[0]
            sent.answer = str(first.params.get("text") or "")
            sent.t_answer = first.at
            sent.valid = all(a.ok for a in answers)
        classify(sent)
        if self.bare and sent.outcome in ("ok", "error") and sent.answer == "ok":
            sent.outcome = "ok"

    # -- many clients ----------------------------------------------------------------------

    def _client(self, index: int, user: str, out: list[Sent]) -> None:
        rng = random.Random(self.seed * 1000 + index)
        slack = SlackRequests(self.base_url, SIGNING_SECRET, timeout=30)
        try:
            for seq in range(self.requests):
                sent = self.send(slack, user, self.build(index, seq, rng))
                out.append(sent)
                if sent.outcome == "db" and self.db_backoff:
                    time.sleep(self.db_backoff)
        except BaseException as exc:  # noqa: BLE001 - reported by run()
            self.failures.append(exc)

    def warm_up(self, per_client: int = 3) -> None:
        """Touch every worker and user once (users.info, config caches); not measured."""
        users = self.users(self.clients)

        def one(index: int) -> None:
            slack = SlackRequests(self.base_url, SIGNING_SECRET, timeout=30)
            for seq in range(per_client):
                sent = Sent(
                    index, seq, "warm", "/deal", "help", f"/response/warm-{self.tag}-{index}-{seq}"
                )
                done = self.fake.expect(sent.path)
                slack.command(
                    "/deal",
                    "help",
                    user_id=users[index - 1],
                    team_id=self.team,
                    response_url=self.fake.base_url + sent.path,
                )
                done.wait(self.answer_timeout)

        threads = [threading.Thread(target=one, args=(i,)) for i in range(1, self.clients + 1)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

    def run(self) -> list[Sent]:
        users = self.users(self.clients)
        per_client: list[list[Sent]] = [[] for _ in users]
        threads = [
            threading.Thread(
                target=self._client, args=(i + 1, users[i], per_client[i]), daemon=True
            )
            for i in range(self.clients)
        ]
        self.started = time.time()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.finished = time.time()
        if self.failures:
            raise RuntimeError(f"a load client failed: {self.failures[0]!r}") from self.failures[0]
        time.sleep(0.3)  # late duplicate answers, if any, are counted too
        self.records = [s for lst in per_client for s in lst]
        for sent in self.records:
            self.settle(sent)
        return self.records


# --------------------------------------------------------------------------------------
# Numbers


def percentile(values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100)."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


@dataclass
class Summary:
    label: str
    requests: int
    seconds: float
    per_second: float
    ack_p50: float | None
    ack_p99: float | None
    ack_max: float | None
    answer_p50: float | None
    answer_p99: float | None
    answer_max: float | None
    outcomes: dict[str, int]
    errors: int


FINE = ("ok", "last")


def summarize(label: str, records: Sequence[Sent], started: float, finished: float) -> Summary:
    acks = [s.ack_ms for s in records if s.status == 200]
    answered = [s.answer_ms for s in records if s.answer_ms is not None]
    seconds = max(finished - started, 1e-9)
    outcomes = Counter(s.outcome for s in records)
    return Summary(
        label=label,
        requests=len(records),
        seconds=seconds,
        per_second=len(records) / seconds,
        ack_p50=percentile(acks, 50),
        ack_p99=percentile(acks, 99),
        ack_max=max(acks) if acks else None,
        answer_p50=percentile(answered, 50),
        answer_p99=percentile(answered, 99),
        answer_max=max(answered) if answered else None,
        outcomes=dict(outcomes),
        errors=sum(n for k, n in outcomes.items() if k not in FINE),
    )


def by_kind(records: Sequence[Sent]) -> dict[str, tuple[int, float | None, float | None]]:
    """kind -> (count, answered p50 ms, answered p99 ms)."""
    groups: dict[str, list[float]] = defaultdict(list)
    counts: Counter[str] = Counter()
    for s in records:
        counts[s.kind] += 1
        if s.answer_ms is not None:
            groups[s.kind].append(s.answer_ms)
    return {k: (counts[k], percentile(groups[k], 50), percentile(groups[k], 99)) for k in counts}


# --------------------------------------------------------------------------------------
# The database against what users were told


def export(db_url: str, kind: str, team: str = TEAM, *, cli: bool = True) -> list[dict[str, Any]]:
    """`funnelbot export <kind> --format json --team <team>`, parsed; `cli=False` runs the
    same export code in this process (saves starting Python three times per check)."""
    if not cli:
        import io

        from funnelbot import db
        from funnelbot import export as exporter

        engine = db.make_engine(db_url)
        try:
            out = io.StringIO()
            with db.make_session_factory(engine)() as session:
                exporter.write(session, team, kind, "json", out)
        finally:
            engine.dispose()
        return json.loads(out.getvalue())
    proc = subprocess.run(
        [sys.executable, "-m", "funnelbot", "export", kind, "--format", "json", "--team", team],
        cwd=REPO_ROOT,
        env=child_env({"DATABASE_URL": db_url, "FUNNELBOT_SCHEDULER": "off"}),
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=120,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"export {kind} failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return json.loads(proc.stdout)


def versions(db_url: str, team: str = TEAM) -> tuple[dict[int, int], dict[int, list[int]]]:
    """deal number -> version, and deal number -> its history rows' deal_version in order."""
    engine = sa.create_engine(db_url, poolclass=sa.NullPool)
    try:
        with engine.connect() as conn:
            deal_versions = dict(
                conn.execute(
                    sa.text("SELECT number, version FROM deals WHERE team_id = :t"), {"t": team}
                ).all()
            )
            history: dict[int, list[int]] = defaultdict(list)
            rows = conn.execute(
                sa.text(
                    "SELECT d.number, h.deal_version FROM stage_changes h "
                    "JOIN deals d ON d.id = h.deal_id WHERE h.team_id = :t "
                    "ORDER BY d.number, h.id"
                ),
                {"t": team},
            )
            for number, version in rows:
                history[number].append(version)
    finally:
        engine.dispose()
    return deal_versions, history


@dataclass
class Verification:
    problems: list[str] = field(default_factory=list)
    deals: int = 0
    history: int = 0
    notes: int = 0
    created_ok: int = 0
    advances_ok: int = 0
    notes_ok: int = 0
    lost_updates: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems

    def problem(self, text: str) -> None:
        self.problems.append(text)


def verify(
    records: Sequence[Sent],
    db_url: str,
    *,
    team: str = TEAM,
    tag: str | None = None,
    allowed: Callable[[Sent], tuple[str, ...]] | None = None,
    first_stage: str = "lead",
    cli: bool = True,
) -> Verification:
    """Check the database against the answers.

    `allowed(sent)` names the outcomes acceptable for that command (default: ok, and
    `last` for an advance from the last open stage); anything else is a problem.
    """
    v = Verification()
    allowed = allowed or (lambda s: FINE)
    bad: Counter[str] = Counter()
    examples: dict[str, str] = {}
    for s in records:
        if s.status != 200:
            bad[f"HTTP {s.status or 'refused'}"] += 1
            examples.setdefault(f"HTTP {s.status or 'refused'}", f"{s.command} {s.text}")
            continue
        if s.answers > 1:
            bad["answered more than once"] += 1
        if not s.valid:
            bad["invalid Block Kit"] += 1
        if s.outcome not in allowed(s):
            key = f"{s.kind}: {s.outcome}"
            bad[key] += 1
            examples.setdefault(key, f"{s.command} {s.text!r} -> {str(s.answer)[:200]!r}")
    for key, count in sorted(bad.items()):
        v.problem(f"{count} x {key}" + (f" (e.g. {examples[key]})" if key in examples else ""))

    deals = export(db_url, "deals", team, cli=cli)
    history = export(db_url, "history", team, cli=cli)
    notes = export(db_url, "notes", team, cli=cli)
    deal_versions, history_versions = versions(db_url, team)
    v.deals, v.history, v.notes = len(deals), len(history), len(notes)

    # Deals: every acknowledged creation exactly once, nothing else.
    by_number = {d["id"]: d for d in deals}
    name_count = Counter(d["name"] for d in deals)
    created = {s.number: s for s in records if s.kind == "new" and s.outcome == "ok"}
    v.created_ok = len(created)
    for number, s in created.items():
        deal = by_number.get(number)
        if deal is None:
            v.problem(f"deal #{number} was answered as created but is not in the database")
        elif deal["name"] != s.mark:
            v.problem(f"deal #{number} is {deal['name']!r}, the answer was for {s.mark!r}")
    for name, count in name_count.items():
        if count > 1:
            v.problem(f"{count} deals named {name!r}: created more than once")
    not_created = {s.mark for s in records if s.kind == "new" and s.outcome != "ok"}
    for name in sorted(not_created & set(name_count)):
        v.problem(f"deal {name!r} is in the database, but its user was told it failed")
    sent_names = {s.mark for s in records if s.kind == "new"}
    ours = [d for d in deals if tag is None or tag in d["name"]]
    for d in ours:
        if d["name"] not in sent_names:
            v.problem(f"deal #{d['id']} {d['name']!r} was never asked for")

    # Notes: every acknowledged note exactly once, on its deal; no other note.
    note_rows = Counter((n["deal_id"], n["text"]) for n in notes)
    text_count = Counter(n["text"] for n in notes)
    noted = [s for s in records if s.kind == "note" and s.outcome == "ok"]
    v.notes_ok = len(noted)
    for s in noted:
        if note_rows[(s.number, s.mark)] != 1:
            v.problem(
                f"note {s.mark!r} on #{s.number}: {note_rows[(s.number, s.mark)]} rows, want 1"
            )
    for s in records:
        if s.kind == "note" and s.outcome != "ok" and text_count[s.mark]:
            v.problem(f"note {s.mark!r} is in the database, but its user was told it failed")
    for text, count in text_count.items():
        if count > 1:
            v.problem(f"note {text!r} stored {count} times")

    # History: one row per creation and per acknowledged advance, a gap-free chain.
    advances: dict[int, list[str]] = defaultdict(list)
    notes_per_deal: Counter[int] = Counter()
    for s in records:
        if s.outcome == "ok" and s.kind == "advance":
            advances[s.number].append(s.moved_to or "")
        elif s.outcome == "ok" and s.kind == "note":
            notes_per_deal[s.number] += 1
    v.advances_ok = sum(len(a) for a in advances.values())
    rows_of: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for row in history:
        rows_of[row["deal_id"]].append(row)
    for number in by_number:
        rows = rows_of.get(number, [])
        want = 1 + len(advances.get(number, ()))
        if len(rows) != want:
            v.lost_updates += abs(len(rows) - want)
            v.problem(
                f"deal #{number}: {len(rows)} history rows, want {want} "
                f"(1 + {want - 1} acknowledged advances)"
            )
        if rows and (rows[0]["from_stage"] is not None or rows[0]["to_stage"] != first_stage):
            v.problem(
                f"deal #{number}: history starts {rows[0]['from_stage']}->{rows[0]['to_stage']}"
            )
        for prev, row in zip(rows, rows[1:], strict=False):
            if row["from_stage"] != prev["to_stage"]:
                v.problem(
                    f"deal #{number}: history gap {prev['to_stage']} then {row['from_stage']}->"
                )
            if row["at"] <= prev["at"]:
                v.problem(f"deal #{number}: history not in time order at {row['at']}")
        stage_names = sorted(row["to_stage"] for row in rows[1:])
        told = sorted(advances.get(number, ()))
        if len(stage_names) == len(told) and [n.lower() for n in told] != stage_names:
            v.problem(
                f"deal #{number}: moved to {told} per the answers, history says {stage_names}"
            )

        # Versions: history versions unique and increasing from 1; the deal's version is
        # 1 + one bump per acknowledged advance and note.
        hv = history_versions.get(number, [])
        if hv and hv[0] != 1:
            v.problem(f"deal #{number}: first history row at version {hv[0]}")
        if any(b <= a for a, b in zip(hv, hv[1:], strict=False)):
            v.problem(f"deal #{number}: history versions not strictly increasing: {hv}")
        version = deal_versions.get(number)
        expected = 1 + len(advances.get(number, ())) + notes_per_deal[number]
        if version is not None and number in created and version != expected:
            v.lost_updates += abs(version - expected)
            v.problem(
                f"deal #{number}: version {version}, want {expected} "
                f"(1 + {len(advances.get(number, ()))} advances + {notes_per_deal[number]} notes)"
            )
        if version is not None and hv and hv[-1] > version:
            v.problem(f"deal #{number}: history version {hv[-1]} above the deal's {version}")
    for number in rows_of.keys() - by_number.keys():
        v.problem(f"history rows for deal #{number}, which does not exist")
    return v


# --------------------------------------------------------------------------------------
# CPU time of process trees (where the time goes)

_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _stat(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return raw[raw.rindex(")") + 2 :].split()


def tree_cpu(root: int) -> float:
    """CPU seconds used by `root` and all its descendants, dead (reaped) ones included."""
    children: dict[int, list[int]] = defaultdict(list)
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            fields_ = _stat(int(entry))
            if fields_:
                children[int(fields_[1])].append(int(entry))
    total = 0.0
    stack = [root]
    while stack:
        pid = stack.pop()
        fields_ = _stat(pid)
        if fields_ is None:
            continue
        # utime, stime, cutime, cstime are fields 14-17 (1-based) of /proc/pid/stat.
        utime, stime, cutime, cstime = (int(x) for x in fields_[11:15])
        total += (utime + stime + cutime + cstime) / _TICK
        stack.extend(children.get(pid, ()))
    return total


def postmaster_pid(cluster_root: Path) -> int | None:
    with contextlib.suppress(OSError, ValueError, IndexError):
        return int((cluster_root / "data" / "postmaster.pid").read_text().split()[0])
    return None


# --------------------------------------------------------------------------------------
# A database outage in the middle of a run


@dataclass
class Outage:
    """When PostgreSQL was being stopped, was down, was starting, and was back (time.time())."""

    stopping: float = 0.0
    down: float = 0.0
    starting: float = 0.0
    up: float = 0.0
    error: BaseException | None = None

    @property
    def happened(self) -> bool:
        return self.up > 0


def restart_database(cluster_root: Path, outage: Outage, seconds: float) -> None:
    """Stop the cluster (fast: sessions cut off), stay down `seconds`, start it again."""
    try:
        outage.stopping = time.time()
        pgcluster.stop_server(cluster_root)
        outage.down = time.time()
        time.sleep(seconds)
        outage.starting = time.time()
        pgcluster.start_server(cluster_root)
        outage.up = time.time()
    except BaseException as exc:  # noqa: BLE001 - reported by the caller
        outage.error = exc


def restart_midway(
    load: Load, cluster_root: Path, seconds: float, at: float = 0.4
) -> tuple[Outage, threading.Thread]:
    """A thread that restarts the database once `at` of the load's commands were sent."""
    outage = Outage()
    total = load.clients * load.requests

    def watch() -> None:
        while load.sent_count < total * at:
            time.sleep(0.01)
        restart_database(cluster_root, outage, seconds)

    thread = threading.Thread(target=watch, name="db-restart", daemon=True)
    thread.start()
    return outage, thread


def outage_rules(outage: Outage, grace: float = 1.0) -> Callable[[Sent], tuple[str, ...]]:
    """Outcomes acceptable for a command, given when the database was away.

    Sent while it was down: the database message. Overlapping the stop or the start (or
    within `grace` after it was back: pooled connections are re-validated): done or the
    database message. Otherwise: done.
    """

    def allowed(s: Sent) -> tuple[str, ...]:
        if outage.down <= s.t_sent < outage.starting:
            return ("db",)
        end = s.t_answer if s.t_answer is not None else s.t_sent + SLACK_ACK_LIMIT
        if end >= outage.stopping and s.t_sent <= outage.up + grace:
            return (*FINE, "db")
        return FINE

    return allowed


@dataclass
class OutageReport:
    during: int  # commands sent while the database was down
    db_answers: int  # answered with the database message (any time)
    db_answer_max_ms: float | None
    ack_max_ms: float | None
    recovered_after_ms: float | None  # database back -> first command done
    problems: list[str]


def check_outage(records: Sequence[Sent], outage: Outage) -> OutageReport:
    """The database message within Slack's 3 s, 200 acks, and recovery without a restart."""
    problems: list[str] = []
    if outage.error is not None:
        problems.append(f"the restart itself failed: {outage.error!r}")
    during = [s for s in records if outage.down <= s.t_sent < outage.starting]
    db = [s for s in records if s.outcome == "db"]
    slow = [s for s in db if s.answer_ms is None or s.answer_ms > SLACK_ACK_LIMIT * 1000]
    if slow:
        worst = max(s.answer_ms or 0 for s in slow)
        problems.append(f"{len(slow)} database-down answers later than 3 s (worst {worst:.0f} ms)")
    unanswered = [s for s in during if s.t_answer is None]
    if unanswered:
        problems.append(f"{len(unanswered)} commands sent during the outage got no answer")
    late_acks = [s for s in records if s.status == 200 and s.ack_ms > SLACK_ACK_LIMIT * 1000]
    if late_acks:
        problems.append(f"{len(late_acks)} acks later than 3 s")
    if outage.happened and not during:
        problems.append("no command was sent while the database was down (outage too short?)")
    after = sorted(
        (s for s in records if s.outcome == "ok" and s.t_sent >= outage.up), key=lambda s: s.t_sent
    )
    if outage.happened and not after:
        problems.append("no command succeeded after the database came back")
    acks = [s.ack_ms for s in records if s.status == 200]
    return OutageReport(
        during=len(during),
        db_answers=len(db),
        db_answer_max_ms=max((s.answer_ms or 0 for s in db), default=None),
        ack_max_ms=max(acks, default=None),
        recovered_after_ms=(after[0].t_answer - outage.up) * 1000
        if after and after[0].t_answer
        else None,
        problems=problems,
    )


def tracebacks(log: str) -> list[str]:
    """The first line after each 'Traceback' block's end (the exception), for reports."""
    found = []
    lines = log.splitlines()
    for i, line in enumerate(lines):
        if line.startswith("Traceback (most recent call last)"):
            j = i + 1
            while j < len(lines) and (lines[j].startswith(" ") or not lines[j].strip()):
                j += 1
            found.append(lines[j][:300] if j < len(lines) else "?")
    return found


def oversized_status(base_url: str, size: int = 2_000_000, sent: int = 60_000) -> int:
    """POST /slack/events announcing a `size`-byte body but sending only `sent` bytes of it:
    the status code the server answers with (it must not wait for the rest)."""
    split = urllib.parse.urlsplit(base_url)
    head = (
        f"POST /slack/events HTTP/1.1\r\nHost: {split.netloc}\r\n"
        "Content-Type: application/x-www-form-urlencoded\r\n"
        f"X-Slack-Request-Timestamp: {int(time.time())}\r\nX-Slack-Signature: v0=00\r\n"
        f"Content-Length: {size}\r\n\r\n"
    ).encode()
    with socket.create_connection((split.hostname, split.port), timeout=10) as sock:
        sock.sendall(head + b"text=" + b"x" * (sent - 5))
        received = b""
        while b"\r\n" not in received:
            chunk = sock.recv(4096)
            if not chunk:
                break
            received += chunk
    return int(received.split(b"\r\n", 1)[0].split()[1])
