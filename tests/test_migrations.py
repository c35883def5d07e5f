"""The Alembic migrations build exactly the models, every table of them (SQLite, PostgreSQL)."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

# Every module that maps a table onto the one metadata: a new one belongs here.
import newsletter.store.events
import newsletter.store.ledger
import newsletter.store.limits
import newsletter.store.rates
import newsletter.store.schedules
import newsletter.store.triggers  # noqa: F401
from newsletter.store import Store
from newsletter.store import database as schema
from newsletter.store.models import Base


@pytest.fixture
def store(database_url):
    with Store.open(database_url) as opened:
        yield opened


def test_the_migrations_build_exactly_the_models(store):
    with store.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        assert compare_metadata(context, Base.metadata) == []
        assert schema.current_revision(store.engine) == schema.head_revision()


def test_every_table_is_modelled(store):
    assert set(Base.metadata.tables) == {
        "subscribers", "consents", "suppressions", "store_meta", "sends", "deliveries",
        "senders", "events", "schedules", "leases", "rates", "web_limits", "triggers"}
