"""Initial schema and the default funnel stages.

Default stages are seeded under the template workspace '*'; a workspace gets its own
copy the first time it is seen, so each team can then rename, add and reorder them.

Revision ID: 0001
Revises:
Create Date: 2026-11-28 04:03:47.926173

"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


TEMPLATE_TEAM = "*"
DEFAULT_STAGES = [
    # key, English, 中文, position, kind, stall days, default win probability
    ("lead", "Lead", "线索", 1, "open", 7, "0.10"),
    ("interest", "Interest", "意向", 2, "open", 14, "0.20"),
    ("proposal", "Proposal", "方案", 3, "open", 14, "0.40"),
    ("negotiation", "Negotiation", "谈判", 4, "open", 10, "0.70"),
    ("won", "Won", "成交", 100, "won", None, "1"),
    ("lost", "Lost", "输单", 101, "lost", None, "0"),
]


def seed_default_stages() -> None:
    stages = sa.table(
        "stages",
        sa.column("team_id", sa.String),
        sa.column("key", sa.String),
        sa.column("name_en", sa.String),
        sa.column("name_zh", sa.String),
        sa.column("position", sa.Integer),
        sa.column("kind", sa.String),
        sa.column("stall_days", sa.Integer),
        sa.column("probability", sa.Numeric(5, 4)),
        sa.column("active", sa.Boolean),
    )
    op.bulk_insert(
        stages,
        [
            {
                "team_id": TEMPLATE_TEAM,
                "key": key,
                "name_en": en,
                "name_zh": zh,
                "position": position,
                "kind": kind,
                "stall_days": stall,
                "probability": Decimal(prob),
                "active": True,
            }
            for key, en, zh, position, kind, stall, prob in DEFAULT_STAGES
        ],
    )


def upgrade() -> None:
    """Upgrade schema."""

    op.create_table(
        "job_runs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("team_id", sa.String(length=32), nullable=False),
        sa.Column("job", sa.String(length=40), nullable=False),
        sa.Column("period_key", sa.String(length=40), nullable=False),
        sa.Column("claimed_by", sa.String(length=100), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("outcome", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_job_runs")),
        sa.UniqueConstraint("team_id", "job", "period_key", name="uq_job_runs_claim"),
    )
    op.create_table(
        "stages",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("team_id", sa.String(length=32), nullable=False),
        sa.Column("key", sa.String(length=40), nullable=False),
        sa.Column("name_en", sa.String(length=80), nullable=False),
        sa.Column("name_zh", sa.String(length=80), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("stall_days", sa.Integer(), nullable=True),
        sa.Column("probability", sa.Numeric(precision=5, scale=4), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_stages")),
        sa.UniqueConstraint("team_id", "key", name="uq_stages_team_key"),
    )
    with op.batch_alter_table("stages", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_stages_team_id"), ["team_id"], unique=False)

    op.create_table(
        "workspaces",
        sa.Column("team_id", sa.String(length=32), nullable=False),
        sa.Column("next_deal_number", sa.Integer(), nullable=False),
        sa.Column("settings", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("team_id", name=op.f("pk_workspaces")),
    )
    op.create_table(
        "deals",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("team_id", sa.String(length=32), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("name_folded", sa.String(length=200), nullable=False),
        sa.Column("amount", sa.Numeric(precision=20, scale=2), nullable=False),
        sa.Column("owner_id", sa.String(length=32), nullable=False),
        sa.Column("stage_id", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=8), nullable=False),
        sa.Column("source", sa.String(length=100), nullable=True),
        sa.Column("expected_close", sa.Date(), nullable=True),
        sa.Column("next_step", sa.Text(), nullable=True),
        sa.Column("next_step_due", sa.Date(), nullable=True),
        sa.Column("lost_reason", sa.Text(), nullable=True),
        sa.Column("created_by", sa.String(length=32), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_activity_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("snoozed_until", sa.Date(), nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["stage_id"], ["stages.id"], name=op.f("fk_deals_stage_id_stages")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_deals")),
        sa.UniqueConstraint("team_id", "number", name="uq_deals_team_number"),
    )
    with op.batch_alter_table("deals", schema=None) as batch_op:
        batch_op.create_index("ix_deals_team_created", ["team_id", "created_at"], unique=False)
        batch_op.create_index("ix_deals_team_name_folded", ["team_id", "name_folded"], unique=False)
        batch_op.create_index(
            "ix_deals_team_last_activity", ["team_id", "status", "last_activity_at"], unique=False
        )
        batch_op.create_index(
            "ix_deals_team_owner_status", ["team_id", "owner_id", "status"], unique=False
        )
        batch_op.create_index("ix_deals_team_stage", ["team_id", "stage_id"], unique=False)

    op.create_table(
        "exit_criteria",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("team_id", sa.String(length=32), nullable=False),
        sa.Column("stage_id", sa.Integer(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("text", sa.String(length=300), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(
            ["stage_id"], ["stages.id"], name=op.f("fk_exit_criteria_stage_id_stages")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_exit_criteria")),
    )
    with op.batch_alter_table("exit_criteria", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_exit_criteria_stage_id"), ["stage_id"], unique=False)

    op.create_table(
        "exit_confirmations",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("team_id", sa.String(length=32), nullable=False),
        sa.Column("deal_id", sa.Integer(), nullable=False),
        sa.Column("criterion_id", sa.Integer(), nullable=False),
        sa.Column("by", sa.String(length=32), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["criterion_id"],
            ["exit_criteria.id"],
            name=op.f("fk_exit_confirmations_criterion_id_exit_criteria"),
        ),
        sa.ForeignKeyConstraint(
            ["deal_id"], ["deals.id"], name=op.f("fk_exit_confirmations_deal_id_deals")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_exit_confirmations")),
    )
    with op.batch_alter_table("exit_confirmations", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_exit_confirmations_deal_id"), ["deal_id"], unique=False
        )

    op.create_table(
        "notes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("team_id", sa.String(length=32), nullable=False),
        sa.Column("deal_id", sa.Integer(), nullable=False),
        sa.Column("author", sa.String(length=32), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["deal_id"], ["deals.id"], name=op.f("fk_notes_deal_id_deals")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_notes")),
    )
    with op.batch_alter_table("notes", schema=None) as batch_op:
        batch_op.create_index("ix_notes_deal", ["deal_id", "id"], unique=False)

    op.create_table(
        "reminders",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("team_id", sa.String(length=32), nullable=False),
        sa.Column("deal_id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.String(length=32), nullable=False),
        sa.Column("due_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["deal_id"], ["deals.id"], name=op.f("fk_reminders_deal_id_deals")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reminders")),
    )
    with op.batch_alter_table("reminders", schema=None) as batch_op:
        batch_op.create_index("ix_reminders_due", ["sent_at", "due_at"], unique=False)

    op.create_table(
        "stage_changes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("team_id", sa.String(length=32), nullable=False),
        sa.Column("deal_id", sa.Integer(), nullable=False),
        sa.Column("from_stage_id", sa.Integer(), nullable=True),
        sa.Column("to_stage_id", sa.Integer(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("by", sa.String(length=32), nullable=False),
        sa.Column("deal_version", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["deal_id"], ["deals.id"], name=op.f("fk_stage_changes_deal_id_deals")
        ),
        sa.ForeignKeyConstraint(
            ["from_stage_id"], ["stages.id"], name=op.f("fk_stage_changes_from_stage_id_stages")
        ),
        sa.ForeignKeyConstraint(
            ["to_stage_id"], ["stages.id"], name=op.f("fk_stage_changes_to_stage_id_stages")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_stage_changes")),
    )
    with op.batch_alter_table("stage_changes", schema=None) as batch_op:
        batch_op.create_index("ix_stage_changes_deal", ["deal_id", "id"], unique=False)
        batch_op.create_index("ix_stage_changes_team_at", ["team_id", "at"], unique=False)

    seed_default_stages()


def downgrade() -> None:
    """Downgrade schema."""

    with op.batch_alter_table("stage_changes", schema=None) as batch_op:
        batch_op.drop_index("ix_stage_changes_team_at")
        batch_op.drop_index("ix_stage_changes_deal")

    op.drop_table("stage_changes")
    with op.batch_alter_table("reminders", schema=None) as batch_op:
        batch_op.drop_index("ix_reminders_due")

    op.drop_table("reminders")
    with op.batch_alter_table("notes", schema=None) as batch_op:
        batch_op.drop_index("ix_notes_deal")

    op.drop_table("notes")
    with op.batch_alter_table("exit_confirmations", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_exit_confirmations_deal_id"))

    op.drop_table("exit_confirmations")
    with op.batch_alter_table("exit_criteria", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_exit_criteria_stage_id"))

    op.drop_table("exit_criteria")
    with op.batch_alter_table("deals", schema=None) as batch_op:
        batch_op.drop_index("ix_deals_team_stage")
        batch_op.drop_index("ix_deals_team_owner_status")
        batch_op.drop_index("ix_deals_team_last_activity")
        batch_op.drop_index("ix_deals_team_created")

    op.drop_table("deals")
    op.drop_table("workspaces")
    with op.batch_alter_table("stages", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_stages_team_id"))

    op.drop_table("stages")
    op.drop_table("job_runs")
