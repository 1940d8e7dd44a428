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


def test_metric_facts_are_filled_in_for_existing_history(empty_db_url) -> None:
    """0005 derives, from history written before it, what the domain now keeps per change:
    stay lengths, the deal's creation time, the furthest stage and where a deal was lost."""
    import datetime as dt

    from sqlalchemy import orm as so

    from funnelbot import metrics
    from funnelbot.models import UTCDateTime
    from funnelbot.periods import Period

    cfg = _alembic(empty_db_url)
    command.upgrade(cfg, "0004")
    engine = _engine(empty_db_url)

    def at(day: str) -> dt.datetime:
        return dt.datetime.fromisoformat(day).replace(tzinfo=dt.UTC)

    deals = sa.table(
        "deals",
        *(sa.column(c) for c in ("id", "team_id", "number", "name", "name_folded", "amount")),
        *(sa.column(c) for c in ("owner_id", "stage_id", "status", "created_by", "version")),
        *(sa.column(c, UTCDateTime) for c in ("created_at", "updated_at", "last_activity_at")),
        sa.column("closed_at", UTCDateTime),
    )
    changes = sa.table(
        "stage_changes",
        *(sa.column(c) for c in ("id", "team_id", "deal_id", "from_stage_id", "to_stage_id")),
        *(sa.column(c) for c in ("by", "deal_version")),
        sa.column("at", UTCDateTime),
    )
    try:
        with engine.begin() as conn:
            conn.execute(
                sa.text(
                    "INSERT INTO workspaces (team_id, next_deal_number, settings, created_at) VALUES ('T1', 3, '{}', '2026-01-01')"
                )
            )
            template = conn.execute(sa.text("SELECT min(team_id) FROM stages")).scalar_one()
            sid = dict(
                conn.execute(
                    sa.text("SELECT key, id FROM stages WHERE team_id = :t"), {"t": template}
                ).all()
            )
            conn.execute(
                sa.text("UPDATE stages SET team_id = 'T1' WHERE team_id = :t"), {"t": template}
            )
            # Deal 1: lead -> proposal (skip) -> interest (back) -> lost. Deal 2: lead -> won.
            plans = {
                1: (
                    "2026-01-01T00:00",
                    "lost",
                    [
                        "lead@2026-01-01T00:00",
                        "proposal@2026-01-03T12:00",
                        "interest@2026-01-04T12:00",
                        "lost@2026-01-05T00:00",
                    ],
                ),
                2: ("2026-02-01T00:00", "won", ["lead@2026-02-01T00:00", "won@2026-02-11T06:00"]),
            }
            change_id = 0
            for deal_id, (created, status, steps) in plans.items():
                last_key, last_at = steps[-1].split("@")
                conn.execute(
                    deals.insert().values(
                        id=deal_id,
                        team_id="T1",
                        number=deal_id,
                        name=f"D{deal_id}",
                        name_folded=f"d{deal_id}",
                        amount=0,
                        owner_id="U1",
                        stage_id=sid[last_key],
                        status=status,
                        created_by="U1",
                        version=len(steps),
                        created_at=at(created),
                        updated_at=at(last_at),
                        last_activity_at=at(last_at),
                        closed_at=at(last_at),
                    )
                )
                previous = None
                for version, step in enumerate(steps, 1):
                    key, when = step.split("@")
                    change_id += 1
                    conn.execute(
                        changes.insert().values(
                            id=change_id,
                            team_id="T1",
                            deal_id=deal_id,
                            from_stage_id=sid[previous] if previous else None,
                            to_stage_id=sid[key],
                            at=at(when),
                            by="U1",
                            deal_version=version,
                        )
                    )
                    previous = key
        command.upgrade(cfg, "head")
        with engine.connect() as conn:
            facts = conn.execute(
                sa.select(
                    sa.column("deal_id"),
                    sa.column("stay_days"),
                    sa.column("deal_created_at", UTCDateTime),
                )
                .select_from(sa.table("stage_changes"))
                .order_by(sa.column("id"))
            ).all()
            reach = dict(
                (row[0], row[1:])
                for row in conn.execute(
                    sa.text("SELECT id, furthest_stage_id, lost_from_stage_id FROM deals")
                )
            )
        days = [(d, None if s is None else round(s, 6), c) for d, s, c in facts]
        assert days == [
            (1, None, at("2026-01-01T00:00")),
            (1, 2.5, at("2026-01-01T00:00")),
            (1, 1.0, at("2026-01-01T00:00")),
            (1, 0.5, at("2026-01-01T00:00")),
            (2, None, at("2026-02-01T00:00")),
            (2, 10.25, at("2026-02-01T00:00")),
        ]
        assert reach == {1: (sid["proposal"], sid["interest"]), 2: (sid["won"], None)}
        with so.Session(engine) as session:
            result = metrics.conversion(
                session, "T1", Period(dt.date(2026, 1, 1), dt.date(2026, 12, 31))
            )
        by_key = {s.key: s for s in result.stages}
        # Both reached lead, interest and proposal (skips pass through); only deal 2 got further.
        assert [by_key[k].reached for k in ("lead", "interest", "proposal", "negotiation")] == [
            2,
            2,
            2,
            1,
        ]
        assert by_key["interest"].lost == 1 and by_key["proposal"].lost == 0
        assert by_key["lead"].avg_days == sum([2.5, 10.25]) / 2
        assert by_key["proposal"].median_days == 1.0
    finally:
        engine.dispose()
