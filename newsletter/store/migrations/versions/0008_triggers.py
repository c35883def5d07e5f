"""Triggered issues: when each subscriber became due for welcome issues, the version each
delivery got, and each trigger's state.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-20 00:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from newsletter.store.models import UTCDateTime

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Plain ADD COLUMNs (no table copy) and indexes: NULL welcome_at is "joined without a
    # welcome" (everyone already on the list), NULL version is "not a triggered issue".
    op.add_column("subscribers", sa.Column("welcome_at", UTCDateTime(), nullable=True))
    op.create_index(op.f("ix_subscribers_welcome_at"), "subscribers", ["welcome_at"])
    op.add_column("deliveries", sa.Column("version", sa.String(16), nullable=True))
    op.create_table(
        "triggers",
        sa.Column("issue", sa.String(200), nullable=False),
        sa.Column("rule", sa.String(300), nullable=False),
        sa.Column("started_at", UTCDateTime(), nullable=False),
        sa.Column("cursor", UTCDateTime(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("version", sa.String(64), nullable=False),
        sa.Column("note", sa.String(500), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("issue", name=op.f("pk_triggers")),
    )


def downgrade() -> None:
    op.drop_table("triggers")
    with op.batch_alter_table("deliveries") as batch:
        batch.drop_column("version")
    op.drop_index(op.f("ix_subscribers_welcome_at"), table_name="subscribers")
    with op.batch_alter_table("subscribers") as batch:
        batch.drop_column("welcome_at")
