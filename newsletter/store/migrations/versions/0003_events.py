"""Email events (bounces, complaints, deliveries, opens, clicks) recorded against deliveries.

Revision ID: 0003
Revises: 0002
Create Date: 2025-05-03 00:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from newsletter.store.models import UTCDateTime

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "events",
        sa.Column("id", ID, nullable=False),
        sa.Column("event_key", sa.String(64), nullable=False),
        sa.Column("type", sa.String(24), nullable=False),
        sa.Column("occurred_at", UTCDateTime(), nullable=False),
        sa.Column("received_at", UTCDateTime(), nullable=False),
        sa.Column("message_id", sa.String(200), nullable=True),
        sa.Column("issue", sa.String(200), nullable=True),
        sa.Column("delivery_id", ID, nullable=True),
        sa.Column("subscriber_id", sa.Integer(), nullable=True),
        sa.Column("detail", JSON, nullable=False),
        # SET NULL: erasing a subscriber (which deletes their deliveries) leaves anonymous rows.
        sa.ForeignKeyConstraint(["delivery_id"], ["deliveries.id"], ondelete="SET NULL",
                                name=op.f("fk_events_delivery_id_deliveries")),
        sa.ForeignKeyConstraint(["subscriber_id"], ["subscribers.id"], ondelete="SET NULL",
                                name=op.f("fk_events_subscriber_id_subscribers")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_events")),
        sa.UniqueConstraint("event_key", name=op.f("uq_events_event_key")),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_events_issue_type", "events", ["issue", "type"])
    op.create_index("ix_events_subscriber_id_type", "events", ["subscriber_id", "type"])
    op.create_index(op.f("ix_events_message_id"), "events", ["message_id"])
    op.create_index(op.f("ix_events_delivery_id"), "events", ["delivery_id"])


def downgrade() -> None:
    op.drop_index(op.f("ix_events_delivery_id"), table_name="events")
    op.drop_index(op.f("ix_events_message_id"), table_name="events")
    op.drop_index("ix_events_subscriber_id_type", table_name="events")
    op.drop_index("ix_events_issue_type", table_name="events")
    op.drop_table("events")
