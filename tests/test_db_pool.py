"""PostgreSQL connections lost while they sat in the pool (SPEC §8: the bot recovers by
itself when the database comes back): one idle for a while is pinged at checkout and
replaced unseen; one busy a moment ago is not pinged, so its loss shows once, as a
disconnect the caller answers with "database unavailable", and the pool starts afresh."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from funnelbot import db


@pytest.fixture
def engine(postgres_url: str) -> Iterator[sa.Engine]:
    engine = db.make_engine(postgres_url, pool_size=1, max_overflow=0)
    yield engine
    engine.dispose()


def backend_pid(engine: sa.Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(sa.text("SELECT pg_backend_pid()")).scalar_one())


def terminate(postgres_url: str, pid: int) -> None:
    admin = sa.create_engine(postgres_url, isolation_level="AUTOCOMMIT", poolclass=sa.NullPool)
    with admin.connect() as conn:
        assert conn.execute(sa.text("SELECT pg_terminate_backend(:p, 10000)"), {"p": pid}).scalar()
    admin.dispose()


def test_a_connection_lost_while_idle_is_replaced_at_checkout(
    engine: sa.Engine, postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = backend_pid(engine)
    terminate(postgres_url, first)
    monkeypatch.setattr(db, "PING_AFTER_IDLE", 0.0)  # it has been idle "long enough"
    second = backend_pid(engine)  # no error: the ping found it dead, the pool reconnected
    assert second != first
    assert backend_pid(engine) == second  # and the new one is kept


def test_a_connection_busy_a_moment_ago_is_not_pinged_and_its_loss_resets_the_pool(
    engine: sa.Engine, postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(db, "PING_AFTER_IDLE", 3600.0)
    first = backend_pid(engine)
    terminate(postgres_url, first)
    with pytest.raises(sa.exc.OperationalError) as lost, engine.connect() as conn:
        conn.execute(sa.text("SELECT 1"))
    assert lost.value.connection_invalidated
    assert backend_pid(engine) != first  # the next caller gets a working connection
