"""Rate-limit buckets shared by every web process.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-08 00:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "web_limits",
        sa.Column("key", sa.String(64), nullable=False),
        sa.Column("full_at", sa.Float(), nullable=False),
        sa.Column("refused", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_web_limits")),
    )
    op.create_index(op.f("ix_web_limits_full_at"), "web_limits", ["full_at"])


def downgrade() -> None:
    op.drop_index(op.f("ix_web_limits_full_at"), table_name="web_limits")
    op.drop_table("web_limits")
