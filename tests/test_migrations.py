"""Migrations (SPEC §6 `migrate`, §2 default stages): after `alembic upgrade head` the
database is exactly what the models describe, on SQLite and PostgreSQL, and the default
funnel is seeded with SPEC §2's names, stall days and win probabilities.
"""

from __future__ import annotations

from decimal import Decimal

import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from conftest import REPO_ROOT
from helpers import run_command

# SPEC §2, written out: key, English, 中文, kind, stall days, win probability, in order.
DEFAULT_FUNNEL = [
    ("lead", "Lead", "线索", "open", 7, Decimal("0.10")),
    ("interest", "Interest", "意向", "open", 14, Decimal("0.20")),
    ("proposal", "Proposal", "方案", "open", 14, Decimal("0.40")),
    ("negotiation", "Negotiation", "谈判", "open", 10, Decimal("0.70")),
    ("won", "Won", "成交", "won", None, Decimal("1")),
    ("lost", "Lost", "输单", "lost", None, Decimal("0")),
]


def _alembic(url: str) -> Config:
    """The repository's alembic.ini, as `alembic upgrade head` run by hand reads it."""
    cfg = Config(str(REPO_ROOT / "alembic.ini"))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def _engine(url: str) -> sa.Engine:
    from funnelbot.config import normalize_database_url

    return sa.create_engine(normalize_database_url(url), poolclass=sa.NullPool)


def _diffs(engine: sa.Engine) -> list:
    from funnelbot.models import Base

    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        return compare_metadata(context, Base.metadata)


def test_upgrade_head_matches_the_models(empty_db_url) -> None:
    command.upgrade(_alembic(empty_db_url), "head")
    engine = _engine(empty_db_url)
    try:
        assert _diffs(engine) == []
    finally:
        engine.dispose()


def test_downgrade_to_base_and_up_again(empty_db_url) -> None:
    cfg = _alembic(empty_db_url)
    command.upgrade(cfg, "head")
    command.downgrade(cfg, "base")
    engine = _engine(empty_db_url)
    try:
        left = set(sa.inspect(engine).get_table_names()) - {"alembic_version"}
        assert left == set()
        command.upgrade(cfg, "head")
        assert _diffs(engine) == []
    finally:
        engine.dispose()


def test_default_stages_are_seeded(empty_db_url) -> None:
    command.upgrade(_alembic(empty_db_url), "head")
    engine = _engine(empty_db_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                sa.text(
                    "SELECT key, name_en, name_zh, kind, stall_days, probability FROM stages "
                    "ORDER BY position"
                )
            ).all()
    finally:
        engine.dispose()
    seeded = [(k, en, zh, kind, stall, Decimal(str(p))) for k, en, zh, kind, stall, p in rows]
    assert seeded == DEFAULT_FUNNEL


def test_a_new_workspace_starts_with_the_default_funnel(app_server) -> None:
    run_command(app_server, "list", team="TNEW")
    with app_server.runtime.engine.connect() as conn:
        rows = conn.execute(
            sa.text(
                "SELECT key, name_en, name_zh, kind, stall_days, probability, active FROM stages "
                "WHERE team_id = 'TNEW' ORDER BY position"
            )
        ).all()
    assert [(k, en, zh, kind, stall, Decimal(str(p))) for k, en, zh, kind, stall, p, _ in rows] == (
        DEFAULT_FUNNEL
    )
    assert all(bool(row[-1]) for row in rows)
