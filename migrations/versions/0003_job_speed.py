"""Jobs: the smoothed training speed and the recent loss that each heartbeat writes
(``steps_per_second``, ``live_loss``).

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-08
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("steps_per_second", sa.Float(), nullable=True))
        batch.add_column(sa.Column("live_loss", sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("live_loss")
        batch.drop_column("steps_per_second")
