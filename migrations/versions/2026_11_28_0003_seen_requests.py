"""Seen-request ledger: replayed payloads and Events API retries are processed once.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "seen_requests",
        sa.Column("key", sa.String(length=100), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_seen_requests")),
    )
    with op.batch_alter_table("seen_requests") as batch_op:
        batch_op.create_index(batch_op.f("ix_seen_requests_at"), ["at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("seen_requests") as batch_op:
        batch_op.drop_index(batch_op.f("ix_seen_requests_at"))
    op.drop_table("seen_requests")
