"""Scheduled issues and the scheduler lease.

Revision ID: 0004
Revises: 0003
Create Date: 2025-05-04 00:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from newsletter.store.models import UTCDateTime

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "schedules",
        sa.Column("issue", sa.String(200), nullable=False),
        sa.Column("send_at", UTCDateTime(), nullable=False),
        sa.Column("zone", sa.String(64), nullable=False),
        sa.Column("content_hash", sa.String(64), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("note", sa.String(500), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("issue", name=op.f("pk_schedules")),
    )
    op.create_index(op.f("ix_schedules_send_at"), "schedules", ["send_at"])
    op.create_table(
        "leases",
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("holder", sa.String(100), nullable=False),
        sa.Column("expires_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_leases")),
    )


def downgrade() -> None:
    op.drop_table("leases")
    op.drop_index(op.f("ix_schedules_send_at"), table_name="schedules")
    op.drop_table("schedules")
