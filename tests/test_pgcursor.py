"""PostgreSQL cursors build `description` on first read (funnelbot/pgcursor.py): what they
give must be what psycopg itself gives, for as long as anyone holds it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
import sqlalchemy as sa

from funnelbot import db
from funnelbot.pgcursor import LazyDescription

WIDE = (
    "SELECT 1::int AS id, 'x'::varchar(12) AS name, 2.50::numeric(12, 2) AS amount, "
    "now() AS at, NULL::date AS due, true AS open, '{}'::json AS settings"
)


@pytest.fixture
def engine(postgres_url: str) -> Iterator[sa.Engine]:
    engine = db.make_engine(postgres_url, pool_size=1, max_overflow=0)
    yield engine
    engine.dispose()


def fields(columns: Any) -> list[tuple[Any, ...]]:
    """Every DB-API field of every column (name, type code, sizes, precision, scale, null)."""
    return [tuple(column) + (column.type_display,) for column in columns]


def test_description_matches_psycopgs_own_and_outlives_the_next_statement(
    engine: sa.Engine,
) -> None:
    raw = engine.raw_connection()
    try:
        cursor = raw.driver_connection.cursor()
        cursor.execute(WIDE)
        lazy = cursor.description
        assert isinstance(lazy, LazyDescription)
        # psycopg's own property, on the same result, is the independent answer.
        expected = fields(psycopg.Cursor.description.fget(cursor))  # type: ignore[attr-defined]
        assert [f[0] for f in expected] == ["id", "name", "amount", "at", "due", "open", "settings"]
        cursor.execute("SELECT 'other' AS something_else")  # the cursor moves on, unread
        assert len(lazy) == 7
        assert fields(lazy) == expected
        assert lazy[1].name == "name" and lazy[-1].name == "settings"
        assert [c.name for c in lazy[2:4]] == ["amount", "at"]
        assert cursor.description[0].name == "something_else"  # type: ignore[index]

        cursor.execute("CREATE TEMP TABLE t (x int)")
        assert cursor.description is None  # no rows, no description: as psycopg says
        cursor.execute("INSERT INTO t VALUES (1)")
        assert cursor.description is None
        cursor.execute("INSERT INTO t VALUES (2) RETURNING x")
        assert [c.name for c in cursor.description] == ["x"]  # type: ignore[union-attr]
        cursor.execute("SELECT")  # a result of tuples with no columns
        assert cursor.description is not None and len(cursor.description) == 0
    finally:
        raw.close()


def test_sqlalchemy_results_keep_their_columns_first_time_and_cached(engine: sa.Engine) -> None:
    t = sa.table("pg_class", sa.column("relname"), sa.column("relkind"))
    query = sa.select(t.c.relname, t.c.relkind).where(t.c.relname == sa.bindparam("n"))
    with engine.connect() as conn:
        for _ in range(3):  # compiled once, then from SQLAlchemy's cache
            row = conn.execute(query, {"n": "pg_class"}).one()
            assert row._mapping["relname"] == "pg_class" and row.relkind == "r"
        text_row = conn.execute(sa.text(WIDE)).one()  # textual: names come from description
        assert text_row._fields == ("id", "name", "amount", "at", "due", "open", "settings")
        assert text_row.settings == {}
