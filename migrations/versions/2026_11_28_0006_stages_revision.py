"""A revision number on each workspace's stages, so replicas can cache them safely.

Every change of a team's stages or exit criteria gives its workspace a new random
`stages_revision`; a process keeps each team's stages keyed by it and reads only this
number per transaction. Existing workspaces get a random one here.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-28
"""

from __future__ import annotations

import secrets

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

workspaces = sa.table(
    "workspaces", sa.column("team_id", sa.String), sa.column("stages_revision", sa.BigInteger)
)


def upgrade() -> None:
    with op.batch_alter_table("workspaces") as batch_op:
        batch_op.add_column(sa.Column("stages_revision", sa.BigInteger(), nullable=True))
    bind = op.get_bind()
    for (team_id,) in bind.execute(sa.select(workspaces.c.team_id)).all():
        bind.execute(
            workspaces.update()
            .where(workspaces.c.team_id == team_id)
            .values(stages_revision=secrets.randbits(62))
        )
    with op.batch_alter_table("workspaces") as batch_op:
        batch_op.alter_column("stages_revision", existing_type=sa.BigInteger(), nullable=False)


def downgrade() -> None:
    with op.batch_alter_table("workspaces") as batch_op:
        batch_op.drop_column("stages_revision")
