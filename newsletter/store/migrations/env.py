"""Alembic environment: runs against the engine newsletter.store.database passes in.

For a new revision during development, from the repository root:
    python -c "from alembic import command; from newsletter.store.database import \
revision_config; command.revision(revision_config('sqlite:///dev.db'), 'what changed', \
autogenerate=True)"
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Engine

from newsletter.store.database import make_engine
from newsletter.store.models import Base

config = context.config
engine: Engine = config.attributes.get("engine") or make_engine(
    config.get_main_option("sqlalchemy.url") or "")

with engine.connect() as connection:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        render_as_batch=connection.dialect.name == "sqlite",  # SQLite ALTERs by table copy
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()
if "engine" not in config.attributes:
    engine.dispose()
