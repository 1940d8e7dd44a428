"""Fixtures: a real database (SQLite and PostgreSQL), a fake Slack, the app over HTTP.

Every test that uses `db_url` (directly or through `app_server`, `db_engine`, `cli_env`)
runs twice: `[sqlite]` on a fresh file and `[postgresql]` on a fresh database cloned
from a template that `alembic upgrade head` built once per session. PostgreSQL comes
from $FUNNELBOT_TEST_POSTGRES_URL (a superuser URL, as printed by
`python tests/pgcluster.py start`) or, when unset, a throwaway cluster this session
starts and stops. Without either the PostgreSQL runs fail, unless
FUNNELBOT_TEST_SKIP_POSTGRES=1 says to skip them.
"""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

TESTS_DIR = Path(__file__).resolve().parent
REPO_ROOT = TESTS_DIR.parent
if str(TESTS_DIR) not in sys.path:  # `import fakeslack` etc. also under --import-mode=importlib
    sys.path.insert(0, str(TESTS_DIR))

import pgcluster  # noqa: E402
from fakeslack import FakeSlack  # noqa: E402
from slackclient import SlackRequests  # noqa: E402

BOT_TOKEN = "xoxb-test"
SIGNING_SECRET = "test-secret"
ADMIN = "UADMIN"
MANAGER = "UMGR"
DB_KINDS = ("sqlite", "postgresql")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "slow: a slow test (deselect with -m 'not slow')")
    config.addinivalue_line(
        "markers",
        "postgresql: the PostgreSQL run of a db_url test (deselect with -m 'not postgresql')",
    )


# --------------------------------------------------------------------------------------
# PostgreSQL


def _truthy(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in {"1", "true", "yes", "on"}


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A superuser SQLAlchemy URL of a running PostgreSQL server for this session."""
    url = os.environ.get("FUNNELBOT_TEST_POSTGRES_URL", "").strip()
    if url:
        yield _psycopg_url(url)
        return
    try:
        url, stop = pgcluster.start()
    except (pgcluster.ClusterError, OSError, KeyError) as exc:
        # KeyError: no `postgres` OS user to run the server as.
        problem = str(exc)
    else:
        problem = None
    if problem is not None:
        message = (
            "PostgreSQL is needed for the [postgresql] runs: set FUNNELBOT_TEST_POSTGRES_URL "
            "(e.g. from `python tests/pgcluster.py start`) or install the PostgreSQL server "
            "binaries so tests/pgcluster.py can start one (FUNNELBOT_TEST_SKIP_POSTGRES=1 "
            f"skips these runs instead). Could not start one: {problem}"
        )
        if _truthy("FUNNELBOT_TEST_SKIP_POSTGRES"):
            pytest.skip(message)
        pytest.fail(message, pytrace=False)
    try:
        yield url
    finally:
        stop()


def _psycopg_url(url: str) -> str:
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


class PgDatabases:
    """Creates and drops throwaway databases on the session's PostgreSQL server."""

    def __init__(self, url: str) -> None:
        self.url = make_url(url)
        self.admin = sa.create_engine(url, isolation_level="AUTOCOMMIT", poolclass=sa.NullPool)
        self._seq = itertools.count(1)
        self.prefix = f"funnelbot_t_{os.getpid()}"

    def url_for(self, name: str) -> str:
        return self.url.set(database=name).render_as_string(hide_password=False)

    def new_name(self) -> str:
        return f"{self.prefix}_{next(self._seq)}"

    def create(self, name: str, template: str | None = None) -> str:
        self.drop(name)  # a leftover from a crashed run with the same pid
        with self.admin.connect() as conn:
            tpl = f" TEMPLATE {template}" if template else " TEMPLATE template0"
            conn.execute(sa.text(f"CREATE DATABASE \"{name}\"{tpl} ENCODING 'UTF8'"))
        return self.url_for(name)

    def drop(self, name: str) -> None:
        with self.admin.connect() as conn:
            conn.execute(
                sa.text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = :name AND pid <> pg_backend_pid()"
                ),
                {"name": name},
            )
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))

    def close(self) -> None:
        self.admin.dispose()


@pytest.fixture(scope="session")
def pg_databases(postgres_url: str) -> Iterator[PgDatabases]:
    dbs = PgDatabases(postgres_url)
    try:
        yield dbs
    finally:
        dbs.close()


def _funnelbot_db() -> Any:
    try:
        import funnelbot.db as fdb
    except ImportError as exc:
        pytest.fail(f"funnelbot.db is needed to build the schema: {exc}", pytrace=False)
    for name in ("make_engine", "upgrade"):
        if not hasattr(fdb, name):
            pytest.fail(f"funnelbot.db.{name} is missing", pytrace=False)
    return fdb


@pytest.fixture(scope="session")
def pg_template(pg_databases: PgDatabases) -> Iterator[str]:
    """Name of a PostgreSQL database at `alembic upgrade head`, cloned for each test."""
    fdb = _funnelbot_db()
    name = f"funnelbot_tpl_{os.getpid()}"
    url = pg_databases.create(name)
    try:
        engine = fdb.make_engine(url)
        try:
            fdb.upgrade(engine)
        finally:
            engine.dispose()
        yield name
    finally:
        pg_databases.drop(name)


# --------------------------------------------------------------------------------------
# Database per test


def _db_params() -> list[Any]:
    return [
        pytest.param("sqlite", id="sqlite"),
        pytest.param("postgresql", id="postgresql", marks=pytest.mark.postgresql),
    ]


@pytest.fixture(params=_db_params())
def empty_db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh database with no schema at all, once per backend."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/funnelbot.db"
        return
    dbs: PgDatabases = request.getfixturevalue("pg_databases")
    name = dbs.new_name()
    url = dbs.create(name)
    try:
        yield url
    finally:
        dbs.drop(name)


@pytest.fixture(params=_db_params())
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh database for this test, once per backend.

    sqlite: a new file (empty: `build_runtime` or `db_engine` migrates it);
    postgresql: a new database cloned from the migrated session template.
    """
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/funnelbot.db"
        return
    dbs: PgDatabases = request.getfixturevalue("pg_databases")
    template: str = request.getfixturevalue("pg_template")
    name = dbs.new_name()
    url = dbs.create(name, template=template)
    try:
        yield url
    finally:
        dbs.drop(name)


@pytest.fixture
def db_kind(db_url: str) -> str:
    """'sqlite' or 'postgresql', for the rare test whose expectation differs."""
    return "sqlite" if db_url.startswith("sqlite") else "postgresql"


@pytest.fixture
def db_engine(db_url: str) -> Iterator[sa.Engine]:
    """The product's engine on this test's database, at `alembic upgrade head`."""
    fdb = _funnelbot_db()
    engine = fdb.make_engine(db_url)
    fdb.upgrade(engine)
    try:
        yield engine
    finally:
        engine.dispose()


# --------------------------------------------------------------------------------------
# Slack and the app


@pytest.fixture
def fake_slack() -> Iterator[FakeSlack]:
    fake = FakeSlack().start()
    try:
        yield fake
    finally:
        fake.stop()


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    """Override per test: @pytest.mark.parametrize("settings_overrides", [{"timezone": ...}])."""
    return {}


def make_settings(db_url: str, fake: FakeSlack, **overrides: Any) -> Any:
    from funnelbot.config import Settings

    kwargs: dict[str, Any] = {
        "slack_bot_token": BOT_TOKEN,
        "slack_signing_secret": SIGNING_SECRET,
        "database_url": db_url,
        "slack_api_url": fake.url,
        "scheduler_enabled": False,
        "admins": frozenset({ADMIN}),
        "managers": frozenset({MANAGER}),
    }
    kwargs.update(overrides)
    return Settings(**kwargs)


class _ThreadingWSGIServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True
    allow_reuse_address = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass


@dataclass
class AppServer:
    """The app served over HTTP on 127.0.0.1, with Slack's two sides at hand."""

    url: str
    runtime: Any
    slack: SlackRequests
    fake: FakeSlack

    @property
    def settings(self) -> Any:
        return self.runtime.settings


class serve_wsgi:  # noqa: N801 - used like a function in a `with`
    """Serve a WSGI callable on 127.0.0.1:<free port> in a daemon thread."""

    def __init__(self, app: Any) -> None:
        self.server = make_server(
            "127.0.0.1", 0, app, server_class=_ThreadingWSGIServer, handler_class=_QuietHandler
        )
        host, port = self.server.server_address[:2]
        self.url = f"http://{host}:{port}"
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    def __enter__(self) -> str:
        self.thread.start()
        return self.url

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


@pytest.fixture
def runtime_options() -> dict[str, Any]:
    """Extra keyword arguments for `build_runtime` (e.g. {"clock": ...}); override per test."""
    return {}


@pytest.fixture
def app_server(
    db_url: str,
    fake_slack: FakeSlack,
    settings_overrides: dict[str, Any],
    runtime_options: dict[str, Any],
) -> Iterator[AppServer]:
    from funnelbot.runtime import build_runtime

    settings = make_settings(db_url, fake_slack, **settings_overrides)
    runtime = build_runtime(settings, **runtime_options)
    try:
        with serve_wsgi(runtime.wsgi) as url:
            slack = SlackRequests(
                url,
                runtime.settings.slack_signing_secret,
                response_url_factory=fake_slack.response_url,
                on_ack_answer=fake_slack.ack_answered,
            )
            yield AppServer(url=url, runtime=runtime, slack=slack, fake=fake_slack)
    finally:
        runtime.close()


# --------------------------------------------------------------------------------------
# The command line

# Variables a developer's shell (or .env) might set that must not leak into a test run.
_SCRUBBED_PREFIXES = ("SLACK_", "FUNNELBOT_", "DATABASE_URL", "PORT", "LOG_LEVEL")


def run_cli(
    args: list[str],
    env: Mapping[str, str | None] | None = None,
    *,
    input: str | None = None,  # noqa: A002 - subprocess's name
    timeout: float = 120,
    cwd: str | os.PathLike[str] | None = None,
    check: bool = False,
) -> subprocess.CompletedProcess[str]:
    """Run `python -m funnelbot *args` in a subprocess; `env` entries set (None: unset) vars."""
    full = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(_SCRUBBED_PREFIXES) or k.startswith("FUNNELBOT_TEST_")
    }
    full.update(PYTHONUNBUFFERED="1", PYTHONIOENCODING="utf-8", PYTHONUTF8="1")
    full["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH", "")) if p
    )
    for key, value in (env or {}).items():
        if value is None:
            full.pop(key, None)
        else:
            full[key] = str(value)
    proc = subprocess.run(
        [sys.executable, "-m", "funnelbot", *args],
        input=input,
        capture_output=True,
        text=True,
        encoding="utf-8",
        env=full,
        cwd=cwd,
        timeout=timeout,
        check=False,
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"funnelbot {' '.join(args)} exited {proc.returncode}\n"
            f"--- stdout ---\n{proc.stdout}\n--- stderr ---\n{proc.stderr}"
        )
    return proc


@pytest.fixture(name="run_cli")
def run_cli_fixture() -> Any:
    """The `run_cli` function, for tests that prefer a fixture to an import."""
    return run_cli


@pytest.fixture
def cli_env(db_url: str, fake_slack: FakeSlack) -> dict[str, str]:
    """Environment for `run_cli` pointing at this test's database and fake Slack."""
    return {
        "DATABASE_URL": db_url,
        "SLACK_API_URL": fake_slack.url,
        "SLACK_BOT_TOKEN": BOT_TOKEN,
        "SLACK_SIGNING_SECRET": SIGNING_SECRET,
        "FUNNELBOT_SCHEDULER": "off",
        "FUNNELBOT_ADMINS": ADMIN,
        "FUNNELBOT_MANAGERS": MANAGER,
        "FUNNELBOT_TIMEZONE": "UTC",
    }
