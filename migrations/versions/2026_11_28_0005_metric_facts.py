"""Facts for fast conversion metrics, kept with each stage change (and filled in here).

Deals get the furthest stage they ever entered and, when lost, the stage they were lost
from; each history row gets the length of the stay it ended and its deal's creation time,
with an index that hands out stay lengths per stage in order (medians without a sort).

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

WON_RANK = 1_000_000  # as funnelbot.models.WON_RANK when this was written

deals = sa.table(
    "deals",
    sa.column("id", sa.Integer),
    sa.column("status", sa.String),
    sa.column("created_at", sa.DateTime(timezone=True)),
    sa.column("furthest_stage_id", sa.Integer),
    sa.column("lost_from_stage_id", sa.Integer),
)
stages = sa.table(
    "stages",
    sa.column("id", sa.Integer),
    sa.column("kind", sa.String),
    sa.column("position", sa.Integer),
)


history = sa.table(
    "stage_changes",
    sa.column("id", sa.Integer),
    sa.column("deal_id", sa.Integer),
    sa.column("from_stage_id", sa.Integer),
    sa.column("to_stage_id", sa.Integer),
    sa.column("at", sa.DateTime(timezone=True)),
    sa.column("stay_days", sa.Float),
    sa.column("deal_created_at", sa.DateTime(timezone=True)),
)


def _backfill() -> None:
    dialect = op.get_bind().dialect.name

    earlier = history.alias("earlier")
    entered = (
        sa.select(earlier.c.at)
        .where(earlier.c.deal_id == history.c.deal_id, earlier.c.id < history.c.id)
        .order_by(earlier.c.id.desc())
        .limit(1)
        .scalar_subquery()
    )
    if dialect == "sqlite":
        days = sa.func.julianday(history.c.at) - sa.func.julianday(entered)
    else:
        days = sa.extract("epoch", history.c.at - entered) / 86400.0
    created = sa.select(deals.c.created_at).where(deals.c.id == history.c.deal_id)
    op.execute(history.update().values(stay_days=days, deal_created_at=created.scalar_subquery()))

    rank = sa.case(
        (stages.c.kind == "won", WON_RANK), (stages.c.kind == "open", stages.c.position), else_=-1
    )
    furthest = (
        sa.select(history.c.to_stage_id)
        .join(stages, stages.c.id == history.c.to_stage_id)
        .where(history.c.deal_id == deals.c.id)
        .order_by(rank.desc(), history.c.id)
        .limit(1)
        .scalar_subquery()
    )
    lost_from = (
        sa.select(history.c.from_stage_id)
        .where(history.c.deal_id == deals.c.id)
        .order_by(history.c.id.desc())
        .limit(1)
        .scalar_subquery()
    )
    op.execute(deals.update().values(furthest_stage_id=furthest))
    op.execute(deals.update().where(deals.c.status == "lost").values(lost_from_stage_id=lost_from))


def upgrade() -> None:
    with op.batch_alter_table("deals") as batch_op:
        batch_op.add_column(sa.Column("furthest_stage_id", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("lost_from_stage_id", sa.Integer(), nullable=True))
    with op.batch_alter_table("stage_changes") as batch_op:
        batch_op.add_column(sa.Column("stay_days", sa.Float(), nullable=True))
        batch_op.add_column(sa.Column("deal_created_at", sa.DateTime(timezone=True), nullable=True))
    _backfill()
    with op.batch_alter_table("stage_changes") as batch_op:
        batch_op.alter_column(
            "deal_created_at", existing_type=sa.DateTime(timezone=True), nullable=False
        )
        batch_op.create_index(
            "ix_stage_changes_stays",
            ["team_id", "from_stage_id", "stay_days", "deal_created_at"],
            unique=False,
        )


def downgrade() -> None:
    with op.batch_alter_table("stage_changes") as batch_op:
        batch_op.drop_index("ix_stage_changes_stays")
        batch_op.drop_column("deal_created_at")
        batch_op.drop_column("stay_days")
    with op.batch_alter_table("deals") as batch_op:
        batch_op.drop_column("lost_from_stage_id")
        batch_op.drop_column("furthest_stage_id")
