"""The delivery ledger: sends, deliveries and the senders working on them.

Revision ID: 0002
Revises: 0001
Create Date: 2025-05-02 00:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from newsletter.store.models import UTCDateTime

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "sends",
        sa.Column("issue", sa.String(200), nullable=False),
        sa.Column("subject", sa.String(998), nullable=False),
        sa.Column("content_hash", sa.String(64), nullable=False),
        sa.Column("audience", JSON, nullable=False),
        sa.Column("planned", sa.Integer(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("finished_at", UTCDateTime(), nullable=True),
        sa.Column("note", sa.String(500), nullable=False),
        sa.PrimaryKeyConstraint("issue", name=op.f("pk_sends")),
    )
    op.create_table(
        "deliveries",
        sa.Column("id", ID, nullable=False),
        sa.Column("issue", sa.String(200), nullable=False),
        sa.Column("subscriber_id", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("message_id", sa.String(200), nullable=True),
        sa.Column("error", sa.String(500), nullable=True),
        sa.Column("sender", sa.String(100), nullable=True),
        sa.Column("claimed_at", UTCDateTime(), nullable=True),
        sa.Column("finished_at", UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(["issue"], ["sends.issue"], ondelete="CASCADE",
                                name=op.f("fk_deliveries_issue_sends")),
        sa.ForeignKeyConstraint(["subscriber_id"], ["subscribers.id"], ondelete="CASCADE",
                                name=op.f("fk_deliveries_subscriber_id_subscribers")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_deliveries")),
        sa.UniqueConstraint("issue", "subscriber_id",
                            name=op.f("uq_deliveries_issue_subscriber_id")),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_deliveries_claim", "deliveries", ["issue", "status", "id"])
    op.create_index(op.f("ix_deliveries_subscriber_id"), "deliveries", ["subscriber_id"])
    op.create_index(op.f("ix_deliveries_message_id"), "deliveries", ["message_id"])
    op.create_table(
        "senders",
        sa.Column("id", sa.String(100), nullable=False),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("heartbeat_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_senders")),
    )


def downgrade() -> None:
    op.drop_table("senders")
    op.drop_index(op.f("ix_deliveries_message_id"), table_name="deliveries")
    op.drop_index(op.f("ix_deliveries_subscriber_id"), table_name="deliveries")
    op.drop_index("ix_deliveries_claim", table_name="deliveries")
    op.drop_table("deliveries")
    op.drop_table("sends")
