"""Languages: each subscriber's, and the version of an issue each delivery was planned in.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-15 00:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # NULL: not known, which reads the original. A plain ADD COLUMN on every dialect: no table
    # is copied, however long the list or the ledger.
    op.add_column("subscribers", sa.Column("language", sa.String(35), nullable=True))
    op.add_column("deliveries", sa.Column("language", sa.String(35), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("deliveries") as batch:
        batch.drop_column("language")
    with op.batch_alter_table("subscribers") as batch:
        batch.drop_column("language")
