"""Subscribers, consent evidence, the suppression list and store facts.

Revision ID: 0001
Revises:
Create Date: 2025-05-01 00:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from newsletter.store.models import STATUS_CHECK, UTCDateTime

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "subscribers",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("email", sa.String(320), nullable=False),
        sa.Column("email_key", sa.String(320), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("attributes", JSON, nullable=False),
        sa.Column("tags", JSON, nullable=False),
        sa.Column("status", sa.Enum("pending", "active", "unsubscribed", "bounced", "complained",
                                    name="status", native_enum=False, create_constraint=False,
                                    length=16), nullable=False),
        sa.Column("status_reason", sa.String(200), nullable=False),
        sa.Column("status_issue", sa.String(200), nullable=True),
        sa.Column("source", sa.String(200), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.Column("status_changed_at", UTCDateTime(), nullable=False),
        sa.Column("confirmed_at", UTCDateTime(), nullable=True),
        sa.Column("unsubscribed_at", UTCDateTime(), nullable=True),
        sa.CheckConstraint(STATUS_CHECK, name=op.f("ck_subscribers_status")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_subscribers")),
        sa.UniqueConstraint("email_key", name=op.f("uq_subscribers_email_key")),
        sqlite_autoincrement=True,
    )
    op.create_table(
        "consents",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("subscriber_id", sa.Integer(), nullable=False),
        sa.Column("given_at", UTCDateTime(), nullable=False),
        sa.Column("method", sa.String(64), nullable=False),
        sa.Column("ip", sa.String(45), nullable=True),
        sa.Column("evidence", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(["subscriber_id"], ["subscribers.id"], ondelete="CASCADE",
                                name=op.f("fk_consents_subscriber_id_subscribers")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_consents")),
    )
    op.create_index(op.f("ix_consents_subscriber_id"), "consents", ["subscriber_id"])
    op.create_table(
        "suppressions",
        sa.Column("address_hash", sa.String(64), nullable=False),
        sa.Column("reason", sa.String(64), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("address_hash", name=op.f("pk_suppressions")),
    )
    op.create_table(
        "store_meta",
        sa.Column("key", sa.String(64), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_store_meta")),
    )


def downgrade() -> None:
    op.drop_table("store_meta")
    op.drop_table("suppressions")
    op.drop_index(op.f("ix_consents_subscriber_id"), table_name="consents")
    op.drop_table("consents")
    op.drop_table("subscribers")
