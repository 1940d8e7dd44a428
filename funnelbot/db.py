"""Engine, session factory and migrations; nothing else.

SQLite writes take the database lock at BEGIN (`BEGIN IMMEDIATE`) so concurrent writers
queue behind the busy timeout instead of failing on lock upgrade. PostgreSQL connections
that sat idle in the pool are pinged before use (SQLAlchemy's pessimistic disconnect
handling) and a disconnect found in use invalidates the whole pool, so the bot recovers
by itself when the database comes back; a connection busy a moment ago is not pinged
again, which saves a round trip per command under load. PostgreSQL cursors build their
`description` only when read (funnelbot/pgcursor.py).
"""

from __future__ import annotations

import time
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy import orm as so

from funnelbot.config import normalize_database_url

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"
# Any constant shared by every replica: the advisory lock that serialises start-up migrations.
MIGRATION_LOCK_ID = 0x46554E4E454C  # "FUNNEL"
READONLY = "funnelbot_readonly"


def make_engine(url: str, **kwargs: object) -> sa.Engine:
    url = normalize_database_url(url)
    if url.startswith("sqlite"):
        engine = sa.create_engine(
            url, connect_args={"timeout": 30, "check_same_thread": False}, **kwargs
        )

        @event.listens_for(engine, "connect")
        def _sqlite_connect(dbapi_conn, _record):  # type: ignore[no-untyped-def]
            dbapi_conn.isolation_level = None  # we emit BEGIN ourselves
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.close()

        @event.listens_for(engine, "begin")
        def _sqlite_begin(conn):  # type: ignore[no-untyped-def]
            # Readers (WAL) need no write lock; writers take it up front.
            readonly = conn.get_execution_options().get(READONLY, False)
            conn.exec_driver_sql("BEGIN" if readonly else "BEGIN IMMEDIATE")

        return engine
    options = {"pool_size": 10, "max_overflow": 20}
    options.update(kwargs)
    # A dead database must answer fast: Slack wants its ack within 3 s.
    engine = sa.create_engine(url, connect_args={"connect_timeout": 2}, **options)
    _ping_idle_connections(engine)

    @event.listens_for(engine, "connect")
    def _lazy_descriptions(dbapi_conn, _record):  # type: ignore[no-untyped-def]
        from funnelbot.pgcursor import LazyDescriptionCursor

        dbapi_conn.cursor_factory = LazyDescriptionCursor

    return engine


PING_AFTER_IDLE = 1.0  # seconds in the pool after which a connection is checked first


def _ping_idle_connections(engine: sa.Engine) -> None:
    @event.listens_for(engine, "checkin")
    def _checked_in(_dbapi_conn, record):  # type: ignore[no-untyped-def]
        record.info["idle_since"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _checked_out(dbapi_conn, record, _proxy):  # type: ignore[no-untyped-def]
        idle_since = record.info.pop("idle_since", None)
        if idle_since is None or time.monotonic() - idle_since < PING_AFTER_IDLE:
            return
        try:
            engine.dialect.do_ping(dbapi_conn)
        except engine.dialect.loaded_dbapi.Error as exc:
            # The pool drops this connection and tries a fresh one.
            raise sa.exc.DisconnectionError(str(exc)) from exc


def make_session_factory(engine: sa.Engine) -> so.sessionmaker[so.Session]:
    return so.sessionmaker(engine, expire_on_commit=False)


def make_readonly_session_factory(engine: sa.Engine) -> so.sessionmaker[so.Session]:
    """Sessions for answers that change nothing: on SQLite they take no write lock; on
    PostgreSQL they run in autocommit (each statement sees committed data, as it would in
    a READ COMMITTED transaction, without the BEGIN and COMMIT round trips)."""
    options: dict[str, object] = {READONLY: True}
    if engine.dialect.name == "postgresql":
        options["isolation_level"] = "AUTOCOMMIT"
    return so.sessionmaker(engine.execution_options(**options), expire_on_commit=False)


def alembic_config(engine: sa.Engine):  # type: ignore[no-untyped-def]
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("sqlalchemy.url", engine.url.render_as_string(hide_password=False))
    return cfg


def upgrade(engine: sa.Engine, revision: str = "head") -> None:
    """Apply pending migrations; safe when several replicas start at once."""
    from alembic import command

    cfg = alembic_config(engine)
    with engine.connect() as conn:
        if engine.dialect.name == "postgresql":
            conn.exec_driver_sql(f"SELECT pg_advisory_lock({MIGRATION_LOCK_ID})")
            conn.commit()
        try:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, revision)
            conn.commit()
        finally:
            if engine.dialect.name == "postgresql":
                conn.exec_driver_sql(f"SELECT pg_advisory_unlock({MIGRATION_LOCK_ID})")
                conn.commit()
